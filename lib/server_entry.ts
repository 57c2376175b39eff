/**
 * A server entry of the MCP config as the rest of the bridge sees it ({@linkcode ServerEntry}:
 * resolved, validated, fingerprinted), and what can be asked of one: its fingerprint
 * ({@linkcode fingerprintOf}), its command line or URL for display ({@linkcode entryTarget}), and
 * whether it would start this bridge again ({@linkcode isBridgeEntry}).
 */
import { resolve } from "./path.ts";

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
