/**
 * OAuth for remote MCP servers that require it (the MCP authorization spec), through the SDK's
 * client-side flow (`auth()` in the SDK's client/auth.ts): discovery of the server's
 * authorization server, dynamic client registration, authorization code with PKCE, refresh.
 * {@linkcode OAuthSession} is the bridge's `OAuthClientProvider` for one server.
 *
 * - The user is told the page to open: the SDK hands the authorization URL to
 *   {@linkcode OAuthSession.redirectToAuthorization}, which logs it (stderr) and starts a
 *   listener on 127.0.0.1 for the answer (`/callback`, the registered redirect URI; an answer
 *   whose `state` is not the page's is refused);
 *   the connect then fails with an error whose message has the URL (a tool result, for MCP
 *   callers), or the pool waits for the answer when the caller asked it to (the CLI). The page
 *   stays valid for {@linkcode AUTHORIZATION_TTL_MS}; a connect meanwhile fails at once with the
 *   same URL instead of starting a second authorization.
 * - Tokens (and the client registration) are kept in one file per server,
 *   `~/.config/lmstudio-bridge/oauth/<server>.json` (`$XDG_CONFIG_HOME/lmstudio-bridge/oauth`
 *   when that is set; {@linkcode defaultOAuthDir}), mode 0600 in a 0700 directory. Deleting it
 *   signs the bridge out, at once: the file is looked at again before each request (by its
 *   modification time), and a file that is gone takes the tokens with it.
 * - Refresh is the SDK's: a request answered 401 with a refresh token at hand refreshes it and
 *   sends the request again; the new tokens are saved the same way. A refused refresh starts a
 *   new authorization (the call fails with the page to open).
 * - The sandbox (deno.json "permissions" -> "bridge", which `deno task install` turns into
 *   flags; lib/launch.ts): reading the token file is covered by its `read`, XDG_CONFIG_HOME and
 *   HOME by its `env`, the loopback listener for the answer (127.0.0.1 only, a free port) by
 *   its `net` (127.0.0.1). It allows no writes: the tokens are then kept in memory only (until
 *   the bridge exits) and one warning names the command that allows writing that directory and
 *   nothing else (`deno task install --allow-write=DIR`, {@linkcode widenCommand}); the user
 *   opts in. A remote server's host, and its authorization server's when another, need
 *   `--allow-net=HOST` like any remote server; a refused one is named in the connect error.
 * - The CLI on a terminal waits for the answer (`waitForAuthorization`); `serve` (and the CLI
 *   without a terminal) fails the connect at once with the page to open, and the bridge keeps
 *   listening for the answer while it runs, so the next call after the user opened it works.
 * - An entry that sets its own `Authorization` header keeps its fixed credential: no OAuth.
 */
import { z } from "zod";
import {
  auth,
  OAuthClientInformationFullSchema,
  type OAuthClientInformationMixed,
  OAuthClientInformationSchema,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
  type OAuthTokens,
  OAuthTokensSchema,
} from "./sdk_client.ts";
import type { ServerEntry } from "./config_entry.ts";
import { fnv1a64 } from "./config_entry.ts";
import type { Logger } from "./log.ts";
import { join } from "./path.ts";
import { widenCommand } from "./launch.ts";
import { errorMessage } from "./errors.ts";
import { tryParseJson } from "./json.ts";
import { safeText } from "./text.ts";
import { raceAbort } from "./abort.ts";
import { McpServerError } from "./pool_errors.ts";

/** How long an authorization page stays valid (the listener for its answer waits that long). */
export const AUTHORIZATION_TTL_MS = 600_000;

/** Where OAuth tokens are kept: `$XDG_CONFIG_HOME/lmstudio-bridge/oauth`, else under ~/.config. */
export function defaultOAuthDir(
  env: { XDG_CONFIG_HOME?: string },
  home: string | undefined,
): string | undefined {
  const config = env.XDG_CONFIG_HOME || (home === undefined ? undefined : join(home, ".config"));
  return config === undefined ? undefined : join(config, "lmstudio-bridge", "oauth");
}

/** $XDG_CONFIG_HOME, when the bridge may read it and it is set. */
export function configHome(): { XDG_CONFIG_HOME?: string } {
  try {
    const value = Deno.env.get("XDG_CONFIG_HOME");
    return value === undefined ? {} : { XDG_CONFIG_HOME: value };
  } catch {
    return {};
  }
}

/** The file in `dir` that keeps the OAuth state of `server` (its name made safe for a file). */
export function tokenFileOf(dir: string, server: string): string {
  const safe = server.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return join(dir, `${safe === server ? safe : `${safe}-${fnv1a64(server).slice(0, 8)}`}.json`);
}

/** What OAuth protects: the server's URL without its query, fragment or user info. */
export function resourceOf(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

const ClientSchema = z.union([OAuthClientInformationFullSchema, OAuthClientInformationSchema]);

/** The token file: for which server and URL, the client registration, the tokens. */
const TokenFileSchema = z.object({
  server: z.string(),
  resource: z.string(),
  client: ClientSchema.optional(),
  tokens: OAuthTokensSchema.optional(),
  savedAt: z.string().optional(),
});

interface Kept {
  client?: OAuthClientInformationMixed;
  tokens?: OAuthTokens;
}

/**
 * One server's OAuth state on disk ({@linkcode tokenFileOf}), or in memory only when the bridge
 * may not write there (one warning says how to allow it).
 */
class TokenStore {
  readonly path: string;
  readonly #dir: string;
  readonly #server: string;
  readonly #resource: string;
  readonly #log: Logger;
  #kept: Kept = {};
  #loaded = false;
  /** The modification time of the file when last read or written; undefined: no file. */
  #seen?: number;
  #warned = false;
  /** Why the tokens stay in memory, once a write was refused. */
  #memoryOnly?: string;

  constructor(o: { dir: string | undefined; server: string; resource: string; log: Logger }) {
    this.#dir = o.dir ?? "";
    this.path = o.dir === undefined ? "" : tokenFileOf(o.dir, o.server);
    if (o.dir === undefined) {
      this.#memoryOnly = "the bridge knows no home directory to keep them in (HOME and " +
        "XDG_CONFIG_HOME are not set)";
    }
    this.#server = o.server;
    this.#resource = o.resource;
    this.#log = o.log;
  }

  get kept(): Readonly<Kept> {
    return this.#kept;
  }

  /** Where the tokens are kept, for a message. */
  get where(): string {
    return this.#memoryOnly === undefined
      ? `in ${this.path} (delete it to sign the bridge out)`
      : `in memory only, until the bridge exits: ${this.#memoryOnly}`;
  }

  /**
   * Reads the file when it changed since the last look (once, at first); one for another URL,
   * or unreadable, is ignored (and said so). A file the bridge read or wrote that is gone now
   * signs it out: the tokens it held are dropped.
   */
  async load(): Promise<void> {
    if (this.#memoryOnly !== undefined) return;
    let mtime: number | undefined;
    try {
      mtime = (await Deno.stat(this.path)).mtime?.getTime() ?? 0;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        if (!this.#loaded) {
          this.#log.warn(`cannot read ${this.path} (${errorMessage(error)}); authorizing anew`);
        }
        this.#loaded = true;
        return;
      }
    }
    if (mtime === undefined) {
      if (this.#seen !== undefined) {
        this.#log.info(
          `${this.path} was deleted: the bridge is signed out of MCP server "${this.#server}"`,
        );
        this.#kept = {};
      }
      this.#seen = undefined;
      this.#loaded = true;
      return;
    }
    if (this.#loaded && this.#seen === mtime) return;
    this.#loaded = true;
    this.#seen = mtime;
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (error) {
      this.#log.warn(`cannot read ${this.path} (${errorMessage(error)}); authorizing anew`);
      return;
    }
    const json = tryParseJson(text);
    const parsed = json.ok ? TokenFileSchema.safeParse(json.value) : undefined;
    if (parsed === undefined || !parsed.success) {
      this.#log.warn(
        `${this.path} is not an OAuth token file the bridge wrote; ignoring it (delete it, ` +
          `and the bridge asks MCP server "${this.#server}" for authorization anew)`,
      );
      this.#kept = {};
      return;
    }
    if (parsed.data.resource !== this.#resource) {
      this.#log.info(
        `${this.path} holds tokens for ${parsed.data.resource}, not ${this.#resource}; ` +
          "authorizing anew",
      );
      this.#kept = {};
      return;
    }
    this.#kept = { client: parsed.data.client, tokens: parsed.data.tokens };
  }

  /** Keeps `change` (undefined fields are removed), on disk when the bridge may write there. */
  async save(change: Partial<Record<keyof Kept, Kept[keyof Kept] | undefined>>): Promise<void> {
    const next: Kept = { ...this.#kept };
    for (const [key, value] of Object.entries(change)) {
      if (value === undefined) delete next[key as keyof Kept];
      else Object.assign(next, { [key]: value });
    }
    this.#kept = next;
    if (this.#memoryOnly !== undefined) {
      if (!this.#warned) this.#keepInMemory(this.#memoryOnly);
      return;
    }
    const writable = (await Deno.permissions.query({ name: "write", path: this.#dir })).state;
    if (writable !== "granted") {
      this.#keepInMemory(
        `the bridge's sandbox allows no writes to ${this.#dir}. To keep them across restarts, ` +
          `allow it with: ${widenCommand({ write: [this.#dir] })}`,
      );
      return;
    }
    try {
      await Deno.mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const doc = {
        server: this.#server,
        resource: this.#resource,
        ...next,
        savedAt: new Date().toISOString(),
      };
      const tmp = `${this.path}.${crypto.randomUUID()}.tmp`;
      await Deno.writeTextFile(tmp, JSON.stringify(doc, null, 2) + "\n", { mode: 0o600 });
      await Deno.rename(tmp, this.path);
      this.#seen = (await Deno.stat(this.path)).mtime?.getTime() ?? 0;
      this.#loaded = true;
    } catch (error) {
      this.#keepInMemory(`writing ${this.path} failed (${errorMessage(error)})`);
    }
  }

  #keepInMemory(why: string): void {
    this.#memoryOnly = why;
    this.#warned = true;
    this.#log.warn(
      `The OAuth tokens of MCP server "${this.#server}" are kept in memory only: ${why}`,
    );
  }
}

/** An authorization page the user has to open, and the listener waiting for its answer. */
interface Waiting {
  url: string;
  /** Resolves once the tokens are saved; rejects when it fails or expires. */
  authorized: Promise<void>;
  expiresAt: number;
  settle: (error?: Error) => void;
}

/** The loopback redirect URI the bridge registers: `http://127.0.0.1:PORT/callback`. */
const CALLBACK = /^http:\/\/127\.0\.0\.1:(\d+)\/callback$/;

/** A port free on 127.0.0.1 right now (the listener binds it only when a page is to be opened). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

function page(status: number, text: string): Response {
  const escaped = text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return new Response(
    `<!doctype html><meta charset="utf-8"><title>lmstudio-bridge</title><p>${escaped}</p>\n`,
    { status, headers: { "content-type": "text/html; charset=utf-8" } },
  );
}

/**
 * The bridge's OAuth client for one remote server (the SDK's `OAuthClientProvider`); see the
 * module docs. Kept by {@linkcode OAuthSessions} across the server's connections.
 */
export class OAuthSession implements OAuthClientProvider {
  readonly server: string;
  readonly resource: string;
  readonly #serverUrl: string;
  readonly #store: TokenStore;
  readonly #log: Logger;
  readonly #now: () => number;
  #port?: number;
  #verifier?: string;
  #state?: string;
  #discovery?: OAuthDiscoveryState;
  #waiting?: Waiting;
  #listener?: Deno.HttpServer;
  #tried = false;
  /** Why the last authorization failed, until one succeeds. */
  failure?: string;

  constructor(
    o: { entry: ServerEntry; dir: string | undefined; log: Logger; now?: () => number },
  ) {
    this.server = o.entry.name;
    this.#serverUrl = o.entry.url ?? "";
    this.resource = resourceOf(this.#serverUrl);
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
    this.#store = new TokenStore({
      dir: o.dir,
      server: this.server,
      resource: this.resource,
      log: o.log,
    });
  }

  /** Reads what an earlier run kept (once). */
  load(): Promise<void> {
    return this.#store.load();
  }

  /** The file that keeps the tokens. */
  get tokenFile(): string {
    return this.#store.path;
  }

  /** Where the tokens are kept, for a message. */
  get keptWhere(): string {
    return this.#store.where;
  }

  /** The page the user has to open, while the bridge waits for its answer. */
  get waiting(): Pick<Waiting, "url" | "authorized" | "expiresAt"> | undefined {
    return this.#waiting;
  }

  /** A connect begins: {@linkcode tried} tells afterwards whether it ran the OAuth flow. */
  beginConnect(): void {
    this.#tried = false;
  }

  /** The server answered 401 during this connect, so the SDK ran the OAuth flow. */
  get tried(): boolean {
    return this.#tried;
  }

  // -- OAuthClientProvider -------------------------------------------------------------------

  get redirectUrl(): string {
    this.#port ??= this.#registeredPort() ?? freePort();
    return `http://127.0.0.1:${this.#port}/callback`;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: "lmstudio-bridge",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  state(): string {
    this.#state = crypto.randomUUID();
    return this.#state;
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    const client = this.#store.kept.client;
    if (client === undefined) return undefined;
    // Registered for another redirect URI (another port): register again.
    const uris = "redirect_uris" in client ? client.redirect_uris : [];
    return uris.includes(this.redirectUrl) ? client : undefined;
  }

  saveClientInformation(client: OAuthClientInformationMixed): Promise<void> {
    return this.#store.save({ client });
  }

  /** The kept tokens, as the file has them now (deleted: none, the bridge is signed out). */
  async tokens(): Promise<OAuthTokens | undefined> {
    await this.#store.load();
    return this.#store.kept.tokens;
  }

  async saveTokens(tokens: OAuthTokens): Promise<void> {
    await this.#store.save({ tokens });
    this.failure = undefined;
    this.#log.debug("OAuth tokens saved", { server: this.server });
  }

  redirectToAuthorization(url: URL): void {
    this.#await(url);
  }

  saveCodeVerifier(verifier: string): void {
    this.#verifier = verifier;
  }

  codeVerifier(): string {
    if (this.#verifier === undefined) {
      throw new Error("no authorization of the bridge is under way (its code verifier is gone)");
    }
    return this.#verifier;
  }

  async invalidateCredentials(
    scope: "all" | "client" | "tokens" | "verifier" | "discovery",
  ): Promise<void> {
    if (scope === "all" || scope === "verifier") this.#verifier = undefined;
    if (scope === "all" || scope === "discovery") this.#discovery = undefined;
    const drop = {
      ...(scope === "all" || scope === "client" ? { client: undefined } : {}),
      ...(scope === "all" || scope === "tokens" ? { tokens: undefined } : {}),
    };
    if (Object.keys(drop).length > 0) await this.#store.save(drop);
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    // The SDK's flow asks for this first: the server wants authorization.
    this.#tried = true;
    return this.#discovery;
  }

  // -- the answer of the authorization page ---------------------------------------------------

  /** The port of the redirect URI the kept registration names, if it is the bridge's callback. */
  #registeredPort(): number | undefined {
    const client = this.#store.kept.client;
    const uri = client !== undefined && "redirect_uris" in client ? client.redirect_uris[0] : "";
    const m = CALLBACK.exec(uri ?? "");
    return m === null ? undefined : Number(m[1]);
  }

  /** Listens for the answer to the authorization page `url` and tells the user to open it. */
  #await(url: URL): void {
    // A page still waiting is replaced; its listener (on the same port) answers for this one.
    this.#settle(new Error("a new authorization page replaced it"), { keepListening: true });
    const port = this.#port ?? freePort();
    this.#port = port;
    if (this.#listener === undefined) {
      try {
        this.#listener = Deno.serve(
          { hostname: "127.0.0.1", port, onListen: () => {} },
          (request) => this.#answer(request),
        );
      } catch (error) {
        // The registration names this port: the next try registers with another.
        this.#port = undefined;
        this.#verifier = undefined;
        void this.#store.save({ client: undefined });
        throw new Error(
          `the bridge cannot listen on 127.0.0.1:${port} for the answer of the authorization ` +
            `page (${errorMessage(error)}); try again, it will use another port`,
        );
      }
    }
    let settle!: (error?: Error) => void;
    const authorized = new Promise<void>((resolve, reject) => {
      settle = (error) => error === undefined ? resolve() : reject(error);
    });
    // Nobody may be waiting for it (the caller got the URL in an error message).
    authorized.catch(() => undefined);
    const expiresAt = this.#now() + AUTHORIZATION_TTL_MS;
    const timer = setTimeout(() => {
      if (this.#waiting?.authorized === authorized) {
        this.#settle(
          new Error(`nobody authorized it within ${AUTHORIZATION_TTL_MS / 60_000} minutes`),
        );
      }
    }, AUTHORIZATION_TTL_MS);
    Deno.unrefTimer(timer);
    this.#waiting = {
      url: url.href,
      authorized,
      expiresAt,
      settle: (error) => {
        clearTimeout(timer);
        settle(error);
      },
    };
    this.#log.warn(
      `MCP server "${this.server}" needs you to authorize the bridge: open ${url.href} in a ` +
        `browser (the bridge waits for the answer on ${this.redirectUrl} for ` +
        `${AUTHORIZATION_TTL_MS / 60_000} minutes; tokens are kept ${this.keptWhere})`,
    );
  }

  /**
   * Ends the wait for an answer: authorized (no error) or not, and stops the listener (unless a
   * new page is about to use it).
   */
  #settle(error?: Error, o: { keepListening?: boolean } = {}): void {
    const waiting = this.#waiting;
    const listener = this.#listener;
    this.#waiting = undefined;
    if (listener !== undefined && o.keepListening !== true) {
      this.#listener = undefined;
      if (error !== undefined) this.#verifier = undefined;
      // Let the answer page go out first.
      setTimeout(() => void listener.shutdown().catch(() => undefined), 0);
    }
    if (waiting === undefined) return;
    if (error !== undefined) this.failure = error.message;
    waiting.settle(error);
  }

  async #answer(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== "/callback") return page(404, "Not found.");
    if (this.#waiting === undefined) {
      return page(410, "No authorization is waiting for this answer any more; start again.");
    }
    const denied = url.searchParams.get("error");
    if (denied !== null) {
      const description = url.searchParams.get("error_description");
      const why = `the authorization server answered "${safeText(denied)}"${
        description === null ? "" : `: ${safeText(description)}`
      }`;
      this.#settle(new Error(why));
      return page(400, `The bridge was not authorized: ${why}.`);
    }
    if (url.searchParams.get("state") !== this.#state) {
      return page(400, "This answer is not for the page the bridge asked you to open.");
    }
    const code = url.searchParams.get("code");
    if (code === null || code === "") return page(400, "The answer has no authorization code.");
    try {
      const result = await auth(this, { serverUrl: this.#serverUrl, authorizationCode: code });
      if (result !== "AUTHORIZED") throw new Error(`the token exchange ended with ${result}`);
    } catch (error) {
      const why = `exchanging the code for tokens failed: ${errorMessage(error)}`;
      this.#settle(new Error(why));
      return page(502, `The bridge was not authorized: ${why}.`);
    }
    this.#settle();
    this.#log.info(`authorized for MCP server "${this.server}"; tokens kept ${this.keptWhere}`);
    return page(
      200,
      `The bridge is authorized for MCP server "${this.server}". You can close this page.`,
    );
  }

  /**
   * The error a connect (or a call) fails with while the user has to authorize the bridge: the
   * page to open and what to do then, or why the last authorization failed.
   */
  authorizationError(cause?: unknown): McpServerError {
    const waiting = this.#waiting;
    const base = { server: this.server, kind: "unauthorized" as const, cause };
    if (waiting === undefined) {
      const why = this.failure ?? (cause === undefined ? "no page to open" : errorMessage(cause));
      return new McpServerError(
        `MCP server "${this.server}" needs you to authorize the bridge (OAuth), and the last ` +
          `authorization did not complete: ${why}. Retry: the bridge gives you a new page to open.`,
        base,
      );
    }
    const minutes = Math.max(1, Math.ceil((waiting.expiresAt - this.#now()) / 60_000));
    return new McpServerError(
      `MCP server "${this.server}" needs you to authorize the bridge (OAuth): open ` +
        `${waiting.url} in a browser, sign in and allow access, then retry (the page is valid ` +
        `for ${minutes} more minute${minutes === 1 ? "" : "s"}; the bridge must keep running ` +
        `meanwhile). The tokens are kept ${this.keptWhere}.`,
      base,
    );
  }

  /**
   * Waits for the user to answer the authorization page (the CLI on a terminal does), until
   * `signal` aborts; throws {@linkcode authorizationError} when it failed or expired.
   */
  async awaitAuthorization(signal?: AbortSignal): Promise<void> {
    const waiting = this.#waiting;
    if (waiting === undefined) throw this.authorizationError();
    this.#log.warn(`waiting for you to authorize the bridge at ${waiting.url} (Ctrl-C gives up)`);
    try {
      await raceAbort(waiting.authorized, signal);
    } catch (error) {
      if (signal?.aborted) throw error;
      throw this.authorizationError(error);
    }
  }

  /** Stops waiting for an answer (the pool is closing). */
  close(): void {
    this.#settle(new Error("the bridge is shutting down"));
  }
}

/** The OAuth sessions of a pool's remote servers, kept across their connections. */
export class OAuthSessions {
  readonly #dir: string | undefined;
  readonly #log: Logger;
  readonly #now?: () => number;
  readonly #sessions = new Map<string, OAuthSession>();

  constructor(o: { dir: string | undefined; log: Logger; now?: () => number }) {
    this.#dir = o.dir;
    this.#log = o.log;
    this.#now = o.now;
  }

  /**
   * The session of a remote `entry`, or undefined when the bridge does no OAuth for it (stdio,
   * or an entry with an `Authorization` header of its own).
   */
  for(entry: ServerEntry): OAuthSession | undefined {
    if (entry.transport === "stdio" || entry.url === undefined) return undefined;
    if (Object.keys(entry.headers).some((k) => k.toLowerCase() === "authorization")) {
      return undefined;
    }
    let resource: string;
    try {
      resource = resourceOf(entry.url);
    } catch {
      return undefined; // An invalid URL fails the connect with its own message.
    }
    const known = this.#sessions.get(entry.name);
    if (known !== undefined && known.resource === resource) return known;
    known?.close();
    const session = new OAuthSession({ entry, dir: this.#dir, log: this.#log, now: this.#now });
    this.#sessions.set(entry.name, session);
    return session;
  }

  /** The session of `server`, if it has one. */
  get(server: string): OAuthSession | undefined {
    return this.#sessions.get(server);
  }

  close(): void {
    for (const session of this.#sessions.values()) session.close();
    this.#sessions.clear();
  }
}
