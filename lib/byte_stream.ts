/**
 * Reading byte streams (a fetch body, a child's stdout) without a fresh buffer per read. A
 * default reader of Deno's resource-backed streams allocates (and zeroes) a 64 KiB chunk for
 * every read, however few bytes arrive: a streamed reply of a dozen small events, or one
 * JSON-RPC line, pays for a dozen 64 KiB allocations and the garbage they leave. A BYOB reader
 * reads into a buffer of the caller's, which {@linkcode ChunkReader} reuses from read to read and
 * {@linkcode readBytes} grows as the body does.
 *
 * A stream that is not a byte stream (a test's `new ReadableStream(...)`) is read with a default
 * reader, the same way.
 */

/** Size of the buffer a {@linkcode ChunkReader} reads into: the chunk size of Deno's own reads. */
const CHUNK_BYTES = 64 * 1024;
/** First buffer of {@linkcode readBytes} when the size is not announced; it doubles as needed. */
const FIRST_BYTES = 16 * 1024;

/** A BYOB reader of `stream`, or undefined when it is not a byte stream. */
function byobReader(
  stream: ReadableStream<Uint8Array>,
): ReadableStreamBYOBReader | undefined {
  try {
    return stream.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream: read it the default way.
    return undefined;
  }
}

/** Reads a byte stream chunk by chunk into one buffer, reused from read to read. */
export class ChunkReader {
  readonly #byob: ReadableStreamBYOBReader | undefined;
  readonly #default: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #buffer: ArrayBuffer;

  constructor(stream: ReadableStream<Uint8Array>, size = CHUNK_BYTES) {
    this.#byob = byobReader(stream);
    this.#default = this.#byob === undefined ? stream.getReader() : undefined;
    this.#buffer = new ArrayBuffer(this.#byob === undefined ? 0 : size);
  }

  /**
   * The next chunk, or undefined at the end of the stream. The chunk is valid until the next
   * read: its bytes are overwritten then (decode or copy them first).
   */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#byob === undefined) {
      const { done, value } = await this.#default!.read();
      return done ? undefined : value;
    }
    for (;;) {
      const { done, value } = await this.#byob.read(new Uint8Array(this.#buffer));
      if (value !== undefined) this.#buffer = value.buffer as ArrayBuffer;
      if (done) return undefined;
      if (value !== undefined && value.byteLength > 0) return value;
    }
  }

  /** Stops reading: the stream is cancelled (a fetch closes its connection). */
  cancel(reason?: unknown): Promise<void> {
    return (this.#byob ?? this.#default!).cancel(reason);
  }
}

/**
 * All the bytes of `stream`, or, once more than `limit` have come, how many were read (the
 * stream is then cancelled). `expected` (a Content-Length) sizes the first buffer.
 */
export async function readBytes(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  expected?: number,
): Promise<Uint8Array | { read: number }> {
  const reader = byobReader(stream);
  if (reader === undefined) return await readBytesByDefault(stream, limit);
  const first = expected !== undefined && Number.isFinite(expected) && expected >= 0
    ? expected + 1
    : FIRST_BYTES;
  let buffer = new Uint8Array(Math.min(limit + 1, Math.max(1, first)));
  let read = 0;
  for (;;) {
    if (read === buffer.byteLength) {
      if (read > limit) {
        await reader.cancel().catch(() => {}); // the rest is not wanted
        return { read };
      }
      const grown = new Uint8Array(Math.min(limit + 1, buffer.byteLength * 2));
      grown.set(buffer);
      buffer = grown;
    }
    const { done, value } = await reader.read(buffer.subarray(read));
    if (value !== undefined) {
      buffer = new Uint8Array(value.buffer as ArrayBuffer);
      read += value.byteLength;
    }
    if (done) break;
    if (read > limit) {
      await reader.cancel().catch(() => {}); // the rest is not wanted
      return { read };
    }
  }
  return buffer.subarray(0, read);
}

/** {@linkcode readBytes} for a stream that is not a byte stream. */
async function readBytesByDefault(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array | { read: number }> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let read = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    read += value.byteLength;
    if (read > limit) {
      await reader.cancel().catch(() => {}); // the rest is not wanted
      return { read };
    }
    chunks.push(value);
  }
  return concatBytes(chunks, read);
}

/** `chunks` as one array of `total` bytes (their sum). */
export function concatBytes(
  chunks: readonly Uint8Array[],
  total: number,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}
