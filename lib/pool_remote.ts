/**
 * Noticing that a remote (streamable HTTP or SSE) MCP server went away mid-call
 * ({@linkcode RemoteWatch}). The SDK leaves requests waiting when a response stream ends before
 * the answer or the event stream drops for good; the watch sees it in the transport's errors and
 * in a fetch wrapper that follows each POST's response stream, and reports it once.
 *
 * Following a response stream means reading it as it passes through to its real reader: the body
 * is handed on unchanged ({@linkcode observeBody}), each chunk is also parsed into server-sent
 * events ({@linkcode SseScan}), and the watch learns how the stream ended.
 */
import { z } from "zod";
import type { Transport } from "./sdk.ts";
import { SSEClientTransport, SseError } from "./sdk_client.ts";
import { tryParseJson } from "./json.ts";
import { errorMessage, networkFailure } from "./errors.ts";
import { MessageTooLargeError } from "./pool_errors.ts";

type RequestId = string | number;

/** Largest message accepted from a remote server, as for stdio servers (pool_stdio.ts). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const RequestIdSchema = z.union([z.string(), z.number()]);
/** The fields of a JSON-RPC message that tell requests, responses and cancellations apart. */
const RpcMessageSchema = z.object({
  id: RequestIdSchema.optional(),
  method: z.string().optional(),
  params: z.object({ requestId: RequestIdSchema.optional() }).optional().catch(undefined),
});

function rpcMessages(json: string): z.infer<typeof RpcMessageSchema>[] {
  const parsed = tryParseJson(json);
  if (!parsed.ok) return [];
  const data = parsed.value;
  return (Array.isArray(data) ? data : [data]).flatMap((item: unknown) => {
    const parsed = RpcMessageSchema.safeParse(item);
    return parsed.success ? [parsed.data] : [];
  });
}

/**
 * Watches one remote (streamable HTTP or SSE) connection for signs that the server went away,
 * which the SDK does not pass on to waiting requests (they would wait out their timeout):
 * - a POST response stream that ends or breaks before it carried the answer, and cannot be
 *   resumed (it had no event ids);
 * - the SDK giving up reconnecting the server's event stream (streamable HTTP);
 * - the event stream of an SSE connection dropping (a new one would be a new session).
 * It then calls `onLost` once with the reason; the pool closes the connection, which fails its
 * in-flight calls at once, and the next call reconnects.
 */
export class RemoteWatch {
  readonly #baseFetch: typeof fetch;
  readonly #maxMessageBytes: number;
  /** Requests the client gave up on (timeout, abort): the server need not answer them. */
  readonly #cancelled = new Set<RequestId>();
  #lastReconnectError?: string;
  #onLost: (reason: string) => void = () => {};
  /** Why the connection was lost, once it was. */
  lostReason?: string;
  /** Set when the connection was lost because an event was over the size limit. */
  tooLarge?: MessageTooLargeError;

  /**
   * `maxMessageBytes` bounds one message: a JSON response body, or one event of an event
   * stream. A larger one is not read any further: the request fails (a JSON body) or the
   * connection is closed (an event stream, which cannot skip an event).
   */
  constructor(options: { fetch?: typeof fetch; maxMessageBytes?: number } = {}) {
    this.#baseFetch = options.fetch ?? fetch;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** Watches `transport`'s errors; `onLost` closes it. Call before connecting. */
  attach(transport: Transport, onLost: (reason: string) => void): void {
    this.#onLost = onLost;
    const sse = transport instanceof SSEClientTransport;
    transport.onerror = (error: Error) => {
      const message = errorMessage(error);
      if (sse && error instanceof SseError && typeof error.code !== "number") {
        this.#lost(`its event stream dropped (${networkFailure(error).reason})`);
      } else if (message.startsWith("Failed to reconnect SSE stream: ")) {
        this.#lastReconnectError = message.slice("Failed to reconnect SSE stream: ".length);
      } else if (message.startsWith("Maximum reconnection attempts")) {
        const last = this.#lastReconnectError;
        this.#lost(
          `its event stream dropped and reconnecting failed${
            last === undefined ? "" : ` (${networkFailure(new Error(last)).reason})`
          }`,
        );
      }
    };
  }

  /**
   * The fetch for the transports: bounds the size of every message received, and follows POST
   * response streams (streamable HTTP) for answers that never come.
   */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    const messages = init?.method === "POST" && typeof body === "string" ? rpcMessages(body) : [];
    for (const m of messages) {
      // Noted before sending: the server may end the cancelled call's stream right away.
      if (m.method === "notifications/cancelled" && m.params?.requestId !== undefined) {
        if (this.#cancelled.size >= 1000) this.#cancelled.clear();
        this.#cancelled.add(m.params.requestId);
      }
    }
    const response = await this.#baseFetch(input, init);
    const ids = new Set<RequestId>();
    for (const m of messages) if (m.id !== undefined && m.method !== undefined) ids.add(m.id);
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || response.body === null) return response;
    const max = this.#maxMessageBytes;
    if (!type.toLowerCase().startsWith("text/event-stream")) {
      // One JSON-RPC message (or batch): the request fails, the session stays.
      let total = 0;
      const bounded = observeBody(response.body, {
        onChunk: (bytes) => {
          total += bytes.length;
          return total > max ? new MessageTooLargeError(max) : undefined;
        },
        onEnd: () => {},
      });
      return new Response(bounded, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
    }
    const scan = new SseScan((data) => {
      if (ids.size === 0) return; // answered; no need to parse the rest
      for (const m of rpcMessages(data)) {
        if (m.id !== undefined && m.method === undefined) ids.delete(m.id);
      }
    });
    const signal = init?.signal ?? undefined;
    const watched = observeBody(response.body, {
      onChunk: (bytes) => {
        scan.push(bytes);
        if (scan.eventChars <= max) return undefined;
        // An event stream cannot skip the rest of an event: the connection goes.
        const error = new MessageTooLargeError(max);
        this.tooLarge ??= error;
        this.#lost(error.message);
        return error;
      },
      onEnd: ({ error }) => {
        if (signal?.aborted || scan.resumable || ids.size === 0) return;
        const unanswered = [...ids].filter((id) => !this.#cancelled.delete(id));
        if (unanswered.length === 0) return;
        this.#lost(
          error === undefined
            ? "the server ended its response stream without answering"
            : `its response stream broke (${networkFailure(error).reason})`,
        );
      },
    });
    return new Response(coalesceLines(watched), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };

  #lost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    this.#onLost(reason);
  }
}

// -- reading a server-sent event stream as it passes ----------------------------------------------

/**
 * Reads a server-sent event stream as it passes by: which JSON-RPC responses it carried and
 * whether it had event ids (then the SDK may resume it after a break).
 */
class SseScan {
  readonly #decoder = new TextDecoder();
  readonly #onData: (data: string) => void;
  /** The line being received, in pieces (joined once it is complete: linear in its length). */
  #line: string[] = [];
  #lineChars = 0;
  #data: string[] = [];
  #event = "";
  #eventChars = 0;
  /** It carried an event id, so the SDK tries to resume it when it ends early. */
  resumable = false;

  /** Characters of the event being received so far (its lines, and the partial line). */
  get eventChars(): number {
    return this.#eventChars + this.#lineChars;
  }

  constructor(onData: (data: string) => void) {
    this.#onData = onData;
  }

  /** Parses the next chunk; the data of each complete message event goes to `onData`. */
  push(bytes: Uint8Array): void {
    let text = this.#decoder.decode(bytes, { stream: true });
    for (let newline = text.indexOf("\n"); newline !== -1; newline = text.indexOf("\n")) {
      const line = this.#line.join("") + text.slice(0, newline);
      this.#line = [];
      this.#lineChars = 0;
      this.#onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
      text = text.slice(newline + 1);
    }
    if (text !== "") {
      this.#line.push(text);
      this.#lineChars += text.length;
    }
  }

  #onLine(line: string): void {
    this.#eventChars += line.length + 1;
    if (line === "") {
      this.#eventChars = 0;
      if (this.#data.length > 0 && (this.#event === "" || this.#event === "message")) {
        this.#onData(this.#data.join("\n"));
      }
      this.#data = [];
      this.#event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const raw = colon < 0 ? "" : line.slice(colon + 1);
    const value = raw.startsWith(" ") ? raw.slice(1) : raw;
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && value !== "") this.resumable = true;
  }
}

/** Below this, the bytes of an unfinished line are held back until there are this many. */
const MIN_BATCH_BYTES = 64 * 1024;

/**
 * `body` with the bytes of a long line passed on in batches that double in size: the SDK's event
 * stream parser joins and re-scans the whole unfinished line on every chunk, which is quadratic in
 * the length of a big event's line when it comes in small chunks. Chunks that end a line pass on
 * at once, with what was held before them.
 */
function coalesceLines(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  /** Bytes of the unfinished line already passed on. */
  let passed = 0;
  const release = (controller: TransformStreamDefaultController<Uint8Array>) => {
    if (heldBytes === 0) return;
    const out = new Uint8Array(heldBytes);
    let at = 0;
    for (const chunk of held) {
      out.set(chunk, at);
      at += chunk.length;
    }
    held = [];
    heldBytes = 0;
    controller.enqueue(out);
  };
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        held.push(chunk);
        heldBytes += chunk.length;
        const newline = chunk.lastIndexOf(10);
        if (newline !== -1) {
          release(controller);
          passed = chunk.length - newline - 1;
        } else if (heldBytes >= Math.max(MIN_BATCH_BYTES, passed)) {
          passed += heldBytes;
          release(controller);
        }
      },
      flush: release,
    }),
  );
}

/**
 * Passes `body` through, telling `onEnd` once how it ended (unless the reader cancelled it). An
 * error returned by `onChunk` stops the body there: the source is cancelled and the reader gets
 * that error.
 */
function observeBody(
  body: ReadableStream<Uint8Array>,
  hooks: {
    onChunk(bytes: Uint8Array): Error | undefined;
    onEnd(outcome: { error?: unknown }): void;
  },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = (outcome: { error?: unknown }) => {
    if (ended) return;
    ended = true;
    hooks.onEnd(outcome);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        end({ error });
        controller.error(error);
        return;
      }
      if (next.done) {
        end({});
        controller.close();
        return;
      }
      const stop = hooks.onChunk(next.value);
      if (stop !== undefined) {
        reader.cancel(stop).catch(() => undefined);
        end({ error: stop });
        controller.error(stop);
        return;
      }
      controller.enqueue(next.value);
    },
    cancel(reason) {
      ended = true;
      return reader.cancel(reason);
    },
  });
}
