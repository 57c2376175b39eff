/**
 * MCP <-> OpenAI tool plumbing for the autonomous loop, free of I/O: schema cleaning, tool naming
 * and namespacing, `allowed_tools` globs, lenient argument parsing, argument validation, recovery
 * of tool calls a model printed as text, and turning MCP tool results into model-readable text.
 */
import {
  AjvJsonSchemaValidator,
  type CallToolResult,
  type JsonSchemaType,
  type Tool,
} from "./sdk.ts";
import type { OpenAiTool, RawToolCall } from "./lmstudio_types.ts";

// ---------------------------------------------------------------------------------------------
// Schemas

/** `format` values llama.cpp's JSON-schema grammar understands; other values are dropped. */
const GRAMMAR_FORMATS = new Set(["date", "time", "date-time", "uuid"]);
/** Keys that only annotate a schema and that some local servers choke on. */
const DROPPED_KEYS = new Set(["$schema", "$id", "$comment", "examples", "deprecated"]);
const SCHEMA_MAP_KEYS = new Set(["properties", "$defs", "definitions", "patternProperties"]);
const SCHEMA_LIST_KEYS = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);
const SCHEMA_KEYS = new Set(["items", "not", "additionalItems", "contains"]);
const MAX_SCHEMA_DEPTH = 64;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function cleanNode(node: unknown, depth: number, keepFormats: boolean): unknown {
  if (!isRecord(node)) return node;
  if (depth > MAX_SCHEMA_DEPTH) return {};
  const out: Record<string, unknown> = {};
  let formatHint: string | undefined;
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_KEYS.has(key)) continue;
    if (key === "format") {
      if (typeof value !== "string") continue;
      if (keepFormats && GRAMMAR_FORMATS.has(value)) out.format = value;
      // Keep the hint for the model even though the grammar cannot enforce it.
      else if (keepFormats) formatHint = `(format: ${value})`;
      continue;
    }
    if (SCHEMA_MAP_KEYS.has(key)) {
      if (!isRecord(value)) continue;
      out[key] = Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, cleanNode(v, depth + 1, keepFormats)]),
      );
    } else if (SCHEMA_LIST_KEYS.has(key)) {
      if (!Array.isArray(value)) continue;
      out[key] = value.map((v) => cleanNode(v, depth + 1, keepFormats));
    } else if (SCHEMA_KEYS.has(key)) {
      out[key] = Array.isArray(value)
        ? value.map((v) => cleanNode(v, depth + 1, keepFormats))
        : cleanNode(value, depth + 1, keepFormats);
    } else if (key === "additionalProperties") {
      // Booleans pass; `{}` means "anything" (some grammars reject the empty schema); other
      // schemas are cleaned; anything else is not a schema and is dropped.
      if (typeof value === "boolean") out[key] = value;
      else if (isRecord(value)) {
        out[key] = Object.keys(value).length === 0
          ? true
          : cleanNode(value, depth + 1, keepFormats);
      }
    } else if (key === "required") {
      const list = Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
      if (list.length > 0) out[key] = list;
    } else {
      out[key] = value;
    }
  }
  if (formatHint !== undefined) {
    const description = typeof out.description === "string" ? out.description : "";
    out.description = description ? `${description} ${formatHint}` : formatHint;
  }
  return out;
}

/**
 * Cleans an MCP tool input schema of what local OpenAI-compatible servers reject: drops `$schema`,
 * `$id`, `$comment`, `examples`, `format` values llama.cpp's grammar cannot express (kept as a
 * hint in the description), empty `additionalProperties` schemas and empty `required` lists, and
 * makes sure the top level is `{type: "object", properties: {...}}`.
 */
export function cleanToolSchema(schema: unknown): Record<string, unknown> {
  const cleaned = cleanNode(schema, 0, true);
  const top: Record<string, unknown> = isRecord(cleaned) ? cleaned : {};
  top.type = "object";
  if (!isRecord(top.properties)) top.properties = {};
  return top;
}

/** The schema used to validate arguments locally: cleaned, without `format` checks (servers own those). */
function validationSchema(schema: unknown): Record<string, unknown> {
  const cleaned = cleanNode(schema, 0, false);
  const top: Record<string, unknown> = isRecord(cleaned) ? cleaned : {};
  top.type = "object";
  return top;
}

// ---------------------------------------------------------------------------------------------
// Names

/** OpenAI-compatible servers accept function names matching this. */
export const TOOL_NAME_PATTERN: RegExp = /^[a-zA-Z0-9_-]{1,64}$/;
/** Separator between server and tool in namespaced names. */
export const NAMESPACE_SEPARATOR = "__";

/** FNV-1a, 32 bit, base 36: a short stable suffix for disambiguating truncated names. */
export function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(36).padStart(7, "0").slice(-6);
}

/** Replaces characters outside `[a-zA-Z0-9_-]` with `_`; never empty. (Length is handled by the catalog.) */
export function sanitizeToolName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_-]/g, "_");
  return cleaned === "" ? "tool" : cleaned;
}

/** The longest name OpenAI-compatible servers accept. */
const MAX_NAME = 64;
/**
 * What a namespaced name keeps of a long server name at the least (5 characters, `_` and a hash)
 * when a long tool name needs the room.
 */
const MIN_SERVER_PART = 12;

/**
 * Sanitised labels for distinct `names`, still distinct: a name that sanitising changed gets a hash
 * suffix when its sanitised form is also another name's (`my server.v2` beside `my_server_v2`
 * becomes `my_server_v2_<hash>`), so the name that needed no change keeps its clean label and the
 * outcome does not depend on order.
 */
function distinctLabels(names: readonly string[]): string[] {
  const clean = names.map(sanitizeToolName);
  const count = new Map<string, number>();
  for (const c of clean) count.set(c, (count.get(c) ?? 0) + 1);
  return names.map((name, i) => {
    const c = clean[i]!;
    return c !== name && (count.get(c) ?? 0) > 1 ? `${c}_${shortHash(name)}` : c;
  });
}

/** `label` cut to `room` characters, ending in a hash of `original` when it had to be cut. */
function fitLabel(label: string, original: string, room: number): string {
  if (label.length <= room) return label;
  const suffix = `_${shortHash(original)}`;
  return label.slice(0, Math.max(1, room - suffix.length)) + suffix;
}

/**
 * The names the model sees for the tools of `servers` (same shape as the input): the raw tool
 * names, or `server__tool` when `namespaced`, sanitised to {@linkcode TOOL_NAME_PATTERN} and unique.
 * A long server name is shortened first (its start and a hash, the same prefix for all its tools)
 * so that tool names stay whole; a tool name is cut (start and hash) only when it is too long even
 * beside a 12-character server part. Names that sanitise alike get hash suffixes on the ones that
 * sanitising changed (see {@linkcode distinctLabels}).
 */
export function toolNames(
  servers: readonly { server: string; tools: readonly string[] }[],
  namespaced: boolean,
): string[][] {
  const used = new Set<string>();
  // Last resort for what the rules above cannot tell apart (a server "a" with a tool "b__c" beside
  // a server "a__b" with a tool "c", a server listing a tool twice, a hash collision).
  const unique = (name: string, full: string): string => {
    let candidate = name;
    for (let n = 1; used.has(candidate); n++) {
      const suffix = `_${shortHash(`${full}#${n}`)}`;
      candidate = name.slice(0, MAX_NAME - suffix.length) + suffix;
    }
    used.add(candidate);
    return candidate;
  };
  const serverLabels = distinctLabels(servers.map((s) => s.server));
  const sep = NAMESPACE_SEPARATOR;
  return servers.map(({ server, tools }, s) => {
    const toolLabels = distinctLabels(tools);
    const full = (tool: string) => `${server}${sep}${tool}`;
    if (!namespaced) {
      return tools.map((tool, t) =>
        unique(fitLabel(toolLabels[t]!, full(tool), MAX_NAME), full(tool))
      );
    }
    const longest = Math.max(0, ...toolLabels.map((l) => l.length));
    const room = MAX_NAME - sep.length -
      Math.min(longest, MAX_NAME - sep.length - MIN_SERVER_PART);
    const prefix = fitLabel(serverLabels[s]!, server, room) + sep;
    return tools.map((tool, t) =>
      unique(prefix + fitLabel(toolLabels[t]!, full(tool), MAX_NAME - prefix.length), full(tool))
    );
  });
}

/** Turns `*` / `?` glob patterns into one anchored regular expression. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split("")
    .map((c) => c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\/]/g, "\\$&"))
    .join("");
  return new RegExp(`^${body}$`);
}

// ---------------------------------------------------------------------------------------------
// Catalog

/** One tool as the model sees it, mapped back to its server. */
export interface CatalogEntry {
  /** The name sent to the model (sanitised, unique, at most 64 characters). */
  name: string;
  server: string;
  /** The tool's real name on its server. */
  tool: string;
  /** The tool's input schema as the server published it. */
  inputSchema: unknown;
  /** The OpenAI tool definition sent to the model. */
  openai: OpenAiTool;
}

/** Tools of one server, as listed by it. */
export interface ServerTools {
  server: string;
  tools: Tool[];
}

/** Options for {@linkcode ToolCatalog.build}. */
export interface CatalogOptions {
  /** `server__tool` names (several servers) instead of raw tool names (one server). */
  namespaced: boolean;
  /** Glob patterns over raw (`read_*`) or namespaced (`filesystem__read_*`) names; empty = all. */
  allowed?: readonly string[];
}

/** The tools offered to the model and how their names map back to servers. */
export class ToolCatalog {
  readonly entries: readonly CatalogEntry[];
  /** Tools that `allowed` filtered out, as `server__tool`. */
  readonly excluded: readonly string[];
  #byName: Map<string, CatalogEntry>;

  private constructor(entries: CatalogEntry[], excluded: string[]) {
    this.entries = entries;
    this.excluded = excluded;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** Builds the catalog: filters by `allowed`, names (see {@linkcode toolNames}), cleans schemas. */
  static build(servers: readonly ServerTools[], options: CatalogOptions): ToolCatalog {
    const patterns = (options.allowed ?? []).map(globToRegExp);
    const excluded: string[] = [];
    const kept = servers.map(({ server, tools }) => ({
      server,
      tools: tools.filter((tool) => {
        const full = `${server}${NAMESPACE_SEPARATOR}${tool.name}`;
        if (patterns.length === 0 || patterns.some((p) => p.test(tool.name) || p.test(full))) {
          return true;
        }
        excluded.push(full);
        return false;
      }),
    }));
    const names = toolNames(
      kept.map(({ server, tools }) => ({ server, tools: tools.map((t) => t.name) })),
      options.namespaced,
    );
    const entries: CatalogEntry[] = [];
    kept.forEach(({ server, tools }, s) => {
      tools.forEach((tool, t) => {
        const name = names[s]![t]!;
        const description = [tool.description ?? tool.title ?? tool.annotations?.title]
          .filter((d): d is string => typeof d === "string" && d.trim() !== "")
          .join("");
        entries.push({
          name,
          server,
          tool: tool.name,
          inputSchema: tool.inputSchema,
          openai: {
            type: "function",
            function: {
              name,
              ...(description ? { description } : {}),
              parameters: cleanToolSchema(tool.inputSchema),
            },
          },
        });
      });
    });
    return new ToolCatalog(entries, excluded);
  }

  /** The OpenAI tool definitions, in catalog order. */
  get openaiTools(): OpenAiTool[] {
    return this.entries.map((e) => e.openai);
  }

  /** The names the model may call. */
  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /**
   * Maps a name the model used back to a tool: the exact name first, then forgiving variants
   * (a raw tool name that is unique across servers, `server.tool` / `server/tool` / `server:tool`,
   * a name that differs only in case or sanitising).
   */
  resolve(name: string): CatalogEntry | undefined {
    const exact = this.#byName.get(name);
    if (exact) return exact;
    const trimmed = name.trim();
    const sanitized = sanitizeToolName(trimmed);
    const direct = this.#byName.get(sanitized);
    if (direct) return direct;
    const sep = /^(.+?)(?:\.|\/|:|__)(.+)$/.exec(trimmed);
    if (sep) {
      const [, server, tool] = sep;
      const hit = this.entries.find((e) => e.server === server && e.tool === tool);
      if (hit) return hit;
    }
    const raw = this.entries.filter((e) => e.tool === trimmed || e.tool === sanitized);
    if (raw.length === 1) return raw[0];
    const lower = sanitized.toLowerCase();
    const ci = this.entries.filter((e) => e.name.toLowerCase() === lower);
    return ci.length === 1 ? ci[0] : undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Arguments

/** The outcome of {@linkcode parseToolArguments}. */
export type ParsedArguments =
  | { ok: true; value: Record<string, unknown>; repaired: boolean }
  | { ok: false; error: string };

function tryParse(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error: unknown) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** Appends the closing brackets a truncated JSON text is missing (outside strings). */
function closeBrackets(text: string): string {
  const stack: string[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") stack.push("}");
    else if (c === "[") stack.push("]");
    else if (c === "}" || c === "]") stack.pop();
  }
  return (inString ? text + '"' : text) + stack.reverse().join("");
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
      const inner = tryParse(value);
      if (inner.ok && isRecord(inner.value)) {
        return { ok: true, value: inner.value, repaired: true };
      }
    }
    if (value === null) return { ok: true, value: {}, repaired };
    if (isRecord(value)) return { ok: true, value, repaired };
    return undefined;
  };
  const first = tryParse(text);
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
    const attempt = tryParse(candidate);
    if (attempt.ok) {
      const accepted = accept(attempt.value, true);
      if (accepted) return accepted;
    }
  }
  return { ok: false, error: `invalid JSON (${first.error})` };
}

/** Validates arguments against MCP input schemas (ajv, shipped with the SDK), caching compilations. */
export class ArgumentValidator {
  #ajv = new AjvJsonSchemaValidator();
  #cache = new WeakMap<object, ((input: unknown) => string | undefined) | null>();

  /**
   * Problems with `args` as a readable list, or [] when they match (or when the schema cannot be
   * compiled locally; the server then validates).
   */
  problems(schema: unknown, args: Record<string, unknown>): string[] {
    if (!isRecord(schema)) return [];
    let check = this.#cache.get(schema);
    if (check === undefined) {
      try {
        const validate = this.#ajv.getValidator(validationSchema(schema) as JsonSchemaType);
        check = (input) => {
          const result = validate(input);
          return result.valid ? undefined : result.errorMessage;
        };
      } catch {
        // Schemas with remote $refs or unknown dialects: leave validation to the server.
        check = null;
      }
      this.#cache.set(schema, check);
    }
    if (check === null) return [];
    const message = check(args);
    if (message === undefined) return [];
    return message
      .split(/, (?=data)/)
      .map((m) => m.replace(/^data(?=\/|\s)/, "arguments").replace(/^arguments\//, "arguments."))
      .map((m) => m.replace(/(?<=arguments\.[^ ]*)\//g, "."));
  }
}

/** A one-line summary of a schema's parameters: `path (string, required), depth (number)`. */
export function describeParameters(schema: unknown): string {
  if (!isRecord(schema) || !isRecord(schema.properties)) return "no parameters";
  const required = new Set(
    Array.isArray(schema.required) ? schema.required.filter((r) => typeof r === "string") : [],
  );
  const parts = Object.entries(schema.properties).map(([name, prop]) => {
    const type = isRecord(prop)
      ? Array.isArray(prop.type)
        ? prop.type.join("|")
        : typeof prop.type === "string"
        ? prop.type
        : Array.isArray(prop.enum)
        ? `one of ${prop.enum.map((v) => JSON.stringify(v)).join(", ")}`
        : "any"
      : "any";
    return `${name} (${type}${required.has(name) ? ", required" : ""})`;
  });
  return parts.length === 0 ? "no parameters" : parts.join(", ");
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

// ---------------------------------------------------------------------------------------------
// Tool calls printed as text

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

function callsFromJsonText(text: string): RawToolCall[] | undefined {
  const parsed = parseToolArguments(text.trim());
  const direct = tryParse(text.trim());
  const value: unknown = direct.ok ? direct.value : parsed.ok ? parsed.value : undefined;
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? value : [value];
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
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"' && depth > 0) inString = true;
    else if (c === "{") {
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
  const parsed = tryParse(text.trim());
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

/** Removes `<think>...</think>` blocks (and an unclosed trailing one); returns text and reasoning. */
export function stripThinking(text: string): { text: string; reasoning: string } {
  const reasoning: string[] = [];
  let rest = text.replace(/<think>([\s\S]*?)<\/think>/g, (_m, inner: string) => {
    reasoning.push(inner.trim());
    return "";
  });
  const open = rest.indexOf("<think>");
  if (open >= 0) {
    reasoning.push(rest.slice(open + "<think>".length).trim());
    rest = rest.slice(0, open);
  }
  // Some templates emit only the closing tag (the opening one is in the prompt).
  const close = rest.indexOf("</think>");
  if (close >= 0) {
    reasoning.push(rest.slice(0, close).trim());
    rest = rest.slice(close + "</think>".length);
  }
  return { text: rest.trim(), reasoning: reasoning.filter((r) => r !== "").join("\n\n") };
}

// ---------------------------------------------------------------------------------------------
// Results

/** Approximate size of base64 data in bytes. */
function base64Bytes(data: string): number {
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor(data.length * 3 / 4) - padding);
}

/** `1.2 KB` style sizes. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function describePart(part: Record<string, unknown>): string {
  const mime = typeof part.mimeType === "string" ? part.mimeType : "unknown type";
  switch (part.type) {
    case "text":
      return typeof part.text === "string" ? part.text : "";
    case "image":
    case "audio": {
      const size = typeof part.data === "string" ? formatBytes(base64Bytes(part.data)) : "?";
      return `[${part.type}: ${mime}, ${size}]`;
    }
    case "resource": {
      const res = isRecord(part.resource) ? part.resource : {};
      const uri = typeof res.uri === "string" ? res.uri : "(no uri)";
      const rmime = typeof res.mimeType === "string" ? `, ${res.mimeType}` : "";
      if (typeof res.text === "string") return `[resource ${uri}${rmime}]\n${res.text}`;
      const size = typeof res.blob === "string" ? `, ${formatBytes(base64Bytes(res.blob))}` : "";
      return `[resource ${uri}${rmime}${size} (binary, not shown)]`;
    }
    case "resource_link": {
      const bits = [part.name, part.uri].filter((b) => typeof b === "string").join(" ");
      const desc = typeof part.description === "string" ? `: ${part.description}` : "";
      const lmime = typeof part.mimeType === "string" ? ` (${part.mimeType})` : "";
      return `[resource link ${bits}${lmime}${desc}]`;
    }
    default:
      return `[${typeof part.type === "string" ? part.type : "unknown"} content]`;
  }
}

/**
 * An MCP tool result as text for the model: every content part (texts joined, images and audio
 * summarised by type and size, embedded resource text included), `structuredContent` as JSON when
 * there is no text, and a clear prefix when the tool reported an error.
 */
export function formatToolResult(result: CallToolResult): string {
  const content: unknown = result.content;
  const parts = (Array.isArray(content) ? content : []).filter(isRecord);
  const texts = parts.map(describePart).filter((t) => t !== "");
  const hasText = parts.some((p) =>
    p.type === "text" && typeof p.text === "string" && p.text.trim() !== ""
  );
  if (!hasText && isRecord(result.structuredContent)) {
    texts.push(JSON.stringify(result.structuredContent));
  }
  const body = texts.join("\n").trim();
  if (result.isError === true) {
    return `The tool reported an error:\n${body || "(no details given)"}`;
  }
  return body === "" ? "(the tool returned no content)" : body;
}

// ---------------------------------------------------------------------------------------------
// Sizes

/** Characters per token assumed by {@linkcode estimateTokens} (a common rule of thumb for English and code). */
export const CHARS_PER_TOKEN = 4;

/** A rough token count: characters / 4, rounded up. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/**
 * Cuts `text` to about `maxChars`, keeping the head (4/5) and the tail (1/5), with a marker that
 * says how much was cut and why.
 */
export function truncateText(text: string, maxChars: number): { text: string; cut: number } {
  if (text.length <= maxChars) return { text, cut: 0 };
  const room = Math.max(0, maxChars - 120);
  const head = Math.floor(room * 0.8);
  const tail = room - head;
  const cut = text.length - head - tail;
  const marker = `\n[... truncated: ${cut} of ${text.length} characters cut to fit the model's ` +
    `context window ...]\n`;
  return { text: text.slice(0, head) + marker + (tail > 0 ? text.slice(-tail) : ""), cut };
}
