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
  stalledError,
  statelessResponseError,
  streamEndedError,
  streamFailedError,
  timeoutError,
  tooLargeError,
  unknownModelError,
} from "./lmstudio_errors.ts";
import type {
  ChatRequest,
  ChatResult,
  ChatStreamEvent,
  CompletionRequest,
  CompletionResult,
  EmbeddingRequest,
  EmbeddingResult,
  GenerationStats,
  ModelList,
  ResponseRequest,
  ResponseResult,
  Usage,
} from "./lmstudio_types.ts";
import {
  GenerationTracker,
  type SseEvent,
  SseParser,
  type StreamAssembler,
  streamAssembler,
  StreamEventError,
  type StreamKind,
} from "./lmstudio_stream.ts";
import { bodyBytesKept } from "./lmstudio_body.ts";
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
  validateReply,
  wireResponseFormat,
} from "./lmstudio_wire.ts";
import {
  DEFAULT_LIST_REUSE_MS,
  DEFAULT_MAX_REPLY_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
  DEFAULT_STALL_MS,
} from "./settings.ts";
import { ChunkReader, readBytes } from "./byte_stream.ts";
import { errorMessage } from "./errors.ts";
import { chooseModelName } from "./model_pick.ts";
import { findModel } from "./model_names.ts";
import {
  NATIVE_CHAT_PATH,
  NativeChatAssembler,
  nativeChatBody,
  nativeReplyAsChat,
} from "./lmstudio_native.ts";
import { QuietTimer } from "./quiet_timer.ts";

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Options of {@linkcode LmStudioClient.listModels}. */
export interface ListOptions extends CallOptions {
  /**
   * Answer with the last list this client read when it was asked for less than the client's
   * `listReuseMs` ago and nothing the client sent since can have changed it (see
   * {@linkcode LmStudioClient.forgetModelList}). Default false: read it afresh.
   */
  reuse?: boolean;
}

/** Per-call options of a generation (chat, completion, response). */
export interface GenerateOptions extends CallOptions {
  /**
   * Gets the reply as it streams: silence before the first token ("waiting", about once a
   * second), each piece ("delta", with the reply's tokens so far), the figures ("done").
   */
  onEvent?: (event: ChatStreamEvent) => void;
  /**
   * For {@linkcode LmStudioClient.chat}: send a request that fits LM Studio's native chat (one
   * user turn of text, no tools, no output format) to `/api/v1/chat`, whose stream also tells how
   * far a model load and the reading of the prompt have got ("loading" and "prompt" events with
   * `progress`). A server without it (before LM Studio 0.4, Ollama, llama.cpp) is asked
   * `/v1/chat/completions` instead, and no longer asked natively.
   */
  native?: boolean;
  /**
   * With `native`: the context length for a model the request loads (LM Studio loads a model
   * that is not loaded for the request); only for a model known not to be loaded.
   */
  loadContextLength?: number;
  /**
   * For {@linkcode LmStudioClient.chat}: the caller never changes a message or tool definition
   * object once it was sent (a changed message is a new object), so their JSON is kept (as bytes,
   * lmstudio_body.ts) and reused by the next requests, which send them all again (the autonomous
   * loop's rounds).
   */
  unchanged?: boolean;
}

/** A generation's figures, beside the result of the call. */
export type WithStats<T> = T & { stats: GenerationStats };

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
  /** Ask for model replies as streams (default true); false sends `stream: false`. */
  stream?: boolean;
  /**
   * Longest silence of a streamed reply, in ms, before the request ends with a message saying
   * what came last; default {@linkcode DEFAULT_STALL_MS}; 0: none (only `timeoutMs`).
   */
  stallMs?: number;
  fetch?: typeof fetch;
  /** Sleeps between retries; must reject when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Jitter source in [0, 1). */
  random?: () => number;
  /**
   * How long a model list is reused by the calls that ask for reuse (the autonomous tasks), in
   * ms; default {@linkcode DEFAULT_LIST_REUSE_MS}; 0: never.
   */
  listReuseMs?: number;
  log?: Logger;
}

/**
 * A request that generates: its progress, and (`assembler`) the reading of its reply as a
 * stream of server-sent events when the server sends one.
 */
export interface Generation {
  tracker: GenerationTracker;
  /** Set when the reply was asked for as a stream. */
  assembler?: StreamAssembler;
  /** Longest silence of the stream; 0: none. */
  stallMs: number;
}

/** Options of {@linkcode LmStudioClient.request}. */
export type RequestOptions<T> = CallOptions & {
  body?: unknown;
  /** Writes the body as JSON (default `JSON.stringify`). */
  serialize?: (body: unknown) => string | Uint8Array<ArrayBuffer>;
  schema: z.ZodType<T>;
  retries?: number;
  generation?: Generation;
  /**
   * The model a POST runs. One the last model list showed loaded leaves that list in use; any
   * other POST (a load, an unload, a model it may load just in time) makes the next list fresh.
   */
  model?: string;
};

/** How one try ended: a body to parse, a reply assembled from a stream, or an error to judge. */
type Outcome =
  | { ok: true; text: string; value?: undefined }
  | { ok: true; value: unknown; text?: undefined }
  | { ok: false; error: LmStudioError; transient: boolean; retryAfter?: number };

/** The JSON value of a reply body, or undefined when it is not JSON (empty, HTML, cut short). */
function parsedJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** Whether a reply is a stream of server-sent events. */
function isEventStream(response: Response): boolean {
  return /text\/event-stream/i.test(response.headers.get("content-type") ?? "");
}

/** The buffer a streamed reply is read into: its events are small, and come a few at a time. */
const STREAM_READ_BYTES = 8 * 1024;

/** A body that is server-sent events despite its content type (a mislabelled stream). */
const LOOKS_LIKE_EVENTS = /^\s*(data|event):/;

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
 * A body whose length is announced (and not compressed, so that the length is the size) within
 * the limit is read in one piece, which costs a third less than chunk by chunk.
 */
async function readCapped(
  response: Response,
  limit: number,
): Promise<string | { read: number; announced: boolean }> {
  const length = response.headers.get("content-length");
  const announced = Number(length ?? NaN);
  if (announced > limit) {
    await response.body?.cancel().catch(() => {}); // nothing more is wanted from it
    return { read: announced, announced: true };
  }
  if (response.body === null) return "";
  const encoding = response.headers.get("content-encoding");
  if (length !== null && announced >= 0 && (encoding === null || encoding === "identity")) {
    return await response.text();
  }
  const bytes = await readBytes(
    response.body,
    limit,
    Number.isNaN(announced) ? undefined : announced,
  );
  if (!(bytes instanceof Uint8Array)) return { read: bytes.read, announced: false };
  return UTF8.decode(bytes);
}

/** Decodes whole bodies (never a stream's pieces, which keep a decoder of their own). */
const UTF8 = new TextDecoder();

/** The token counts of a reply's usage, for its figures. */
function tokensOf(usage: Usage | undefined): { prompt?: number; completion?: number } | undefined {
  return usage && { prompt: usage.prompt_tokens, completion: usage.completion_tokens };
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
  readonly #stream: boolean;
  readonly #stallMs: number;
  readonly #listReuseMs: number;
  /** Whether the server has LM Studio's native chat; undefined until a request or list tells. */
  #native: boolean | undefined;
  /** Whether the last model list had `/api/v1/models` (then `/api/v0/models` is not needed). */
  #restV1 = false;
  /** The last model list read, and when it was asked for; unset by what may change it. */
  #lastList: { list: ModelList; askedAt: number } | undefined;
  /** Counts what may have changed the models (so that a list asked for before is not kept). */
  #listEpoch = 0;
  /** Paths whose server answered a request for a stream in one piece: no stall limit there. */
  readonly #unstreamed = new Set<string>();
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
    this.#stream = options.stream ?? true;
    this.#stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.#listReuseMs = options.listReuseMs ?? DEFAULT_LIST_REUSE_MS;
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
    // A POST may change the models (a load, an unload, a model loaded just in time for it) at
    // any moment until it has been answered: a list read meanwhile is not kept either.
    if (method === "POST" && !this.#showsLoaded(options.model)) {
      this.forgetModelList();
      try {
        return await this.#send(method, path, options);
      } finally {
        this.forgetModelList();
      }
    }
    return await this.#send(method, path, options);
  }

  async #send<T>(method: "GET" | "POST", path: string, options: RequestOptions<T>): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    const what = `${method} ${path}`;
    const site: RequestSite = { baseUrl: this.baseUrl, url, what };
    const retries = Math.max(0, options.retries ?? this.#retries);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const signal = options.signal;
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (this.#token !== undefined) headers["authorization"] = `Bearer ${this.#token}`;
    const body = options.body === undefined
      ? undefined
      : (options.serialize ?? JSON.stringify)(options.body);
    const generation = options.generation;
    if (generation?.assembler !== undefined) headers.accept = "text/event-stream, application/json";
    for (let attempt = 0;; attempt++) {
      if (signal?.aborted) throw abortedError({ url, what, cause: signal.reason });
      const outcome = await this.#attempt({
        site,
        method,
        headers,
        body,
        timeoutMs,
        signal,
        generation,
      });
      if (outcome.ok) {
        return outcome.text === undefined
          ? validateReply(outcome.value, options.schema, site)
          : parseReply(outcome.text, options.schema, site);
      }
      const { error, retryAfter } = outcome;
      // llama.cpp answers 503 "Loading model" while it loads: say so while waiting to retry.
      if (error.status === 503 && /loading/i.test(error.serverMessage ?? "")) {
        generation?.tracker.loading();
      }
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
    body: string | Uint8Array<ArrayBuffer> | undefined;
    timeoutMs: number;
    signal: AbortSignal | undefined;
    generation: Generation | undefined;
  }): Promise<Outcome> {
    const control = new AbortController();
    let ended: "timeout" | "stall" | undefined;
    const timer = new QuietTimer(o.timeoutMs, () => {
      ended ??= "timeout";
      control.abort(new DOMException("timeout", "TimeoutError"));
    });
    timer.touch();
    const { url, what } = o.site;
    const generation = o.generation;
    const streamed = generation?.assembler !== undefined;
    // Ends a streamed request that gets no byte for stallMs: touched on every byte.
    const stall = streamed && generation.stallMs > 0 && !this.#unstreamed.has(what)
      ? new QuietTimer(generation.stallMs, () => {
        ended ??= "stall";
        control.abort(new DOMException("stalled", "TimeoutError"));
      })
      : undefined;
    stall?.touch();
    // The caller's cancellation ends the request through the same controller: one signal for
    // fetch to follow (a signal combined with AbortSignal.any costs fetch more on every request).
    const outer = o.signal;
    const onCancel = () => control.abort(outer?.reason);
    outer?.addEventListener("abort", onCancel, { once: true });
    const signal = control.signal;
    // A failure without an HTTP answer: cancelled, timed out, stalled, or a network failure to
    // judge (never retried once a streamed reply has begun: its pieces were passed on).
    const failed = (cause: unknown, begun = false) => {
      if (o.signal?.aborted) throw abortedError({ url, what, cause });
      if (ended === "timeout") throw timeoutError({ ...o.site, ms: o.timeoutMs, cause });
      if (ended === "stall" && stall !== undefined && generation !== undefined) {
        throw stalledError({
          ...o.site,
          ms: generation.stallMs,
          seen: generation.tracker.seen(),
          cause,
        });
      }
      const network = networkError({ ...o.site, cause });
      return { ok: false as const, ...network, transient: network.transient && !begun };
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
      stall?.touch();
      generation?.tracker.headers();
      if (response.ok && generation?.assembler !== undefined && isEventStream(response)) {
        try {
          return {
            ok: true,
            value: await this.#readEvents(response, { ...o.site, generation, stall }),
          };
        } catch (cause: unknown) {
          if (cause instanceof LmStudioError) throw cause;
          return failed(cause, true);
        }
      }
      // A reply in one piece: nothing more to wait for byte by byte.
      stall?.stop();
      let text: string;
      try {
        const read = await readCapped(response, this.#maxReplyBytes);
        if (typeof read !== "string") {
          // Close the connection too, so the server stops sending the rest.
          control.abort(new DOMException("reply too large", "AbortError"));
          throw tooLargeError({ ...o.site, limit: this.#maxReplyBytes, ...read });
        }
        text = read;
      } catch (cause: unknown) {
        if (cause instanceof LmStudioError) throw cause;
        return failed(cause);
      }
      // Parsed once, here: a body that is not JSON is left to parseReply, whose error says so.
      const json = parsedJson(text);
      // LM Studio answers some errors with 200: those are errors like any other.
      if (response.ok && !(json !== undefined && isErrorReply(json.value))) {
        if (generation?.assembler === undefined) {
          return json === undefined ? { ok: true, text } : { ok: true, value: json.value };
        }
        if (LOOKS_LIKE_EVENTS.test(text)) {
          return { ok: true, value: this.#assembleText(text, { ...o.site, generation }) };
        }
        if (!this.#unstreamed.has(what)) {
          this.#unstreamed.add(what);
          this.#log.debug(
            `${this.baseUrl} answered ${what} in one piece although asked for a stream; ` +
              "its replies there get no stall limit",
          );
        }
        return json === undefined ? { ok: true, text } : { ok: true, value: json.value };
      }
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
      timer.stop();
      stall?.stop();
      outer?.removeEventListener("abort", onCancel);
    }
  }

  /**
   * Reads a streamed reply event by event as it arrives, passing its pieces on, up to the body
   * limit: the body the endpoint would have answered without streaming. Stops reading (which
   * closes the connection) at the stream's end event, on an error event, or when the caller
   * aborts (the read then rejects at once).
   */
  async #readEvents(
    response: Response,
    o: RequestSite & { generation: Generation; stall: QuietTimer | undefined },
  ): Promise<unknown> {
    const { stall } = o;
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const events: SseEvent[] = [];
    let read = 0;
    let finished = false;
    const reader = response.body === null
      ? undefined
      : new ChunkReader(response.body, STREAM_READ_BYTES);
    try {
      while (!finished && reader !== undefined) {
        const value = await reader.read();
        const done = value === undefined;
        if (done) {
          parser.feed(decoder.decode(), events);
          parser.end(events);
        } else {
          read += value.byteLength;
          if (read > this.#maxReplyBytes) {
            throw tooLargeError({ ...o, limit: this.#maxReplyBytes, read, announced: false });
          }
          stall?.touch();
          parser.feed(decoder.decode(value, { stream: true }), events);
        }
        finished = this.#take(events, o) || done;
      }
    } finally {
      // Whatever follows the end (or an error) is not wanted: cancelling closes the connection.
      await reader?.cancel().catch(() => {});
    }
    return this.#assembled(o);
  }

  /** A mislabelled stream read whole: its events assembled the same way, after the fact. */
  #assembleText(text: string, o: RequestSite & { generation: Generation }): unknown {
    const parser = new SseParser();
    const events: SseEvent[] = [];
    parser.feed(text, events);
    parser.end(events);
    this.#take(events, o);
    return this.#assembled(o);
  }

  /** Passes `events` to the assembler and their pieces on (emptying it): true at the stream's end. */
  #take(events: SseEvent[], o: RequestSite & { generation: Generation }): boolean {
    const { tracker } = o.generation;
    const assembler = o.generation.assembler!;
    try {
      for (const event of events) {
        const piece = assembler.take(event);
        if (piece === "end") return true;
        if (piece === undefined) continue;
        if (piece.phase !== undefined) {
          const { kind, progress } = piece.phase;
          if (kind === "loading") tracker.loading(progress);
          else tracker.prompt(progress);
        }
        if (
          piece.content !== undefined || piece.reasoning !== undefined ||
          piece.toolText !== undefined
        ) {
          tracker.piece(piece, assembler.toolCalls);
        }
      }
      return false;
    } catch (cause: unknown) {
      if (!(cause instanceof StreamEventError)) throw cause;
      if (cause.kind === "stream_error") {
        throw streamFailedError({ ...o, body: cause.detail, seen: tracker.seen() });
      }
      throw badResponseError({ ...o, detail: cause.detail, cause });
    } finally {
      events.length = 0;
    }
  }

  /** The assembled body of a stream that has ended; one that ended early is an error. */
  #assembled(o: RequestSite & { generation: Generation }): unknown {
    const { tracker } = o.generation;
    const assembler = o.generation.assembler!;
    if (!assembler.complete) throw streamEndedError({ ...o, seen: tracker.seen() });
    const body = assembler.body();
    if (body === undefined) {
      throw badResponseError({ ...o, detail: "the stream held no reply", cause: undefined });
    }
    return body;
  }

  /**
   * Sends a generation request, streamed unless streaming is off (`stream: true`, usage asked
   * for where the endpoint has it), with its progress going to `o.onEvent`; the reply's wire
   * body and the tracker that holds its figures (finish it with the usage the reply reports).
   */
  async #generate<T>(g: {
    kind: StreamKind;
    path: string;
    body: Record<string, unknown>;
    schema: z.ZodType<T>;
    model: string;
    call: GenerateOptions | undefined;
    /** The body when streaming is off (today's request, unchanged). */
    unstreamed?: Record<string, unknown>;
    serialize?: (body: unknown) => string | Uint8Array<ArrayBuffer>;
  }): Promise<{ wire: T; tracker: GenerationTracker }> {
    const tracker = new GenerationTracker({
      model: g.model,
      ...(g.call?.onEvent ? { onEvent: g.call.onEvent } : {}),
      log: this.#log,
    });
    const streamed = this.#stream;
    const body = !streamed ? g.unstreamed ?? g.body : {
      ...g.body,
      stream: true,
      ...(g.kind === "response" ? {} : { stream_options: { include_usage: true } }),
    };
    try {
      const wire = await this.#withModel(g.model, g.call, () =>
        this.request("POST", g.path, {
          ...this.#opts(g.call),
          body,
          model: g.model,
          ...(g.serialize ? { serialize: g.serialize } : {}),
          schema: g.schema,
          generation: {
            tracker,
            ...(streamed ? { assembler: streamAssembler(g.kind) } : {}),
            stallMs: this.#stallMs,
          },
        }));
      return { wire, tracker };
    } finally {
      tracker.end();
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

  /**
   * Has the next model list read afresh: after a change this client did not make itself (a
   * model loaded or unloaded with `lms`).
   */
  forgetModelList(): void {
    this.#lastList = undefined;
    this.#listEpoch++;
  }

  /** Whether the last model list is kept and shows `model` loaded. */
  #showsLoaded(model: string | undefined): boolean {
    const kept = this.#lastList;
    if (kept === undefined || model === undefined) return false;
    return findModel(model, kept.list.models)?.state === "loaded";
  }

  /**
   * `/v1/models` enriched by `/api/v1/models` (LM Studio 0.4+) or `/api/v0/models`; falls back
   * cleanly on other servers. The lists are asked in parallel; once the server answered
   * `/api/v1/models`, `/api/v0/models` is asked only when that fails. With `reuse`, a list asked
   * for recently is the answer (see {@linkcode ListOptions.reuse}).
   */
  async listModels(o?: ListOptions): Promise<ModelList> {
    const kept = this.#lastList;
    const now = performance.now();
    if (kept !== undefined && o?.reuse === true && now - kept.askedAt < this.#listReuseMs) {
      return kept.list;
    }
    const epoch = this.#listEpoch;
    const list = await this.#readModelLists(o);
    // Kept unless something may have changed the models while it was read.
    if (epoch === this.#listEpoch) this.#lastList = { list, askedAt: now };
    return list;
  }

  async #readModelLists(o: CallOptions | undefined): Promise<ModelList> {
    const call = { ...this.#opts(o), retries: 0 };
    // Settled, never rejected: it may be awaited only after the other two.
    const askV0 = () =>
      Promise.allSettled([
        this.request("GET", "/api/v0/models", { ...call, schema: V0ModelsWire }),
      ]).then(([settled]) => settled!);
    const early = this.#restV1 ? undefined : askV0();
    const [base, v1] = await Promise.allSettled([
      this.request("GET", "/v1/models", { ...this.#opts(o), schema: ModelsWire }),
      this.request("GET", "/api/v1/models", { ...call, schema: V1ModelsWire }),
    ]);
    if (base.status === "rejected") throw base.reason;
    this.#restV1 = v1.status === "fulfilled";
    // LM Studio's REST API v1 comes with its native chat; a server without the one has neither.
    if (v1.status === "fulfilled") this.#native ??= true;
    else if (v1.reason instanceof LmStudioError && v1.reason.kind === "not_found") {
      this.#native = false;
    }
    const v0 = early !== undefined
      ? await early
      : v1.status === "rejected"
      ? await askV0()
      : undefined;
    return mergeModelLists({ ids: base.value.data.map((m) => m.id), v1, v0 });
  }

  /**
   * POST /v1/chat/completions, streamed (see {@linkcode GenerateOptions.onEvent}); reasoning
   * separated from the answer, tool calls left raw, the generation's figures in `stats`. A
   * `response_format` of type `json_object` is sent as a permissive JSON schema (see
   * {@linkcode wireResponseFormat}).
   */
  async chat(req: ChatRequest, o?: GenerateOptions): Promise<WithStats<ChatResult>> {
    const native = o?.native && this.#stream && this.#native !== false
      ? nativeChatBody(req, o.loadContextLength)
      : undefined;
    if (native !== undefined) {
      const answered = await this.#nativeChat(req, native, o);
      if (answered !== undefined) return answered;
    }
    const body: Record<string, unknown> = {
      ...req,
      ...(req.response_format !== undefined
        ? { response_format: wireResponseFormat(req.response_format) }
        : {}),
    };
    const { wire, tracker } = await this.#generate({
      kind: "chat",
      path: "/v1/chat/completions",
      body,
      unstreamed: { ...body, stream: false },
      schema: ChatWire,
      model: req.model,
      call: o,
      ...(o?.unchanged ? { serialize: bodyBytesKept } : {}),
    });
    const result = this.#lenient(
      "POST /v1/chat/completions",
      (ignored) => chatResult(wire, ignored),
    );
    return { ...result, stats: tracker.finish(tokensOf(result.usage)) };
  }

  /**
   * `req` sent to LM Studio's native chat as `body` ({@linkcode nativeChatBody}), its stream's
   * load and prompt progress passed on; undefined when the server has no native chat or refused
   * the request before its reply began (the caller then asks `/v1/chat/completions`, which says
   * what is wrong in the words every server uses).
   */
  async #nativeChat(
    req: ChatRequest,
    body: Record<string, unknown>,
    o: GenerateOptions | undefined,
  ): Promise<WithStats<ChatResult> | undefined> {
    const tracker = new GenerationTracker({
      model: req.model,
      ...(o?.onEvent ? { onEvent: o.onEvent } : {}),
      log: this.#log,
    });
    const what = `POST ${NATIVE_CHAT_PATH}`;
    const assembler = new NativeChatAssembler({ maxTokens: req.max_tokens });
    let wire: unknown;
    try {
      wire = await this.request("POST", NATIVE_CHAT_PATH, {
        ...this.#opts(o),
        body,
        model: req.model,
        schema: AnyWire,
        // The fallback has the retries; a failure here goes there at once.
        retries: 0,
        generation: { tracker, assembler, stallMs: this.#stallMs },
      });
    } catch (error: unknown) {
      // Refused before its stream began; an error in the stream (a failed load) is the answer.
      const refused = error instanceof LmStudioError && !assembler.begun &&
        !o?.signal?.aborted && (error.status !== undefined || error.kind === "unreachable");
      if (!refused) throw error;
      const missing = error.status === 405 || error.status === 501 ||
        (error.kind === "not_found" && !/model/i.test(error.serverMessage ?? ""));
      if (missing) this.#native = false;
      this.#log.debug(
        `${this.baseUrl} did not take ${what} (${error.message}); asking /v1/chat/completions` +
          (missing ? " from now on" : ""),
      );
      return undefined;
    } finally {
      tracker.end();
    }
    this.#native = true;
    // A native reply in one body (a server that ignored `stream`), or the assembled stream.
    const chat = nativeReplyAsChat(wire, req.max_tokens) ?? wire;
    const site = { baseUrl: this.baseUrl, url: `${this.baseUrl}${NATIVE_CHAT_PATH}`, what };
    const reply = validateReply(chat, ChatWire, site);
    const result = this.#lenient(what, (ignored) => chatResult(reply, ignored));
    return { ...result, stats: tracker.finish(tokensOf(result.usage)) };
  }

  /** POST /v1/completions, streamed like {@linkcode chat}. */
  async complete(
    req: CompletionRequest,
    o?: GenerateOptions,
  ): Promise<WithStats<CompletionResult>> {
    const { wire, tracker } = await this.#generate({
      kind: "completion",
      path: "/v1/completions",
      body: { ...req },
      schema: CompletionWire,
      model: req.model,
      call: o,
    });
    const result = this.#lenient(
      "POST /v1/completions",
      (ignored) => completionResult(wire, ignored),
    );
    return { ...result, stats: tracker.finish(tokensOf(result.usage)) };
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
          model: req.model,
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
   * POST /v1/responses (stateful; LM Studio 0.3.29+), streamed like {@linkcode chat}. A follow-up
   * (`previous_response_id`) that the server answers with `previous_response_id: null` fails:
   * that server kept no state.
   */
  async respond(req: ResponseRequest, o?: GenerateOptions): Promise<WithStats<ResponseResult>> {
    let generated: { wire: z.infer<typeof ResponseWire>; tracker: GenerationTracker };
    try {
      generated = await this.#generate({
        kind: "response",
        path: "/v1/responses",
        body: { ...req },
        schema: ResponseWire,
        model: req.model,
        call: o,
      });
    } catch (error: unknown) {
      throw previousResponseError(error, req.previous_response_id);
    }
    const { wire, tracker } = generated;
    if (req.previous_response_id !== undefined && wire.previous_response_id === null) {
      throw statelessResponseError({
        baseUrl: this.baseUrl,
        url: `${this.baseUrl}/v1/responses`,
        previousResponseId: req.previous_response_id,
      });
    }
    const result = this.#lenient("POST /v1/responses", (ignored) => responseResult(wire, ignored));
    const usage = result.usage;
    return {
      ...result,
      stats: tracker.finish(
        usage && { prompt: usage.input_tokens, completion: usage.output_tokens },
      ),
    };
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
