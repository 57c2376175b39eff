/**
 * The LM Studio HTTP client: the one request function for every call to LM Studio (or any
 * OpenAI-compatible server), and typed calls on top of it. Every reply is parsed as `unknown` and
 * validated with zod, leniently, because LM Studio versions, Ollama and llama.cpp differ (schemas
 * and normalisation in lmstudio_wire.ts, errors in lmstudio_errors.ts, request and result types in
 * lmstudio_types.ts).
 */
import type { z } from "zod";
import { log as defaultLog, type Logger } from "./log.ts";
import { abortableSleep } from "./abort.ts";
import {
  abortedError,
  badResponseError,
  gaveUpError,
  httpError,
  isErrorReply,
  isNoModelsLoaded,
  isUnknownRoute,
  LmStudioError,
  mayBeUnknownModel,
  missingEndpointError,
  networkError,
  noModelsLoadedError,
  previousResponseError,
  type RequestSite,
  restNotFoundError,
  statelessResponseError,
  timeoutError,
  tooLargeError,
  unknownModelError,
} from "./lmstudio_errors.ts";
import type {
  ChatRequest,
  ChatResult,
  CompletionRequest,
  CompletionResult,
  EmbeddingRequest,
  EmbeddingResult,
  ModelList,
  ResponseRequest,
  ResponseResult,
} from "./lmstudio_types.ts";
import {
  AnyWire,
  chatResult,
  ChatWire,
  completionResult,
  CompletionWire,
  embeddingResult,
  EmbeddingWire,
  LoadWire,
  mergeModelLists,
  ModelsWire,
  parseReply,
  responseResult,
  ResponseWire,
  V0ModelsWire,
  V1ModelsWire,
  wireResponseFormat,
} from "./lmstudio_wire.ts";
import {
  DEFAULT_MAX_REPLY_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
} from "./settings.ts";
import { errorMessage } from "./errors.ts";
import { chooseModelName } from "./model_pick.ts";

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Options of {@linkcode LmStudioClient}; I/O is injectable for tests. */
export interface LmStudioClientOptions {
  /** Server origin, e.g. "http://127.0.0.1:1234" (a trailing "/" or "/v1" is tolerated). */
  baseUrl: string;
  /** Bearer token (LM_API_TOKEN). */
  token?: string;
  /** Per-attempt timeout; default {@linkcode DEFAULT_REQUEST_TIMEOUT_MS} (300 s). */
  timeoutMs?: number;
  /** Retries on connection refused / 5xx / 429; default {@linkcode DEFAULT_RETRIES} (2). */
  retries?: number;
  /**
   * Largest reply body read, in bytes; a larger one fails (kind "too_large") as soon as it passes
   * the limit. Default {@linkcode DEFAULT_MAX_REPLY_BYTES} (64 MiB).
   */
  maxReplyBytes?: number;
  fetch?: typeof fetch;
  /** Sleeps between retries; must reject when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Jitter source in [0, 1). */
  random?: () => number;
  log?: Logger;
}

/** Options of {@linkcode LmStudioClient.request}. */
export type RequestOptions<T> = CallOptions & {
  body?: unknown;
  schema: z.ZodType<T>;
  retries?: number;
};

/** Parses a Retry-After header (seconds or HTTP date) into milliseconds. */
function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The body of `response` as text, read chunk by chunk; when it is (or announces, in its
 * Content-Length) more than `limit` bytes, reading stops there and the size seen is returned.
 */
async function readCapped(
  response: Response,
  limit: number,
): Promise<string | { read: number; announced: boolean }> {
  const announced = Number(response.headers.get("content-length") ?? NaN);
  if (announced > limit) {
    await response.body?.cancel().catch(() => {}); // nothing more is wanted from it
    return { read: announced, announced: true };
  }
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let read = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    read += value.byteLength;
    if (read > limit) {
      await reader.cancel().catch(() => {}); // the rest is not wanted
      return { read, announced: false };
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(read);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** Backoff before retry `attempt` (0-based): 500 ms doubling, capped at 8 s, with jitter in [50%, 100%]. */
export function backoffMs(attempt: number, random: number): number {
  const base = Math.min(8_000, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + 0.5 * random));
}

/** Longest wait a Retry-After header can impose. */
export const MAX_RETRY_AFTER_MS = 30_000;

/** Client for LM Studio's OpenAI-compatible API and REST API. */
export class LmStudioClient {
  /** Origin without trailing slash or "/v1". */
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #maxReplyBytes: number;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #log: Logger;

  constructor(options: LmStudioClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
    this.#token = options.token === "" ? undefined : options.token;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#retries = options.retries ?? DEFAULT_RETRIES;
    this.#maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#sleep = options.sleep ?? abortableSleep;
    this.#random = options.random ?? Math.random;
    this.#log = options.log ?? defaultLog;
  }

  /**
   * The one request function: base URL, bearer, JSON, timeout, AbortSignal, retries with
   * backoff + jitter on connection refused / dropped, 5xx and 429 (never other 4xx, never after
   * abort), zod-validated reply.
   */
  async request<T>(
    method: "GET" | "POST",
    path: string,
    options: RequestOptions<T>,
  ): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    const what = `${method} ${path}`;
    const site: RequestSite = { baseUrl: this.baseUrl, url, what };
    const retries = Math.max(0, options.retries ?? this.#retries);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const signal = options.signal;
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (this.#token !== undefined) headers["authorization"] = `Bearer ${this.#token}`;
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);

    for (let attempt = 0;; attempt++) {
      if (signal?.aborted) throw abortedError({ url, what, cause: signal.reason });
      const outcome = await this.#attempt({ site, method, headers, body, timeoutMs, signal });
      if (outcome.ok) return parseReply(outcome.text, options.schema, site);
      const { error, retryAfter } = outcome;
      const retryable = (error.kind === "unreachable" && outcome.transient) ||
        (error.kind === "http" && error.status !== undefined &&
          (error.status === 429 || error.status >= 500));
      if (!retryable || attempt >= retries) {
        throw attempt > 0 && retryable ? gaveUpError(error, attempt + 1) : error;
      }
      const backoff = backoffMs(attempt, this.#random());
      const delay = retryAfter !== undefined ? Math.min(retryAfter, MAX_RETRY_AFTER_MS) : backoff;
      this.#log.warn(
        `LM Studio ${what} failed (${error.status ?? "connection"}); retrying in ${delay} ms ` +
          `(attempt ${attempt + 2} of ${retries + 1})`,
      );
      try {
        await this.#sleep(delay, signal);
      } catch (cause: unknown) {
        if (signal?.aborted) throw abortedError({ url, what, cause });
        throw cause;
      }
    }
  }

  /** One try: a network failure or an HTTP error is returned for the retry loop to judge. */
  async #attempt(o: {
    site: RequestSite;
    method: string;
    headers: Record<string, string>;
    body: string | undefined;
    timeoutMs: number;
    signal: AbortSignal | undefined;
  }): Promise<
    | { ok: true; text: string }
    | { ok: false; error: LmStudioError; transient: boolean; retryAfter?: number }
  > {
    const timeout = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      timeout.abort(new DOMException("timeout", "TimeoutError"));
    }, o.timeoutMs);
    const signal = o.signal ? AbortSignal.any([o.signal, timeout.signal]) : timeout.signal;
    const { url, what } = o.site;
    // A failure without an HTTP answer: cancelled, timed out, or a network failure to judge.
    const failed = (cause: unknown) => {
      if (o.signal?.aborted) throw abortedError({ url, what, cause });
      if (timedOut) throw timeoutError({ ...o.site, ms: o.timeoutMs, cause });
      return { ok: false as const, ...networkError({ ...o.site, cause }) };
    };
    try {
      let response: Response;
      try {
        response = await this.#fetch(url, {
          method: o.method,
          headers: o.headers,
          ...(o.body !== undefined ? { body: o.body } : {}),
          signal,
        });
      } catch (cause: unknown) {
        return failed(cause);
      }
      let text: string;
      try {
        const read = await readCapped(response, this.#maxReplyBytes);
        if (typeof read !== "string") {
          // Close the connection too, so the server stops sending the rest.
          timeout.abort(new DOMException("reply too large", "AbortError"));
          throw tooLargeError({ ...o.site, limit: this.#maxReplyBytes, ...read });
        }
        text = read;
      } catch (cause: unknown) {
        if (cause instanceof LmStudioError) throw cause;
        return failed(cause);
      }
      // LM Studio answers some errors with 200: those are errors like any other.
      if (response.ok && !isErrorReply(text)) return { ok: true, text };
      const retryAfter = retryAfterMs(response.headers.get("retry-after"), Date.now());
      return {
        ok: false,
        error: httpError({
          ...o.site,
          status: response.status,
          statusText: response.statusText,
          body: text,
          tokenSent: this.#token !== undefined,
        }),
        transient: false,
        ...(retryAfter !== undefined ? { retryAfter } : {}),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs a call that names a model; a 404 becomes an error naming the models that exist (asks
   * /v1/models once) or saying the endpoint is not offered by this server.
   */
  async #withModel<T>(model: string, o: CallOptions | undefined, call: () => Promise<T>) {
    try {
      return await call();
    } catch (error: unknown) {
      if (!(error instanceof LmStudioError) || !mayBeUnknownModel(error)) throw error;
      // LM Studio said it has no such route: the model is not to blame.
      if (isUnknownRoute(error)) throw missingEndpointError(error, this.baseUrl);
      // Nothing loaded and no JIT: /v1/models would list only loaded models, i.e. none.
      if (isNoModelsLoaded(error)) {
        throw noModelsLoadedError(error, { baseUrl: this.baseUrl, model });
      }
      let ids: string[];
      try {
        const list = await this.request("GET", "/v1/models", {
          schema: ModelsWire,
          retries: 0,
          timeoutMs: Math.min(this.#timeoutMs, 10_000),
          ...(o?.signal ? { signal: o.signal } : {}),
        });
        ids = list.data.map((m) => m.id);
      } catch {
        // The original 404 is the better error when the model list cannot be had either.
        throw error;
      }
      throw unknownModelError(error, { baseUrl: this.baseUrl, model, ids });
    }
  }

  /**
   * Normalises a reply; fields it could do without that held something unusable (a string
   * `usage`, a numeric `finish_reason`) were left out, and are logged at debug level.
   */
  #lenient<T>(what: string, normalise: (ignored: string[]) => T): T {
    const ignored: string[] = [];
    const result = normalise(ignored);
    if (ignored.length > 0) {
      this.#log.debug(`ignored unusable fields of the reply to ${what}`, { fields: ignored });
    }
    return result;
  }

  #opts(o: CallOptions | undefined): CallOptions {
    return {
      ...(o?.signal ? { signal: o.signal } : {}),
      ...(o?.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    };
  }

  /** `/v1/models` enriched by `/api/v1/models` (LM Studio 0.4+) or `/api/v0/models`; falls back cleanly on other servers. */
  async listModels(o?: CallOptions): Promise<ModelList> {
    const call = { ...this.#opts(o), retries: 0 };
    const [base, v1, v0] = await Promise.allSettled([
      this.request("GET", "/v1/models", { ...this.#opts(o), schema: ModelsWire }),
      this.request("GET", "/api/v1/models", { ...call, schema: V1ModelsWire }),
      this.request("GET", "/api/v0/models", { ...call, schema: V0ModelsWire }),
    ]);
    if (base.status === "rejected") throw base.reason;
    return mergeModelLists({ ids: base.value.data.map((m) => m.id), v1, v0 });
  }

  /**
   * POST /v1/chat/completions; reasoning separated from the answer, tool calls left raw. A
   * `response_format` of type `json_object` is sent as a permissive JSON schema (see
   * {@linkcode wireResponseFormat}).
   */
  async chat(req: ChatRequest, o?: CallOptions): Promise<ChatResult> {
    const body: Record<string, unknown> = {
      ...req,
      ...(req.response_format !== undefined
        ? { response_format: wireResponseFormat(req.response_format) }
        : {}),
      stream: false,
    };
    const wire = await this.#withModel(
      req.model,
      o,
      () =>
        this.request("POST", "/v1/chat/completions", { ...this.#opts(o), body, schema: ChatWire }),
    );
    return this.#lenient("POST /v1/chat/completions", (ignored) => chatResult(wire, ignored));
  }

  /** POST /v1/completions. */
  async complete(req: CompletionRequest, o?: CallOptions): Promise<CompletionResult> {
    const wire = await this.#withModel(
      req.model,
      o,
      () =>
        this.request("POST", "/v1/completions", {
          ...this.#opts(o),
          body: req,
          schema: CompletionWire,
        }),
    );
    return this.#lenient("POST /v1/completions", (ignored) => completionResult(wire, ignored));
  }

  /** POST /v1/embeddings; vectors ordered by the server's `index`. */
  async embed(req: EmbeddingRequest, o?: CallOptions): Promise<EmbeddingResult> {
    const url = `${this.baseUrl}/v1/embeddings`;
    const wire = await this.#withModel(
      req.model,
      o,
      () =>
        this.request("POST", "/v1/embeddings", {
          ...this.#opts(o),
          body: req,
          schema: EmbeddingWire,
        }),
    );
    const expected = typeof req.input === "string" ? 1 : req.input.length;
    if (wire.data.length !== expected) {
      throw badResponseError({
        baseUrl: this.baseUrl,
        url,
        what: "POST /v1/embeddings",
        detail: `${wire.data.length} embeddings for ${expected} inputs`,
        cause: undefined,
      });
    }
    return this.#lenient("POST /v1/embeddings", (ignored) => embeddingResult(wire, ignored));
  }

  /**
   * POST /v1/responses (stateful; LM Studio 0.3.29+). A follow-up (`previous_response_id`) that the
   * server answers with `previous_response_id: null` fails: that server kept no state.
   */
  async respond(req: ResponseRequest, o?: CallOptions): Promise<ResponseResult> {
    let wire: z.infer<typeof ResponseWire>;
    try {
      wire = await this.#withModel(
        req.model,
        o,
        () =>
          this.request("POST", "/v1/responses", {
            ...this.#opts(o),
            body: req,
            schema: ResponseWire,
          }),
      );
    } catch (error: unknown) {
      throw previousResponseError(error, req.previous_response_id);
    }
    if (req.previous_response_id !== undefined && wire.previous_response_id === null) {
      throw statelessResponseError({
        baseUrl: this.baseUrl,
        url: `${this.baseUrl}/v1/responses`,
        previousResponseId: req.previous_response_id,
      });
    }
    return this.#lenient("POST /v1/responses", (ignored) => responseResult(wire, ignored));
  }

  /** POST /api/v1/models/load; LmStudioError kind "not_found" when the server has no REST API. */
  async loadModel(
    model: string,
    o?: CallOptions & { contextLength?: number; ttl?: number },
  ): Promise<{ instanceId?: string; status?: string }> {
    const body: Record<string, unknown> = { model };
    if (o?.contextLength !== undefined) body.context_length = o.contextLength;
    if (o?.ttl !== undefined) body.ttl = o.ttl;
    try {
      const wire = await this.request("POST", "/api/v1/models/load", {
        ...this.#opts(o),
        body,
        schema: LoadWire,
      });
      return {
        ...(wire.instance_id ? { instanceId: wire.instance_id } : {}),
        ...(wire.status ? { status: wire.status } : {}),
      };
    } catch (error: unknown) {
      throw restNotFoundError(error, {
        baseUrl: this.baseUrl,
        what: "POST /api/v1/models/load",
        name: model,
      });
    }
  }

  /** POST /api/v1/models/unload. */
  async unloadModel(instanceId: string, o?: CallOptions): Promise<void> {
    try {
      await this.request("POST", "/api/v1/models/unload", {
        ...this.#opts(o),
        body: { instance_id: instanceId },
        schema: AnyWire,
      });
    } catch (error: unknown) {
      throw restNotFoundError(error, {
        baseUrl: this.baseUrl,
        what: "POST /api/v1/models/unload",
        name: instanceId,
      });
    }
  }

  /**
   * Picks a model. `kind` "llm" (default): explicit -> defaultModel -> first loaded LLM (REST
   * state) -> first non-embedding model in /v1/models. `kind` "embedding": explicit -> loaded
   * embedding model -> any embedding model; never the chat model. Picking reads the model list
   * unless the caller passes the one it has (`list`).
   */
  async resolveModel(
    explicit: string | undefined,
    o?: CallOptions & { kind?: "llm" | "embedding"; defaultModel?: string; list?: ModelList },
  ): Promise<string> {
    return await chooseModelName(explicit, o ?? {}, () => this.listModels(this.#opts(o)), {
      where: this.baseUrl,
      url: `${this.baseUrl}/v1/models`,
    });
  }

  /**
   * Never throws: reachability, latency, model count, error message, and whether requests that use
   * a model are let through (`auth`). `/v1/models` is not enough for that: llama.cpp answers it
   * without the `--api-key` it requires for everything else, so a second request that needs
   * authentication but runs nothing (`GET /v1/chat/completions`) tells: a 401/403 makes the server
   * unhealthy, any other answer means the token (or none) is accepted, no answer leaves it
   * "unchecked" with a note saying why.
   */
  async health(
    o?: CallOptions,
  ): Promise<{
    ok: boolean;
    baseUrl: string;
    latencyMs: number;
    modelCount?: number;
    error?: string;
    auth?: "ok" | "refused" | "unchecked";
    note?: string;
  }> {
    const started = performance.now();
    const call = {
      ...this.#opts(o),
      timeoutMs: o?.timeoutMs ?? Math.min(this.#timeoutMs, 10_000),
      retries: 0,
    };
    const latencyMs = () => Math.round(performance.now() - started);
    let modelCount: number;
    try {
      modelCount = (await this.request("GET", "/v1/models", { ...call, schema: ModelsWire })).data
        .length;
    } catch (error: unknown) {
      return {
        ok: false,
        baseUrl: this.baseUrl,
        latencyMs: latencyMs(),
        error: errorMessage(error),
      };
    }
    const reached = { baseUrl: this.baseUrl, latencyMs: latencyMs(), modelCount };
    try {
      await this.request("GET", "/v1/chat/completions", { ...call, schema: AnyWire });
    } catch (error: unknown) {
      if (error instanceof LmStudioError && error.kind === "auth") {
        return {
          ok: false,
          ...reached,
          auth: "refused",
          error: `${this.baseUrl} lists its models without a token, but refuses the requests ` +
            `that use them: ${error.message}`,
        };
      }
      if (
        !(error instanceof LmStudioError) ||
        !["http", "not_found", "bad_response"].includes(error.kind)
      ) {
        return {
          ok: true,
          ...reached,
          auth: "unchecked",
          note: `Whether requests need a token was not checked: ${errorMessage(error)}`,
        };
      }
    }
    return { ok: true, ...reached, auth: "ok" };
  }
}
