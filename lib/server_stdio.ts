/**
 * The stdio transport of `serve`: newline-delimited JSON-RPC on stdin and stdout, like the SDK's
 * StdioServerTransport, but a message too large for it does not end the server. The SDK closes
 * the whole transport when its buffer passes 10 MiB, which an `analyze_image` call with an 8 MB
 * PNG as a data URI already does (base64 adds a third); that ended `serve` silently.
 *
 * Here one message may be up to {@linkcode MAX_MESSAGE_BYTES} (64 MiB, like the pool's client
 * side: a 10 MiB image as base64 is under 14 MiB). A longer line is discarded as it arrives (only
 * its first and last bytes are kept); a request among them gets a JSON-RPC error naming the
 * limit (its id is read from those bytes), anything else is logged and skipped, and serving goes
 * on with the next line.
 */
import type { Readable, Writable } from "node:stream";
import { JSONRPCMessageSchema, type Transport } from "./sdk.ts";
import type { Logger } from "./log.ts";
import { formatBytes } from "./text.ts";

/** Longest JSON-RPC message (one stdin line) accepted, in bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** JSON-RPC's "Invalid Request" code, answered for a request over the size limit. */
const INVALID_REQUEST = -32600;

/** Bytes kept from each end of an oversized line, to find its id. */
const KEPT_BYTES = 4096;

type Message = Parameters<NonNullable<Transport["onmessage"]>>[0];

/** A JSON-RPC id as JSON text: a number or a plain string. */
const ID = String.raw`(-?\d+|"(?:[^"\\]|\\.)*")`;
/** The id at the start of a message: `{"jsonrpc":"2.0","id":7,...` (after jsonrpc/method). */
const ID_AT_START = new RegExp(
  String.raw`^\s*\{(?:\s*"(?:jsonrpc|method)"\s*:\s*"[^"]*"\s*,)*\s*"id"\s*:\s*${ID}`,
);
/** The id at the end: `...,"jsonrpc":"2.0","id":7}` (SDK clients put it last). */
const ID_AT_END = new RegExp(
  String.raw`[,{]\s*"id"\s*:\s*${ID}\s*(?:,\s*"(?:jsonrpc|method)"\s*:\s*"[^"]*"\s*)*\}\s*$`,
);

/**
 * The id of an oversized message, from its first and last bytes, or undefined (a notification, or
 * an id buried in the middle).
 */
export function oversizedMessageId(head: string, tail: string): string | number | undefined {
  const found = ID_AT_START.exec(head)?.[1] ?? ID_AT_END.exec(tail)?.[1];
  if (found === undefined) return undefined;
  try {
    const id: unknown = JSON.parse(found);
    return typeof id === "string" || typeof id === "number" ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Options of {@linkcode LineStdioServerTransport}. */
export interface LineTransportOptions {
  log: Logger;
  /** Default {@linkcode MAX_MESSAGE_BYTES}. */
  maxMessageBytes?: number;
}

/** Newline-delimited JSON-RPC over a readable and a writable stream, with a per-message limit. */
export class LineStdioServerTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: Message) => void;

  readonly #stdin: Readable;
  readonly #stdout: Writable;
  readonly #log: Logger;
  readonly #max: number;
  #chunks: Uint8Array[] = [];
  #length = 0;
  /** Set while a line over the limit is being skipped: its start and its byte count so far. */
  #oversized: { head: Uint8Array; tail: Uint8Array; bytes: number } | undefined;
  #closed = false;
  readonly #decoder = new TextDecoder();

  constructor(stdin: Readable, stdout: Writable, options: LineTransportOptions) {
    this.#stdin = stdin;
    this.#stdout = stdout;
    this.#log = options.log;
    this.#max = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  }

  readonly #onData = (chunk: Uint8Array | string): void => {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    let start = 0;
    for (;;) {
      const newline = bytes.indexOf(0x0a, start);
      if (newline === -1) {
        this.#append(bytes.subarray(start));
        return;
      }
      this.#append(bytes.subarray(start, newline));
      this.#endLine();
      start = newline + 1;
    }
  };

  readonly #onError = (error: Error): void => {
    this.onerror?.(error);
  };

  start(): Promise<void> {
    this.#stdin.on("data", this.#onData);
    this.#stdin.on("error", this.#onError);
    return Promise.resolve();
  }

  #append(part: Uint8Array): void {
    if (part.length === 0) return;
    const big = this.#oversized;
    if (big !== undefined) {
      big.bytes += part.length;
      big.tail = lastBytes(concat([big.tail, part]), KEPT_BYTES);
      return;
    }
    this.#chunks.push(part);
    this.#length += part.length;
    if (this.#length > this.#max) {
      const all = concat(this.#chunks);
      this.#oversized = {
        head: all.slice(0, KEPT_BYTES),
        tail: lastBytes(all, KEPT_BYTES).slice(),
        bytes: all.length,
      };
      this.#chunks = [];
      this.#length = 0;
    }
  }

  #endLine(): void {
    const big = this.#oversized;
    if (big !== undefined) {
      this.#oversized = undefined;
      this.#refuse(big);
      return;
    }
    const line = this.#decoder.decode(concat(this.#chunks)).replace(/\r$/, "");
    this.#chunks = [];
    this.#length = 0;
    if (line.trim() === "") return;
    let message: Message;
    try {
      message = JSONRPCMessageSchema.parse(JSON.parse(line));
    } catch (error: unknown) {
      this.onerror?.(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.onmessage?.(message);
  }

  /** Answers (or logs) a message over the limit; the server goes on with the next one. */
  #refuse(big: { head: Uint8Array; tail: Uint8Array; bytes: number }): void {
    const id = oversizedMessageId(this.#decoder.decode(big.head), this.#decoder.decode(big.tail));
    const size = `${formatBytes(big.bytes)} (${big.bytes} bytes)`;
    const limit = formatBytes(this.#max);
    this.#log.warn(
      `skipped a message of ${size} from the client: larger than the ${limit} limit` +
        (id === undefined ? " (no request id found, so no error reply was sent)" : ""),
      id === undefined ? undefined : { id },
    );
    if (id === undefined) return;
    void this.send({
      jsonrpc: "2.0",
      id,
      error: {
        code: INVALID_REQUEST,
        message: `The request is ${size}, larger than the ${limit} one message may have, so ` +
          "the bridge skipped it. Send less: images as file paths or URLs rather than data " +
          "URIs, or smaller images (analyze_image takes up to 10 MiB each).",
      },
    }).catch(() => undefined);
  }

  send(message: Message): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.#stdout.write(JSON.stringify(message) + "\n")) resolve();
      else this.#stdout.once("drain", () => resolve());
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#stdin.off("data", this.#onData);
    this.#stdin.off("error", this.#onError);
    if (this.#stdin.listenerCount("data") === 0) this.#stdin.pause();
    this.#chunks = [];
    this.#oversized = undefined;
    this.onclose?.();
    return Promise.resolve();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function lastBytes(bytes: Uint8Array, n: number): Uint8Array {
  return bytes.length <= n ? bytes : bytes.subarray(bytes.length - n);
}
