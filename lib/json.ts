/**
 * Small helpers for JSON values and JSON text shared by the tool plumbing: a plain-object type
 * guard, a parse that reports instead of throwing, a key-order-independent serialisation for
 * comparing values, and the string-aware step that scanners of almost-JSON text share.
 */

/** Whether `value` is a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `JSON.parse` that returns the parser's message instead of throwing. */
export function tryParseJson(
  text: string,
): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error: unknown) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * The index of the quote that closes the JSON string opened by the quote at `open` (backslash
 * escapes skipped), or undefined when the text ends inside the string.
 */
export function closingQuote(text: string, open: number): number | undefined {
  for (let i = open + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === '"') return i;
  }
  return undefined;
}

/** A stable JSON text of a value (object keys sorted), for comparing calls. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (isRecord(value)) {
    return `{${
      Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`)
        .join(",")
    }}`;
  }
  return JSON.stringify(value) ?? "null";
}
