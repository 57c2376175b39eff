/**
 * Errors of the LM Studio client: the {@linkcode LmStudioError} class, the reading of the error
 * bodies servers send, the classification of network failures, the messages for requests that fail
 * (unreachable, timed out, cancelled, refused, bad reply), and what a 404 (or a 400 blaming the
 * model) means for the call that got it: a model the server does not know (the message names the
 * ones it has), an endpoint or REST API the server lacks, or a `previous_response_id` it forgot.
 * Each message says what failed and what to do next.
 */
import { widenCommand } from "./launch.ts";
import { z } from "zod";
import { BridgeError, isSandboxDenial, networkFailure } from "./errors.ts";
import { clip, formatBytes, formatSeconds, listNames } from "./text.ts";

/** What went wrong with a request to LM Studio. */
export type LmErrorKind =
  | "unreachable"
  | "timeout"
  | "aborted"
  | "auth"
  | "not_found"
  | "http"
  | "bad_response"
  | "unsupported"
  | "too_large"
  | "stalled";

/** A failed LM Studio request; the message says what failed and what to do next. */
export class LmStudioError extends BridgeError<LmErrorKind> {
  override name = "LmStudioError";
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
    super(options.kind, options.message, options);
    this.url = options.url;
    if (options.status !== undefined) this.status = options.status;
    if (options.serverMessage !== undefined) this.serverMessage = options.serverMessage;
    if (options.code !== undefined) this.code = options.code;
  }
}

/** Where a failed request went: the server origin, the full URL and "METHOD /path". */
export interface RequestSite {
  baseUrl: string;
  url: string;
  what: string;
}

// ---------------------------------------------------------------------------------------------
// Error bodies

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

/**
 * Whether a 2xx body (parsed) is an error object (`{"error":"..."}` or `{"error":{...}}`): LM
 * Studio answers an unknown endpoint or method, and has answered a context overflow, with HTTP 200
 * and such a body. `"error": null` (as in a completed Responses object) is not an error. A check
 * of one field, made on every reply: the body itself is validated by the caller's schema.
 */
export function isErrorReply(json: unknown): boolean {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return false;
  const error = (json as { error?: unknown }).error;
  return (typeof error === "string" && error !== "") ||
    (typeof error === "object" && error !== null && !Array.isArray(error));
}

/** LM Studio's answer to a route it does not have: "Unexpected endpoint or method. (POST /x)". */
export function isUnknownRoute(error: LmStudioError): boolean {
  return /unexpected endpoint or method/i.test(error.serverMessage ?? "");
}

// ---------------------------------------------------------------------------------------------
// Network failures

const START_HINT = "Start the server in LM Studio (Developer tab) or run `lms server start`. " +
  "Using Ollama, llama.cpp or another OpenAI-compatible server? Set LMSTUDIO_BASE_URL " +
  "(e.g. http://127.0.0.1:11434 for Ollama).";

/**
 * The error for a fetch that failed without an HTTP answer (sandbox denial, connection refused,
 * dropped or otherwise failed), and whether trying again may help.
 */
export function networkError(
  o: RequestSite & { cause: unknown },
): { error: LmStudioError; transient: boolean } {
  const { baseUrl, url, what, cause } = o;
  if (isSandboxDenial(cause)) {
    const host = new URL(url).host;
    return {
      transient: false,
      error: new LmStudioError({
        kind: "unreachable",
        url,
        message: `The sandbox blocked the connection to LM Studio at ${baseUrl}: ` +
          `this build only allows network access to loopback (127.0.0.1, localhost, [::1]). ` +
          `To use LM Studio on ${host}, add --allow-net=${host} to the sandbox with: ` +
          `${widenCommand({ net: [host] })}; or ` +
          "point LMSTUDIO_BASE_URL at a local server.",
        cause,
      }),
    };
  }
  const failure = networkFailure(cause);
  if (failure.kind === "refused") {
    return {
      transient: true,
      error: new LmStudioError({
        kind: "unreachable",
        url,
        message: `Cannot reach LM Studio at ${baseUrl}: connection refused. ${START_HINT}`,
        cause,
      }),
    };
  }
  const detail = cause instanceof Error ? cause.message : String(cause);
  return {
    transient: failure.kind === "reset" || failure.kind === "dropped",
    error: new LmStudioError({
      kind: "unreachable",
      url,
      message: `Cannot reach LM Studio at ${baseUrl} (${what}): ${detail}. ` +
        `Check LMSTUDIO_BASE_URL and that the server is running. ${START_HINT}`,
      cause,
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Failed requests

/**
 * The error for a non-2xx answer, or a 2xx one whose body is an error object
 * ({@linkcode isErrorReply}); `tokenSent` decides the advice for 401/403. LM Studio's answer to an
 * unknown route is a `not_found` like a 404, whatever its status.
 */
export function httpError(
  o: RequestSite & { status: number; statusText: string; body: string; tokenSent: boolean },
): LmStudioError {
  const { baseUrl, url, what, status } = o;
  const { message: serverMessage, code } = parseErrorBody(o.body);
  const said = saidText(serverMessage);
  const statusText = status >= 200 && status < 300
    ? `an error (HTTP ${status})`
    : `${status}${o.statusText ? ` ${o.statusText}` : ""}`;
  const common = {
    url,
    status,
    ...(serverMessage !== undefined ? { serverMessage } : {}),
    ...(code !== undefined ? { code } : {}),
  };
  if (status === 401 || status === 403) {
    const advice = !o.tokenSent
      ? "The server requires an API token and none was sent: set LM_API_TOKEN to a token " +
        "from LM Studio (Developer tab → Server Settings → Manage Tokens)."
      : "The token sent (from LM_API_TOKEN) was refused: check that it matches a token in " +
        "LM Studio (Developer tab → Server Settings → Manage Tokens).";
    return new LmStudioError({
      kind: "auth",
      ...common,
      message: `LM Studio at ${baseUrl} refused ${what} (${statusText})${said}. ${advice}`,
    });
  }
  if (status === 404 || /unexpected endpoint or method/i.test(serverMessage ?? "")) {
    return new LmStudioError({
      kind: "not_found",
      ...common,
      message: `LM Studio at ${baseUrl} answered ${what} with ${statusText}${said}.`,
    });
  }
  return new LmStudioError({
    kind: "http",
    ...common,
    message: `LM Studio at ${baseUrl} answered ${what} with ${statusText}${said}.` +
      failureAdvice(status, serverMessage),
  });
}

/** ": the server's own words", without a final period (the sentence goes on), or "". */
function saidText(serverMessage: string | undefined): string {
  return serverMessage !== undefined ? `: ${serverMessage.replace(/[.\s]+$/, "")}` : "";
}

/** What to do about a failure the server reported (" " + advice), or "" when nothing helps. */
function failureAdvice(status: number, serverMessage: string | undefined): string {
  return status === 429
    ? " The server is busy; wait and try again."
    : /context (length|window|size)|too many tokens|exceeds? .*context|n_ctx/i.test(
        serverMessage ?? "",
      )
    ? " The request does not fit the model's context window: shorten the input, lower " +
      "max_tokens, or load the model with a larger context length " +
      "(lms load MODEL --context-length N, or the lms_load_model tool's context_length)."
    : status >= 500
    ? " The server failed; check LM Studio's developer logs, and that the model fits in memory."
    : "";
}

/**
 * The error for a failure the server reported inside a streamed reply (`data: {"error": ...}`,
 * an `error` event), `seen` saying where the reply was: "after 12 tokens".
 */
export function streamFailedError(o: RequestSite & { body: string; seen: string }): LmStudioError {
  const { message: serverMessage, code } = parseErrorBody(o.body);
  const said = saidText(serverMessage);
  return new LmStudioError({
    kind: "http",
    url: o.url,
    status: 200,
    ...(serverMessage !== undefined ? { serverMessage } : {}),
    ...(code !== undefined ? { code } : {}),
    message: `LM Studio at ${o.baseUrl} reported an error in its streamed reply to ${o.what} ` +
      `(${o.seen})${said}.` + (failureAdvice(200, serverMessage) ||
        " Check LM Studio's developer logs (`lms log stream`), then try again."),
  });
}

/** The error for a streamed reply that ended before it said it was whole. */
export function streamEndedError(o: RequestSite & { seen: string }): LmStudioError {
  return new LmStudioError({
    kind: "bad_response",
    url: o.url,
    message: `The streamed reply of ${o.baseUrl} to ${o.what} ended ${o.seen}, without a ` +
      "finish reason or end marker: the server stopped before the answer was complete " +
      "(it may have crashed or run out of memory). Check LM Studio's developer logs " +
      "(`lms log stream`), then try again.",
  });
}

/**
 * The error for a streamed request that got no byte for `ms` (LMSTUDIO_STALL_MS), `seen` saying
 * what came last: "before the first token", "while loading qwen3-8b (60%)", "after 312 tokens".
 */
export function stalledError(
  o: RequestSite & { ms: number; seen: string; cause: unknown },
): LmStudioError {
  return new LmStudioError({
    kind: "stalled",
    url: o.url,
    message:
      `LM Studio at ${o.baseUrl} sent nothing for ${
        formatSeconds(o.ms)
      } ${o.seen}, so ${o.what} was ` +
      "ended. The model or the server may be stuck, or the machine out of memory: check LM " +
      "Studio's developer logs (`lms log stream`), then try again. If it is only slow here " +
      "(a long prompt on a slow machine), raise LMSTUDIO_STALL_MS (milliseconds; 0 turns the " +
      "check off); if this server never streams its replies, set LMSTUDIO_STREAM=off.",
    cause: o.cause,
  });
}

/** The error for a reply that is not JSON or not the shape an OpenAI-compatible server sends. */
export function badResponseError(
  o: RequestSite & { detail: string; cause: unknown },
): LmStudioError {
  return new LmStudioError({
    kind: "bad_response",
    url: o.url,
    message: `The reply of ${o.baseUrl} to ${o.what} is not what an OpenAI-compatible server ` +
      `sends (${o.detail}). Check that LMSTUDIO_BASE_URL points at LM Studio or another ` +
      `OpenAI-compatible server, not a web page or proxy.`,
    cause: o.cause,
  });
}

/**
 * The error for a reply body larger than `limit` bytes, of which `read` were read (or that
 * announced `read` bytes in its Content-Length) before the client stopped.
 */
export function tooLargeError(
  o: RequestSite & { limit: number; read: number; announced: boolean },
): LmStudioError {
  const size = o.announced
    ? `announces ${formatBytes(o.read)}`
    : `passed ${formatBytes(o.read)} before the client stopped reading`;
  return new LmStudioError({
    kind: "too_large",
    url: o.url,
    message: `The reply of ${o.baseUrl} to ${o.what} is larger than the limit of ` +
      `${formatBytes(o.limit)} (it ${size}). Ask for less: lower max_tokens, send fewer or ` +
      "shorter inputs (embeddings: fewer texts per call), or raise LMSTUDIO_MAX_REPLY_BYTES " +
      "(bytes) if such replies are expected.",
  });
}

/** The error for a request cancelled through its AbortSignal. */
export function abortedError(o: { url: string; what: string; cause: unknown }): LmStudioError {
  return new LmStudioError({
    kind: "aborted",
    url: o.url,
    message: `The request to LM Studio (${o.what}) was cancelled.`,
    cause: o.cause,
  });
}

/** The error for a request that got no answer within `ms`. */
export function timeoutError(o: RequestSite & { ms: number; cause: unknown }): LmStudioError {
  return new LmStudioError({
    kind: "timeout",
    url: o.url,
    message: `LM Studio at ${o.baseUrl} did not answer ${o.what} within ${o.ms} ms. ` +
      `A large model, a long prompt or a model still loading can need more: raise ` +
      `LMSTUDIO_TIMEOUT_MS (milliseconds), or ask for fewer tokens (max_tokens).`,
    cause: o.cause,
  });
}

/** What a derived error keeps of `error`: URL, status, server message, code; `error` as cause. */
export function carried(
  error: LmStudioError,
): Pick<LmStudioError, "url" | "status" | "serverMessage" | "code"> & { cause: LmStudioError } {
  return {
    url: error.url,
    ...(error.status !== undefined ? { status: error.status } : {}),
    ...(error.serverMessage !== undefined ? { serverMessage: error.serverMessage } : {}),
    ...(error.code !== undefined ? { code: error.code } : {}),
    cause: error,
  };
}

/** `error` with "(gave up after N attempts)" added to its message. */
export function gaveUpError(error: LmStudioError, attempts: number): LmStudioError {
  return new LmStudioError({
    kind: error.kind,
    ...carried(error),
    message: `${error.message} (gave up after ${attempts} attempts)`,
  });
}

// ---------------------------------------------------------------------------------------------
// What a 404 means for the call

/** How many model ids an error message lists before "and N more". */
export const MAX_LISTED_MODELS = 20;

/**
 * The message for a model that is not there, naming the ones that are: one phrasing for every
 * place that looks a model up (the client after a 404, the model manager in a server's model list
 * or in `lms ls`). `WHERE has no WHAT "MODEL". WHATs available: A, B. ADVICE`, or, when there are
 * none, `WHERE has no WHAT "MODEL": it lists no WHATs. ADVICE`.
 */
export function unknownModelMessage(o: {
  /** The name asked for. */
  model: string;
  /** Who does not have it, as the sentence's subject: "LM Studio at http://127.0.0.1:1234". */
  where: string;
  /** The names it has. */
  available: readonly string[];
  /** What to do next when `available` names some ("Pass one of these."). */
  advice: string;
  /** What to do next when it names none; default `advice`. */
  adviceWhenNone?: string;
  /** The kind of model looked for: "model" (default), "downloaded model", "chat model"... */
  what?: string;
  /** Where the name came from when the caller did not give it, e.g. "DEFAULT_MODEL". */
  namedBy?: string;
}): string {
  const what = o.what ?? "model";
  const missing = `${o.where} has no ${what} "${o.model}"${
    o.namedBy ? ` (named by ${o.namedBy})` : ""
  }`;
  if (o.available.length === 0) {
    return `${missing}: it lists no ${what}s. ${o.adviceWhenNone ?? o.advice}`;
  }
  const kinds = `${what.charAt(0).toUpperCase()}${what.slice(1)}s`;
  return `${missing}. ${kinds} available: ${
    listNames(o.available, MAX_LISTED_MODELS)
  }. ${o.advice}`;
}

/**
 * What to do when a server lists no model at all: with just-in-time loading off LM Studio lists
 * only loaded models, so the models may be downloaded and just not loaded; Ollama lists none until
 * one is pulled.
 */
export const NOTHING_LISTED = "Either none is loaded and LM Studio's just-in-time loading is off " +
  "(it then lists only loaded models): load one (`lms load <model>`, or the lms_load_model " +
  "tool) or turn just-in-time loading on in LM Studio's server settings; or none is downloaded: " +
  "`lms get <model>` (Ollama: `ollama pull <model>`).";

/** LM Studio's answer, with just-in-time loading off, to a request while no model is loaded. */
export function isNoModelsLoaded(error: LmStudioError): boolean {
  return /no models? (is |are )?loaded/i.test(error.serverMessage ?? "");
}

/**
 * The error for LM Studio refusing `model` because nothing is loaded and just-in-time loading is
 * off ({@linkcode isNoModelsLoaded}): the model needs loading, not downloading.
 */
export function noModelsLoadedError(
  error: LmStudioError,
  o: { baseUrl: string; model: string },
): LmStudioError {
  return new LmStudioError({
    kind: "not_found",
    ...carried(error),
    message: `LM Studio at ${o.baseUrl} has no model loaded and its just-in-time loading is off, ` +
      `so it does not load "${o.model}" on request ("${error.serverMessage}"). Load it first: ` +
      `\`lms load ${o.model}\` (or the lms_load_model tool, or LM Studio's REST load), or turn ` +
      "just-in-time model loading on in LM Studio's server settings (Developer tab).",
  });
}

/** A 404, or a 400 whose message blames the model (some servers answer an unknown model so). */
export function mayBeUnknownModel(error: LmStudioError): boolean {
  if (error.kind === "not_found") return true;
  const said = error.serverMessage ?? "";
  return error.status === 400 && /model/i.test(said) &&
    /not (found|exist)|invalid|unknown|no such/i.test(said);
}

/**
 * What a call naming `model` should throw after `error` (see {@linkcode mayBeUnknownModel}),
 * knowing the model `ids` the server lists: an error naming the models that exist, `error` itself
 * when the model exists and the failure was about something else, or an error saying the server
 * lacks the endpoint.
 */
export function unknownModelError(
  error: LmStudioError,
  o: { baseUrl: string; model: string; ids: string[] },
): LmStudioError {
  const { baseUrl, model, ids } = o;
  const path = new URL(error.url).pathname;
  const common = carried(error);
  if (!ids.includes(model)) {
    return new LmStudioError({
      kind: "not_found",
      ...common,
      message: unknownModelMessage({
        model,
        where: `The server at ${baseUrl}`,
        available: ids,
        advice: "Pass one of these (or set DEFAULT_MODEL). With just-in-time loading off, " +
          `LM Studio lists only loaded models: load it first (\`lms load ${model}\`).`,
        adviceWhenNone: NOTHING_LISTED,
      }),
    });
  }
  // The model exists, so a 400 was about something else: the server's own message says what.
  if (error.kind !== "not_found") return error;
  const since = endpointSince(path);
  return new LmStudioError({
    kind: "not_found",
    ...common,
    message:
      `${baseUrl} has no ${path} endpoint (404${
        error.serverMessage ? `: ${error.serverMessage}` : ""
      }). It may be an older LM Studio or a server that does not offer it; update LM Studio` +
      `${since ? ` (${since} or newer has it)` : ""} or use another tool.`,
  });
}

/** The LM Studio version that brought an endpoint, where the client depends on knowing it. */
function endpointSince(path: string): string | undefined {
  if (path.startsWith("/v1/responses")) return "0.3.29";
  if (path.startsWith("/api/v1/")) return "0.4.0";
  if (path.startsWith("/api/v0/")) return "0.3.6";
  return undefined;
}

/**
 * The error for LM Studio saying it has no such route ({@linkcode isUnknownRoute}): this LM Studio
 * lacks the endpoint, so the model is not to blame; the message says which version has it.
 */
export function missingEndpointError(error: LmStudioError, baseUrl: string): LmStudioError {
  const path = new URL(error.url).pathname;
  const since = endpointSince(path);
  return new LmStudioError({
    kind: "not_found",
    ...carried(error),
    message: `This LM Studio (${baseUrl}) has no ${path} endpoint ("${error.serverMessage}"): ` +
      (since
        ? `update LM Studio to ${since} or newer.`
        : "update LM Studio, or use a tool that does not need it."),
  });
}

/**
 * A REST 404 is either "no such model/instance" or "no REST API here"; returns an error saying
 * which (`what` is "METHOD /path", `name` the model or instance asked for), or `error` unchanged
 * when it is not a 404.
 */
export function restNotFoundError(
  error: unknown,
  o: { baseUrl: string; what: string; name: string },
): unknown {
  if (!(error instanceof LmStudioError) || error.kind !== "not_found") return error;
  const { baseUrl, what, name } = o;
  const common = { kind: "not_found" as const, ...carried(error) };
  const aboutModel = error.code === "model_not_found" ||
    (error.serverMessage !== undefined && error.serverMessage.includes(name));
  if (aboutModel) {
    return new LmStudioError({
      ...common,
      message: `LM Studio at ${baseUrl} does not know "${name}"${
        error.serverMessage ? ` (${error.serverMessage})` : ""
      }. List models with \`lmstudio-bridge models\` or \`lms ls\`.`,
    });
  }
  const answered = isUnknownRoute(error) ? `"${error.serverMessage}"` : "404";
  return new LmStudioError({
    ...common,
    message: `${baseUrl} does not offer LM Studio's REST API (${what} answered ${answered}). ` +
      "Loading models over HTTP needs LM Studio 0.4 or later; use `lms load` instead, " +
      "or rely on just-in-time loading (name the model in a request).",
  });
}

/**
 * For a `/v1/responses` call that continued `previousResponseId`: an error explaining that the
 * server does not know that id when `error` says so, else `error` unchanged.
 */
export function previousResponseError(error: unknown, previousResponseId?: string): unknown {
  if (
    error instanceof LmStudioError && previousResponseId !== undefined &&
    (error.code === "previous_response_not_found" ||
      /previous.?response/i.test(error.serverMessage ?? ""))
  ) {
    return new LmStudioError({
      kind: error.kind,
      ...carried(error),
      message: `LM Studio does not know previous_response_id "${previousResponseId}": ` +
        "it is not one this server gave out (an id from another server or LM Studio install, " +
        "or a mistyped one), or its conversation was deleted from LM Studio's history. Start a " +
        "new conversation by leaving previous_response_id out.",
    });
  }
  return error;
}

/**
 * For a `/v1/responses` call that continued `previousResponseId` and got an answer saying
 * `previous_response_id: null`: the server kept no state (Ollama's `/v1/responses` ignores the
 * field), so the answer did not see the earlier turns. The error says so instead of passing the
 * answer off as the conversation's next turn.
 */
export function statelessResponseError(
  o: { baseUrl: string; url: string; previousResponseId: string },
): LmStudioError {
  return new LmStudioError({
    kind: "unsupported",
    url: o.url,
    message: `The server at ${o.baseUrl} ignored previous_response_id "${o.previousResponseId}": ` +
      "its answer says previous_response_id null, so it keeps no conversation state (Ollama's " +
      "/v1/responses does this) and the answer did not see the earlier turns. Use LM Studio " +
      "0.3.29 or newer for stateful responses, or send the whole conversation with " +
      "chat_completion.",
  });
}
