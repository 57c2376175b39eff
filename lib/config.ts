/**
 * MCP client configuration: which `.mcp.json` is in force, what it says, and whether it changed.
 *
 * - Discovery is a generator of candidate paths ({@linkcode candidatePaths}) plus a reader
 *   ({@linkcode ConfigSource}); the first existing candidate wins.
 * - Parsing accepts JSON with comments and trailing commas (JSONC, as VS Code writes it), both the
 *   `mcpServers` (Claude Code/Desktop, Cursor, LM Studio) and the `servers` (VS Code) layouts, and
 *   reports syntax errors with line and column ({@linkcode parseConfigText}).
 * - Each entry is validated on its own: one bad entry gets a `problem` and the others still work.
 * - `${VAR}` / `${VAR:-default}` expand in command, args, env values, cwd, url and header values.
 * - Change detection is a `stat` per call (path, mtime, ctime, size, inode); the file is re-read
 *   only when that changes, and a broken edit keeps the last good configuration in force.
 */
import { z } from "zod";
import { log as defaultLog, type Logger } from "./log.ts";
import { basename, dirname, isAbsolute, join, resolve } from "./path.ts";

/** One server of the config file, resolved (variables expanded, cwd absolute). */
export interface ServerEntry {
  name: string;
  transport: "stdio" | "http" | "sse";
  /** stdio: the program to start, after `${VAR}` expansion. */
  command?: string;
  args: string[];
  /** stdio: exactly the variables the file gives (after expansion); the pool adds the SDK defaults. */
  env: Record<string, string>;
  /** stdio: absolute working directory (a relative `cwd` resolves against the config file's directory). */
  cwd?: string;
  /** http / sse: the endpoint, after expansion. */
  url?: string;
  headers: Record<string, string>;
  /** `"disabled": true` in the file. */
  disabled: boolean;
  /** Why this entry is unusable (unset `${VAR}`, invalid field...); undefined when usable. */
  problem?: string;
  /** env keys (never values), for display. */
  envNames: string[];
  /** Stable hash of the resolved entry; changes iff transport, command, args, env, cwd, url or headers change. */
  fingerprint: string;
}

/** The configuration in force. */
export interface McpConfig {
  /** The file the servers come from (undefined: none found). */
  path: string | undefined;
  /** Candidate paths, in search order. */
  searched: string[];
  /** Every entry in file order, including disabled and problematic ones. */
  servers: ServerEntry[];
  /**
   * The newest file failed to read, parse or validate (with line:column for syntax errors);
   * `servers` (and `path`) are then the last good configuration.
   */
  error?: string;
  /** The file that `error` is about (may differ from `path` when an older file is still in force). */
  errorPath?: string;
}

/** A configuration problem: bad file, unknown server, disabled or unusable entry. */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** The config file concerned, if any. */
  readonly path?: string;
  /** The server entry concerned, if any. */
  readonly server?: string;
  /** 1-based position of a syntax error. */
  readonly line?: number;
  readonly column?: number;
  constructor(
    message: string,
    options: { path?: string; server?: string; line?: number; column?: number; cause?: unknown } =
      {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.path = options.path;
    this.server = options.server;
    this.line = options.line;
    this.column = options.column;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

// ---------------------------------------------------------------------------------------------
// Discovery

/** Where a candidate path came from. */
export type CandidateSource =
  | "--config"
  | "MCP_JSON_PATH"
  | "project"
  | "lmstudio"
  | "home"
  | "parent";

/** A place a config file may be. Explicit candidates must exist; the others are skipped if absent. */
export interface Candidate {
  path: string;
  source: CandidateSource;
  explicit: boolean;
}

/** Inputs of {@linkcode candidatePaths}. */
export interface CandidateOptions {
  /** `--config FILE`; wins over `MCP_JSON_PATH`. */
  explicitPath?: string;
  env: Env;
  cwd: string;
  home?: string;
}

function expandTilde(path: string, home: string | undefined): string {
  if (home === undefined) return path;
  if (path === "~") return home;
  if (path.startsWith("~/") || path.startsWith("~\\")) return join(home, path.slice(2));
  return path;
}

/**
 * The config search order. `--config` or `$MCP_JSON_PATH` alone when given (they must exist);
 * otherwise `./.mcp.json`, `~/.lmstudio/mcp.json`, `~/.mcp.json`, `../.mcp.json` (duplicates
 * removed). The project file deliberately wins over LM Studio's own file.
 */
export function* candidatePaths(options: CandidateOptions): Generator<Candidate> {
  const { env, cwd, home } = options;
  const explicit = options.explicitPath?.trim();
  const fromEnv = env["MCP_JSON_PATH"]?.trim();
  if (explicit) {
    yield { path: resolve(cwd, expandTilde(explicit, home)), source: "--config", explicit: true };
    return;
  }
  if (fromEnv) {
    yield {
      path: resolve(cwd, expandTilde(fromEnv, home)),
      source: "MCP_JSON_PATH",
      explicit: true,
    };
    return;
  }
  const seen = new Set<string>();
  const all: Candidate[] = [{ path: join(cwd, ".mcp.json"), source: "project", explicit: false }];
  if (home !== undefined) {
    all.push({ path: join(home, ".lmstudio", "mcp.json"), source: "lmstudio", explicit: false });
    all.push({ path: join(home, ".mcp.json"), source: "home", explicit: false });
  }
  all.push({ path: join(dirname(cwd), ".mcp.json"), source: "parent", explicit: false });
  for (const candidate of all) {
    const path = resolve(candidate.path);
    if (seen.has(path)) continue;
    seen.add(path);
    yield { ...candidate, path };
  }
}

// ---------------------------------------------------------------------------------------------
// JSONC

/**
 * Blanks out `//` and `/* *\/` comments and trailing commas, keeping every other character at its
 * offset (so JSON.parse positions still point into the original text). Throws ConfigError on an
 * unterminated block comment.
 */
export function stripJsonc(text: string, path?: string): string {
  const out = text.split("");
  if (out[0] === "\uFEFF") out[0] = " ";
  let i = 0;
  let pendingComma = -1;
  const n = text.length;
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n" && out[k] !== "\r") out[k] = " ";
  };
  while (i < n) {
    const c = text[i]!;
    if (c === '"') {
      pendingComma = -1;
      i++;
      while (i < n && text[i] !== '"' && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
      i++;
      continue;
    }
    if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      const stop = end === -1 ? n : end;
      blank(i, stop);
      i = stop;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end === -1) {
        const { line, column } = lineColumn(text, i);
        throw new ConfigError(
          `${path ?? "config"}:${line}:${column}: invalid JSON: a /* comment is never closed. ` +
            "Close it with */ or remove it.",
          { path, line, column },
        );
      }
      blank(i, end + 2);
      i = end + 2;
      continue;
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if ((c === "}" || c === "]") && pendingComma >= 0) out[pendingComma] = " ";
    pendingComma = c === "," ? i : -1;
    i++;
  }
  return out.join("");
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const stop = Math.min(Math.max(offset, 0), text.length);
  for (let k = 0; k < stop; k++) {
    if (text[k] === "\n") {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: stop - lineStart + 1 };
}

/**
 * The position a JSON.parse SyntaxError message gives: V8 writes "... at position N (line L
 * column C)" or just "... at position N"; some messages have none ("Unexpected token '}', ... is
 * not valid JSON") and then this returns undefined.
 */
export function jsonErrorPosition(
  message: string,
  text: string,
): { line: number; column: number; offset?: number } | undefined {
  const lc = /line (\d+) column (\d+)/.exec(message);
  const pos = /at position (\d+)/.exec(message);
  if (lc) {
    return {
      line: Number(lc[1]),
      column: Number(lc[2]),
      offset: pos ? Number(pos[1]) : undefined,
    };
  }
  if (pos) {
    const offset = Number(pos[1]);
    return { ...lineColumn(text, offset), offset };
  }
  if (/unexpected end of json input/i.test(message)) {
    return { ...lineColumn(text, text.trimEnd().length), offset: text.trimEnd().length };
  }
  return undefined;
}

class JsonLocate {
  constructor(readonly offset: number, readonly expected: string) {}
}

/**
 * Finds the first syntax error of (comment-stripped) JSON text with a small recursive-descent
 * scanner; used when the engine's message carries no position. Undefined when the text is valid.
 */
export function locateJsonError(text: string): { offset: number; expected: string } | undefined {
  let i = 0;
  const n = text.length;
  const fail = (expected: string): never => {
    throw new JsonLocate(i, expected);
  };
  const ws = () => {
    while (i < n && " \t\n\r".includes(text[i]!)) i++;
  };
  const str = () => {
    i++;
    while (i < n) {
      const c = text[i]!;
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail("four hex digits after \\u");
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          fail('a valid escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
        }
        i += 2;
        continue;
      }
      if (c.charCodeAt(0) < 0x20) fail("no raw control characters or line breaks inside a string");
      i++;
    }
    fail('a closing " for the string');
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") return obj();
    if (c === "[") return arr();
    if (c === '"') return str();
    for (const lit of ["true", "false", "null"]) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return;
      }
    }
    const num = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    num.lastIndex = i;
    if ((c === "-" || (c !== undefined && c >= "0" && c <= "9")) && num.exec(text)) {
      i = num.lastIndex;
      return;
    }
    fail("a value (string, number, object, array, true, false or null)");
  };
  const obj = () => {
    i++;
    ws();
    if (text[i] === "}") {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail("a property name in double quotes");
      str();
      ws();
      if (text[i] !== ":") fail("':' after the property name");
      i++;
      value();
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return;
      }
      fail("',' or '}' after the property value");
    }
  };
  const arr = () => {
    i++;
    ws();
    if (text[i] === "]") {
      i++;
      return;
    }
    for (;;) {
      value();
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return;
      }
      fail("',' or ']' after the array element");
    }
  };
  try {
    value();
    ws();
    if (i < n) fail("the end of the file (there is more text after the JSON value)");
    return undefined;
  } catch (error) {
    if (error instanceof JsonLocate) return { offset: error.offset, expected: error.expected };
    // Nesting deeper than the stack: give up on locating; the engine's message is used instead.
    if (error instanceof RangeError) return undefined;
    throw error;
  }
}

function describeAt(text: string, offset: number): string {
  if (offset >= text.length) return "the end of the file";
  const c = text[offset]!;
  if (c === "\n" || c === "\r") return "a line break";
  return JSON.stringify(text.slice(offset, offset + 12).split(/[\r\n]/)[0]);
}

function parseJsonText(text: string, path: string): unknown {
  const stripped = stripJsonc(text, path);
  try {
    return JSON.parse(stripped);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const located = locateJsonError(stripped);
    const engine = jsonErrorPosition(error.message, stripped);
    let line: number;
    let column: number;
    let detail: string;
    if (located) {
      ({ line, column } = lineColumn(stripped, located.offset));
      detail = `expected ${located.expected}, found ${describeAt(stripped, located.offset)}`;
    } else if (engine) {
      ({ line, column } = engine);
      detail = error.message.replace(/ in JSON at position \d+.*$/, "");
    } else {
      line = 1;
      column = 1;
      detail = error.message;
    }
    throw new ConfigError(
      `${path}:${line}:${column}: invalid JSON: ${detail}. Fix the file; it is re-read on the next use.`,
      { path, line, column, cause: error },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Entries

const StringMap = z.record(z.string(), z.string());

const RawEntrySchema = z.object({
  type: z.string().nullish(),
  transportType: z.string().nullish(),
  command: z.string().nullish(),
  args: z.array(z.string()).nullish(),
  env: StringMap.nullish(),
  cwd: z.string().nullish(),
  url: z.string().nullish(),
  headers: StringMap.nullish(),
  disabled: z.boolean().nullish(),
});

const FileSchema = z.object({
  mcpServers: z.unknown().optional(),
  servers: z.unknown().optional(),
});

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return "a number";
  if (typeof value === "boolean") return "a boolean";
  return typeof value;
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

const EXPECTED: Record<string, string> = {
  args: "a list of strings",
  env: 'an object of string values, e.g. {"KEY": "value"}',
  headers: 'an object of string values, e.g. {"Authorization": "Bearer ${TOKEN}"}',
  disabled: "true or false",
};

function issueMessage(raw: unknown, issue: z.core.$ZodIssue): string {
  const where = fieldPath(issue.path);
  const actual = valueAt(raw, issue.path);
  if (issue.code === "invalid_type") {
    const top = String(issue.path[0] ?? "");
    if (issue.path.length === 1) {
      return `"${where}" must be ${EXPECTED[top] ?? issue.expected}, not ${typeName(actual)}`;
    }
    const hint = (top === "env" || top === "headers") && typeof actual === "number"
      ? ` (write it in quotes: "${String(actual)}")`
      : "";
    return `"${where}" must be a string, not ${typeName(actual)}${hint}`;
  }
  return `"${where}": ${issue.message}`;
}

/** Variables with a meaning in VS Code configs, used when the environment does not set them. */
function builtinVariables(configPath: string, home: string | undefined): Record<string, string> {
  const dir = dirname(configPath);
  const workspace = basename(dir) === ".vscode" ? dirname(dir) : dir;
  const vars: Record<string, string> = { workspaceFolder: workspace };
  if (home !== undefined) vars["userHome"] = home;
  return vars;
}

interface ExpandContext {
  env: Env;
  builtins: Record<string, string>;
  unset: Map<string, string[]>;
  inputs: Set<string>;
}

const VARIABLE = /\$\{([^}]*)\}/g;
const NAME_WITH_DEFAULT = /^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

/** Expands `${VAR}`, `${VAR:-default}` and VS Code's `${env:VAR}` in one value. */
function expand(value: string, where: string, ctx: ExpandContext): string {
  return value.replace(VARIABLE, (whole, inner: string) => {
    if (inner.startsWith("input:")) {
      ctx.inputs.add(inner.slice("input:".length));
      return whole;
    }
    const m = NAME_WITH_DEFAULT.exec(inner);
    if (!m) return whole;
    const name = m[1]!;
    const fallback = m[2];
    const set = ctx.env[name] ?? ctx.builtins[name];
    if (fallback !== undefined) return set === undefined || set === "" ? fallback : set;
    if (set !== undefined) return set;
    const places = ctx.unset.get(name) ?? [];
    places.push(where);
    ctx.unset.set(name, places);
    return whole;
  });
}

function expandMap(
  map: Record<string, string>,
  field: string,
  ctx: ExpandContext,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) out[key] = expand(value, `${field}.${key}`, ctx);
  return out;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;
const encoder = new TextEncoder();

/** FNV-1a 64-bit of a string, as 16 hex digits. */
function fnv1a64(text: string): string {
  let hash = FNV_OFFSET;
  for (const byte of encoder.encode(text)) hash = ((hash ^ BigInt(byte)) * FNV_PRIME) & MASK64;
  return hash.toString(16).padStart(16, "0");
}

function sortedEntries(map: Record<string, string>): [string, string][] {
  return Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The fingerprint of a resolved entry: what a connection depends on, and nothing else. */
export function fingerprintOf(
  entry: Pick<ServerEntry, "transport" | "command" | "args" | "env" | "cwd" | "url" | "headers">,
): string {
  return fnv1a64(JSON.stringify([
    entry.transport,
    entry.command ?? null,
    entry.args,
    sortedEntries(entry.env),
    entry.cwd ?? null,
    entry.url ?? null,
    sortedEntries(entry.headers),
  ]));
}

const HTTP_TYPES = new Set(["http", "streamable-http", "streamablehttp", "streamable_http"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function stringMapOf(value: unknown): Record<string, string> {
  if (!isRecord(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

/** The fields of one entry, with `null` read as absent. */
interface EntryFields {
  type?: string;
  transportType?: string;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  url?: string;
  headers?: Record<string, string>;
  disabled?: boolean;
}

function withoutNulls(data: z.infer<typeof RawEntrySchema>): EntryFields {
  const out: EntryFields = {};
  for (const [key, value] of Object.entries(data)) {
    if (value !== null && value !== undefined) Object.assign(out, { [key]: value });
  }
  return out;
}

/** Inputs of {@linkcode resolveEntry}. */
export interface ResolveEntryOptions {
  /** Absolute path of the config file (relative `cwd` resolves against its directory). */
  path: string;
  /** Variables for `${VAR}` expansion. */
  env: Env;
  home?: string;
}

/** Validates and resolves one raw entry. Never throws: what is wrong goes into `problem`. */
export function resolveEntry(
  name: string,
  raw: unknown,
  options: ResolveEntryOptions,
): ServerEntry {
  const problems: string[] = [];
  const ctx: ExpandContext = {
    env: options.env,
    builtins: builtinVariables(options.path, options.home),
    unset: new Map(),
    inputs: new Set(),
  };
  if (name.trim() === "") problems.push("the server name is empty");

  let fields: EntryFields;
  if (!isRecord(raw)) {
    problems.push(
      `the entry must be an object like {"command": "npx", "args": [...]} or {"url": "..."}, not ${
        typeName(raw)
      }`,
    );
    fields = {};
  } else {
    const parsed = RawEntrySchema.safeParse(raw);
    if (parsed.success) {
      fields = withoutNulls(parsed.data);
    } else {
      for (const issue of parsed.error.issues) problems.push(issueMessage(raw, issue));
      // Keep what is readable so the entry can still be shown.
      fields = {
        type: typeof raw["type"] === "string" ? raw["type"] : undefined,
        transportType: typeof raw["transportType"] === "string" ? raw["transportType"] : undefined,
        command: typeof raw["command"] === "string" ? raw["command"] : undefined,
        args: stringsOf(raw["args"]),
        env: stringMapOf(raw["env"]),
        cwd: typeof raw["cwd"] === "string" ? raw["cwd"] : undefined,
        url: typeof raw["url"] === "string" ? raw["url"] : undefined,
        headers: stringMapOf(raw["headers"]),
        disabled: raw["disabled"] === true,
      };
    }
  }

  const declared = fields.type ?? fields.transportType ?? undefined;
  let transport: ServerEntry["transport"];
  if (declared === undefined) {
    transport = fields.command === undefined && fields.url !== undefined ? "http" : "stdio";
  } else {
    const t = declared.trim().toLowerCase();
    if (t === "stdio") transport = "stdio";
    else if (t === "sse") transport = "sse";
    else if (HTTP_TYPES.has(t)) transport = "http";
    else {
      problems.push(`unknown "type": ${JSON.stringify(declared)} (use "stdio", "http" or "sse")`);
      transport = fields.command === undefined && fields.url !== undefined ? "http" : "stdio";
    }
  }

  const rawEnv = fields.env ?? {};
  const rawHeaders = fields.headers ?? {};
  let command: string | undefined;
  let args: string[] = [];
  let env: Record<string, string> = {};
  let cwd: string | undefined;
  let url: string | undefined;
  let headers: Record<string, string> = {};

  if (transport === "stdio") {
    if (fields.command === undefined) {
      if (fields.url === undefined) {
        problems.push(
          'it has neither "command" (a local server, e.g. "npx") nor "url" (a remote server)',
        );
      } else {
        problems.push(
          `it has "type": ${
            JSON.stringify(declared)
          } but no "command"; for a remote server use "type": "http" or "sse" with its "url"`,
        );
      }
    } else if (fields.command.trim() === "") {
      problems.push('"command" is empty');
    } else {
      command = expand(fields.command, "command", ctx);
    }
    args = (fields.args ?? []).map((a, i) => expand(a, `args[${i}]`, ctx));
    env = expandMap(rawEnv, "env", ctx);
    if (fields.cwd !== undefined && fields.cwd.trim() !== "") {
      const dir = expandTilde(expand(fields.cwd, "cwd", ctx), options.home);
      cwd = isAbsolute(dir) ? dir : resolve(dirname(options.path), dir);
    }
  } else {
    if (fields.url === undefined || fields.url.trim() === "") {
      problems.push(`it has "type": "${transport}" but no "url"`);
    } else {
      const unsetBefore = ctx.unset.size;
      url = expand(fields.url.trim(), "url", ctx);
      if (ctx.unset.size === unsetBefore && ctx.inputs.size === 0) {
        let parsedUrl: URL | undefined;
        try {
          parsedUrl = new URL(url);
        } catch {
          problems.push(`"url" ${JSON.stringify(url)} is not a valid URL`);
        }
        if (
          parsedUrl !== undefined && parsedUrl.protocol !== "http:" &&
          parsedUrl.protocol !== "https:"
        ) {
          problems.push(`"url" ${JSON.stringify(url)} must start with http:// or https://`);
        }
      }
    }
    headers = expandMap(rawHeaders, "headers", ctx);
  }

  for (const [variable, places] of ctx.unset) {
    problems.push(
      `environment variable ${variable} is not set (used in ${places.join(", ")}); set it before ` +
        `starting the bridge, or give a default with \${${variable}:-value}`,
    );
  }
  for (const input of ctx.inputs) {
    problems.push(
      `\${input:${input}} is a VS Code prompt the bridge cannot answer; put the value or an ` +
        `environment variable (\${NAME}) there instead`,
    );
  }

  const resolved = { transport, command, args, env, cwd, url, headers };
  const entry: ServerEntry = {
    name,
    ...resolved,
    disabled: fields.disabled === true,
    envNames: Object.keys(rawEnv),
    fingerprint: fingerprintOf(resolved),
  };
  if (problems.length > 0) entry.problem = `MCP server "${name}": ${problems.join("; ")}.`;
  return entry;
}

/**
 * Parses a config file's text into its entries. Throws {@linkcode ConfigError} for file-level
 * problems (syntax error with line:column, no `mcpServers`/`servers` object); entry-level problems
 * land in each entry's `problem`.
 */
export function parseConfigText(
  text: string,
  options: { path: string; env: Env; home?: string },
): ServerEntry[] {
  const { path } = options;
  const data = parseJsonText(text, path);
  const layout = 'Expected {"mcpServers": {"name": {...}}} (Claude Code, Claude Desktop, Cursor, ' +
    'LM Studio) or {"servers": {...}} (VS Code).';
  if (!isRecord(data)) {
    throw new ConfigError(`${path}: the file holds ${typeName(data)}, not an object. ${layout}`, {
      path,
    });
  }
  const top = FileSchema.parse(data);
  const key = top.mcpServers !== undefined ? "mcpServers" : "servers";
  const servers = top.mcpServers ?? top.servers;
  if (servers === undefined) {
    throw new ConfigError(
      `${path}: no "mcpServers" or "servers" object (top-level keys: ${
        Object.keys(data).join(", ") || "none"
      }). ${layout}`,
      { path },
    );
  }
  if (!isRecord(servers)) {
    throw new ConfigError(
      `${path}: "${key}" must be an object mapping server names to entries, not ${
        typeName(servers)
      }. ${layout}`,
      { path },
    );
  }
  return Object.entries(servers).map(([name, raw]) =>
    resolveEntry(name, raw, { path, env: options.env, home: options.home })
  );
}

// ---------------------------------------------------------------------------------------------
// Recursion guard

function bridgeMainPath(): string | undefined {
  try {
    const url = new URL("../main.ts", import.meta.url);
    if (url.protocol !== "file:") return undefined;
    const path = decodeURIComponent(url.pathname);
    return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path;
  } catch {
    return undefined;
  }
}

const BRIDGE_NAME = /lmstudio[-_]bridge/i;

/**
 * True when a stdio entry launches lmstudio-bridge itself, so discover-all does not recurse into
 * it: the command's or any argument's text mentions `lmstudio-bridge` (or `lmstudio_bridge`), or
 * an argument (resolved against the entry's cwd) is this bridge's own `main.ts`.
 */
export function isBridgeEntry(
  entry: Pick<ServerEntry, "transport" | "command" | "args" | "cwd">,
  options: { mainPath?: string } = {},
): boolean {
  if (entry.transport !== "stdio") return false;
  if (entry.command !== undefined && BRIDGE_NAME.test(entry.command)) return true;
  if (entry.args.some((a) => BRIDGE_NAME.test(a))) return true;
  const main = options.mainPath ?? bridgeMainPath();
  if (main === undefined) return false;
  const target = resolve(main);
  return entry.args.some((a) => {
    if (!a.endsWith("main.ts")) return false;
    const candidate = a.startsWith("file://") ? decodeURIComponent(new URL(a).pathname) : a;
    return resolve(entry.cwd ?? ".", candidate) === target;
  });
}

/** The command line (stdio) or URL (http/sse) of an entry, for display. */
export function entryTarget(entry: ServerEntry): string {
  if (entry.transport !== "stdio") return entry.url ?? "(no url)";
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : JSON.stringify(s));
  return [entry.command ?? "(no command)", ...entry.args].map(quote).join(" ");
}

// ---------------------------------------------------------------------------------------------
// The reader with change detection

/** File access used by {@linkcode ConfigSource}; tests wrap the real one to count reads. */
export interface ConfigFs {
  stat(path: string): Promise<Deno.FileInfo>;
  readTextFile(path: string): Promise<string>;
}

const realFs: ConfigFs = {
  stat: (path) => Deno.stat(path),
  readTextFile: (path) => Deno.readTextFile(path),
};

/** Options of {@linkcode ConfigSource}; all have production defaults. */
export interface ConfigSourceOptions {
  /** `--config FILE`: the only candidate, and it must exist. */
  explicitPath?: string;
  /** Variables for `MCP_JSON_PATH`, `HOME` and `${VAR}` expansion. Default: the process env. */
  env?: Record<string, string | undefined>;
  /** Default: Deno.cwd(). */
  cwd?: string;
  /** Default: env HOME / USERPROFILE. */
  home?: string;
  log?: Logger;
  fs?: ConfigFs;
  /** Clock for the "modified too recently to trust the timestamp" check. */
  now?: () => number;
}

/**
 * A file modified less than this long before it was read may be changed again without its
 * timestamp changing (coarse filesystem clocks, up to 2 s on FAT); such a file is re-read
 * (and compared) until it is older than this.
 */
const RACY_MS = 2_000;

interface Snapshot {
  signature: string;
  /** Text last read (undefined when nothing was read). */
  text?: string;
  racy: boolean;
  config: McpConfig;
}

type Found =
  | { candidate: Candidate; info: Deno.FileInfo }
  | { candidate: Candidate; error: unknown };

function processEnv(): Record<string, string | undefined> {
  try {
    return Deno.env.toObject();
  } catch {
    // Without env permission there is nothing to expand from; unset variables are reported per entry.
    return {};
  }
}

function processCwd(): string {
  try {
    return Deno.cwd();
  } catch {
    return ".";
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

function signatureOf(found: Found | undefined): string {
  if (found === undefined) return "none";
  if ("error" in found) {
    const e = found.error;
    return `${found.candidate.path}\0error\0${e instanceof Error ? e.name : "?"}`;
  }
  const i = found.info;
  return [
    found.candidate.path,
    i.isFile ? "file" : "other",
    i.mtime?.getTime() ?? "?",
    i.ctime?.getTime() ?? "?",
    i.size,
    i.ino ?? "?",
    i.dev,
  ].join("\0");
}

const SOURCE_LABEL: Record<CandidateSource, string> = {
  "--config": "given with --config",
  "MCP_JSON_PATH": "given by MCP_JSON_PATH",
  project: "project",
  lmstudio: "LM Studio",
  home: "home",
  parent: "parent directory",
};

/**
 * The MCP configuration, kept current: every {@linkcode current} call stats the candidates (cheap)
 * and re-reads only when the winning file or its stat changed. Concurrent calls share one check.
 */
export class ConfigSource {
  readonly #explicitPath?: string;
  readonly #env: Env;
  readonly #cwd: string;
  readonly #home?: string;
  readonly #log: Logger;
  readonly #fs: ConfigFs;
  readonly #now: () => number;
  #snapshot?: Snapshot;
  #lastGood?: { path: string | undefined; servers: ServerEntry[] };
  #pending?: Promise<McpConfig>;

  constructor(options: ConfigSourceOptions = {}) {
    this.#explicitPath = options.explicitPath;
    this.#env = options.env ?? processEnv();
    this.#cwd = resolve(options.cwd ?? processCwd());
    this.#home = options.home ?? this.#env["HOME"] ?? this.#env["USERPROFILE"];
    this.#log = options.log ?? defaultLog.child("config");
    this.#fs = options.fs ?? realFs;
    this.#now = options.now ?? Date.now;
  }

  /** The candidate paths in search order. */
  candidates(): Candidate[] {
    return [
      ...candidatePaths({
        explicitPath: this.#explicitPath,
        env: this.#env,
        cwd: this.#cwd,
        home: this.#home,
      }),
    ];
  }

  /** Cheap when unchanged (stat only: mtime, ctime, size, inode, and which candidate wins); re-reads on change. Never throws. */
  current(): Promise<McpConfig> {
    if (this.#pending) return this.#pending;
    this.#pending = this.#refresh().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** A usable entry, or ConfigError naming the valid servers / saying it is disabled / giving its problem. */
  async get(name: string): Promise<ServerEntry> {
    const config = await this.current();
    const entry = config.servers.find((s) => s.name === name);
    const where = config.path ?? "the MCP config";
    const fileError = config.error ? ` (Also: ${config.error})` : "";
    if (entry === undefined) {
      if (config.path === undefined && config.servers.length === 0) {
        throw new ConfigError(
          config.error ??
            `No MCP server "${name}": no MCP config file found (searched ${
                config.searched.join(", ")
              }). Create .mcp.json with {"mcpServers": {"${name}": {"command": "...", "args": []}}}, ` +
              "or point MCP_JSON_PATH / --config at your file.",
          { server: name, path: config.errorPath },
        );
      }
      const usable = config.servers.filter((s) => !s.disabled && s.problem === undefined);
      const others = config.servers.filter((s) => s.disabled || s.problem !== undefined);
      const near = config.servers.find((s) => s.name.toLowerCase() === name.toLowerCase());
      const hint = near ? ` Did you mean "${near.name}"?` : "";
      const list = usable.length > 0
        ? `Available servers: ${usable.map((s) => s.name).join(", ")}`
        : "No usable servers are configured";
      const unusable = others.length > 0
        ? ` (unusable: ${
          others.map((s) => `${s.name} ${s.disabled ? "disabled" : "has a problem"}`).join(", ")
        })`
        : "";
      throw new ConfigError(
        `No MCP server named "${name}" in ${where}.${hint} ${list}${unusable}.${fileError}`,
        { server: name, path: config.path },
      );
    }
    if (entry.disabled) {
      throw new ConfigError(
        `MCP server "${name}" is disabled in ${where} ("disabled": true). Remove that line or set ` +
          "it to false to use it.",
        { server: name, path: config.path },
      );
    }
    if (entry.problem !== undefined) {
      throw new ConfigError(`${entry.problem} Fix it in ${where}.`, {
        server: name,
        path: config.path,
      });
    }
    return entry;
  }

  async #find(candidates: Candidate[]): Promise<Found | undefined> {
    for (const candidate of candidates) {
      try {
        const info = await this.#fs.stat(candidate.path);
        return { candidate, info };
      } catch (error) {
        if (isNotFound(error) && !candidate.explicit) continue;
        return { candidate, error };
      }
    }
    return undefined;
  }

  async #refresh(): Promise<McpConfig> {
    const candidates = this.candidates();
    const searched = candidates.map((c) => c.path);
    for (let attempt = 0;; attempt++) {
      const found = await this.#find(candidates);
      const signature = signatureOf(found);
      const previous = this.#snapshot;
      if (previous && previous.signature === signature && !previous.racy) return previous.config;

      if (found === undefined) {
        return this.#settle({
          signature,
          racy: false,
          config: this.#good(searched, undefined, []),
        });
      }
      const { candidate } = found;
      if ("error" in found) {
        return this.#settle({
          signature,
          racy: false,
          config: this.#failed(searched, candidate.path, this.#statMessage(candidate, found.error)),
        });
      }
      if (!found.info.isFile) {
        return this.#settle({
          signature,
          racy: false,
          config: this.#failed(
            searched,
            candidate.path,
            `MCP config ${candidate.path} (${
              SOURCE_LABEL[candidate.source]
            }) is not a file. Point it at a JSON file.`,
          ),
        });
      }
      const mtime = found.info.mtime?.getTime();
      const racy = mtime === undefined || this.#now() - mtime < RACY_MS;
      let text: string;
      try {
        text = await this.#fs.readTextFile(candidate.path);
      } catch (error) {
        // Deleted or replaced between stat and read: look again (a rename-replace is atomic, so
        // the second look finds the new file).
        if (isNotFound(error) && attempt < 3) continue;
        return this.#settle({
          signature,
          racy: false,
          config: this.#failed(
            searched,
            candidate.path,
            `Cannot read MCP config ${candidate.path}: ${errorText(error)}.`,
          ),
        });
      }
      if (previous && previous.signature === signature && previous.text === text) {
        // Same stat and same bytes: nothing changed; keep the same config object.
        previous.racy = racy;
        return previous.config;
      }
      let config: McpConfig;
      try {
        const servers = parseConfigText(text, {
          path: candidate.path,
          env: this.#env,
          home: this.#home,
        });
        config = this.#good(searched, candidate.path, servers);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        config = this.#failed(searched, candidate.path, error.message);
      }
      return this.#settle({ signature, text, racy, config });
    }
  }

  #statMessage(candidate: Candidate, error: unknown): string {
    if (isNotFound(error)) {
      return `MCP config file ${candidate.path} (${
        SOURCE_LABEL[candidate.source]
      }) does not exist. Check the path, or leave it unset to search ./.mcp.json, ` +
        "~/.lmstudio/mcp.json, ~/.mcp.json and ../.mcp.json.";
    }
    return `Cannot read MCP config ${candidate.path} (${SOURCE_LABEL[candidate.source]}): ${
      errorText(error)
    }. Check its permissions (the bridge needs read access).`;
  }

  #good(searched: string[], path: string | undefined, servers: ServerEntry[]): McpConfig {
    this.#lastGood = { path, servers };
    return { path, searched, servers };
  }

  #failed(searched: string[], errorPath: string, message: string): McpConfig {
    const good = this.#lastGood;
    if (good !== undefined && good.path !== undefined) {
      const n = good.servers.length;
      return {
        path: good.path,
        searched,
        servers: good.servers,
        error: `${message} Still using the last good configuration from ${good.path} ` +
          `(${n} server${n === 1 ? "" : "s"}).`,
        errorPath,
      };
    }
    return {
      path: errorPath,
      searched,
      servers: [],
      error: `${message} No MCP servers are available until it is fixed.`,
      errorPath,
    };
  }

  #settle(snapshot: Snapshot): McpConfig {
    this.#snapshot = snapshot;
    const { config } = snapshot;
    if (config.error) {
      this.#log.warn(config.error);
    } else if (config.path === undefined) {
      this.#log.debug("no MCP config file found", { searched: config.searched.join(", ") });
    } else {
      this.#log.debug("MCP config loaded", { path: config.path, servers: config.servers.length });
      for (const entry of config.servers) {
        if (entry.problem !== undefined && !entry.disabled) this.#log.warn(entry.problem);
      }
    }
    return config;
  }
}
