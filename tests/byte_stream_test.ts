/**
 * Byte streams read without a fresh buffer per read: a chunk reader reusing one buffer (BYOB), the
 * default reader for streams that are not byte streams, and whole bodies read up to a limit.
 */
import { assert, assertEquals } from "./assert.ts";
import { ChunkReader, readBytes } from "../lib/byte_stream.ts";

const encoder = new TextEncoder();

/**
 * A byte stream (as fetch bodies and child pipes are) that sends `parts`, one per pull; at its
 * end it answers a pending BYOB read, as a byte source must.
 */
function byteStream(parts: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      if (i < parts.length) return controller.enqueue(encoder.encode(parts[i++]!));
      controller.close();
      controller.byobRequest?.respond(0);
    },
  });
}

/** A default (not byte) stream that sends `parts`. */
function defaultStream(parts: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < parts.length) controller.enqueue(encoder.encode(parts[i++]!));
      else controller.close();
    },
  });
}

async function readAllText(reader: ChunkReader): Promise<string[]> {
  const decoder = new TextDecoder();
  const out: string[] = [];
  for (;;) {
    const chunk = await reader.read();
    if (chunk === undefined) return out;
    out.push(decoder.decode(chunk));
  }
}

Deno.test("a chunk reader reads a byte stream chunk by chunk into a buffer it reuses", async () => {
  const reader = new ChunkReader(byteStream(["data: 1\n\n", "data: 2\n\n", "x".repeat(40)]), 16);
  const seen: Uint8Array[] = [];
  const texts: string[] = [];
  for (;;) {
    const chunk = await reader.read();
    if (chunk === undefined) break;
    seen.push(chunk);
    texts.push(new TextDecoder().decode(chunk));
  }
  // A part larger than the buffer comes in pieces that fill it.
  assertEquals(texts.join(""), `data: 1\n\ndata: 2\n\n${"x".repeat(40)}`);
  assert(texts.every((t) => t.length <= 16));
  // One buffer for all reads: each read takes it over, so a chunk read before is gone.
  assert(seen.length > 3);
  assert(seen.slice(0, -1).every((c) => c.byteLength === 0));
});

Deno.test("a chunk reader reads a stream that is not a byte stream the default way", async () => {
  const reader = new ChunkReader(defaultStream(["a", "bc", ""]));
  assertEquals((await readAllText(reader)).join(""), "abc");
});

Deno.test("a chunk reader reads a fetch body, and cancelling it ends the stream", async () => {
  const body = new Response("hello").body!;
  const reader = new ChunkReader(body);
  assertEquals(await readAllText(reader), ["hello"]);
  let cancelled: unknown;
  const endless = new ReadableStream<Uint8Array>({
    type: "bytes",
    pull(controller) {
      controller.enqueue(encoder.encode("more"));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const second = new ChunkReader(endless);
  assertEquals(new TextDecoder().decode(await second.read()), "more");
  await second.cancel("enough");
  assertEquals(cancelled, "enough");
});

Deno.test("readBytes reads a whole body, growing its buffer, up to the limit", async () => {
  const parts = Array.from({ length: 50 }, (_, i) => `${i}`.padStart(1000, "."));
  for (const stream of [byteStream(parts), defaultStream(parts)]) {
    const bytes = await readBytes(stream, 1_000_000);
    assert(bytes instanceof Uint8Array);
    assertEquals(new TextDecoder().decode(bytes), parts.join(""));
  }
  // The announced size is only a hint: a body longer or shorter than it is read whole.
  for (const expected of [0, 10, 49_999, 50_000, 200_000]) {
    const bytes = await readBytes(byteStream(parts), 1_000_000, expected);
    assert(bytes instanceof Uint8Array);
    assertEquals(bytes.byteLength, 50_000);
  }
  assertEquals(new TextDecoder().decode(await readBytes(byteStream([]), 10) as Uint8Array), "");
});

Deno.test("readBytes stops after the limit and says how much it read", async () => {
  for (const make of [byteStream, defaultStream]) {
    let cancelled = false;
    const limited = await readBytes(make(["a".repeat(60), "b".repeat(60), "c".repeat(60)]), 100);
    assert(!(limited instanceof Uint8Array));
    assert(limited.read > 100 && limited.read <= 120, `read ${limited.read}`);
    // Exactly the limit is still whole.
    const exact = await readBytes(make(["a".repeat(50), "b".repeat(50)]), 100);
    assert(exact instanceof Uint8Array);
    assertEquals(exact.byteLength, 100);
    const endless = new ReadableStream<Uint8Array>({
      ...(make === byteStream ? { type: "bytes" as const } : {}),
      pull(controller) {
        controller.enqueue(encoder.encode("z".repeat(64)));
      },
      cancel() {
        cancelled = true;
      },
    });
    const over = await readBytes(endless, 1000, 10);
    assert(!(over instanceof Uint8Array));
    assert(cancelled, "the rest of the stream is cancelled");
  }
});
