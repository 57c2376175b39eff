/**
 * A server entry of the MCP config as the rest of the bridge sees it ({@linkcode ServerEntry}:
 * resolved, validated, fingerprinted), and what can be asked of one: its fingerprint
 * ({@linkcode fingerprintOf}), its command line or URL for display ({@linkcode entryTarget}), and
 * whether it would start this bridge again ({@linkcode isBridgeEntry}).
 */
import { basename, dirname, join, resolve } from "./path.ts";

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

/** The command line (stdio) or URL (http/sse) of an entry, for display. */
export function entryTarget(entry: ServerEntry): string {
  if (entry.transport !== "stdio") return entry.url ?? "(no url)";
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : JSON.stringify(s));
  return [entry.command ?? "(no command)", ...entry.args].map(quote).join(" ");
}
