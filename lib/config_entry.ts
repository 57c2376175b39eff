/**
 * An entry of the MCP config, from what the file says to what the rest of the bridge uses
 * ({@linkcode ServerEntry}):
 *
 * - parse and validate ({@linkcode resolveEntry}): the fields are checked with zod, the transport
 *   is worked out (`type`, Cline's `transportType`, or command vs url) and a relative `cwd` is made
 *   absolute. Nothing here throws: whatever is wrong becomes the entry's `problem`, so one bad
 *   entry never hides the others;
 * - expand `${VAR}`, `${VAR:-default}` and VS Code's `${env:VAR}`, with VS Code's
 *   `${workspaceFolder}` and `${userHome}` as fallbacks when the environment does not set them.
 *   Unset variables and `${input:...}` prompts become the entry's problem;
 * - identify: its fingerprint ({@linkcode fingerprintOf}), its command line or URL for display
 *   ({@linkcode entryTarget}), and whether it would start this bridge again
 *   ({@linkcode isBridgeEntry}).
 */
import { z } from "zod";
import { isRecord } from "./json.ts";
import { basename, dirname, expandTilde, isAbsolute, join, resolve } from "./path.ts";
import { redactArgs, REDACTED, redactText, redactUrl } from "./redact.ts";

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
  /**
   * `"timeout"` in the file (milliseconds, as Claude Code and LM Studio write it): bounds this
   * server's start-up and each of its requests (a call's bound restarts with each progress
   * notification). Unset: the bridge's MCP_CONNECT_TIMEOUT_MS and MCP_CALL_TIMEOUT_MS.
   */
  timeoutMs?: number;
  /** What the bridge makes of a field otherwise than as written (a `timeout` it ignores). */
  notes?: string[];
  /** Why this entry is unusable (unset `${VAR}`, invalid field...); undefined when usable. */
  problem?: string;
  /**
   * Set (by ConfigSource) when the entry appeared or changed while a local model was working:
   * why it is held and what to do. A held entry is not started.
   */
  held?: string;
  /** env keys (never values), for display. */
  envNames: string[];
  /**
   * command, args and url as the file writes them (before `${VAR}` expansion), for display:
   * {@linkcode entryTarget} shows them with credentials hidden.
   */
  written: { command?: string; args: string[]; url?: string };
  /**
   * Values that must never be shown in a message about this entry, longest first, each with what
   * to show instead: what `${VAR}` references expanded to (shown as `${VAR}`), credentials
   * written in its args, its header values and the values of env variables named like
   * credentials. See {@linkcode redactEntryText}.
   */
  secrets: Secret[];
  /** Stable hash of the resolved entry; changes iff transport, command, args, env, cwd, url or headers change. */
  fingerprint: string;
}

/** A value never to show, and what to show instead. */
export interface Secret {
  value: string;
  shown: string;
}

// -- ${VAR} expansion -----------------------------------------------------------------------------

/** Environment variables as read (an unset variable is absent or undefined). */
export type Env = Readonly<Record<string, string | undefined>>;

/** Variables with a meaning in VS Code configs, used when the environment does not set them. */
function builtinVariables(configPath: string, home: string | undefined): Record<string, string> {
  const dir = dirname(configPath);
  const workspace = basename(dir) === ".vscode" ? dirname(dir) : dir;
  const vars: Record<string, string> = { workspaceFolder: workspace };
  if (home !== undefined) vars["userHome"] = home;
  return vars;
}

/** What expansion of one entry reads, and what it found missing. */
interface ExpandContext {
  /** The environment; it wins over the builtins. */
  env: Env;
  /** VS Code's `workspaceFolder` and `userHome`. */
  builtins: Record<string, string>;
  /** Unset variable -> the fields that use it. */
  unset: Map<string, string[]>;
  /** Names of `${input:...}` prompts met. */
  inputs: Set<string>;
  /** What each reference to the environment expanded to, and the reference as written. */
  substitutions: Secret[];
}

/** A fresh context for expanding the entries of the config file at `configPath`. */
function expandContext(
  options: { configPath: string; env: Env; home?: string },
): ExpandContext {
  return {
    env: options.env,
    builtins: builtinVariables(options.configPath, options.home),
    unset: new Map(),
    inputs: new Set(),
    substitutions: [],
  };
}

const VARIABLE = /\$\{([^}]*)\}/g;
const NAME_WITH_DEFAULT = /^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

/**
 * Expands `${VAR}`, `${VAR:-default}` and VS Code's `${env:VAR}` in one value; `where` names the
 * field for the problem message. An unset variable or an `${input:...}` is left as written and
 * recorded in `ctx`.
 */
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
    const fromEnv = ctx.env[name];
    const set = fromEnv ?? ctx.builtins[name];
    const substitute = (value: string) => {
      // What came from the environment is shown as the reference, never as its value.
      if (fromEnv !== undefined || fallback !== undefined) {
        ctx.substitutions.push({ value, shown: `\${${name}}` });
      }
      return value;
    };
    if (fallback !== undefined) return substitute(set === undefined || set === "" ? fallback : set);
    if (set !== undefined) return substitute(set);
    const places = ctx.unset.get(name) ?? [];
    places.push(where);
    ctx.unset.set(name, places);
    return whole;
  });
}

/** {@linkcode expand} on every value of a map (`env`, `headers`); keys stay as written. */
function expandMap(
  map: Record<string, string>,
  field: string,
  ctx: ExpandContext,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) out[key] = expand(value, `${field}.${key}`, ctx);
  return out;
}

/** One problem per unset variable and per `${input:...}` prompt met, saying what to do. */
function expansionProblems(ctx: ExpandContext): string[] {
  const problems: string[] = [];
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
  return problems;
}

// -- parse and validate ---------------------------------------------------------------------------

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
  timeout: z.number().nullish(),
});

/** Bounds of an entry's `timeout`: a second (less starts no server) to a day. */
export const ENTRY_TIMEOUT_MS = { min: 1000, max: 86_400_000 } as const;

/** How a value reads in a message: "a list", "an object", "a string", "null"... */
export function typeName(value: unknown): string {
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
  timeout: "a number of milliseconds, e.g. 60000",
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

const HTTP_TYPES = new Set(["http", "streamable-http", "streamablehttp", "streamable_http"]);

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
  timeout?: number;
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
  const ctx = expandContext({ configPath: options.path, env: options.env, home: options.home });
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
        timeout: typeof raw["timeout"] === "number" ? raw["timeout"] : undefined,
      };
    }
  }

  const declared = fields.type ?? fields.transportType;
  // Without a (known) type: a url alone means a remote server.
  let transport: ServerEntry["transport"] = fields.command === undefined && fields.url !== undefined
    ? "http"
    : "stdio";
  if (declared !== undefined) {
    const t = declared.trim().toLowerCase();
    if (t === "stdio") transport = "stdio";
    else if (t === "sse") transport = "sse";
    else if (HTTP_TYPES.has(t)) transport = "http";
    else {
      problems.push(`unknown "type": ${JSON.stringify(declared)} (use "stdio", "http" or "sse")`);
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
    // A "command" of the wrong type was already reported (`"command" must be string`).
    const badCommand = isRecord(raw) && raw["command"] !== undefined && raw["command"] !== null;
    if (fields.command === undefined) {
      if (badCommand) {
        // Nothing to add: saying it has no "command" would contradict that message.
      } else if (fields.url === undefined) {
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
        // Shown as written, credentials hidden (the expanded value may hold a secret).
        const shown = JSON.stringify(redactUrl(fields.url.trim()));
        try {
          parsedUrl = new URL(url);
        } catch {
          problems.push(`"url" ${shown} is not a valid URL`);
        }
        if (
          parsedUrl !== undefined && parsedUrl.protocol !== "http:" &&
          parsedUrl.protocol !== "https:"
        ) {
          problems.push(`"url" ${shown} must start with http:// or https://`);
        }
      }
    }
    headers = expandMap(rawHeaders, "headers", ctx);
  }

  problems.push(...expansionProblems(ctx));
  const timeout = fields.timeout === undefined ? {} : entryTimeout(fields.timeout);

  const resolved = { transport, command, args, env, cwd, url, headers };
  const written = transport === "stdio"
    ? { command: fields.command, args: fields.args ?? [] }
    : { args: [], url: fields.url?.trim() };
  const entry: ServerEntry = {
    name,
    ...resolved,
    disabled: fields.disabled === true,
    ...(timeout.timeoutMs === undefined ? {} : { timeoutMs: timeout.timeoutMs }),
    ...(timeout.note === undefined ? {} : { notes: [timeout.note] }),
    envNames: Object.keys(rawEnv),
    written,
    secrets: secretsOf({ written, env, headers, substitutions: ctx.substitutions }),
    fingerprint: fingerprintOf(resolved),
  };
  if (problems.length > 0) entry.problem = `MCP server "${name}": ${problems.join("; ")}.`;
  return entry;
}

/**
 * An entry's `timeout` as the bridge uses it, and a note when it is not used as written: under a
 * second it is ignored, as Claude Code ignores it (Cline writes seconds there: `"timeout": 60`),
 * and over a day it is cut to a day.
 */
function entryTimeout(ms: number): { timeoutMs?: number; note?: string } {
  const { min, max } = ENTRY_TIMEOUT_MS;
  if (!Number.isFinite(ms) || ms < min) {
    return {
      note: `"timeout": ${ms} is ignored: it is in milliseconds, and under ${min} it is taken ` +
        "for a mistake (Claude Code ignores it too), so the bridge's defaults apply. Write " +
        `${ms > 0 ? Math.round(ms * 1000) : 60000} for ${ms > 0 ? ms : 60} s.`,
    };
  }
  if (ms > max) {
    return { timeoutMs: max, note: `"timeout": ${ms} is more than a day; a day (${max}) is used.` };
  }
  return { timeoutMs: Math.round(ms) };
}

// -- identify -------------------------------------------------------------------------------------

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;
const encoder = new TextEncoder();

/** FNV-1a 64-bit of a string, as 16 hex digits. */
export function fnv1a64(text: string): string {
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

/** This bridge's main.ts, when it runs from files (not from a remote URL). */
function bridgeMainPath(): string | undefined {
  const url = new URL("../main.ts", import.meta.url);
  return url.protocol === "file:" ? filePath(url.href) : undefined;
}

const BRIDGE_NAME = /lmstudio[-_]bridge/i;
/** The tasks of this project's deno.json that start the bridge (`start` serves, `cli serve`). */
const BRIDGE_TASKS = new Set(["start", "cli"]);
/** Config files `deno task` looks for in a directory. */
const DENO_CONFIGS = ["deno.json", "deno.jsonc"];

/** `path` with symbolic links resolved when it exists, else just made absolute. */
function canonical(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    // Missing, or not readable: compare the plain absolute path.
    return resolve(path);
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    // Missing or not readable: as far as `deno task` is concerned, not there.
    return false;
  }
}

/** A file argument as a path (`file://` URLs decoded; one that does not decode stays as written). */
function filePath(arg: string): string {
  if (!arg.startsWith("file://")) return arg;
  try {
    const path = decodeURIComponent(new URL(arg).pathname);
    return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path;
  } catch {
    return arg;
  }
}

/** Whether `command` is Deno itself (`deno`, `/usr/bin/deno`, `deno.exe`). */
function isDeno(command: string | undefined): boolean {
  if (command === undefined) return false;
  return /^deno(\.exe)?$/i.test(basename(command));
}

/** What `deno task [--cwd DIR] [--config FILE] NAME ...` names; undefined for other commands. */
function denoTask(
  args: readonly string[],
): { name: string; cwd?: string; config?: string } | undefined {
  let i = 0;
  while (i < args.length && args[i]!.startsWith("-")) i++;
  if (args[i] !== "task") return undefined;
  let cwd: string | undefined;
  let config: string | undefined;
  for (i++; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--cwd") cwd = value();
    else if (flag === "--config" || flag === "-c") config = value();
    else if (flag === "--filter" || flag === "-f") value();
    else if (!arg.startsWith("-")) return { name: arg, cwd, config };
  }
  return undefined;
}

/**
 * Whether `deno task` run in `dir` uses the deno.json of `bridgeDir`: the nearest directory, from
 * `dir` up, that is `bridgeDir` or has a deno.json of its own decides.
 */
function findsBridgeConfig(dir: string, bridgeDir: string): boolean {
  for (let current = resolve(dir);;) {
    if (canonical(current) === bridgeDir) return true;
    if (DENO_CONFIGS.some((name) => exists(join(current, name)))) return false;
    const parent = dirname(current);
    if (parent === current) return false;
    current = parent;
  }
}

/**
 * True when a stdio entry launches lmstudio-bridge itself, so discover-all does not recurse into
 * it. Recognised:
 *
 * - the command or any argument mentions `lmstudio-bridge` (or `lmstudio_bridge`): the compiled
 *   binary (`/usr/local/bin/lmstudio-bridge serve`), a package or a checkout of that name;
 * - an argument that is this bridge's own `main.ts` (resolved against the entry's `cwd`), as in
 *   `deno run -P=bridge /path/to/repo/main.ts serve`;
 * - `deno task start` or `deno task cli ...` run with this project's deno.json: through
 *   `--cwd DIR` (or `--cwd=DIR`), `--config DIR/deno.json`, or the entry's `cwd` (a directory
 *   inside the project without a deno.json of its own counts, as `deno task` searches upwards).
 *
 * Paths are compared after resolving symbolic links; `mainPath` (this bridge's main.ts by
 * default) is for tests.
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
  const target = canonical(main);
  const bridgeDir = canonical(dirname(resolve(main)));
  const cwd = resolve(entry.cwd ?? ".");
  if (
    entry.args.some((a) => a.endsWith("main.ts") && canonical(resolve(cwd, filePath(a))) === target)
  ) {
    return true;
  }
  if (!isDeno(entry.command)) return false;
  const task = denoTask(entry.args);
  if (task === undefined || !BRIDGE_TASKS.has(task.name)) return false;
  if (task.config !== undefined) {
    return canonical(dirname(resolve(cwd, filePath(task.config)))) === bridgeDir;
  }
  return findsBridgeConfig(resolve(cwd, task.cwd ?? "."), bridgeDir);
}

/**
 * The command line (stdio) or URL (http/sse) of an entry, for display: as the file writes it,
 * `${VAR}` references unexpanded and credentials hidden ({@linkcode redactArgs},
 * {@linkcode redactUrl}).
 */
export function entryTarget(entry: Pick<ServerEntry, "transport" | "written">): string {
  if (entry.transport !== "stdio") return entryUrl(entry) || "(no url)";
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : JSON.stringify(s));
  const { command, args } = entry.written;
  return [command ?? "(no command)", ...redactArgs(args)].map(quote).join(" ");
}

/** A remote entry's URL for a message: as written, credentials hidden. */
export function entryUrl(entry: Pick<ServerEntry, "written">): string {
  return redactUrl(entry.written.url ?? "");
}

/** Names of env variables whose values are credentials. */
const SECRET_ENV = /token|key|secret|passw|pwd|auth|credential|cookie/i;

/** The {@linkcode ServerEntry.secrets} of an entry. */
function secretsOf(o: {
  written: ServerEntry["written"];
  env: Record<string, string>;
  headers: Record<string, string>;
  substitutions: Secret[];
}): Secret[] {
  const found: Secret[] = [...o.substitutions];
  redactArgs(o.written.args, found);
  for (const value of Object.values(o.headers)) found.push({ value, shown: REDACTED });
  for (const [key, value] of Object.entries(o.env)) {
    if (SECRET_ENV.test(key)) found.push({ value, shown: REDACTED });
  }
  // Short values ("1", "on") would wreck every message they occur in and hide nothing.
  const seen = new Set<string>();
  return found
    .filter((s) => s.value.trim().length >= 4 && !seen.has(s.value) && seen.add(s.value))
    .sort((a, b) => b.value.length - a.value.length);
}

/**
 * `text` (an error message, a log line, a server's stderr) about `entry` with its secrets hidden:
 * each of {@linkcode ServerEntry.secrets} replaced by what to show instead, then anything else
 * that looks like a credential ({@linkcode redactText}).
 */
export function redactEntryText(entry: Pick<ServerEntry, "secrets">, text: string): string {
  let out = text;
  for (const secret of entry.secrets) out = out.replaceAll(secret.value, secret.shown);
  return redactText(out);
}
