/**
 * The LM Studio HTTP client: the one request function for every call to LM Studio (or any
 * OpenAI-compatible server), and typed calls on top of it. Every reply is parsed as `unknown` and
 * validated with zod, leniently, because LM Studio versions, Ollama and llama.cpp differ.
 */
import { z } from "zod";
import { log as defaultLog, type Logger } from "./log.ts";
import { abortableSleep } from "./abort.ts";

// ---------------------------------------------------------------------------------------------
// Errors

/** What went wrong with a request to LM Studio. */
export type LmErrorKind =
  | "unreachable"
  | "timeout"
  | "aborted"
  | "auth"
  | "not_found"
  | "http"
  | "bad_response";

/** A failed LM Studio request; the message says what failed and what to do next. */
export class LmStudioError extends Error {
  override name = "LmStudioError";
  /** The category of the failure. */
  readonly kind: LmErrorKind;
  /** The full URL of the request that failed. */
  readonly url: string;
  /** HTTP status, when the server answered. */
  readonly status?: number;
  /** The server's own error message, when it sent one. */
  readonly serverMessage?: string;
  /** The server's error code (e.g. "model_not_found", "previous_response_not_found"). */
  readonly code?: string;

  constructor(options: {
    kind: LmErrorKind;
    url: string;
    message: string;
    status?: number;
    serverMessage?: string;
    code?: string;
    cause?: unknown;
  }) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = options.kind;
    this.url = options.url;
    if (options.status !== undefined) this.status = options.status;
    if (options.serverMessage !== undefined) this.serverMessage = options.serverMessage;
    if (options.code !== undefined) this.code = options.code;
  }
}

// ---------------------------------------------------------------------------------------------
// Public types

/** Per-call options. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** One model as far as the server tells. */
export interface ModelInfo {
  id: string;
  type: "llm" | "vlm" | "embedding" | "unknown";
  state?: "loaded" | "not-loaded";
  maxContextLength?: number;
  loadedContextLength?: number;
  vision?: boolean;
  toolUse?: boolean;
  reasoning?: boolean;
  publisher?: string;
  arch?: string;
  quantization?: string;
  instanceIds?: string[];
}

/** The models of a server, where the details came from, and what could not be known. */
export interface ModelList {
  models: ModelInfo[];
  source: "api/v1" | "api/v0" | "openai";
  notes: string[];
}

/** A part of a multimodal user message. */
export type ChatContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

/** A tool call as it goes over the wire in an assistant message. */
export interface WireToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** One chat message. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | ChatContentPart[] | null;
  tool_calls?: WireToolCall[];
  tool_call_id?: string;
  name?: string;
}

/** A tool offered to the model. */
export interface OpenAiTool {
  type: "function";
  function: { name: string; description?: string; parameters: Record<string, unknown> };
}

/** A `/v1/chat/completions` request (non-streaming). */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: OpenAiTool[];
  tool_choice?: "auto" | "none" | "required";
  temperature?: number;
  max_tokens?: number;
  response_format?: unknown;
  ttl?: number;
  stop?: string[];
}

/** A tool call as the model sent it: arguments unparsed (string, possibly invalid JSON, or an object). */
export interface RawToolCall {
  id?: string;
  name: string;
  arguments: string | Record<string, unknown>;
}

/** Token usage. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** A chat answer with reasoning separated from the answer text. */
export interface ChatResult {
  id?: string;
  model?: string;
  /** Answer text with <think>...</think> blocks removed, trimmed. */
  content: string;
  /** From reasoning_content | reasoning | inline <think> text. */
  reasoning?: string;
  /** [] when none (an empty wire list means none). */
  toolCalls: RawToolCall[];
  finishReason?: string;
  usage?: Usage;
}

/** A `/v1/completions` request. */
export interface CompletionRequest {
  model: string;
  prompt: string;
  max_tokens?: number;
  temperature?: number;
  stop?: string[];
  ttl?: number;
}

/** A text completion. */
export interface CompletionResult {
  model?: string;
  text: string;
  finishReason?: string;
  usage?: Usage;
}

/** A `/v1/embeddings` request. */
export interface EmbeddingRequest {
  model: string;
  input: string | string[];
}

/** Embeddings, ordered as the inputs. */
export interface EmbeddingResult {
  model?: string;
  /** Ordered by index. */
  embeddings: number[][];
  usage?: { prompt_tokens?: number; total_tokens?: number };
}

/** A stateful `/v1/responses` request. */
export interface ResponseRequest {
  model: string;
  input: string;
  previous_response_id?: string;
  ttl?: number;
}

/** A `/v1/responses` answer. */
export interface ResponseResult {
  id: string;
  status?: string;
  model?: string;
  previousResponseId?: string | null;
  text: string;
  reasoning?: string;
  functionCalls: { callId: string; name: string; arguments: string }[];
  usage?: { input_tokens?: number; output_tokens?: number; total_tokens?: number };
}

/** Options of {@linkcode LmStudioClient}; I/O is injectable for tests. */
export interface LmStudioClientOptions {
  /** Server origin, e.g. "http://127.0.0.1:1234" (a trailing "/" or "/v1" is tolerated). */
  baseUrl: string;
  /** Bearer token (LM_API_TOKEN). */
  token?: string;
  /** Per-attempt timeout; default 300_000 ms. */
  timeoutMs?: number;
  /** Retries on connection refused / 5xx / 429; default 2. */
  retries?: number;
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

// ---------------------------------------------------------------------------------------------
// Wire schemas (lenient: every field optional, unknown fields kept)

const UsageWire = z.looseObject({
  prompt_tokens: z.number().nullish(),
  completion_tokens: z.number().nullish(),
  total_tokens: z.number().nullish(),
});

const ModelsWire = z.looseObject({
  data: z.array(z.looseObject({ id: z.string() })),
});

const V0ModelsWire = z.looseObject({
  data: z.array(z.looseObject({
    id: z.string(),
    type: z.string().nullish(),
    publisher: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.string().nullish(),
    state: z.string().nullish(),
    max_context_length: z.number().nullish(),
    loaded_context_length: z.number().nullish(),
    capabilities: z.unknown().optional(),
  })),
});

const V1ModelsWire = z.looseObject({
  models: z.array(z.looseObject({
    type: z.string().nullish(),
    key: z.string().nullish(),
    id: z.string().nullish(),
    publisher: z.string().nullish(),
    architecture: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.unknown().optional(),
    max_context_length: z.number().nullish(),
    loaded_instances: z.array(z.looseObject({
      id: z.string().nullish(),
      config: z.looseObject({ context_length: z.number().nullish() }).nullish(),
    })).nullish(),
    capabilities: z.looseObject({
      vision: z.boolean().nullish(),
      trained_for_tool_use: z.boolean().nullish(),
      reasoning: z.unknown().optional(),
    }).nullish(),
  })),
});

const ToolCallWire = z.looseObject({
  id: z.union([z.string(), z.number()]).nullish(),
  type: z.string().nullish(),
  function: z.looseObject({
    name: z.string().nullish(),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  }).nullish(),
});

const ChatWire = z.looseObject({
  id: z.string().nullish(),
  model: z.string().nullish(),
  choices: z.array(z.looseObject({
    finish_reason: z.string().nullish(),
    message: z.looseObject({
      content: z.union([z.string(), z.array(z.unknown())]).nullish(),
      reasoning_content: z.unknown().optional(),
      reasoning: z.unknown().optional(),
      tool_calls: z.array(ToolCallWire).nullish(),
    }),
  })).min(1),
  usage: UsageWire.nullish(),
});

const CompletionWire = z.looseObject({
  model: z.string().nullish(),
  choices: z.array(z.looseObject({
    text: z.string().nullish(),
    finish_reason: z.string().nullish(),
  })).min(1),
  usage: UsageWire.nullish(),
});

const EmbeddingWire = z.looseObject({
  model: z.string().nullish(),
  data: z.array(z.looseObject({
    index: z.number().nullish(),
    embedding: z.array(z.number()),
  })),
  usage: z.looseObject({
    prompt_tokens: z.number().nullish(),
    total_tokens: z.number().nullish(),
  }).nullish(),
});

const TextPartWire = z.looseObject({ type: z.string().nullish(), text: z.string().nullish() });

const ResponseWire = z.looseObject({
  id: z.string(),
  status: z.string().nullish(),
  model: z.string().nullish(),
  previous_response_id: z.string().nullish(),
  output_text: z.string().nullish(),
  output: z.array(z.looseObject({
    type: z.string().nullish(),
    content: z.array(TextPartWire).nullish(),
    summary: z.array(TextPartWire).nullish(),
    call_id: z.string().nullish(),
    id: z.string().nullish(),
    name: z.string().nullish(),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  })).nullish(),
  usage: z.looseObject({
    input_tokens: z.number().nullish(),
    output_tokens: z.number().nullish(),
    total_tokens: z.number().nullish(),
  }).nullish(),
});

const LoadWire = z.looseObject({
  instance_id: z.string().nullish(),
  status: z.string().nullish(),
});

const AnyWire = z.unknown();

const QuantizationWire = z.looseObject({ name: z.string() });

const CodeWire = z.union([z.string(), z.number()]).nullish();
const ErrorObjectWire = z.looseObject({
  error: z.looseObject({
    message: z.string().nullish(),
    code: CodeWire,
    type: z.string().nullish(),
  }),
});
const ErrorStringWire = z.looseObject({ error: z.string() });
const MessageWire = z.looseObject({ message: z.string(), code: CodeWire });
const DetailWire = z.looseObject({ detail: z.string() });

// ---------------------------------------------------------------------------------------------
// Pure helpers

/**
 * Separates reasoning from answer text: `<think>...</think>` blocks (also an unterminated leading
 * `<think>` when the answer ran out of tokens, and a lone `</think>` whose opening tag was part of
 * the prompt template) move to `reasoning`; the rest, trimmed, is `content`.
 */
export function splitReasoning(text: string): { content: string; reasoning?: string } {
  const thoughts: string[] = [];
  let rest = text;
  // Opening tag in the prompt template: "reasoning...</think>answer".
  const firstClose = rest.search(/<\/think>/i);
  const firstOpen = rest.search(/<think>/i);
  if (firstClose !== -1 && (firstOpen === -1 || firstOpen > firstClose)) {
    thoughts.push(rest.slice(0, firstClose));
    rest = rest.slice(firstClose + "</think>".length);
  }
  rest = rest.replace(/<think>([\s\S]*?)<\/think>/gi, (_match, inner: string) => {
    thoughts.push(inner);
    return "";
  });
  const open = rest.search(/<think>/i);
  if (open !== -1) {
    // Unterminated: the model ran out of tokens while thinking.
    thoughts.push(rest.slice(open + "<think>".length));
    rest = rest.slice(0, open);
  }
  const reasoning = thoughts.map((t) => t.trim()).filter((t) => t !== "").join("\n\n");
  return reasoning === "" ? { content: rest.trim() } : { content: rest.trim(), reasoning };
}

function textOf(content: string | unknown[] | null | undefined): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const parts: string[] = [];
  for (const part of content) {
    const parsed = TextPartWire.safeParse(part);
    if (parsed.success && typeof parsed.data.text === "string") parts.push(parsed.data.text);
  }
  return parts.join("");
}

function toUsage(u: z.infer<typeof UsageWire> | null | undefined): Usage | undefined {
  if (!u) return undefined;
  const prompt = u.prompt_tokens ?? 0;
  const completion = u.completion_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: u.total_tokens ?? prompt + completion,
  };
}

/** Parses the error shapes servers send: `{"error":{"message"}}`, `{"error":"..."}`, `{"message"}`, or plain text. */
export function parseErrorBody(text: string): { message?: string; code?: string } {
  const trimmed = text.trim();
  if (trimmed === "") return {};
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    return { message: clip(trimmed.replace(/\s+/g, " "), 300) };
  }
  const withCode = (
    message: string | null | undefined,
    code: string | number | null | undefined,
  ) => ({
    ...(message ? { message } : {}),
    ...(code !== undefined && code !== null ? { code: String(code) } : {}),
  });
  const object = ErrorObjectWire.safeParse(json);
  if (object.success) {
    return withCode(object.data.error.message, object.data.error.code ?? object.data.error.type);
  }
  const string = ErrorStringWire.safeParse(json);
  if (string.success) return { message: string.data.error };
  const message = MessageWire.safeParse(json);
  if (message.success) return withCode(message.data.message, message.data.code);
  const detail = DetailWire.safeParse(json);
  if (detail.success) return { message: detail.data.detail };
  return { message: clip(trimmed, 300) };
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Parses a Retry-After header (seconds or HTTP date) into milliseconds. */
function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function isConnectionRefused(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; depth++) {
    if (e instanceof Deno.errors.ConnectionRefused) return true;
    if (e instanceof Error) {
      if (
        /connection refused|ECONNREFUSED|os error 111|os error 61\b|os error 10061/i.test(e.message)
      ) {
        return true;
      }
      e = e.cause;
    } else break;
  }
  return false;
}

function isConnectionDropped(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; depth++) {
    if (e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.ConnectionAborted) {
      return true;
    }
    if (e instanceof Error) {
      if (
        /connection (reset|closed|aborted)|broken pipe|IncompleteMessage|error reading a body/i
          .test(e.message)
      ) {
        return true;
      }
      e = e.cause;
    } else break;
  }
  return false;
}

function isPermissionDenied(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

/** Backoff before retry `attempt` (0-based): 500 ms doubling, capped at 8 s, with jitter in [50%, 100%]. */
export function backoffMs(attempt: number, random: number): number {
  const base = Math.min(8_000, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + 0.5 * random));
}

/** Longest wait a Retry-After header can impose. */
export const MAX_RETRY_AFTER_MS = 30_000;

const START_HINT = "Start the server in LM Studio (Developer tab) or run `lms server start`. " +
  "Using Ollama, llama.cpp or another OpenAI-compatible server? Set LMSTUDIO_BASE_URL " +
  "(e.g. http://127.0.0.1:11434 for Ollama).";

// ---------------------------------------------------------------------------------------------
// The client

/** Client for LM Studio's OpenAI-compatible API and REST API. */
export class LmStudioClient {
  /** Origin without trailing slash or "/v1". */
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #log: Logger;

  constructor(options: LmStudioClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
    this.#token = options.token === "" ? undefined : options.token;
    this.#timeoutMs = options.timeoutMs ?? 300_000;
    this.#retries = options.retries ?? 2;
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
    const retries = Math.max(0, options.retries ?? this.#retries);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const signal = options.signal;
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (this.#token !== undefined) headers["authorization"] = `Bearer ${this.#token}`;
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);

    for (let attempt = 0;; attempt++) {
      if (signal?.aborted) throw this.#aborted(url, what, signal.reason);
      const outcome = await this.#attempt({ url, what, method, headers, body, timeoutMs, signal });
      if (outcome.ok) {
        return this.#validate(outcome.text, options.schema, url, what);
      }
      const { error, retryAfter } = outcome;
      const retryable = (error.kind === "unreachable" && outcome.transient) ||
        (error.kind === "http" && error.status !== undefined &&
          (error.status === 429 || error.status >= 500));
      if (!retryable || attempt >= retries) {
        if (attempt > 0 && retryable) {
          throw new LmStudioError({
            kind: error.kind,
            url,
            message: `${error.message} (gave up after ${attempt + 1} attempts)`,
            ...(error.status !== undefined ? { status: error.status } : {}),
            ...(error.serverMessage !== undefined ? { serverMessage: error.serverMessage } : {}),
            ...(error.code !== undefined ? { code: error.code } : {}),
            cause: error,
          });
        }
        throw error;
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
        if (signal?.aborted) throw this.#aborted(url, what, cause);
        throw cause;
      }
    }
  }

  async #attempt(o: {
    url: string;
    what: string;
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
    try {
      let response: Response;
      try {
        response = await this.#fetch(o.url, {
          method: o.method,
          headers: o.headers,
          ...(o.body !== undefined ? { body: o.body } : {}),
          signal,
        });
      } catch (cause: unknown) {
        if (o.signal?.aborted) throw this.#aborted(o.url, o.what, cause);
        if (timedOut) throw this.#timeout(o.url, o.what, o.timeoutMs, cause);
        return this.#networkFailure(o.url, o.what, cause);
      }
      let text: string;
      try {
        text = await response.text();
      } catch (cause: unknown) {
        if (o.signal?.aborted) throw this.#aborted(o.url, o.what, cause);
        if (timedOut) throw this.#timeout(o.url, o.what, o.timeoutMs, cause);
        return this.#networkFailure(o.url, o.what, cause);
      }
      if (response.ok) return { ok: true, text };
      const retryAfter = retryAfterMs(response.headers.get("retry-after"), Date.now());
      return {
        ok: false,
        error: this.#httpError(o.url, o.what, response, text),
        transient: false,
        ...(retryAfter !== undefined ? { retryAfter } : {}),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  #networkFailure(
    url: string,
    what: string,
    cause: unknown,
  ): { ok: false; error: LmStudioError; transient: boolean } {
    if (isPermissionDenied(cause)) {
      const host = new URL(url).host;
      return {
        ok: false,
        transient: false,
        error: new LmStudioError({
          kind: "unreachable",
          url,
          message: `The sandbox blocked the connection to LM Studio at ${this.baseUrl}: ` +
            `this build only allows network access to loopback (127.0.0.1, localhost, [::1]). ` +
            `To use LM Studio on ${host}, add --allow-net=${host} to the deno run (or deno ` +
            `compile) command, or point LMSTUDIO_BASE_URL at a local server.`,
          cause,
        }),
      };
    }
    if (isConnectionRefused(cause)) {
      return {
        ok: false,
        transient: true,
        error: new LmStudioError({
          kind: "unreachable",
          url,
          message: `Cannot reach LM Studio at ${this.baseUrl}: connection refused. ${START_HINT}`,
          cause,
        }),
      };
    }
    const detail = cause instanceof Error ? cause.message : String(cause);
    return {
      ok: false,
      transient: isConnectionDropped(cause),
      error: new LmStudioError({
        kind: "unreachable",
        url,
        message: `Cannot reach LM Studio at ${this.baseUrl} (${what}): ${detail}. ` +
          `Check LMSTUDIO_BASE_URL and that the server is running. ${START_HINT}`,
        cause,
      }),
    };
  }

  #httpError(url: string, what: string, response: Response, text: string): LmStudioError {
    const status = response.status;
    const { message: serverMessage, code } = parseErrorBody(text);
    const said = serverMessage !== undefined ? `: ${serverMessage}` : "";
    const statusText = `${status}${response.statusText ? ` ${response.statusText}` : ""}`;
    const common = {
      url,
      status,
      ...(serverMessage !== undefined ? { serverMessage } : {}),
      ...(code !== undefined ? { code } : {}),
    };
    if (status === 401 || status === 403) {
      const advice = this.#token === undefined
        ? "The server requires an API token and none was sent: set LM_API_TOKEN to a token " +
          "from LM Studio (Developer tab → Server Settings → Manage Tokens)."
        : "The token sent (from LM_API_TOKEN) was refused: check that it matches a token in " +
          "LM Studio (Developer tab → Server Settings → Manage Tokens).";
      return new LmStudioError({
        kind: "auth",
        ...common,
        message: `LM Studio at ${this.baseUrl} refused ${what} (${statusText})${said}. ${advice}`,
      });
    }
    if (status === 404) {
      return new LmStudioError({
        kind: "not_found",
        ...common,
        message: `LM Studio at ${this.baseUrl} answered ${what} with ${statusText}${said}.`,
      });
    }
    const advice = status === 429
      ? " The server is busy; wait and try again."
      : status >= 500
      ? " The server failed; check LM Studio's developer logs, and that the model fits in memory."
      : "";
    return new LmStudioError({
      kind: "http",
      ...common,
      message: `LM Studio at ${this.baseUrl} answered ${what} with ${statusText}${said}.${advice}`,
    });
  }

  #validate<T>(text: string, schema: z.ZodType<T>, url: string, what: string): T {
    let json: unknown;
    try {
      json = text.trim() === "" ? undefined : JSON.parse(text);
    } catch (cause: unknown) {
      throw this.#badResponse(url, what, `not JSON: ${clip(text.trim(), 120)}`, cause);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 3).map((i) =>
        `${i.path.length > 0 ? i.path.join(".") : "reply"}: ${i.message}`
      ).join("; ");
      throw this.#badResponse(url, what, issues, parsed.error);
    }
    return parsed.data;
  }

  #badResponse(url: string, what: string, detail: string, cause: unknown): LmStudioError {
    return new LmStudioError({
      kind: "bad_response",
      url,
      message: `The reply of ${this.baseUrl} to ${what} is not what an OpenAI-compatible server ` +
        `sends (${detail}). Check that LMSTUDIO_BASE_URL points at LM Studio or another ` +
        `OpenAI-compatible server, not a web page or proxy.`,
      cause,
    });
  }

  #aborted(url: string, what: string, cause: unknown): LmStudioError {
    return new LmStudioError({
      kind: "aborted",
      url,
      message: `The request to LM Studio (${what}) was cancelled.`,
      cause,
    });
  }

  #timeout(url: string, what: string, ms: number, cause: unknown): LmStudioError {
    return new LmStudioError({
      kind: "timeout",
      url,
      message: `LM Studio at ${this.baseUrl} did not answer ${what} within ${ms} ms. ` +
        `A large model, a long prompt or a model still loading can need more: raise ` +
        `LMSTUDIO_TIMEOUT_MS (milliseconds), or ask for fewer tokens (max_tokens).`,
      cause,
    });
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
      const path = new URL(error.url).pathname;
      const common = {
        url: error.url,
        ...(error.status !== undefined ? { status: error.status } : {}),
        ...(error.serverMessage !== undefined ? { serverMessage: error.serverMessage } : {}),
        ...(error.code !== undefined ? { code: error.code } : {}),
        cause: error,
      };
      if (!ids.includes(model)) {
        const shown = ids.length > MAX_LISTED_MODELS
          ? `${ids.slice(0, MAX_LISTED_MODELS).join(", ")} and ${
            ids.length - MAX_LISTED_MODELS
          } more`
          : ids.join(", ");
        throw new LmStudioError({
          kind: "not_found",
          ...common,
          message: `Model "${model}" was not found at ${this.baseUrl}. ` +
            (ids.length > 0
              ? `Models available: ${shown}. Pass one of these (or set DEFAULT_MODEL).`
              : "The server lists no models: download one in LM Studio or with `lms get <model>`."),
        });
      }
      // The model exists, so a 400 was about something else: the server's own message says what.
      if (error.kind !== "not_found") throw error;
      throw new LmStudioError({
        kind: "not_found",
        ...common,
        message:
          `${this.baseUrl} has no ${path} endpoint (404${
            error.serverMessage ? `: ${error.serverMessage}` : ""
          }). It may be an older LM Studio or a server that does not offer it; update LM Studio ` +
          `or use another tool.`,
      });
    }
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
    const ids = base.value.data.map((m) => m.id);
    const notes: string[] = [];
    let rest: ModelInfo[] | undefined;
    let source: ModelList["source"] = "openai";
    if (v1.status === "fulfilled") {
      rest = v1.value.models.flatMap((m) => fromV1(m));
      source = "api/v1";
    } else if (v0.status === "fulfilled") {
      rest = v0.value.data.map(fromV0);
      source = "api/v0";
    }
    if (rest === undefined) {
      const reasons = [v1, v0].map((r) =>
        r.status === "rejected" &&
          !(r.reason instanceof LmStudioError && r.reason.kind === "not_found")
          ? (r.reason instanceof Error ? r.reason.message : String(r.reason))
          : undefined
      ).filter((r): r is string => r !== undefined);
      if (reasons.length > 0) {
        notes.push(`Could not read LM Studio's REST model list: ${reasons[0]}`);
      } else {
        notes.push(
          "This server has no LM Studio REST API (/api/v1/models and /api/v0/models answered " +
            "404), so loaded state, context lengths and capabilities are unknown; model types " +
            'are guessed from their ids (ids containing "embed" are taken as embedding models).',
        );
      }
      return {
        models: ids.map((id) => ({ id, type: /embed/i.test(id) ? "embedding" : "unknown" })),
        source,
        notes,
      };
    }
    const byId = new Map(rest.map((m) => [m.id, m]));
    const models: ModelInfo[] = ids.map((id) =>
      byId.get(id) ?? { id, type: /embed/i.test(id) ? "embedding" : "unknown" }
    );
    const listed = new Set(ids);
    for (const m of rest) if (!listed.has(m.id)) models.push(m);
    const unknown = ids.filter((id) => !byId.has(id));
    if (unknown.length > 0) {
      notes.push(`No details from ${source} for: ${unknown.join(", ")}.`);
    }
    return { models, source, notes };
  }

  /** POST /v1/chat/completions; reasoning separated from the answer, tool calls left raw. */
  async chat(req: ChatRequest, o?: CallOptions): Promise<ChatResult> {
    const body: Record<string, unknown> = { ...req, stream: false };
    const wire = await this.#withModel(
      req.model,
      o,
      () =>
        this.request("POST", "/v1/chat/completions", { ...this.#opts(o), body, schema: ChatWire }),
    );
    // min(1) in the schema guarantees a first choice.
    const choice = wire.choices[0]!;
    const message = choice.message;
    const split = splitReasoning(textOf(message.content));
    const reasoning = [message.reasoning_content, message.reasoning, split.reasoning]
      .filter((r): r is string => typeof r === "string" && r.trim() !== "")
      .map((r) => r.trim())
      .join("\n\n");
    const toolCalls: RawToolCall[] = (message.tool_calls ?? []).map((c) => ({
      ...(c.id !== undefined && c.id !== null && c.id !== "" ? { id: String(c.id) } : {}),
      name: c.function?.name ?? "",
      arguments: c.function?.arguments ?? "{}",
    }));
    const usage = toUsage(wire.usage);
    return {
      ...(wire.id ? { id: wire.id } : {}),
      ...(wire.model ? { model: wire.model } : {}),
      content: split.content,
      ...(reasoning !== "" ? { reasoning } : {}),
      toolCalls,
      ...(choice.finish_reason ? { finishReason: choice.finish_reason } : {}),
      ...(usage ? { usage } : {}),
    };
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
    const choice = wire.choices[0]!;
    const usage = toUsage(wire.usage);
    return {
      ...(wire.model ? { model: wire.model } : {}),
      text: choice.text ?? "",
      ...(choice.finish_reason ? { finishReason: choice.finish_reason } : {}),
      ...(usage ? { usage } : {}),
    };
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
      throw this.#badResponse(
        url,
        "POST /v1/embeddings",
        `${wire.data.length} embeddings for ${expected} inputs`,
        undefined,
      );
    }
    const ordered = wire.data
      .map((d, position) => ({ index: d.index ?? position, embedding: d.embedding }))
      .sort((a, b) => a.index - b.index);
    const usage = wire.usage
      ? {
        ...(typeof wire.usage.prompt_tokens === "number"
          ? { prompt_tokens: wire.usage.prompt_tokens }
          : {}),
        ...(typeof wire.usage.total_tokens === "number"
          ? { total_tokens: wire.usage.total_tokens }
          : {}),
      }
      : undefined;
    return {
      ...(wire.model ? { model: wire.model } : {}),
      embeddings: ordered.map((d) => d.embedding),
      ...(usage ? { usage } : {}),
    };
  }

  /** POST /v1/responses (stateful; LM Studio 0.3.29+). */
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
      if (
        error instanceof LmStudioError && req.previous_response_id !== undefined &&
        (error.code === "previous_response_not_found" ||
          /previous.?response/i.test(error.serverMessage ?? ""))
      ) {
        throw new LmStudioError({
          kind: error.kind,
          url: error.url,
          ...(error.status !== undefined ? { status: error.status } : {}),
          ...(error.serverMessage !== undefined ? { serverMessage: error.serverMessage } : {}),
          ...(error.code !== undefined ? { code: error.code } : {}),
          message: `LM Studio does not know previous_response_id "${req.previous_response_id}" ` +
            `(it forgets responses when it restarts, and ids from another server never match). ` +
            `Start a new conversation by leaving previous_response_id out.`,
          cause: error,
        });
      }
      throw error;
    }
    const texts: string[] = [];
    const thoughts: string[] = [];
    const functionCalls: ResponseResult["functionCalls"] = [];
    for (const item of wire.output ?? []) {
      if (item.type === "message") {
        for (const part of item.content ?? []) {
          if (typeof part.text === "string" && part.type !== "refusal") texts.push(part.text);
        }
      } else if (item.type === "reasoning") {
        for (const part of [...(item.content ?? []), ...(item.summary ?? [])]) {
          if (typeof part.text === "string") thoughts.push(part.text);
        }
      } else if (item.type === "function_call") {
        const args = item.arguments ?? "{}";
        functionCalls.push({
          callId: item.call_id ?? item.id ?? "",
          name: item.name ?? "",
          arguments: typeof args === "string" ? args : JSON.stringify(args),
        });
      }
    }
    const joined = texts.length > 0 ? texts.join("") : wire.output_text ?? "";
    const split = splitReasoning(joined);
    if (split.reasoning) thoughts.push(split.reasoning);
    const reasoning = thoughts.map((t) => t.trim()).filter((t) => t !== "").join("\n\n");
    const usage = wire.usage
      ? Object.fromEntries(
        Object.entries({
          input_tokens: wire.usage.input_tokens,
          output_tokens: wire.usage.output_tokens,
          total_tokens: wire.usage.total_tokens,
        }).filter(([, v]) => typeof v === "number"),
      ) as ResponseResult["usage"]
      : undefined;
    return {
      id: wire.id,
      ...(wire.status ? { status: wire.status } : {}),
      ...(wire.model ? { model: wire.model } : {}),
      ...(wire.previous_response_id !== undefined
        ? { previousResponseId: wire.previous_response_id }
        : {}),
      text: split.content,
      ...(reasoning !== "" ? { reasoning } : {}),
      functionCalls,
      ...(usage ? { usage } : {}),
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
      throw this.#restNotFound(error, "POST /api/v1/models/load", model);
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
      throw this.#restNotFound(error, "POST /api/v1/models/unload", instanceId);
    }
  }

  /** A REST 404 is either "no such model/instance" or "no REST API here"; says which. */
  #restNotFound(error: unknown, what: string, name: string): unknown {
    if (!(error instanceof LmStudioError) || error.kind !== "not_found") return error;
    const common = {
      kind: "not_found" as const,
      url: error.url,
      ...(error.status !== undefined ? { status: error.status } : {}),
      ...(error.serverMessage !== undefined ? { serverMessage: error.serverMessage } : {}),
      ...(error.code !== undefined ? { code: error.code } : {}),
      cause: error,
    };
    const aboutModel = error.code === "model_not_found" ||
      (error.serverMessage !== undefined && error.serverMessage.includes(name));
    if (aboutModel) {
      return new LmStudioError({
        ...common,
        message: `LM Studio at ${this.baseUrl} does not know "${name}"${
          error.serverMessage ? ` (${error.serverMessage})` : ""
        }. List models with \`lmstudio-bridge models\` or \`lms ls\`.`,
      });
    }
    return new LmStudioError({
      ...common,
      message: `${this.baseUrl} does not offer LM Studio's REST API (${what} answered 404). ` +
        "Loading models over HTTP needs LM Studio 0.4 or later; use `lms load` instead, " +
        "or rely on just-in-time loading (name the model in a request).",
    });
  }

  /**
   * Picks a model. `kind` "llm" (default): explicit -> defaultModel -> first loaded LLM (REST
   * state) -> first non-embedding model in /v1/models. `kind` "embedding": explicit -> loaded
   * embedding model -> any embedding model; never the chat model.
   */
  async resolveModel(
    explicit: string | undefined,
    o?: CallOptions & { kind?: "llm" | "embedding"; defaultModel?: string },
  ): Promise<string> {
    const named = explicit?.trim();
    if (named) return named;
    const kind = o?.kind ?? "llm";
    const fallback = o?.defaultModel?.trim();
    if (kind === "llm" && fallback) return fallback;
    const list = await this.listModels(this.#opts(o));
    const describe = () =>
      list.models.length === 0
        ? "The server lists no models."
        : `Models available: ${list.models.map((m) => `${m.id} (${m.type})`).join(", ")}.`;
    if (kind === "embedding") {
      const embeddings = list.models.filter((m) => m.type === "embedding");
      const picked = embeddings.find((m) => m.state === "loaded") ?? embeddings[0];
      if (picked) return picked.id;
      throw new LmStudioError({
        kind: "not_found",
        url: `${this.baseUrl}/v1/models`,
        message: `No embedding model at ${this.baseUrl}. ${describe()} Download one ` +
          "(e.g. `lms get nomic-embed-text-v1.5`) or pass the model explicitly.",
      });
    }
    const chat = list.models.filter((m) => m.type !== "embedding");
    const picked = chat.find((m) => m.state === "loaded") ?? chat[0];
    if (picked) return picked.id;
    throw new LmStudioError({
      kind: "not_found",
      url: `${this.baseUrl}/v1/models`,
      message: `No chat model at ${this.baseUrl}. ${describe()} Load one in LM Studio ` +
        "(e.g. `lms get qwen2.5-7b-instruct`), pass the model explicitly, or set DEFAULT_MODEL.",
    });
  }

  /** Never throws: reachability, latency, model count, error message. */
  async health(
    o?: CallOptions,
  ): Promise<
    { ok: boolean; baseUrl: string; latencyMs: number; modelCount?: number; error?: string }
  > {
    const started = performance.now();
    try {
      const list = await this.request("GET", "/v1/models", {
        ...this.#opts(o),
        timeoutMs: o?.timeoutMs ?? Math.min(this.#timeoutMs, 10_000),
        retries: 0,
        schema: ModelsWire,
      });
      return {
        ok: true,
        baseUrl: this.baseUrl,
        latencyMs: Math.round(performance.now() - started),
        modelCount: list.data.length,
      };
    } catch (error: unknown) {
      return {
        ok: false,
        baseUrl: this.baseUrl,
        latencyMs: Math.round(performance.now() - started),
        error: error instanceof Error ? error.message : String(error),
      };
    }
  }
}

/** How many model ids an error message lists before "and N more". */
const MAX_LISTED_MODELS = 20;

/** A 404, or a 400 whose message blames the model (some servers answer an unknown model so). */
function mayBeUnknownModel(error: LmStudioError): boolean {
  if (error.kind === "not_found") return true;
  const said = error.serverMessage ?? "";
  return error.status === 400 && /model/i.test(said) &&
    /not (found|exist)|invalid|unknown|no such/i.test(said);
}

function fromV1(m: z.infer<typeof V1ModelsWire>["models"][number]): ModelInfo[] {
  const id = m.key ?? m.id;
  if (!id) return [];
  const instances = m.loaded_instances ?? [];
  const vision = m.capabilities?.vision ?? undefined;
  const type: ModelInfo["type"] = m.type === "embedding" || m.type === "embeddings"
    ? "embedding"
    : m.type === "vlm" || (m.type === "llm" && vision === true)
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const reasoning = m.capabilities?.reasoning;
  const quantization = typeof m.quantization === "string"
    ? m.quantization
    : QuantizationWire.safeParse(m.quantization).data?.name ?? undefined;
  const loadedContext = instances[0]?.config?.context_length ?? undefined;
  const instanceIds = instances.map((i) => i.id).filter((i): i is string => !!i);
  return [{
    id,
    type,
    state: instances.length > 0 ? "loaded" : "not-loaded",
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(loadedContext ? { loadedContextLength: loadedContext } : {}),
    ...(typeof vision === "boolean" ? { vision } : type === "vlm" ? { vision: true } : {}),
    ...(typeof m.capabilities?.trained_for_tool_use === "boolean"
      ? { toolUse: m.capabilities.trained_for_tool_use }
      : {}),
    ...(reasoning !== undefined && reasoning !== null
      ? { reasoning: typeof reasoning === "boolean" ? reasoning : true }
      : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...((m.architecture ?? m.arch) ? { arch: (m.architecture ?? m.arch)! } : {}),
    ...(quantization ? { quantization } : {}),
    ...(instanceIds.length > 0 ? { instanceIds } : {}),
  }];
}

function fromV0(m: z.infer<typeof V0ModelsWire>["data"][number]): ModelInfo {
  const type: ModelInfo["type"] = m.type === "embeddings" || m.type === "embedding"
    ? "embedding"
    : m.type === "vlm"
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const capabilities = z.array(z.string()).safeParse(m.capabilities).data;
  const state = m.state === "loaded" ? "loaded" : m.state ? "not-loaded" : undefined;
  return {
    id: m.id,
    type,
    ...(state ? { state } : {}),
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(m.loaded_context_length ? { loadedContextLength: m.loaded_context_length } : {}),
    ...(type === "vlm" ? { vision: true } : type === "llm" ? { vision: false } : {}),
    ...(capabilities ? { toolUse: capabilities.includes("tool_use") } : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...(m.arch ? { arch: m.arch } : {}),
    ...(m.quantization ? { quantization: m.quantization } : {}),
  };
}
