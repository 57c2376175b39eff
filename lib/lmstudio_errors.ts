/**
 * Errors of the LM Studio client: the {@linkcode LmStudioError} class, the reading of the error
 * bodies servers send, the classification of network failures, and the messages for requests that
 * fail (unreachable, timed out, cancelled, refused, bad reply), each saying what failed and what to
 * do next. What a 404 means for a particular call is explained in lmstudio_not_found.ts.
 */
import { z } from "zod";
import { BridgeError, isSandboxDenial, networkFailure } from "./errors.ts";
import { clip } from "./text.ts";

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
          `To use LM Studio on ${host}, add --allow-net=${host} to the deno run (or deno ` +
          `compile) command, or point LMSTUDIO_BASE_URL at a local server.`,
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

/** The error for a non-2xx answer; `tokenSent` decides the advice for 401/403. */
export function httpError(
  o: RequestSite & { status: number; statusText: string; body: string; tokenSent: boolean },
): LmStudioError {
  const { baseUrl, url, what, status } = o;
  const { message: serverMessage, code } = parseErrorBody(o.body);
  // The server's own words, without a final period: the sentence goes on after them.
  const said = serverMessage !== undefined ? `: ${serverMessage.replace(/[.\s]+$/, "")}` : "";
  const statusText = `${status}${o.statusText ? ` ${o.statusText}` : ""}`;
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
  if (status === 404) {
    return new LmStudioError({
      kind: "not_found",
      ...common,
      message: `LM Studio at ${baseUrl} answered ${what} with ${statusText}${said}.`,
    });
  }
  const advice = status === 429
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
  return new LmStudioError({
    kind: "http",
    ...common,
    message: `LM Studio at ${baseUrl} answered ${what} with ${statusText}${said}.${advice}`,
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
