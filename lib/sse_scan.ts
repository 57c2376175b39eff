/**
 * Reading a server-sent event stream while it passes through to its real reader: the body is
 * handed on unchanged ({@linkcode observeBody}), each chunk is also parsed into events
 * ({@linkcode SseScan}), and the observer learns how the stream ended. The pool uses it to notice
 * a remote MCP server that ends a response stream before answering.
 */

/**
 * Reads a server-sent event stream as it passes by: which JSON-RPC responses it carried and
 * whether it had event ids (then the SDK may resume it after a break).
 */
export class SseScan {
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
export function observeBody(
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
