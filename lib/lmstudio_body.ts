/**
 * The request bodies of a conversation's rounds, as bytes, with the JSON of what was sent before
 * reused (the `unchanged` option of the calls in lmstudio.ts). Every round sends the whole
 * conversation and the same tool definitions again: their bytes are kept from the request before
 * and only what was added is written and encoded; the body is then put together from a few
 * contiguous pieces.
 *
 * Why bytes and not kept text joined by concatenation: the joined text is a tree of pieces that
 * grows by one every round, and encoding it for sending walks all of it, piece by piece, scattered
 * over the heap (measured in the served bridge: ~20 us for a 30 kB body of 100 rounds, against
 * 3.4 us to encode the same text in one piece).
 */

import { concatBytes } from "./byte_stream.ts";

const encoder = new TextEncoder();

/** JSON text of the items of arrays written before (messages, tool definitions), per object. */
const keptText = new WeakMap<object, string>();

/** `JSON.stringify(item)` as an array item writes it, kept per object. */
function itemJson(item: unknown): string {
  if (typeof item !== "object" || item === null) return JSON.stringify(item) ?? "null";
  let text = keptText.get(item);
  if (text === undefined) {
    text = JSON.stringify(item) ?? "null";
    keptText.set(item, text);
  }
  return text;
}

/** The bytes of an array's items as `JSON.stringify` writes them, comma-separated, unbracketed. */
interface KeptArray {
  /** The items written, in order (its own array: the caller's grows). */
  readonly items: unknown[];
  /** The bytes, in `bytes[0, length)`; room after them for what a later round adds. */
  bytes: Uint8Array;
  length: number;
}

/** The last array written that began with an object (the key), as {@linkcode KeptArray}. */
const keptArrays = new WeakMap<object, KeptArray>();

/** Appends `text`'s UTF-8 bytes, growing the buffer (at least doubling) when they do not fit. */
function append(kept: KeptArray, text: string): void {
  const piece = encoder.encode(text);
  const length = kept.length + piece.length;
  if (length > kept.bytes.length) {
    const grown = new Uint8Array(Math.max(length, kept.bytes.length * 2));
    grown.set(kept.bytes.subarray(0, kept.length));
    kept.bytes = grown;
  }
  kept.bytes.set(piece, kept.length);
  kept.length = length;
}

/**
 * The bytes of `JSON.stringify(items)` without its brackets. An array that begins with all the
 * items of the last one written with the same first item (a conversation's messages one round
 * later) extends that one's bytes with what was added; any other is written from each item's kept
 * text. Valid until the next call (a later round writes after them).
 */
function arrayBytes(items: unknown[]): Uint8Array {
  const first = items[0];
  if (typeof first !== "object" || first === null) {
    return encoder.encode(items.map(itemJson).join(","));
  }
  let kept = keptArrays.get(first);
  let grows = kept !== undefined && kept.items.length <= items.length;
  for (let i = 0; grows && i < kept!.items.length; i++) grows = kept!.items[i] === items[i];
  if (!grows || kept === undefined) {
    kept = { items: items.slice(), bytes: new Uint8Array(0), length: 0 };
    append(kept, items.map(itemJson).join(","));
    keptArrays.set(first, kept);
  } else if (kept.items.length < items.length) {
    // Sent once more at most (until the next condensing): not worth keeping one by one.
    let text = "";
    for (let i = kept.items.length; i < items.length; i++) {
      text += `,${JSON.stringify(items[i]) ?? "null"}`;
      kept.items.push(items[i]);
    }
    append(kept, text);
  }
  return kept.bytes.subarray(0, kept.length);
}

/**
 * The UTF-8 bytes of `JSON.stringify(body)`, byte for byte, with the JSON of its `messages` and
 * `tools` arrays reused from the bodies written before.
 */
export function bodyBytesKept(body: unknown): Uint8Array<ArrayBuffer> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return encoder.encode(JSON.stringify(body) ?? "");
  }
  const pieces: Uint8Array[] = [];
  // What was written since the last kept piece.
  let text = "{";
  let comma = "";
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined || typeof value === "function" || typeof value === "symbol") continue;
    text += `${comma}${JSON.stringify(key)}:`;
    comma = ",";
    if ((key === "messages" || key === "tools") && Array.isArray(value)) {
      pieces.push(encoder.encode(`${text}[`), arrayBytes(value));
      text = "]";
    } else {
      text += JSON.stringify(value);
    }
  }
  pieces.push(encoder.encode(`${text}}`));
  let size = 0;
  for (const piece of pieces) size += piece.length;
  return concatBytes(pieces, size);
}
