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
import { SSEClientTransport, SseError, type Transport } from "./sdk.ts";
import { tryParseJson } from "./json.ts";
import { errorMessage, networkFailure } from "./errors.ts";

type RequestId = string | number;

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
  /** Requests the client gave up on (timeout, abort): the server need not answer them. */
  readonly #cancelled = new Set<RequestId>();
  #lastReconnectError?: string;
  #onLost: (reason: string) => void = () => {};
  /** Why the connection was lost, once it was. */
  lostReason?: string;

  constructor(baseFetch: typeof fetch = fetch) {
    this.#baseFetch = baseFetch;
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

  /** The fetch for the streamable HTTP transport: watches POST response streams. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    if (init?.method !== "POST" || typeof body !== "string") {
      return await this.#baseFetch(input, init);
    }
    const messages = rpcMessages(body);
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
    if (ids.size === 0 || !response.ok || response.body === null) return response;
    if (!type.toLowerCase().startsWith("text/event-stream")) return response;
    const scan = new SseScan((data) => {
      if (ids.size === 0) return; // answered; no need to parse the rest
      for (const m of rpcMessages(data)) {
        if (m.id !== undefined && m.method === undefined) ids.delete(m.id);
      }
    });
    const signal = init.signal ?? undefined;
    const watched = observeBody(response.body, {
      onChunk: (bytes) => scan.push(bytes),
      onEnd: ({ error }) => {
        if (signal?.aborted || scan.resumable) return;
        const unanswered = [...ids].filter((id) => !this.#cancelled.delete(id));
        if (unanswered.length === 0) return;
        this.#lost(
          error === undefined
            ? "the server ended its response stream without answering"
            : `its response stream broke (${networkFailure(error).reason})`,
        );
      },
    });
    return new Response(watched, {
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
  #line = "";
  #data: string[] = [];
  #event = "";
  /** It carried an event id, so the SDK tries to resume it when it ends early. */
  resumable = false;

  constructor(onData: (data: string) => void) {
    this.#onData = onData;
  }

  /** Parses the next chunk; the data of each complete message event goes to `onData`. */
  push(bytes: Uint8Array): void {
    const lines = (this.#line + this.#decoder.decode(bytes, { stream: true })).split(/\r?\n/);
    this.#line = lines.pop() ?? "";
    for (const line of lines) this.#onLine(line);
  }

  #onLine(line: string): void {
    if (line === "") {
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

/** Passes `body` through, telling `onEnd` once how it ended (unless the reader cancelled it). */
function observeBody(
  body: ReadableStream<Uint8Array>,
  hooks: { onChunk(bytes: Uint8Array): void; onEnd(outcome: { error?: unknown }): void },
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
      hooks.onChunk(next.value);
      controller.enqueue(next.value);
    },
    cancel(reason) {
      ended = true;
      return reader.cancel(reason);
    },
  });
}
