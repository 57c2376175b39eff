/**
 * Tool calls as models make them. Their arguments: an object, a JSON string, nothing, a
 * double-encoded string, or almost-JSON that a few modest repairs turn into an object
 * ({@linkcode parseToolArguments}). And calls a model printed as text instead of using the
 * tool-call API: in the markup of the common chat templates (Qwen/Hermes `<tool_call>`, LM Studio's
 * `[TOOL_REQUEST]`), or as fenced or bare JSON, repaired like arguments
 * ({@linkcode recoverTextToolCalls}).
 */
import { closingQuote, isRecord, MAX_JSON_DEPTH, nestedDeeperThan, tryParseJson } from "./json.ts";
import type { RawToolCall } from "./lmstudio_types.ts";

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

/** Why arguments nested deeper than {@linkcode MAX_JSON_DEPTH} levels are refused. */
export const TOO_DEEP = `arguments nested too deeply (> ${MAX_JSON_DEPTH} levels)`;

/** `value` as accepted arguments, unless it nests deeper than {@linkcode MAX_JSON_DEPTH}. */
function bounded(value: Record<string, unknown>, repaired: boolean): ParsedArguments {
  return nestedDeeperThan(value, MAX_JSON_DEPTH)
    ? { ok: false, error: TOO_DEEP }
    : { ok: true, value, repaired };
}

/**
 * Parses tool-call arguments as sent by a model: an object, a JSON string, an empty string (= no
 * arguments), a double-encoded JSON string, or almost-JSON that a few modest repairs fix
 * (fences, trailing commas, Python literals, single quotes, unquoted keys, missing closing brackets).
 * Arguments nested deeper than {@linkcode MAX_JSON_DEPTH} levels are refused ({@linkcode TOO_DEEP}),
 * so that nothing downstream (validation, comparison, traces) walks them.
 */
export function parseToolArguments(
  raw: string | Record<string, unknown> | null | undefined,
): ParsedArguments {
  if (raw === null || raw === undefined) return { ok: true, value: {}, repaired: false };
  if (typeof raw !== "string") {
    return isRecord(raw)
      ? bounded(raw, false)
      : { ok: false, error: "the arguments must be a JSON object" };
  }
  const text = raw.trim();
  if (text === "" || text === "null" || text === "{}") {
    return { ok: true, value: {}, repaired: false };
  }
  const accept = (value: unknown, repaired: boolean): ParsedArguments | undefined => {
    if (typeof value === "string") {
      const inner = tryParseJson(value);
      if (inner.ok && isRecord(inner.value)) return bounded(inner.value, true);
    }
    if (value === null) return { ok: true, value: {}, repaired };
    if (isRecord(value)) return bounded(value, repaired);
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

/** Tool calls recovered from an answer's text, and the text without them. */
export interface RecoveredCalls {
  calls: RawToolCall[];
  /** The text with the recovered call markup removed, trimmed. */
  text: string;
}

/** Reads `{name, arguments}` and common variants (`parameters`, `args`, `function: {...}`). */
function callFromJson(value: unknown): RawToolCall | undefined {
  if (!isRecord(value)) return undefined;
  const inner = isRecord(value.function) ? value.function : value;
  const name = inner.name ?? value.tool ?? value.tool_name;
  if (typeof name !== "string" || name.trim() === "") return undefined;
  const args = inner.arguments ?? inner.parameters ?? inner.args ?? value.arguments ??
    value.parameters ?? value.args ?? {};
  if (typeof args !== "string" && !isRecord(args)) return undefined;
  return { name: name.trim(), arguments: args };
}

/** The calls in a JSON text: one object or a list; almost-JSON is repaired as for arguments. */
function callsFromJsonText(text: string): RawToolCall[] | undefined {
  const direct = tryParseJson(text.trim());
  // Repaired only when it does not parse as it stands.
  const parsed = direct.ok ? direct : parseToolArguments(text.trim());
  if (!parsed.ok) return undefined;
  const list = Array.isArray(parsed.value) ? parsed.value : [parsed.value];
  const calls = list.map(callFromJson);
  return calls.length > 0 && calls.every((c) => c !== undefined)
    ? calls as RawToolCall[]
    : undefined;
}

/** Top-level balanced `{...}` spans of a text (string-aware). */
function jsonObjectSpans(text: string): { start: number; end: number }[] {
  const spans: { start: number; end: number }[] = [];
  let depth = 0;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' && depth > 0) {
      // Quotes count only inside an object: prose around it may hold unbalanced ones.
      const end = closingQuote(text, i);
      if (end === undefined) break;
      i = end;
    } else if (c === "{") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}" && depth > 0) {
      depth--;
      if (depth === 0) spans.push({ start, end: i + 1 });
    }
  }
  return spans;
}

/** Markup that only ever wraps a tool call: what it holds is a call even when the name is unknown. */
const ENVELOPE_PATTERNS: RegExp[] = [
  /<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g,
  /\[TOOL_REQUEST\]([\s\S]*?)(?:\[END_TOOL_REQUEST\]|$)/g,
  /<\|?function_call\|?>([\s\S]*?)(?:<\/?\|?function_call\|?>|$)/g,
];
const FENCE_PATTERN = /```(?:json|tool_call|tool)?\s*\n?([\s\S]*?)```/g;

/** Whether `text` is one JSON object with exactly the keys `name` (a string) and `arguments`. */
function isBareCall(text: string): boolean {
  const parsed = tryParseJson(text.trim());
  if (!parsed.ok || !isRecord(parsed.value)) return false;
  const keys = Object.keys(parsed.value).sort();
  return keys.length === 2 && keys[0] === "arguments" && keys[1] === "name" &&
    typeof parsed.value.name === "string";
}

/**
 * Recovers tool calls that a model printed as text instead of calling: `<tool_call>{...}</tool_call>`
 * (Qwen/Hermes), `[TOOL_REQUEST]{...}[END_TOOL_REQUEST]` (LM Studio's default tool format), ```json
 * fenced blocks, and bare JSON objects with `name` and `arguments`.
 *
 * What is clearly a call is recovered whatever name it gives, so that the loop can tell the model
 * the tool does not exist: the content of tool-call markup, and a reply that is nothing but one
 * JSON object with exactly `name` and `arguments` (fenced or not). JSON inside other text is only
 * recovered when `isTool(name)` says it names a real tool, so prose that merely contains JSON stays
 * text.
 */
export function recoverTextToolCalls(
  text: string,
  isTool: (name: string) => boolean,
): RecoveredCalls {
  // Every call recovered is a JSON object: most answers hold none at all.
  if (!text.includes("{")) return { calls: [], text: text.trim() };
  const found: { start: number; end: number; calls: RawToolCall[] }[] = [];
  const overlaps = (s: number, e: number) => found.some((f) => s < f.end && e > f.start);
  const whole = text.trim();
  const consider = (start: number, end: number, inner: string, envelope: boolean) => {
    if (overlaps(start, end)) return;
    const calls = callsFromJsonText(inner);
    if (!calls) return;
    const clear = envelope || (text.slice(start, end).trim() === whole && isBareCall(inner));
    if (clear || calls.every((c) => isTool(c.name))) found.push({ start, end, calls });
  };
  for (const pattern of ENVELOPE_PATTERNS) {
    for (const match of text.matchAll(pattern)) {
      consider(match.index, match.index + match[0].length, match[1] ?? "", true);
    }
  }
  for (const match of text.matchAll(FENCE_PATTERN)) {
    consider(match.index, match.index + match[0].length, match[1] ?? "", false);
  }
  for (const span of jsonObjectSpans(text)) {
    consider(span.start, span.end, text.slice(span.start, span.end), false);
  }
  if (found.length === 0) return { calls: [], text: text.trim() };
  found.sort((a, b) => a.start - b.start);
  let rest = "";
  let at = 0;
  for (const f of found) {
    rest += text.slice(at, f.start);
    at = f.end;
  }
  rest += text.slice(at);
  return {
    calls: found.flatMap((f) => f.calls),
    text: rest.replace(/\n{3,}/g, "\n\n").trim(),
  };
}
