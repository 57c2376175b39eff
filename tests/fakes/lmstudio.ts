/**
 * A fake LM Studio for tests: a real HTTP server (Deno.serve on 127.0.0.1, port 0) that speaks the
 * wire shapes of /work/shared/LMSTUDIO_API.md, quirks included, and plays scripted replies.
 *
 * Default behaviours (when no scripted reply is queued for a path):
 * - `GET /v1/models`: every model (`{"object":"list","data":[{id,object,owned_by}]}`).
 * - `POST /v1/chat/completions`: `"Echo: <text of the last user message>"`; an unloaded model is
 *   JIT-loaded; an embedding model, images sent to a non-vision model, or a `response_format`
 *   other than `json_schema` and `text` (`json_object` included) are a 400.
 * - `POST /v1/completions`: echoes the prompt as the completion text.
 * - `POST /api/v1/chat` (LM Studio's native chat, flavor "lmstudio"): `"Echo: <input>"`, an
 *   unloaded model loaded for the request (JIT setting as above); with `"stream": true` its named
 *   events (`chat.start`, `model_load.*` when it loaded the model, `prompt_processing.*`,
 *   `reasoning.*`, `message.*`, `chat.end` with the whole reply). Its error bodies
 *   (`{"error":{"type":"model_not_found"|"invalid_request","message"}}`) follow the documented
 *   `error` event; the HTTP statuses are the fake's guess (the docs do not give them).
 * - `POST /v1/embeddings`: deterministic 8-dimensional unit vectors per input (embedding models only).
 * - `POST /v1/responses`: stateful; text `"Echo: <input> (turn N)"`; an unknown
 *   `previous_response_id` is a 400 with code `previous_response_not_found`. Flavor
 *   "openai-only" is stateless like Ollama's: it ignores `previous_response_id` and answers it
 *   as null.
 * - `GET /api/v0/models[/id]`, `GET /api/v1/models`, `POST /api/v1/models/load|unload` as LM Studio
 *   0.3.6+ / 0.4+ answer them (flavor "lmstudio"); flavor "lmstudio-v0" has no /api/v1;
 *   flavor "openai-only" (Ollama, llama.cpp) answers `404 page not found` (text/plain) on /api/*,
 *   and `"data": null` on /v1/models when it has no model (Ollama with nothing pulled).
 * - Unknown model: 404 `{"error":{"message":...,"code":"model_not_found"}}`; unknown endpoint or
 *   method: like the real LM Studio, status 200 (sic) with its string error shape
 *   `{"error":"Unexpected endpoint or method. (GET /x)"}`; so is `/v1/responses` with
 *   `responses: false` (LM Studio before 0.3.29).
 * - With `token`, every request without `Authorization: Bearer <token>` gets a 401 (with
 *   `publicModels`, llama.cpp-like, the model list is answered without it).
 * - Streaming: a `/v1/chat/completions`, `/v1/completions` or `/v1/responses` request with
 *   `"stream": true` gets its reply (the default one, or a scripted JSON body) as server-sent
 *   events, as LM Studio sends them: `chat.completion.chunk`s of about one token each (the first
 *   with `role`, reasoning in `delta.reasoning_content` / `delta.reasoning`, tool calls as
 *   `{index, id, type, function: {name, arguments: ""}}` then argument fragments, a last chunk with
 *   `delta: {}` and the finish reason), a usage chunk with `choices: []` when
 *   `stream_options.include_usage` is set, then `data: [DONE]`; completions alike; responses as
 *   named events ending with `response.completed`. Flavor "openai-only" sends each tool call whole
 *   in one fragment, as Ollama does. Option `stream: "ignore"` (or FAKE_LMSTUDIO_STREAM=ignore in
 *   the environment) answers in one JSON body instead, like a server that ignores `stream`.
 *   Errors and `raw` replies are never streamed; `events` plays raw SSE events.
 *
 * Standalone: `deno run -A tests/fakes/lmstudio.ts --port 1234 [--flavor openai-only] [--token T]
 * [--stream ignore]`.
 */

import type { ModelInfo } from "../../lib/lmstudio_types.ts";

/**
 * A model the fake knows about: what the client reads of a model ({@linkcode ModelInfo}), with
 * LM Studio's own word for an embedding model; a loaded model has one instance, named by its id.
 */
export type FakeModel = Omit<ModelInfo, "type" | "instanceIds"> & {
  type?: "llm" | "vlm" | "embeddings";
};

/** One request as the fake received it. Header names are lower case; body is parsed JSON, the raw text when it is not JSON, or undefined when empty. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * How a delayed reply ended: its body was "sent", the client went away before it ("abandoned"), or
 * the fake closed before it ("closed").
 */
export type DelayedEnd = "sent" | "abandoned" | "closed";

/** A point where a streamed reply waits for a test's signal. */
export interface StreamGate {
  after: number;
  until: Promise<unknown>;
}

/** How a streamed reply is played. */
export interface StreamPlay {
  /** Time between events (default 0: each goes out as soon as the client reads the last). */
  chunkMs?: number;
  /**
   * Events a second, on a schedule (event i is due i / perSecond seconds after the first, and
   * late ones go out at once): a model generating at that speed.
   */
  perSecond?: number;
  /** Send this many events, then nothing more with the connection left open: a stalled server. */
  stallAfter?: number;
  /** Close the stream after this many events, without its end: a server that died mid-reply. */
  cutAfter?: number;
  /** Send the fragments of several tool calls round-robin instead of one call after the other. */
  interleave?: boolean;
  /** Put the usage on the finishing chunk (as llama.cpp once did) instead of a chunk of its own. */
  usageOnFinish?: boolean;
  /**
   * After `after` events, wait for `until` before the rest (a test's signal, not a clock); several
   * gates hold the stream at several points.
   */
  gate?: StreamGate | StreamGate[];
}

/**
 * A reply to play: JSON `body` (or `raw` text, or raw server-sent `events`, each a complete event
 * such as `data: {...}\n\n`) with `status` (default 200), after `delayMs` (cut short when the
 * client goes away); `stream` says how a streamed one is played.
 */
export interface ScriptedReplyValue {
  status?: number;
  body?: unknown;
  delayMs?: number;
  headers?: Record<string, string>;
  raw?: string;
  events?: string[];
  stream?: StreamPlay;
}

/**
 * A scripted reply: JSON body with status (default 200) and optional delay (aborted if the client goes away),
 * or a function computing a reply / Response from the request.
 */
export type ScriptedReply =
  | ScriptedReplyValue
  | ((
    req: RecordedRequest,
  ) => ScriptedReplyValue | Response | Promise<ScriptedReplyValue | Response>);

/** Options of {@linkcode FakeLmStudio.start}. */
export interface FakeLmStudioOptions {
  /** Default: one loaded llm "qwen2.5-7b-instruct" (ctx 32768/8192), one not-loaded embeddings model "text-embedding-nomic-embed-text-v1.5". */
  models?: FakeModel[];
  /** openai-only = Ollama/llama.cpp-like: 404 on /api/*. lmstudio-v0 = LM Studio before 0.4 (no /api/v1). */
  flavor?: "lmstudio" | "lmstudio-v0" | "openai-only";
  /** When set, requests without "Authorization: Bearer <token>" get 401. */
  token?: string;
  /**
   * With `token`: `GET /v1/models` (and `/models`, `/health`, `/v1/health`) answer without it, as
   * llama.cpp's server does under `--api-key`; every other request still needs it.
   */
  publicModels?: boolean;
  /** false: no `/v1/responses` (LM Studio before 0.3.29 answers it as an unknown endpoint). */
  responses?: boolean;
  /**
   * false: just-in-time loading is off. `/v1/models` lists only loaded models, and a request for
   * a model that is not loaded, while none is, gets 404 "No models loaded...".
   */
  jit?: boolean;
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /**
   * "sse" (default): stream replies to requests with `"stream": true`; "ignore": answer them in
   * one JSON body, like a server without streaming. The default comes from FAKE_LMSTUDIO_STREAM
   * when it is set, so a whole test suite can run either way.
   */
  stream?: "sse" | "ignore";
  /** false: ignore `stream_options.include_usage` (LM Studio before 0.3.18): no usage in streams. */
  streamUsage?: boolean;
}

/** The streaming mode of fakes started without `stream`: FAKE_LMSTUDIO_STREAM, else "sse". */
export function defaultStreamMode(): "sse" | "ignore" {
  const mode = Deno.env.get("FAKE_LMSTUDIO_STREAM");
  if (mode === undefined || mode === "" || mode === "sse") return "sse";
  if (mode === "ignore") return "ignore";
  throw new Error(`FAKE_LMSTUDIO_STREAM must be "sse" or "ignore", got "${mode}"`);
}

/** The endpoints that stream their replies when asked to. */
const STREAMED_PATHS = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/api/v1/chat",
]);

/** The default model list of the fake. */
export function defaultFakeModels(): FakeModel[] {
  return [
    {
      id: "qwen2.5-7b-instruct",
      type: "llm",
      state: "loaded",
      maxContextLength: 32768,
      loadedContextLength: 8192,
      toolUse: true,
      publisher: "lmstudio-community",
      arch: "qwen2",
      quantization: "Q4_K_M",
    },
    {
      id: "text-embedding-nomic-embed-text-v1.5",
      type: "embeddings",
      state: "not-loaded",
      maxContextLength: 2048,
      publisher: "nomic-ai",
      arch: "nomic-bert",
      quantization: "Q4_K_M",
    },
  ];
}

/** The paths llama.cpp's server answers without its `--api-key` (`publicModels`). */
/** Endpoints that take POST: their scripts are not played for a GET. */
const POST_PATHS = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/responses",
  "/api/v1/chat",
  "/api/v1/models/load",
  "/api/v1/models/unload",
]);

const PUBLIC_PATHS = new Set(["/health", "/v1/health", "/models", "/v1/models"]);

/** Context length a JIT or REST load uses when none is asked for. */
const DEFAULT_LOAD_CONTEXT = 4096;

interface StoredResponse {
  id: string;
  turn: number;
}

/** The fake LM Studio server. */
export class FakeLmStudio {
  /** "http://127.0.0.1:<port>" */
  readonly baseUrl: string;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Mutable: REST load/unload and JIT loading change `state`. */
  models: FakeModel[];

  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #flavor: "lmstudio" | "lmstudio-v0" | "openai-only";
  readonly #token: string | undefined;
  readonly #publicModels: boolean;
  readonly #responsesApi: boolean;
  readonly #jit: boolean;
  readonly #stream: "sse" | "ignore";
  readonly #streamUsage: boolean;
  readonly #queues = new Map<string, ScriptedReply[]>();
  readonly #responses = new Map<string, StoredResponse>();
  readonly #delayedEnds = new Map<RecordedRequest, PromiseWithResolvers<DelayedEnd>>();
  readonly #closing = new AbortController();
  #responseCounter = 0;
  #chatCounter = 0;
  #closed = false;

  private constructor(options: FakeLmStudioOptions) {
    this.models = options.models ? options.models.map((m) => ({ ...m })) : defaultFakeModels();
    this.#flavor = options.flavor ?? "lmstudio";
    this.#token = options.token;
    this.#publicModels = options.publicModels ?? false;
    this.#responsesApi = options.responses ?? true;
    this.#jit = options.jit ?? true;
    this.#stream = options.stream ?? defaultStreamMode();
    this.#streamUsage = options.streamUsage ?? true;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
    this.baseUrl = `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Starts a fake on 127.0.0.1 (port 0 unless `options.port`). */
  static start(options: FakeLmStudioOptions = {}): Promise<FakeLmStudio> {
    return Promise.resolve(new FakeLmStudio(options));
  }

  /** The port the fake listens on. */
  get port(): number {
    return this.#server.addr.port;
  }

  /**
   * Queues replies for a path ("/v1/chat/completions") or for one method of it
   * ("GET /v1/chat/completions"); consumed in order; when the queue is empty the default
   * behaviour applies.
   */
  script(path: string, ...replies: ScriptedReply[]): void {
    const queue = this.#queues.get(path) ?? [];
    queue.push(...replies);
    this.#queues.set(path, queue);
  }

  /** Replies still queued for a path (0 when every scripted reply was consumed). */
  pending(path: string): number {
    return this.#queues.get(path)?.length ?? 0;
  }

  /** Requests received for one path. */
  requestsTo(path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  /**
   * How the delayed or streamed reply to `request` (one of {@linkcode requests}, scripted with
   * `delayMs`, or any streamed reply) ended; settles when it has. A client that gives up on the
   * reply (closes the connection) shows here as "abandoned".
   */
  delayedEnd(request: RecordedRequest): Promise<DelayedEnd> {
    return this.#delayedEndOf(request).promise;
  }

  #delayedEndOf(request: RecordedRequest): PromiseWithResolvers<DelayedEnd> {
    let end = this.#delayedEnds.get(request);
    if (end === undefined) {
      end = Promise.withResolvers<DelayedEnd>();
      this.#delayedEnds.set(request, end);
    }
    return end;
  }

  /** Stops the server; delayed replies still waiting are cut short. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const text = await req.text();
    let body: unknown = undefined;
    if (text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    const headers: Record<string, string> = {};
    req.headers.forEach((value, key) => (headers[key] = value));
    const recorded: RecordedRequest = { method: req.method, path: url.pathname, headers, body };
    this.requests.push(recorded);

    const open = this.#publicModels && req.method === "GET" && PUBLIC_PATHS.has(url.pathname);
    if (
      this.#token !== undefined && !open && headers["authorization"] !== `Bearer ${this.#token}`
    ) {
      return json(401, {
        error: {
          message: headers["authorization"] === undefined
            ? "Authentication required: missing Authorization header"
            : "Invalid API token",
          type: "invalid_request_error",
          code: "invalid_api_key",
        },
      });
    }

    // A script for "METHOD /path" plays only that method; one for "/path" plays the endpoint's
    // own method: a GET of a POST endpoint (the bridge's auth probe) is answered as LM Studio
    // answers it, and consumes no scripted reply meant for the POSTs.
    const scripted = this.#queues.get(`${req.method} ${url.pathname}`)?.shift() ??
      (req.method === "GET" && POST_PATHS.has(url.pathname)
        ? undefined
        : this.#queues.get(url.pathname)?.shift());
    try {
      if (scripted !== undefined) return await this.#play(scripted, recorded);
      const reply = this.#default(recorded);
      if (!this.#streams(recorded) || reply.status !== 200) return reply;
      const text = await reply.text();
      const events = streamedEvents(
        recorded,
        JSON.parse(text),
        {},
        this.#flavor,
        this.#streamUsage,
      );
      if (events === undefined) return new Response(text, { status: 200, headers: reply.headers });
      return this.#eventStream(recorded, events, { status: 200 });
    } catch (error: unknown) {
      const message = error instanceof Error ? error.message : String(error);
      return json(500, { error: { message: `fake LM Studio failed: ${message}` } });
    }
  }

  /** Whether the reply to `req` goes out as server-sent events (when it is an answer). */
  #streams(req: RecordedRequest): boolean {
    return this.#stream === "sse" && req.method === "POST" && STREAMED_PATHS.has(req.path) &&
      field(req.body, "stream") === true;
  }

  async #play(reply: ScriptedReply, req: RecordedRequest): Promise<Response> {
    const value = typeof reply === "function" ? await reply(req) : reply;
    if (value instanceof Response) return value;
    if (value.events !== undefined) return this.#eventStream(req, value.events, value);
    const status = value.status ?? 200;
    if (status === 200 && value.raw === undefined && this.#streams(req)) {
      const events = streamedEvents(
        req,
        value.body,
        value.stream ?? {},
        this.#flavor,
        this.#streamUsage,
      );
      if (events !== undefined) return this.#eventStream(req, events, value);
    }
    const raw = value.raw !== undefined;
    const text = raw ? value.raw : value.body === undefined ? null : JSON.stringify(value.body);
    const headers = {
      "content-type": raw ? "text/plain; charset=utf-8" : "application/json",
      ...value.headers,
    };
    if (value.delayMs === undefined || value.delayMs <= 0) {
      return new Response(text, { status, headers });
    }
    const end = this.#delayedEndOf(req);
    return new Response(this.#delayedBody(text ?? "", value.delayMs, end.resolve), {
      status,
      headers,
    });
  }

  /**
   * A body that arrives after `ms`. The status line goes out at once and the body waits, so a
   * client that goes away cancels the stream (and its timer) without the handler having to watch
   * `request.signal`, which Deno.serve's legacy abort semantics warn about.
   */
  #delayedBody(
    text: string,
    ms: number,
    ended: (how: DelayedEnd) => void,
  ): ReadableStream<Uint8Array> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onClose: (() => void) | undefined;
    const closing = this.#closing.signal;
    const stop = () => {
      clearTimeout(timer);
      if (onClose) closing.removeEventListener("abort", onClose);
    };
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        onClose = () => {
          stop();
          // The fake is closing: end the reply (truncated) so shutdown need not wait for the timer.
          controller.close();
          ended("closed");
        };
        if (closing.aborted) return onClose();
        closing.addEventListener("abort", onClose, { once: true });
        timer = setTimeout(() => {
          stop();
          if (text !== "") controller.enqueue(new TextEncoder().encode(text));
          controller.close();
          ended("sent");
        }, ms);
      },
      cancel: () => {
        stop();
        ended("abandoned");
      },
    });
  }

  /**
   * A reply of server-sent `events`, one chunk each, played as `o.stream` says after `o.delayMs`;
   * how it ended is told by {@linkcode delayedEnd}.
   */
  #eventStream(
    req: RecordedRequest,
    events: string[],
    o: Pick<ScriptedReplyValue, "status" | "headers" | "delayMs" | "stream">,
  ): Response {
    const end = this.#delayedEndOf(req);
    const play = o.stream ?? {};
    const closing = this.#closing.signal;
    const encoder = new TextEncoder();
    let sent = 0;
    let firstAt = 0;
    let finished = false;
    // Wakes a waiting pull when the client goes away or the fake closes.
    const wake = Promise.withResolvers<void>();
    const onClose = () => wake.resolve();
    closing.addEventListener("abort", onClose, { once: true });
    const finish = (how: DelayedEnd) => {
      if (finished) return;
      finished = true;
      closing.removeEventListener("abort", onClose);
      wake.resolve();
      end.resolve(how);
    };
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake.promise.then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const wait = sent === 0
          ? o.delayMs ?? 0
          : play.perSecond !== undefined
          ? firstAt + sent * 1000 / play.perSecond - performance.now()
          : play.chunkMs ?? 0;
        if (wait > 0) await pause(wait);
        if (sent === 0) firstAt = performance.now();
        const gate = [play.gate ?? []].flat().find((g) => g.after === sent);
        if (gate !== undefined) {
          await Promise.race([gate.until, wake.promise]);
        }
        if (finished) return;
        if (closing.aborted) {
          controller.close();
          return finish("closed");
        }
        const stalled = play.stallAfter !== undefined && sent >= play.stallAfter;
        if (stalled) {
          // Nothing more, the connection left open: until the client goes away or the fake closes.
          await wake.promise;
          if (!finished) {
            controller.close();
            finish("closed");
          }
          return;
        }
        const cut = play.cutAfter !== undefined && sent >= play.cutAfter;
        if (cut || sent >= events.length) {
          controller.close();
          return finish("sent");
        }
        controller.enqueue(encoder.encode(events[sent++]!));
      },
      cancel: () => finish("abandoned"),
    }, { highWaterMark: 0 });
    return new Response(body, {
      status: o.status ?? 200,
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        ...o.headers,
      },
    });
  }

  #default(req: RecordedRequest): Response {
    const route = `${req.method} ${req.path}`;
    if (req.path.startsWith("/api/")) {
      if (this.#flavor === "openai-only") {
        return new Response("404 page not found", {
          status: 404,
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
      }
      if (this.#flavor === "lmstudio-v0" && req.path.startsWith("/api/v1/")) {
        return unexpectedEndpoint(req);
      }
    }
    switch (route) {
      case "GET /v1/models": {
        const listed = this.models.filter((m) => this.#jit || m.state === "loaded");
        // Ollama with no model pulled answers `"data": null`.
        if (listed.length === 0 && this.#flavor === "openai-only") {
          return json(200, { object: "list", data: null });
        }
        return json(200, {
          object: "list",
          data: listed.map((m) => ({ id: m.id, object: "model", owned_by: "organization_owner" })),
        });
      }
      case "POST /v1/chat/completions":
        return this.#chat(req.body);
      case "POST /v1/completions":
        return this.#completion(req.body);
      case "POST /v1/embeddings":
        return this.#embeddings(req.body);
      case "POST /v1/responses":
        return this.#responsesApi ? this.#respond(req.body) : unexpectedEndpoint(req);
      case "GET /api/v0/models":
        return json(200, { object: "list", data: this.models.map(v0Model) });
      case "GET /api/v1/models":
        return json(200, { models: this.models.map(v1Model) });
      case "POST /api/v1/chat":
        return this.#nativeChat(req.body);
      case "POST /api/v1/models/load":
        return this.#load(req.body);
      case "POST /api/v1/models/unload":
        return this.#unload(req.body);
    }
    if (req.method === "GET" && req.path.startsWith("/api/v0/models/")) {
      const id = decodeURIComponent(req.path.slice("/api/v0/models/".length));
      const model = this.#find(id);
      return model ? json(200, v0Model(model)) : modelNotFound(id);
    }
    return unexpectedEndpoint(req);
  }

  #find(id: string): FakeModel | undefined {
    return this.models.find((m) => m.id === id);
  }

  /** Finds the model a request names, JIT-loading it; or the error response to send. */
  #modelFor(body: unknown): FakeModel | Response {
    const id = field(body, "model");
    if (typeof id !== "string" || id === "") {
      return json(400, {
        error: { message: "'model' is required", type: "invalid_request_error", param: "model" },
      });
    }
    const model = this.#find(id);
    if (!model) return modelNotFound(id);
    if (model.state !== "loaded" && !this.#jit) {
      if (!this.models.some((m) => m.state === "loaded")) return noModelsLoaded();
      return modelNotFound(id);
    }
    if (model.state !== "loaded") {
      model.state = "loaded";
      model.loadedContextLength = Math.min(model.maxContextLength ?? 4096, DEFAULT_LOAD_CONTEXT);
    }
    return model;
  }

  #chat(body: unknown): Response {
    const model = this.#modelFor(body);
    if (model instanceof Response) return model;
    if (model.type === "embeddings") {
      return json(400, {
        error: {
          message: `Model '${model.id}' is an embedding model and cannot be used for chat.`,
          type: "invalid_request_error",
        },
      });
    }
    const format = field(body, "response_format");
    const formatType = field(format, "type");
    if (format !== undefined && formatType !== "json_schema" && formatType !== "text") {
      // LM Studio 0.3.18+: json_object and every other type is refused.
      return json(400, {
        error: {
          message: "'response_format.type' must be 'json_schema' or 'text'",
          type: "invalid_request_error",
          param: "response_format",
        },
      });
    }
    const messages = field(body, "messages");
    if (!Array.isArray(messages) || messages.length === 0) {
      return json(400, {
        error: { message: "'messages' must be a non-empty array", type: "invalid_request_error" },
      });
    }
    let lastUser = "";
    let images = 0;
    let promptChars = 0;
    for (const message of messages) {
      const { text, imageCount } = messageText(field(message, "content"));
      promptChars += text.length;
      if (field(message, "role") === "user") {
        lastUser = text;
        images += imageCount;
      }
    }
    const vision = model.vision ?? model.type === "vlm";
    if (images > 0 && !vision) {
      return json(400, {
        error: {
          message: `Model '${model.id}' does not support images. Please use a model that does.`,
          type: "invalid_request_error",
        },
      });
    }
    const content = `Echo: ${lastUser}${images > 0 ? ` [${images} image(s)]` : ""}`;
    const prompt = Math.ceil(promptChars / 4);
    const completion = Math.ceil(content.length / 4);
    this.#chatCounter++;
    return json(
      200,
      chatReply({
        content,
        model: model.id,
        emptyToolCalls: Array.isArray(field(body, "tools")),
        usage: { prompt_tokens: prompt, completion_tokens: completion },
        id: `chatcmpl-${this.#chatCounter}`,
      }),
    );
  }

  /**
   * LM Studio's native chat (`POST /api/v1/chat`): `"Echo: <input>"`; a model that is not loaded
   * is loaded for the request (the reply's stats then have `model_load_time_seconds`, and its
   * stream the `model_load.*` events); `store` (default true) gives a `response_id`.
   */
  #nativeChat(body: unknown): Response {
    const invalid = (message: string, param?: string) =>
      json(400, {
        error: { type: "invalid_request", message, ...(param ? { param } : {}) },
      });
    const id = field(body, "model");
    if (typeof id !== "string" || id === "") return invalid('"model" is required', "model");
    const model = this.#find(id);
    if (!model) {
      return json(404, { error: { type: "model_not_found", message: `Model "${id}" not found` } });
    }
    if (model.type === "embeddings") {
      return invalid(`Model "${id}" is an embedding model and cannot be used for chat`, "model");
    }
    const temperature = field(body, "temperature");
    if (typeof temperature === "number" && (temperature < 0 || temperature > 1)) {
      return invalid('"temperature" must be between 0 and 1', "temperature");
    }
    const input = field(body, "input");
    const text = typeof input === "string"
      ? input
      : Array.isArray(input)
      ? input.map((item) => field(item, "content")).filter((c) => typeof c === "string").join("\n")
      : undefined;
    if (text === undefined) return invalid('"input" is required', "input");
    let loadSeconds: number | undefined;
    if (model.state !== "loaded") {
      if (!this.#jit) {
        return json(404, {
          error: { type: "model_not_found", message: `Model "${id}" is not loaded` },
        });
      }
      model.state = "loaded";
      model.loadedContextLength = Math.min(model.maxContextLength ?? 4096, DEFAULT_LOAD_CONTEXT);
      loadSeconds = 2.5;
    }
    const content = `Echo: ${text}`;
    const system = field(body, "system_prompt");
    const promptChars = text.length + (typeof system === "string" ? system.length : 0);
    this.#chatCounter++;
    return json(
      200,
      nativeReply({
        content,
        model: model.id,
        inputTokens: Math.ceil(promptChars / 4) + 4,
        ...(loadSeconds !== undefined ? { loadSeconds } : {}),
        ...(field(body, "store") !== false ? { responseId: `resp_${this.#chatCounter}` } : {}),
      }),
    );
  }

  #completion(body: unknown): Response {
    const model = this.#modelFor(body);
    if (model instanceof Response) return model;
    const prompt = field(body, "prompt");
    const text = typeof prompt === "string" ? prompt : "";
    return json(200, {
      id: `cmpl-${++this.#chatCounter}`,
      object: "text_completion",
      created: 1731000000,
      model: model.id,
      choices: [{ index: 0, text, logprobs: null, finish_reason: "stop" }],
      usage: {
        prompt_tokens: Math.ceil(text.length / 4),
        completion_tokens: Math.ceil(text.length / 4),
        total_tokens: 2 * Math.ceil(text.length / 4),
      },
    });
  }

  #embeddings(body: unknown): Response {
    const model = this.#modelFor(body);
    if (model instanceof Response) return model;
    if (model.type !== "embeddings") {
      return json(400, {
        error: {
          message: `Model '${model.id}' is not an embedding model. Load an embedding model.`,
          type: "invalid_request_error",
        },
      });
    }
    const input = field(body, "input");
    const inputs = typeof input === "string"
      ? [input]
      : Array.isArray(input) && input.every((x) => typeof x === "string")
      ? input as string[]
      : undefined;
    if (!inputs) {
      return json(400, {
        error: {
          message: "'input' must be a string or an array of strings",
          type: "invalid_request_error",
        },
      });
    }
    const tokens = inputs.reduce((n, s) => n + Math.ceil(s.length / 4), 0);
    return json(200, {
      object: "list",
      data: inputs.map((s, index) => ({ object: "embedding", index, embedding: fakeEmbedding(s) })),
      model: model.id,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  #respond(body: unknown): Response {
    const model = this.#modelFor(body);
    if (model instanceof Response) return model;
    // Ollama's /v1/responses stores nothing and ignores previous_response_id.
    const stateless = this.#flavor === "openai-only";
    const previous = stateless ? undefined : field(body, "previous_response_id");
    let turn = 1;
    if (typeof previous === "string") {
      const stored = this.#responses.get(previous);
      if (!stored) {
        return json(400, {
          error: {
            message: `Previous response with id '${previous}' not found.`,
            type: "invalid_request_error",
            param: "previous_response_id",
            code: "previous_response_not_found",
          },
        });
      }
      turn = stored.turn + 1;
    }
    const input = field(body, "input");
    const inputText = typeof input === "string" ? input : JSON.stringify(input);
    const id = `resp_${++this.#responseCounter}`;
    this.#responses.set(id, { id, turn });
    const text = `Echo: ${inputText} (turn ${turn})`;
    return json(200, {
      id,
      object: "response",
      created_at: 1731000000,
      status: "completed",
      model: model.id,
      previous_response_id: typeof previous === "string" ? previous : null,
      output: [
        {
          id: `msg_${this.#responseCounter}`,
          type: "message",
          role: "assistant",
          status: "completed",
          content: [{ type: "output_text", text, annotations: [] }],
        },
      ],
      usage: {
        input_tokens: Math.ceil(inputText.length / 4),
        output_tokens: Math.ceil(text.length / 4),
        total_tokens: Math.ceil(inputText.length / 4) + Math.ceil(text.length / 4),
      },
    });
  }

  #load(body: unknown): Response {
    const id = field(body, "model");
    if (typeof id !== "string") {
      return json(400, {
        error: { message: "'model' is required", type: "invalid_request_error" },
      });
    }
    const model = this.#find(id);
    if (!model) return modelNotFound(id);
    const ctx = field(body, "context_length");
    model.state = "loaded";
    model.loadedContextLength = typeof ctx === "number"
      ? ctx
      : Math.min(model.maxContextLength ?? DEFAULT_LOAD_CONTEXT, DEFAULT_LOAD_CONTEXT);
    return json(200, {
      type: model.type === "embeddings" ? "embedding" : "llm",
      instance_id: model.id,
      load_time_seconds: 0.01,
      status: "loaded",
    });
  }

  #unload(body: unknown): Response {
    const id = field(body, "instance_id");
    const model = typeof id === "string" ? this.#find(id) : undefined;
    if (!model || model.state !== "loaded") {
      return json(404, {
        error: {
          message: `No loaded model instance with id '${String(id)}'.`,
          type: "invalid_request_error",
          code: "model_not_found",
        },
      });
    }
    model.state = "not-loaded";
    delete model.loadedContextLength;
    return json(200, { instance_id: model.id });
  }
}

/** Builders for exact wire shapes: a `/v1/chat/completions` reply body. */
export function chatReply(o: {
  content?: string | null;
  /** `id: null` leaves the id out (a quirk seen in the wild); undefined generates `call_<n>`. */
  toolCalls?: {
    id?: string | null;
    name: string;
    arguments: string | Record<string, unknown>;
  }[];
  /** Sends `tool_calls: []` when there are no tool calls (LM Studio does on plain answers). */
  emptyToolCalls?: boolean;
  reasoning_content?: string;
  reasoning?: string;
  finishReason?: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
  model?: string;
  id?: string;
}): Record<string, unknown> {
  const message: Record<string, unknown> = {
    role: "assistant",
    content: o.content === undefined ? "" : o.content,
  };
  if (o.reasoning_content !== undefined) message.reasoning_content = o.reasoning_content;
  if (o.reasoning !== undefined) message.reasoning = o.reasoning;
  const calls = o.toolCalls ?? [];
  if (calls.length > 0) {
    message.tool_calls = calls.map((c, i) => ({
      ...(c.id === null ? {} : { id: c.id ?? `call_${i + 1}` }),
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    }));
  } else if (o.emptyToolCalls) {
    message.tool_calls = [];
  }
  const usage = o.usage ?? { prompt_tokens: 10, completion_tokens: 5 };
  return {
    id: o.id ?? "chatcmpl-fake",
    object: "chat.completion",
    created: 1731000000,
    model: o.model ?? "qwen2.5-7b-instruct",
    choices: [{
      index: 0,
      finish_reason: o.finishReason ?? (calls.length > 0 ? "tool_calls" : "stop"),
      logprobs: null,
      message,
    }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
    system_fingerprint: o.model ?? "qwen2.5-7b-instruct",
  };
}

/**
 * Builders for exact wire shapes: a reply of LM Studio's native chat (`POST /api/v1/chat`, the
 * body without streaming and the `result` of its stream's `chat.end`). `loadSeconds` says the
 * request loaded the model (`stats.model_load_time_seconds`).
 */
export function nativeReply(o: {
  content?: string;
  reasoning?: string;
  model?: string;
  inputTokens?: number;
  outputTokens?: number;
  loadSeconds?: number;
  responseId?: string;
}): Record<string, unknown> {
  const content = o.content ?? "";
  const output = [
    ...(o.reasoning !== undefined ? [{ type: "reasoning", content: o.reasoning }] : []),
    { type: "message", content },
  ];
  const reasoningTokens = Math.ceil((o.reasoning ?? "").length / 4);
  return {
    model_instance_id: o.model ?? "qwen2.5-7b-instruct",
    output,
    stats: {
      input_tokens: o.inputTokens ?? 10,
      total_output_tokens: o.outputTokens ?? Math.ceil(content.length / 4) + reasoningTokens,
      reasoning_output_tokens: reasoningTokens,
      tokens_per_second: 42.5,
      time_to_first_token_seconds: 0.12,
      ...(o.loadSeconds !== undefined ? { model_load_time_seconds: o.loadSeconds } : {}),
    },
    ...(o.responseId !== undefined ? { response_id: o.responseId } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Streams

/** `data: <json>` as one server-sent event. */
export function sseData(data: unknown): string {
  return `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
}

/** A named server-sent event (`event: <name>` and its data). */
export function sseEvent(name: string, data: unknown): string {
  return `event: ${name}\n${sseData(data)}`;
}

/** A scripted reply of raw server-sent events: `data:` JSON for objects, strings as they are. */
export function sseReply(
  events: (string | Record<string, unknown>)[],
  o: Omit<ScriptedReplyValue, "events" | "body" | "raw"> = {},
): ScriptedReplyValue {
  return { ...o, events: events.map((e) => typeof e === "string" ? e : sseData(e)) };
}

/** The most pieces one text is streamed in: longer texts (the attack suite's) get longer pieces. */
const MAX_PIECES = 8192;

/**
 * Text cut in pieces of about a token each: up to 4 non-space characters with the space before.
 * A text of more than {@linkcode MAX_PIECES} such pieces is cut into that many equal slices
 * instead, so that a 600 kB reply costs a test seconds, not half a minute, of streaming.
 */
export function tokenPieces(text: string): string[] {
  if (text.length > MAX_PIECES * 4) {
    const size = Math.ceil(text.length / MAX_PIECES);
    return Array.from(
      { length: Math.ceil(text.length / size) },
      (_, i) => text.slice(i * size, (i + 1) * size),
    );
  }
  return text.match(/\s*\S{1,4}|\s+/g) ?? [];
}

/**
 * The server-sent events of a reply `body` to `req` (chat, completion or response), as LM Studio
 * streams it; undefined when the body is not an answer of that endpoint (an error, another shape).
 */
function streamedEvents(
  req: RecordedRequest,
  body: unknown,
  play: StreamPlay,
  flavor: FakeLmStudioOptions["flavor"],
  streamUsage: boolean,
): string[] | undefined {
  if (!isRecord(body) || (body.error !== undefined && body.error !== null)) return undefined;
  const usage = streamUsage && field(field(req.body, "stream_options"), "include_usage") === true
    ? body.usage
    : undefined;
  switch (req.path) {
    case "/v1/chat/completions":
      return chatEvents(body, { ...play, usage, wholeCalls: flavor === "openai-only" });
    case "/v1/completions":
      return completionEvents(body, { ...play, usage });
    case "/v1/responses":
      return typeof body.id === "string" ? responseEvents(body) : undefined;
    case "/api/v1/chat":
      return Array.isArray(body.output) ? nativeEvents(body) : undefined;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The end of a chunked stream: the usage (own chunk, or on the finishing one) and `[DONE]`. */
function chunkedEnd(
  base: Record<string, unknown>,
  finishing: Record<string, unknown>,
  o: { usage?: unknown; usageOnFinish?: boolean },
): string[] {
  const withUsage = o.usage !== undefined && o.usage !== null;
  if (withUsage && o.usageOnFinish) {
    return [sseData({ ...finishing, usage: o.usage }), sseData("[DONE]")];
  }
  return [
    sseData(finishing),
    ...(withUsage ? [sseData({ ...base, choices: [], usage: o.usage })] : []),
    sseData("[DONE]"),
  ];
}

function chatEvents(
  body: Record<string, unknown>,
  o: StreamPlay & { usage?: unknown; wholeCalls: boolean },
): string[] | undefined {
  const choices = body.choices;
  const choice = Array.isArray(choices) ? choices[0] : undefined;
  const message = field(choice, "message");
  if (!isRecord(message)) return undefined;
  const base = {
    id: body.id,
    object: "chat.completion.chunk",
    created: body.created ?? 1731000000,
    model: body.model,
    system_fingerprint: body.system_fingerprint ?? body.model,
  };
  const chunk = (delta: Record<string, unknown>, finish: unknown = null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  const out: string[] = [];
  let first = true;
  const send = (delta: Record<string, unknown>) => {
    out.push(sseData(chunk(first ? { role: "assistant", ...delta } : delta)));
    first = false;
  };
  for (const key of ["reasoning_content", "reasoning"]) {
    const text = message[key];
    if (typeof text === "string") { for (const piece of tokenPieces(text)) send({ [key]: piece }); }
  }
  if (
    message.content !== undefined && message.content !== null &&
    typeof message.content !== "string" && !Array.isArray(message.content)
  ) {
    // A broken reply (content 42) is streamed as broken as it is, as a faulty server would.
    send({ content: message.content });
  } else {
    const { text: content } = messageText(message.content);
    for (const piece of tokenPieces(content)) send({ content: piece });
  }
  if (
    message.tool_calls !== undefined && message.tool_calls !== null &&
    !Array.isArray(message.tool_calls)
  ) {
    send({ tool_calls: message.tool_calls }); // broken as it is
  }
  const calls = Array.isArray(message.tool_calls) ? message.tool_calls.filter(isRecord) : [];
  const fragments = calls.map((call, index) => {
    const fn = isRecord(call.function) ? call.function : {};
    const head = { index, ...(call.id !== undefined ? { id: call.id } : {}), type: "function" };
    const args = fn.arguments;
    if (o.wholeCalls || typeof args !== "string") {
      // Ollama: the whole call in one fragment (and arguments sent as an object stay whole).
      return [{ ...head, function: { name: fn.name, arguments: args } }];
    }
    return [
      { ...head, function: { name: fn.name, arguments: "" } },
      ...tokenPieces(args).map((piece) => ({ index, function: { arguments: piece } })),
    ];
  });
  if (o.interleave) {
    for (let i = 0; fragments.some((f) => i < f.length); i++) {
      for (const f of fragments) if (i < f.length) send({ tool_calls: [f[i]] });
    }
  } else {
    for (const f of fragments) for (const fragment of f) send({ tool_calls: [fragment] });
  }
  if (first) send({ content: "" });
  return [...out, ...chunkedEnd(base, chunk({}, field(choice, "finish_reason") ?? null), o)];
}

function completionEvents(
  body: Record<string, unknown>,
  o: StreamPlay & { usage?: unknown },
): string[] | undefined {
  const choices = body.choices;
  const choice = Array.isArray(choices) ? choices[0] : undefined;
  if (!isRecord(choice)) return undefined;
  const base = {
    ...(body.id !== undefined ? { id: body.id } : {}),
    object: "text_completion",
    created: body.created ?? 1731000000,
    model: body.model,
  };
  const chunk = (text: string, finish: unknown = null) => ({
    ...base,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  });
  const text = typeof choice.text === "string" ? choice.text : "";
  return [
    ...tokenPieces(text).map((piece) => sseData(chunk(piece))),
    ...chunkedEnd(base, chunk("", choice.finish_reason ?? null), o),
  ];
}

/** A `/v1/responses` stream: created, each output item's deltas, completed (OpenAI's events). */
function responseEvents(body: Record<string, unknown>): string[] {
  let sequence = 0;
  const out: string[] = [];
  const send = (type: string, data: Record<string, unknown>) =>
    out.push(sseEvent(type, { type, sequence_number: sequence++, ...data }));
  send("response.created", {
    response: { ...body, status: "in_progress", output: [], usage: null },
  });
  const output = Array.isArray(body.output) ? body.output.filter(isRecord) : [];
  output.forEach((item, outputIndex) => {
    const itemId = item.id ?? `item_${outputIndex}`;
    const where = { item_id: itemId, output_index: outputIndex };
    if (item.type === "function_call") {
      send("response.output_item.added", {
        output_index: outputIndex,
        item: { ...item, arguments: "", status: "in_progress" },
      });
      const args = typeof item.arguments === "string" ? item.arguments : "";
      for (const delta of tokenPieces(args)) {
        send("response.function_call_arguments.delta", { ...where, delta });
      }
      send("response.function_call_arguments.done", { ...where, arguments: args });
    } else {
      send("response.output_item.added", {
        output_index: outputIndex,
        item: { ...item, content: [], status: "in_progress" },
      });
      const parts = Array.isArray(item.content) ? item.content.filter(isRecord) : [];
      parts.forEach((part, contentIndex) => {
        const text = typeof part.text === "string" ? part.text : "";
        const delta = item.type === "reasoning"
          ? "response.reasoning_text.delta"
          : "response.output_text.delta";
        for (const piece of tokenPieces(text)) {
          send(delta, { ...where, content_index: contentIndex, delta: piece });
        }
      });
    }
    send("response.output_item.done", { output_index: outputIndex, item });
  });
  send("response.completed", { response: body });
  return out;
}

/**
 * The stream of a native chat reply, as LM Studio sends it: `chat.start`; the `model_load.*`
 * events when the reply says the request loaded the model; `prompt_processing.*`; each output
 * item's start, token-sized deltas and end; and `chat.end` with the whole reply. Every event is
 * named, and its data repeats the name as `type`.
 */
function nativeEvents(body: Record<string, unknown>): string[] {
  const out: string[] = [];
  const send = (type: string, data: Record<string, unknown> = {}) =>
    out.push(sseEvent(type, { type, ...data }));
  const instance = { model_instance_id: body.model_instance_id };
  send("chat.start", instance);
  const loadSeconds = field(body.stats, "model_load_time_seconds");
  if (typeof loadSeconds === "number") {
    send("model_load.start", instance);
    for (const progress of [0.2, 0.6, 1]) send("model_load.progress", { ...instance, progress });
    send("model_load.end", { ...instance, load_time_seconds: loadSeconds });
  }
  send("prompt_processing.start");
  for (const progress of [0.35, 1]) send("prompt_processing.progress", { progress });
  send("prompt_processing.end");
  for (const item of Array.isArray(body.output) ? body.output.filter(isRecord) : []) {
    const kind = item.type === "reasoning" ? "reasoning" : item.type === "message" ? "message" : "";
    if (kind === "") continue;
    send(`${kind}.start`);
    const text = typeof item.content === "string" ? item.content : "";
    for (const content of tokenPieces(text)) send(`${kind}.delta`, { content });
    send(`${kind}.end`);
  }
  send("chat.end", { result: body });
  return out;
}

/** An OpenAI-shaped error body `{"error":{"message","type","code"}}`. */
export function errorBody(
  message: string,
  o: { type?: string; code?: string } = {},
): Record<string, unknown> {
  return {
    error: {
      message,
      type: o.type ?? "invalid_request_error",
      ...(o.code ? { code: o.code } : {}),
    },
  };
}

/** The deterministic unit vector the fake returns for a text (8 dimensions). */
export function fakeEmbedding(text: string): number[] {
  const raw: number[] = [];
  for (let d = 0; d < 8; d++) {
    let h = 2166136261 ^ d;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    raw.push(((h >>> 0) % 2000) / 1000 - 1);
  }
  const norm = Math.hypot(...raw) || 1;
  return raw.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

function v0Model(m: FakeModel): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: m.id,
    object: "model",
    type: m.type ?? "llm",
    publisher: m.publisher ?? "lmstudio-community",
    arch: m.arch ?? "llama",
    compatibility_type: "gguf",
    quantization: m.quantization ?? "Q4_K_M",
    state: m.state ?? "not-loaded",
    max_context_length: m.maxContextLength ?? 4096,
  };
  if (m.state === "loaded" && m.loadedContextLength !== undefined) {
    out.loaded_context_length = m.loadedContextLength;
  }
  if (m.toolUse) out.capabilities = ["tool_use"];
  return out;
}

function v1Model(m: FakeModel): Record<string, unknown> {
  const embedding = m.type === "embeddings";
  return {
    type: embedding ? "embedding" : "llm",
    publisher: m.publisher ?? "lmstudio-community",
    key: m.id,
    display_name: m.id,
    architecture: m.arch ?? "llama",
    quantization: { name: m.quantization ?? "Q4_K_M", bits_per_weight: 4 },
    size_bytes: 4_000_000_000,
    params_string: "7B",
    loaded_instances: m.state === "loaded"
      ? [{ id: m.id, config: { context_length: m.loadedContextLength ?? DEFAULT_LOAD_CONTEXT } }]
      : [],
    max_context_length: m.maxContextLength ?? 4096,
    format: "gguf",
    ...(embedding ? {} : {
      capabilities: {
        vision: m.vision ?? m.type === "vlm",
        trained_for_tool_use: m.toolUse ?? false,
        // An object, present only for reasoning models.
        ...(m.reasoning ? { reasoning: { allowed_options: ["off", "on"], default: "on" } } : {}),
      },
    }),
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function modelNotFound(id: string): Response {
  return json(
    404,
    errorBody(
      `Model "${id}" not found. Please specify a valid downloaded model or load one first.`,
      { code: "model_not_found" },
    ),
  );
}

/** LM Studio's answer, with just-in-time loading off, to a request while no model is loaded. */
function noModelsLoaded(): Response {
  return json(404, {
    error: {
      message: "No models loaded. Please load a model in the developer page or use the " +
        "'lms load' command.",
      type: "invalid_request_error",
      param: "model",
      code: null,
    },
  });
}

/** LM Studio's answer to a route it does not have: HTTP 200 (it logs "Returning 200 anyway"). */
function unexpectedEndpoint(req: RecordedRequest): Response {
  return json(200, { error: `Unexpected endpoint or method. (${req.method} ${req.path})` });
}

/** A property of an unknown value, or undefined. */
function field(value: unknown, key: string): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  return (value as Record<string, unknown>)[key];
}

function messageText(content: unknown): { text: string; imageCount: number } {
  if (typeof content === "string") return { text: content, imageCount: 0 };
  if (!Array.isArray(content)) return { text: "", imageCount: 0 };
  const texts: string[] = [];
  let imageCount = 0;
  for (const part of content) {
    const type = field(part, "type");
    const text = field(part, "text");
    if (type === "text" && typeof text === "string") texts.push(text);
    if (type === "image_url") imageCount++;
  }
  return { text: texts.join("\n"), imageCount };
}

if (import.meta.main) {
  const { parseArgs, stringOption, integerOption } = await import("../../lib/args.ts");
  const args = parseArgs(Deno.args, {
    port: { type: "string" },
    flavor: { type: "string" },
    token: { type: "string" },
    stream: { type: "string" },
  }, "fake-lmstudio");
  const flavor = stringOption(args, "flavor") ?? "lmstudio";
  if (flavor !== "lmstudio" && flavor !== "lmstudio-v0" && flavor !== "openai-only") {
    throw new Error(`--flavor must be lmstudio, lmstudio-v0 or openai-only, got "${flavor}"`);
  }
  const stream = stringOption(args, "stream") ?? defaultStreamMode();
  if (stream !== "sse" && stream !== "ignore") {
    throw new Error(`--stream must be sse or ignore, got "${stream}"`);
  }
  const fake = await FakeLmStudio.start({
    port: integerOption(args, "port", { min: 0, max: 65535 }) ?? 1234,
    flavor,
    token: stringOption(args, "token"),
    stream,
  });
  Deno.stderr.writeSync(
    new TextEncoder().encode(`fake LM Studio (${flavor}) listening on ${fake.baseUrl}\n`),
  );
}
