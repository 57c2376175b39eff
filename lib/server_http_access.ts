/**
 * Who may talk to `serve --http`: the listen address (`[HOST:]PORT`, loopback by default), the
 * bearer token (LMSTUDIO_BRIDGE_TOKEN or a token file; required beyond loopback), and the checks
 * every request passes before anything else looks at it: the token, then Host and Origin against
 * DNS rebinding (a web page whose name resolves to 127.0.0.1 must not reach the bridge).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { parseArgs, stringOption, UsageError } from "./args.ts";
import { BridgeError, errorMessage, isSandboxDenial } from "./errors.ts";
import { SettingsError } from "./settings.ts";
import { NAME } from "./version.ts";

/** The variable that holds the bridge's bearer token. */
export const TOKEN_VARIABLE = "LMSTUDIO_BRIDGE_TOKEN";

/**
 * The network list of deno.json's "bridge" permission set. A `--allow-net` flag replaces the set's
 * list instead of adding to it, so the flag that widens the sandbox for a listen address repeats it.
 */
export const BRIDGE_NET = ["127.0.0.1", "localhost", "[::1]"] as const;

const MIN_TOKEN_LENGTH = 16;

/** Where `serve --http` listens. */
export interface ListenAddress {
  /** As Deno.serve takes it: `127.0.0.1`, `0.0.0.0`, `::1` (no brackets). */
  hostname: string;
  /** 0 asks for any free port. */
  port: number;
}

/** A bearer token and where it came from (for messages; never the token itself). */
export interface BridgeToken {
  value: string;
  /** `LMSTUDIO_BRIDGE_TOKEN` or `token file /path`. */
  source: string;
}

/** What the command line and the environment say about HTTP serving. */
export interface HttpAccess {
  listen: ListenAddress;
  token?: BridgeToken;
}

/**
 * Parses `[HOST:]PORT`: `8765` (on 127.0.0.1), `127.0.0.1:8765`, `0.0.0.0:8765`, `[::1]:8765`,
 * `localhost:8765`. Port 0 asks the system for a free port.
 */
export function parseListenAddress(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:[\]\s]+):)?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `--http takes [HOST:]PORT, e.g. 8765, 127.0.0.1:8765, 0.0.0.0:8765 or [::1]:8765; got ` +
        `${JSON.stringify(text)}.`,
      "serve",
    );
  }
  return { hostname: match[1] ?? match[2] ?? "127.0.0.1", port };
}

/** True for names and addresses of this machine only: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** `host:port` with IPv6 addresses in brackets, as URLs and --allow-net write them. */
export function hostPort(address: ListenAddress): string {
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${host}:${address.port}`;
}

/** The `--allow-net` flag that lets the bridge's sandbox listen on `address` (and nothing more). */
export function allowNetFlag(address: ListenAddress): string {
  return `--allow-net=${[...BRIDGE_NET, hostPort(address)].join(",")}`;
}

/**
 * `serve`'s own options (`--http [HOST:]PORT`, `--token-file FILE`) and the token from the
 * environment. Throws a UsageError for a malformed command line and a SettingsError when a
 * non-loopback address has no token or the token is unusable.
 */
export async function httpAccess(
  argv: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<HttpAccess> {
  const args = parseArgs(
    argv,
    { http: { type: "string" }, "token-file": { type: "string" } },
    "serve",
  );
  if (args.positionals.length > 0) {
    throw new UsageError(`serve takes no arguments, got ${args.positionals.join(" ")}.`, "serve");
  }
  const http = stringOption(args, "http");
  if (http === undefined) throw new UsageError("--token-file is for serve --http.", "serve");
  const listen = parseListenAddress(http);
  const file = stringOption(args, "token-file");
  const token = file !== undefined ? await tokenFromFile(file) : tokenFromEnv(env(TOKEN_VARIABLE));
  if (token === undefined && !isLoopback(listen.hostname)) {
    throw new SettingsError(
      TOKEN_VARIABLE,
      `serve --http ${hostPort(listen)} is reachable from other machines, so it needs a bearer ` +
        `token: set ${TOKEN_VARIABLE} (e.g. export ${TOKEN_VARIABLE}=$(openssl rand -hex 32)) or ` +
        `pass --token-file FILE, and give the same token to the clients. Or listen on loopback ` +
        `only (serve --http ${listen.port}).`,
    );
  }
  return token === undefined ? { listen } : { listen, token };
}

function tokenFromEnv(value: string | undefined): BridgeToken | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  return checkedToken(value.trim(), TOKEN_VARIABLE);
}

async function tokenFromFile(path: string): Promise<BridgeToken> {
  const source = `token file ${path}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error: unknown) {
    const why = error instanceof Deno.errors.NotFound
      ? "it does not exist"
      : isSandboxDenial(error)
      ? "the sandbox does not allow reading it (add --allow-read for it)"
      : errorMessage(error);
    throw new SettingsError(TOKEN_VARIABLE, `Cannot read the ${source}: ${why}.`);
  }
  return checkedToken(text.trim(), source);
}

function checkedToken(value: string, source: string): BridgeToken {
  if (!/^[\x21-\x7e]+$/.test(value) || value.length < MIN_TOKEN_LENGTH) {
    throw new SettingsError(
      TOKEN_VARIABLE,
      `The bearer token from ${source} must be at least ${MIN_TOKEN_LENGTH} printable ` +
        `characters without spaces (it is sent in an HTTP header); make one with ` +
        `openssl rand -hex 32.`,
    );
  }
  return { value, source };
}

/** A refused request: the status and what the client is told. */
export interface Refusal {
  status: 401 | 403;
  message: string;
}

/** The checks of one listening bridge; see {@linkcode RequestGuard.check}. */
export class RequestGuard {
  readonly #digest: Uint8Array | undefined;
  readonly #loopback: boolean;
  readonly #hostnames: Set<string>;

  constructor(access: HttpAccess) {
    this.#digest = access.token === undefined ? undefined : sha256(access.token.value);
    this.#loopback = isLoopback(access.listen.hostname);
    const bound = access.listen.hostname.toLowerCase();
    this.#hostnames = new Set([...BRIDGE_NET, bound, bound.includes(":") ? `[${bound}]` : bound]);
  }

  /** True when every request (not only /mcp) must carry the token: the bridge is not loopback. */
  get remote(): boolean {
    return !this.#loopback;
  }

  /**
   * Why `request` is refused, or undefined. With a token, a request without it gets 401 before
   * anything else is looked at (except /health on loopback, when `needsToken` is false). Then
   * DNS rebinding: on loopback the Host must name this machine; an Origin, when a browser sends
   * one, must be this machine (or, beyond loopback, the host the client asked for).
   */
  check(request: Request, needsToken: boolean): Refusal | undefined {
    if (this.#digest !== undefined && needsToken && !this.#authorized(request)) {
      return {
        status: 401,
        message: `Unauthorized: ${NAME} needs the header "Authorization: Bearer <token>" with ` +
          `the token it was started with (${TOKEN_VARIABLE} or its token file).`,
      };
    }
    const host = hostnameOf(request.headers.get("host"));
    if (this.#loopback && (host === undefined || !this.#hostnames.has(host))) {
      return {
        status: 403,
        message: `Forbidden: Host ${JSON.stringify(request.headers.get("host"))} is not this ` +
          `machine; ${NAME} listens on loopback and answers only requests for localhost, ` +
          `127.0.0.1 or [::1] (DNS rebinding protection).`,
      };
    }
    const origin = request.headers.get("origin");
    if (origin !== null && !this.#originAllowed(origin, host)) {
      return {
        status: 403,
        message: `Forbidden: Origin ${JSON.stringify(origin)} may not use this bridge; only ` +
          `pages of this machine may (DNS rebinding protection). MCP clients other than web ` +
          `pages send no Origin.`,
      };
    }
    return undefined;
  }

  #authorized(request: Request): boolean {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "");
    return match !== null && this.#digest !== undefined &&
      timingSafeEqual(sha256(match[1]!), this.#digest);
  }

  #originAllowed(origin: string, host: string | undefined): boolean {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // "null" (a sandboxed frame, a file) or garbage
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return false;
    const name = url.hostname.toLowerCase();
    return isLoopback(name) || (!this.#loopback && name === host);
  }
}

/** The host name of a Host header, lower case, without the port (IPv6 keeps its brackets). */
function hostnameOf(header: string | null): string | undefined {
  if (header === null) return undefined;
  const match = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(header.trim().toLowerCase());
  return match?.[1] || undefined;
}

function sha256(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/** The listen address cannot be used: taken, refused by the sandbox or the system. */
export class ListenError extends BridgeError<"listen"> {
  override name = "ListenError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("listen", message, options);
  }
}
