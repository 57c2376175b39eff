/**
 * Small helpers for JSON values and JSON text shared by the tool plumbing: a plain-object type
 * guard, a parse that reports instead of throwing, a key-order-independent serialisation for
 * comparing values, and the string-aware step that scanners of almost-JSON text share.
 *
 * JSON a model writes can nest arbitrarily deep (`JSON.parse` takes 100,000 levels in its stride):
 * nothing here recurses without a bound. {@linkcode nestedDeeperThan} measures depth without
 * recursion, and {@linkcode stableStringify} stops at {@linkcode MAX_JSON_DEPTH} levels.
 */

/**
 * The deepest nesting of arrays and objects accepted in JSON a model writes (tool arguments):
 * real arguments come nowhere near it, and every recursive walk of a value (validation, stable
 * serialisation, schema checks) stays far from the call stack's limit below it.
 */
export const MAX_JSON_DEPTH = 64;

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

/**
 * Whether `value` nests arrays and objects more than `limit` levels deep (`{}` is one level,
 * `{"a": []}` two). Walks with a stack of its own, never the call stack, so it answers for any
 * depth; it stops at the first branch that goes too deep.
 */
export function nestedDeeperThan(value: unknown, limit: number): boolean {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const { value: node, depth } = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    if (depth + 1 > limit) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === "object" && child !== null) {
        stack.push({ value: child, depth: depth + 1 });
      }
    }
  }
  return false;
}

/** What {@linkcode stableStringify} writes for a value nested deeper than its limit. */
export const TOO_DEEP_MARK = '"[nested too deeply]"';

/**
 * A stable JSON text of a value (object keys sorted), for comparing calls and for showing them.
 * Arrays and objects nested deeper than `maxDepth` levels (default {@linkcode MAX_JSON_DEPTH})
 * are written as {@linkcode TOO_DEEP_MARK}, so any value can be shown.
 */
export function stableStringify(value: unknown, maxDepth: number = MAX_JSON_DEPTH): string {
  const write = (node: unknown, depth: number): string => {
    const nested = Array.isArray(node) || isRecord(node);
    if (nested && depth >= maxDepth) return TOO_DEEP_MARK;
    if (Array.isArray(node)) return `[${node.map((v) => write(v, depth + 1)).join(",")}]`;
    if (isRecord(node)) {
      return `{${
        Object.keys(node).sort().map((k) => `${JSON.stringify(k)}:${write(node[k], depth + 1)}`)
          .join(",")
      }}`;
    }
    return JSON.stringify(node) ?? "null";
  };
  return write(value, 0);
}
