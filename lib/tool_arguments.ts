/**
 * Tool-call arguments as models send them: an object, a JSON string, nothing, a double-encoded
 * string, or almost-JSON that a few modest repairs turn into an object.
 */
import { closingQuote, isRecord, tryParseJson } from "./json.ts";

/** The outcome of {@linkcode parseToolArguments}. */
export type ParsedArguments =
  | { ok: true; value: Record<string, unknown>; repaired: boolean }
  | { ok: false; error: string };

/** Appends the closing brackets a truncated JSON text is missing (outside strings). */
function closeBrackets(text: string): string {
  const stack: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = closingQuote(text, i);
      if (end === undefined) return text + '"' + stack.reverse().join("");
      i = end;
    } else if (c === "{") stack.push("}");
    else if (c === "[") stack.push("]");
    else if (c === "}" || c === "]") stack.pop();
  }
  return text + stack.reverse().join("");
}

/** Modest repairs of almost-JSON, applied cumulatively, cheapest first. */
const REPAIRS: ((text: string) => string)[] = [
  // ```json fences
  (t) => t.replace(/^```(?:json)?\s*/i, "").replace(/\s*```$/, ""),
  // trailing commas
  (t) => t.replace(/,\s*([}\]])/g, "$1"),
  // Python literals in value positions
  (t) =>
    t.replace(
      /(:\s*|\[\s*|,\s*)(True|False|None)(?=\s*[,}\]])/g,
      (_m, p, v) => p + (v === "True" ? "true" : v === "False" ? "false" : "null"),
    ),
  // single-quoted strings, when there are no double quotes at all
  (t) =>
    t.includes('"') ? t : t.replace(/'((?:[^'\\]|\\.)*)'/g, (_m, s: string) => JSON.stringify(s)),
  // unquoted keys
  (t) => t.replace(/([{,]\s*)([A-Za-z_$][\w$-]*)(\s*:)/g, '$1"$2"$3'),
  // truncated output: close open strings and brackets
  closeBrackets,
];

/**
 * Parses tool-call arguments as sent by a model: an object, a JSON string, an empty string (= no
 * arguments), a double-encoded JSON string, or almost-JSON that a few modest repairs fix
 * (fences, trailing commas, Python literals, single quotes, unquoted keys, missing closing brackets).
 */
export function parseToolArguments(
  raw: string | Record<string, unknown> | null | undefined,
): ParsedArguments {
  if (raw === null || raw === undefined) return { ok: true, value: {}, repaired: false };
  if (typeof raw !== "string") {
    return isRecord(raw)
      ? { ok: true, value: raw, repaired: false }
      : { ok: false, error: "the arguments must be a JSON object" };
  }
  const text = raw.trim();
  if (text === "" || text === "null" || text === "{}") {
    return { ok: true, value: {}, repaired: false };
  }
  const accept = (value: unknown, repaired: boolean): ParsedArguments | undefined => {
    if (typeof value === "string") {
      const inner = tryParseJson(value);
      if (inner.ok && isRecord(inner.value)) {
        return { ok: true, value: inner.value, repaired: true };
      }
    }
    if (value === null) return { ok: true, value: {}, repaired };
    if (isRecord(value)) return { ok: true, value, repaired };
    return undefined;
  };
  const first = tryParseJson(text);
  if (first.ok) {
    return accept(first.value, false) ??
      {
        ok: false,
        error: `the arguments must be a JSON object, got ${
          Array.isArray(first.value) ? "an array" : typeof first.value
        }`,
      };
  }
  let candidate = text;
  for (const repair of REPAIRS) {
    candidate = repair(candidate);
    const attempt = tryParseJson(candidate);
    if (attempt.ok) {
      const accepted = accept(attempt.value, true);
      if (accepted) return accepted;
    }
  }
  return { ok: false, error: `invalid JSON (${first.error})` };
}
