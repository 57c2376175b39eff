/**
 * Live connections to the downstream MCP servers of the config: one per server, created on first
 * use, shared by every caller, keyed by server name + entry fingerprint.
 *
 * - Concurrent first uses share one connect; later calls cost no spawn.
 * - Hot reload: every call checks the config (a stat). A changed entry gets a new connection and
 *   the old one closes once its in-flight calls finish; removed or disabled entries are closed.
 * - A server that exits or breaks its pipe fails its in-flight calls with an
 *   {@linkcode McpServerError} naming the server, its exit code and its last stderr lines; the
 *   next call starts it again. Once the spawned process has exited, its connection takes no new
 *   calls even if a process it started (`npx`'s child) still answers: the calls already running
 *   finish there, then the rest of its process group is stopped. A remote (HTTP/SSE) server
 *   that goes away mid-call (its response or event stream ends or breaks before the answer)
 *   fails them at once too, saying the connection was lost; the next call reconnects.
 * - Tools that can only run as MCP tasks are not offered ({@linkcode needsMcpTasks}); calling one
 *   fails with a message saying so. Calling a tool the server does not have fails with a message
 *   that lists the tools it has.
 * - Start-up is bounded by `connectTimeoutMs`; a missing command, a Deno permission denial and a
 *   server that never answers `initialize` each get a message that says what to do.
 * - Idle connections close after `idleMs`; {@linkcode McpPool.close} closes everything.
 * - A server's tool list is kept after its connection closes (idle, exit), keyed by its entry's
 *   fingerprint: listing its tools again answers from it without starting the server, and only
 *   a call starts it. It is dropped when the entry changes (or goes) and when the server says its
 *   list changed (tools/list_changed); while connected, the live list is used.
 * - At most `maxConcurrentStarts` servers start at once (default
 *   {@linkcode DEFAULT_MAX_CONCURRENT_STARTS}); the others wait their turn (status: connecting,
 *   waiting to start), so a first discover-all over 50 servers does not run 50 start-ups at once.
 *
 * The pool keeps the keyed connections and their life cycle. One connection, its tool list and
 * the message of a failed call on it are in pool_connection.ts; starting servers (stdio, HTTP,
 * SSE) in pool_connect.ts, with pool_stdio.ts running a stdio child (and stopping what it
 * started) and pool_remote.ts watching a remote server's streams; the error type and the pieces
 * of its messages in pool_errors.ts.
 */
import {
  type CallToolResult,
  ErrorCode,
  type GetPromptResult,
  McpError,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplate,
  type Tool,
} from "./sdk.ts";
import { UnauthorizedError } from "./sdk_client.ts";
import { ConfigError, type ConfigSource, type McpConfig, usableEntry } from "./config.ts";
import { entryTarget, redactEntryText, type ServerEntry } from "./config_entry.ts";
import { log as defaultLog, type Logger } from "./log.ts";
import { VERSION } from "./version.ts";
import { configPathNamed } from "./config_guard.ts";
import { currentDir, homeDir } from "./path.ts";
import { raceAbort } from "./abort.ts";
import {
  type CallErrorOptions,
  type Connection,
  explainCallError,
  needsMcpTasks,
  taskRequiredError,
  unknownToolError,
} from "./pool_connection.ts";
import { type ConnectOptions, connectServer } from "./pool_connect.ts";
import { exitText, formatTail, McpServerError, redactError } from "./pool_errors.ts";
import { type GroupSignaller, groupSignaller } from "./pool_stdio.ts";
import { ProcessTracker } from "./pool_reaper.ts";
import { causeChain, errorMessage } from "./errors.ts";
import { configHome, defaultOAuthDir, OAuthSessions } from "./pool_oauth.ts";
import type { ToolProgress } from "./agent_types.ts";
import { closestName, listNames, plural, shellWord } from "./text.ts";
import { type SandboxStatus, sandboxStatus } from "./sandbox.ts";
import {
  type AnswerOptions,
  clientCapabilities,
  type RequestCounts,
  type ServerRequestHandlers,
} from "./pool_requests.ts";
import { type ConnectPhase, startReporter } from "./pool_progress.ts";
import { MAX_TIMER_MS, QuietTimer } from "./quiet_timer.ts";

export type { ServerRequestHandlers } from "./pool_requests.ts";

/** What every request to a server takes (listings, reads, prompts, calls). */
export interface RequestOptions {
  /** Cancels the request (and, while the server starts, the wait for it). */
  signal?: AbortSignal;
  /**
   * Progress while the server starts (its process spawns, `npx` downloads it, the handshake
   * runs), about once a second: "starting memory (npx may be downloading it): 12 s". A call's
   * own progress notifications come here too, afterwards.
   */
  onProgress?: (p: ToolProgress) => void;
  /** Bounds the request; default: the entry's `timeout`, else the pool's default. */
  timeoutMs?: number;
}

/** Options of {@linkcode McpPool.listTools}. */
export interface ListToolsOptions extends Omit<RequestOptions, "timeoutMs"> {
  /** Also return the tools that can only run as MCP tasks (the bridge cannot call them). */
  includeTaskRequired?: boolean;
  /**
   * Each note about a tool the server declared wrongly and the pool repaired or left out (a tool
   * without `inputSchema`, with a schema that is not an object schema...), for the caller to show.
   */
  onNote?: (note: string) => void;
}

/** Per-call options of {@linkcode McpPool.callTool}. */
export interface CallToolOptions extends RequestOptions {
  /** Cancels the call; the server receives `notifications/cancelled`. */
  signal?: AbortSignal;
  /**
   * Fails the call when the server sends neither a result nor progress for this long (time the
   * bridge spends answering the server's own requests does not count). Default: the entry's
   * `timeout`, else the pool's `callTimeoutMs`.
   */
  timeoutMs?: number;
  /**
   * Who answers the server's sampling and elicitation requests while this call runs (see
   * pool_requests.ts: a request goes to the oldest call in flight on the server with a handler
   * of its kind; without one it is refused with a reason).
   */
  onServerRequest?: ServerRequestHandlers;
  /**
   * "model": the call is made for the local model (the autonomous loop). Such a call may not
   * name the bridge's config files, and config changes seen while it runs are held.
   */
  origin?: "model";
  /**
   * The tool is marked read-only (MCP annotations): a model's call to it does not count as work
   * that may have written the config (its config-path refusal still applies).
   */
  readOnly?: boolean;
}

/** What {@linkcode McpPool.status} says about a server. */
export type ServerState =
  | "not-started"
  | "connecting"
  | "connected"
  /** Its config changed; the old process or session is finishing the calls it was running. */
  | "restarting"
  | "failed"
  | "disabled"
  | "invalid"
  /** It appeared or changed while a local model was working; not started until accepted. */
  | "held";

/** One configured server as the pool sees it. */
export interface ServerStatus {
  name: string;
  transport: "stdio" | "http" | "sse";
  /** The command line (stdio) or URL (http/sse). */
  target: string;
  state: ServerState;
  /** Why it failed, is invalid, or was closed. */
  reason?: string;
  /** Names of the entry's env variables, never their values. */
  envNames: string[];
  /** Number of tools the bridge can call (not counting those that need MCP tasks), once listed. */
  toolCount?: number;
  /**
   * What a connected server offers beyond tools: whether it declared resources and prompts, and
   * how many of each, once listed.
   */
  offers?: {
    resources: boolean;
    prompts: boolean;
    resourceCount?: number;
    resourceTemplateCount?: number;
    promptCount?: number;
  };
  /** The sampling and elicitation requests it sent since it started, once it sent any. */
  requests?: RequestCounts;
  /** The entry's own `timeout` (ms), when it has one. */
  timeoutMs?: number;
  /** What the bridge makes of its entry otherwise than written (a `timeout` it ignores). */
  notes?: string[];
  /** Process id of a connected stdio server (or of the old one, while restarting). */
  pid?: number;
  /** How it is confined (sandbox.ts): one word, what it may do, and why. */
  sandbox: SandboxStatus;
}

/** Options of {@linkcode McpPool}. */
export interface McpPoolOptions {
  config: ConfigSource;
  /** Close a connection unused for this long; 0 = never. Default 300 000 (settings.mcpIdleMs). */
  idleMs?: number;
  /** Bound on spawn + MCP handshake. Default 30 000 (`npx -y` may download first). */
  connectTimeoutMs?: number;
  /** Default per-call timeout, reset by progress notifications. Default 300 000. */
  callTimeoutMs?: number;
  log?: Logger;
  clientInfo?: { name: string; version: string };
  /**
   * Added to every stdio child's environment (e.g. the recursion depth marker); wins over an
   * entry's `env`, so no entry can reset the depth.
   */
  extraEnv?: Record<string, string>;
  /** Lines of each server's stderr kept for error messages. Default 20. */
  stderrLines?: number;
  /**
   * Signals a stdio server's process group, so closing it stops what it started too. Default:
   * whatever the sandbox allows ({@linkcode groupSignaller}); null: no process groups.
   */
  signalGroup?: GroupSignaller | null;
  /**
   * A server that failed to start is not tried again for this long (unless its config entry
   * changes): calls fail at once, saying when it will be tried, instead of each waiting out the
   * connect timeout again. Default 60 000; 0 = always try again.
   */
  retryFailedStartMs?: number;
  /**
   * Largest message (one JSON-RPC message, e.g. a tool result) accepted from a server, stdio or
   * remote; a larger one fails its call with a message that says so. Default 64 MiB.
   */
  maxMessageBytes?: number;
  /**
   * Follows what stdio servers start and ends it when they close, and ends the servers if the
   * bridge dies, through a keeper process (pool_reaper.ts). Default: one when the sandbox lets
   * the bridge run `deno`; null: none.
   */
  tracker?: ProcessTracker | null;
  /**
   * What servers may ask of the bridge, advertised when connecting: sampling and elicitation
   * (form and URL mode) unless turned off here. Who answers is up to each call
   * ({@linkcode CallToolOptions.onServerRequest}). Roots are never offered (pool_requests.ts).
   */
  answers?: AnswerOptions;
  /** The clock of {@linkcode retryFailedStartMs}. Default Date.now. */
  now?: () => number;
  /**
   * The bridge's working directory (a stdio server without `cwd` runs there) and the user's
   * home, for resolving the paths a call names. Default: Deno.cwd(), $HOME.
   */
  cwd?: string;
  home?: string;
  /**
   * Where the OAuth tokens of remote servers are kept, one file per server (pool_oauth.ts).
   * Default: {@linkcode defaultOAuthDir} ($XDG_CONFIG_HOME or ~/.config, then
   * lmstudio-bridge/oauth); null: the bridge does no OAuth (a 401 asks for a header).
   */
  oauthDir?: string | null;
  /**
   * A connect that needs the user to authorize the bridge waits for the answer (the CLI on a
   * terminal) instead of failing at once with the page to open. Default false.
   */
  waitForAuthorization?: boolean;
  /**
   * Servers started (spawned or connected, up to the end of the MCP handshake) at once; more wait
   * their turn. Default {@linkcode DEFAULT_MAX_CONCURRENT_STARTS}.
   */
  maxConcurrentStarts?: number;
}

/**
 * Servers started at once by default: enough to keep two cores busy while `npx`/`uvx` launchers
 * start, few enough that a discover-all over 50 servers does not start 50 runtimes at once (each
 * a few hundred MB while it starts).
 */
export const DEFAULT_MAX_CONCURRENT_STARTS = 8;

// The defaults of settings.ts (MCP_IDLE_MS, MCP_CONNECT_TIMEOUT_MS, MCP_CALL_TIMEOUT_MS) again:
// it does not export them. Import them from there once it does.
const DEFAULT_IDLE_MS = 300_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_CALL_TIMEOUT_MS = 300_000;
const DEFAULT_RETRY_FAILED_START_MS = 60_000;

interface Pending {
  fingerprint: string;
  /** Order of connect attempts, so a slow connect for an old entry never replaces a newer one. */
  seq: number;
  promise: Promise<Connection>;
  /** Gives the connect up (the pool is closing). */
  abort: AbortController;
  /** performance.now() when it started, for the start-up progress of callers that join it. */
  startedAt: number;
  /** What the connect is doing now, for the start-up progress. */
  phase: ConnectPhase;
  /** `queued`: waiting for one of the `maxConcurrentStarts` turns. */
  turn: { queued: boolean };
}

/** A server's tool list, kept after its connection closes (see the module docs). */
interface KeptTools {
  fingerprint: string;
  tools: Tool[];
  /** `tools` without those that need MCP tasks: the same array for every task that asks. */
  offered?: readonly Tool[];
  notes: readonly string[];
  /** What the server declared it offers (its capabilities), kept with its tools. */
  offers: { tools: boolean; resources: boolean; prompts: boolean };
}

/**
 * The tools a listing offers: all of them, or those that do not need MCP tasks. The same array
 * for every task while the list stays the same, so that a task's catalog is reused
 * (tool_catalog.ts).
 */
function offeredTools(
  kept: Pick<KeptTools, "tools" | "offered">,
  taskRequired: boolean,
): readonly Tool[] {
  if (taskRequired) return kept.tools;
  return kept.offered ??= kept.tools.filter((t) => !needsMcpTasks(t));
}

interface Remark {
  fingerprint: string;
  state: "failed" | "not-started";
  reason: string;
  /** A failed start: the error, and when it is tried again (until then calls fail at once). */
  failedStart?: { error: unknown; at: number; retryAt: number };
}

/**
 * Whether a result the SDK has validated is today's CallToolResult rather than a
 * pre-2024-11-05 server's `toolResult`.
 */
function isCurrentResult(
  result: CallToolResult | { toolResult: unknown },
): result is CallToolResult {
  return Array.isArray((result as { content?: unknown }).content);
}

/** Live MCP client connections, one per configured server; see the module docs. */
export class McpPool {
  readonly #config: ConfigSource;
  /**
   * The files a model's call may not name, per config version (the source gives the same object
   * while nothing changed, and the list depends on nothing else).
   */
  readonly #protectedPaths = new WeakMap<McpConfig, readonly string[]>();
  readonly #idleMs: number;
  readonly #connectTimeoutMs: number;
  readonly #callTimeoutMs: number;
  readonly #log: Logger;
  readonly #clientInfo: { name: string; version: string };
  readonly #extraEnv: Record<string, string>;
  readonly #stderrLines: number;
  readonly #signalGroup?: GroupSignaller;
  readonly #retryFailedStartMs: number;
  readonly #maxMessageBytes?: number;
  readonly #cwd: string;
  readonly #home?: string;
  readonly #tracker?: ProcessTracker;
  readonly #now: () => number;
  readonly #capabilities: ReturnType<typeof clientCapabilities>;
  readonly #oauth?: OAuthSessions;
  readonly #waitForAuthorization: boolean;
  readonly #live = new Map<string, Connection>();
  readonly #connecting = new Map<string, Pending>();
  readonly #remarks = new Map<string, Remark>();
  readonly #retired = new Set<Connection>();
  readonly #closing = new Set<Promise<void>>();
  #closed = false;
  #seq = 0;
  readonly #keptTools = new Map<string, KeptTools>();
  readonly #maxStarts: number;
  #starting = 0;
  readonly #startTurns: (() => void)[] = [];

  constructor(options: McpPoolOptions) {
    this.#config = options.config;
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#log = options.log ?? defaultLog.child("pool");
    this.#clientInfo = options.clientInfo ?? { name: "lmstudio-bridge", version: VERSION };
    this.#extraEnv = { ...options.extraEnv };
    this.#stderrLines = options.stderrLines ?? 20;
    this.#signalGroup = options.signalGroup === undefined
      ? groupSignaller()
      : options.signalGroup ?? undefined;
    this.#retryFailedStartMs = options.retryFailedStartMs ?? DEFAULT_RETRY_FAILED_START_MS;
    this.#now = options.now ?? Date.now;
    this.#capabilities = clientCapabilities(options.answers);
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#cwd = options.cwd ?? currentDir();
    this.#home = options.home ?? homeDir();
    this.#maxStarts = Math.max(1, options.maxConcurrentStarts ?? DEFAULT_MAX_CONCURRENT_STARTS);
    this.#tracker = options.tracker === undefined
      ? ProcessTracker.create({ log: this.#log })
      : options.tracker ?? undefined;
    const oauthDir = options.oauthDir === undefined
      ? defaultOAuthDir(configHome(), this.#home)
      : options.oauthDir;
    this.#oauth = oauthDir === null
      ? undefined
      : new OAuthSessions({ dir: oauthDir, log: this.#log.child("oauth"), now: this.#now });
    this.#waitForAuthorization = options.waitForAuthorization ?? false;
  }

  /**
   * The tools of `server` (every page), cached per connection, refreshed on list_changed.
   * Tools that can only run as MCP tasks ({@linkcode needsMcpTasks}) are left out unless
   * `includeTaskRequired` is set: the bridge cannot call them.
   */
  async listTools(server: string, o: ListToolsOptions = {}): Promise<readonly Tool[]> {
    const kept = await this.#keptToolsOf(server);
    if (kept !== undefined) {
      for (const note of kept.notes) o.onNote?.(note);
      return offeredTools(kept, o.includeTaskRequired === true);
    }
    return this.#use(server, o, "listing its tools", async (conn, timeoutMs) => {
      const tools = await raceAbort(conn.tools(timeoutMs), o.signal);
      // Only a list the connection still holds (none came in between saying it changed).
      let kept = this.#keptTools.get(server);
      if (
        conn.toolCount !== undefined &&
        (kept?.tools !== tools || kept.fingerprint !== conn.fingerprint)
      ) {
        kept = { fingerprint: conn.fingerprint, tools, notes: conn.toolNotes, offers: conn.offers };
        this.#keptTools.set(server, kept);
      }
      if (!conn.toolNotesLogged) {
        conn.toolNotesLogged = true;
        for (const note of conn.toolNotes) this.#log.warn(note);
      }
      for (const note of conn.toolNotes) o.onNote?.(note);
      return offeredTools(kept?.tools === tools ? kept : { tools }, o.includeTaskRequired === true);
    });
  }

  /**
   * The resources of `server` (every page), cached per connection and refreshed when the server
   * says they changed; empty for a server that declares no resources. A resource the server
   * declared wrongly is left out (and logged).
   */
  listResources(server: string, o: RequestOptions = {}): Promise<Resource[]> {
    return this.#use(server, o, "listing its resources", async (conn, timeoutMs) => {
      const listed = await raceAbort(conn.resources(timeoutMs), o.signal);
      this.#logNotes(conn, "resources", listed.notes);
      return listed.items;
    });
  }

  /** The resource templates of `server` (every page), cached like the resources. */
  listResourceTemplates(server: string, o: RequestOptions = {}): Promise<ResourceTemplate[]> {
    return this.#use(server, o, "listing its resource templates", async (conn, timeoutMs) => {
      const listed = await raceAbort(conn.resourceTemplates(timeoutMs), o.signal);
      this.#logNotes(conn, "resourceTemplates", listed.notes);
      return listed.items;
    });
  }

  /**
   * Reads one resource of `server` (never cached: its content may change). A server that
   * declares no resources is not asked: that fails with a message saying so.
   */
  readResource(server: string, uri: string, o: RequestOptions = {}): Promise<ReadResourceResult> {
    const what = `reading resource ${JSON.stringify(uri)}`;
    return this.#use(server, o, what, async (conn, timeoutMs) => {
      if (!conn.offers.resources) throw notOffered(server, "resources", what);
      return await conn.client.readResource({ uri }, { signal: o.signal, timeout: timeoutMs });
    });
  }

  /** The prompts of `server` (every page), cached per connection, refreshed on list_changed. */
  listPrompts(server: string, o: RequestOptions = {}): Promise<Prompt[]> {
    return this.#use(server, o, "listing its prompts", async (conn, timeoutMs) => {
      const listed = await raceAbort(conn.prompts(timeoutMs), o.signal);
      this.#logNotes(conn, "prompts", listed.notes);
      return listed.items;
    });
  }

  /**
   * Gets prompt `name` of `server` with `args` (the server fills its template). A prompt the
   * server does not list, or a required argument left out, fails with a message that lists the
   * prompts or the prompt's arguments, without asking the server.
   */
  getPrompt(
    server: string,
    name: string,
    args: Record<string, string> = {},
    o: RequestOptions = {},
  ): Promise<GetPromptResult> {
    const what = `getting prompt ${JSON.stringify(name)}`;
    return this.#use(server, o, what, async (conn, timeoutMs) => {
      if (!conn.offers.prompts) throw notOffered(server, "prompts", what);
      const prompts = await raceAbort(conn.prompts(timeoutMs), o.signal);
      const problem = promptProblem(server, name, args, prompts.items);
      if (problem !== undefined) throw problem;
      return await conn.client.getPrompt(
        { name, arguments: args },
        { signal: o.signal, timeout: timeoutMs },
      );
    });
  }

  /** What `server` declared it offers (its capabilities); connects to it if needed. */
  async offers(
    server: string,
    o: RequestOptions = {},
  ): Promise<{ tools: boolean; resources: boolean; prompts: boolean }> {
    // A server closed idle is not started again to say what it offers: it said so before.
    const kept = await this.#keptToolsOf(server);
    if (kept !== undefined) return kept.offers;
    return await this.#use(server, o, "connecting", (conn) => Promise.resolve(conn.offers));
  }

  /** Logs once per fetched list what was wrong with its items. */
  #logNotes(conn: Connection, list: string, notes: readonly string[]): void {
    if (notes.length === 0 || conn.loggedNotes.has(notes)) return;
    conn.loggedNotes.add(notes);
    for (const note of notes) this.#log.warn(note, { list });
  }

  /**
   * Runs `fn` on a usable connection to `server` (starting it if needed, reporting start-up
   * progress to `o.onProgress`) with the request's timeout; a failure becomes an McpServerError
   * that says what happened while `what` ("listing its resources").
   */
  async #use<T>(
    server: string,
    o: RequestOptions,
    what: string,
    fn: (conn: Connection, timeoutMs: number) => Promise<T>,
  ): Promise<T> {
    const { conn, entry } = await this.#acquire(server, o);
    const timeoutMs = o.timeoutMs ?? entry.timeoutMs ?? this.#connectTimeoutMs;
    try {
      return await fn(conn, timeoutMs);
    } catch (error) {
      throw await this.#explain(conn, error, { signal: o.signal, what, timeoutMs });
    } finally {
      this.#release(conn);
    }
  }

  /**
   * The tool list kept for `name` when it is not connected and its entry has not changed since;
   * undefined: ask the server (which starts it, or says why it cannot).
   */
  async #keptToolsOf(name: string): Promise<KeptTools | undefined> {
    if (this.#closed || !this.#keptTools.has(name)) return undefined;
    const config = await this.#config.current();
    this.#reconcile(config);
    const kept = this.#keptTools.get(name);
    const entry = config.servers.find((s) => s.name === name);
    if (kept === undefined || entry === undefined || entry.fingerprint !== kept.fingerprint) {
      return undefined;
    }
    if (entry.disabled || entry.problem !== undefined || entry.held !== undefined) return undefined;
    const live = this.#live.get(name);
    return live?.usable && live.fingerprint === entry.fingerprint ? undefined : kept;
  }

  /**
   * Calls one tool; failures of the server (not `isError` results) throw McpServerError. A call
   * made for the local model (`origin: "model"`) that names one of the bridge's config files is
   * refused with an `isError` result saying why, and the config is checked again before the
   * call counts as finished, so that what it changed is seen while the model was at work (and
   * held, see ConfigSource.beginModelWork).
   */
  async callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    o: CallToolOptions = {},
  ): Promise<CallToolResult> {
    if (o.origin !== "model" || o.readOnly === true) return await this.#call(server, tool, args, o);
    const endWork = this.#config.beginModelWork();
    try {
      return await this.#call(server, tool, args, o);
    } finally {
      // What the call changed is seen now, while it still counts as the model's work: with a
      // stat, as the watcher's event may still be on its way.
      await this.#config.current({ verify: true });
      endWork();
    }
  }

  async #call(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    o: CallToolOptions,
  ): Promise<CallToolResult> {
    const { conn, entry, config } = await this.#acquire(server, o);
    const timeoutMs = o.timeoutMs ?? entry.timeoutMs ?? this.#callTimeoutMs;
    const listTimeoutMs = entry.timeoutMs ?? this.#connectTimeoutMs;
    const onProgress = o.onProgress;
    const unregister = o.onServerRequest === undefined
      ? undefined
      : conn.requests.register(tool, o.onServerRequest);
    const watchdog = new CallWatchdog(timeoutMs, conn, o.signal);
    try {
      if (o.origin === "model") {
        const refused = this.#refuseConfigPaths(config, conn.entry, tool, args);
        if (refused !== undefined) return refused;
      }
      const known = conn.cachedTool(tool);
      if (known !== undefined && needsMcpTasks(known)) throw taskRequiredError({ server, tool });
      const result = await conn.client.callTool({ name: tool, arguments: args }, undefined, {
        signal: watchdog.signal,
        // The watchdog bounds the call: it restarts on progress and waits while the bridge
        // answers the server's own requests (a person may be filling in a form).
        timeout: MAX_TIMER_MS,
        // Always ask for progress so that long tools which report it are not timed out.
        onprogress: (p) => {
          watchdog.reset();
          onProgress?.({ progress: p.progress, total: p.total, message: p.message });
        },
      });
      // The SDK has validated the result against CallToolResultSchema (callTool's default).
      if (isCurrentResult(result)) {
        if (result.isError === true && known === undefined) {
          // It may have failed because the tool does not exist or needs MCP tasks: say so rather
          // than pass on "Tool x not found" or "method not found".
          const problem = await this.#toolProblem(conn, tool, textOf(result), listTimeoutMs);
          if (problem !== undefined) throw problem;
        }
        return result;
      }
      // A pre-2024-11-05 server answered with `toolResult`; show it as text.
      return { content: [{ type: "text", text: JSON.stringify(result.toolResult ?? result) }] };
    } catch (error) {
      const rejected = error instanceof McpError && !conn.closed && !o.signal?.aborted &&
        error.code !== ErrorCode.RequestTimeout && error.code !== ErrorCode.ConnectionClosed;
      const problem = rejected
        ? await this.#toolProblem(conn, tool, error.message, listTimeoutMs, error)
        : undefined;
      throw problem ?? await this.#explain(conn, error, { signal: o.signal, tool, timeoutMs });
    } finally {
      watchdog.stop();
      unregister?.();
      this.#release(conn);
    }
  }

  /**
   * The refusal of a call for the local model whose arguments name one of the bridge's config
   * files (config_guard.ts), or undefined when they name none; `config` is the one the call's
   * server was taken from.
   */
  #refuseConfigPaths(
    config: McpConfig,
    entry: ServerEntry,
    tool: string,
    args: Record<string, unknown>,
  ): CallToolResult | undefined {
    let paths = this.#protectedPaths.get(config);
    if (paths === undefined) {
      paths = this.#config.protectedPaths(config);
      this.#protectedPaths.set(config, paths);
    }
    const named = configPathNamed(args, {
      protected: paths,
      cwd: entry.cwd ?? this.#cwd,
      args: entry.args,
      home: this.#home,
    });
    if (named === undefined) return undefined;
    this.#log.warn(
      `refused a call of the local model to "${tool}" on MCP server "${entry.name}": it names ` +
        `the bridge's config file ${named}`,
    );
    return {
      isError: true,
      content: [{
        type: "text",
        text: `Refused: the local model may not change the bridge's MCP configuration ` +
          `(${named}). Calls made for the local model may not name the bridge's config files ` +
          "(.mcp.json, lmstudio-bridge.json); this call was not sent to the server. Do the task " +
          "without touching them, or tell the user what should change there.",
      }],
    };
  }

  /**
   * Why a failed call of `tool` failed, if its tool list tells: the server does not list it, or
   * lists it as needing MCP tasks. Uses the cached list, or fetches it (this is the failure path).
   */
  async #toolProblem(
    conn: Connection,
    tool: string,
    answer: string,
    timeoutMs: number,
    cause?: unknown,
  ): Promise<McpServerError | undefined> {
    const listed = await conn.tools(timeoutMs).catch(() => undefined);
    if (listed === undefined) return undefined;
    const found = listed.find((t) => t.name === tool);
    const server = conn.name;
    if (found === undefined) {
      const names = listed.filter((t) => !needsMcpTasks(t)).map((t) => t.name);
      const said = redactEntryText(conn.entry, answer);
      return unknownToolError({ server, tool, names, answer: said, cause });
    }
    return needsMcpTasks(found) ? taskRequiredError({ server, tool, cause }) : undefined;
  }

  /**
   * Turns a failed request on `conn` into an McpServerError that says what happened, with the
   * entry's secrets hidden.
   */
  async #explain(
    conn: Connection,
    error: unknown,
    o: Omit<CallErrorOptions, "onBroken">,
  ): Promise<unknown> {
    const oauth = this.#oauth?.get(conn.name);
    if (oauth !== undefined && causeChain(error).some((e) => e instanceof UnauthorizedError)) {
      // Signed out (its token file deleted) or the refresh was refused: a new connection asks.
      this.#dropBroken(conn, "the server wants the bridge authorized again");
      return oauth.authorizationError(error);
    }
    const explained = await explainCallError(conn, error, {
      ...o,
      onBroken: (reason) => this.#dropBroken(conn, redactEntryText(conn.entry, reason)),
    });
    return redactError(explained, (text) => redactEntryText(conn.entry, text));
  }

  /** Every configured server with its state; never starts anything. */
  async status(): Promise<{ config: McpConfig; servers: ServerStatus[] }> {
    const config = await this.#config.current();
    this.#reconcile(config);
    const sandboxes = await Promise.all(config.servers.map((e) => sandboxStatus(e, { config })));
    const servers = config.servers.map((entry, i): ServerStatus => {
      const base = {
        name: entry.name,
        transport: entry.transport,
        target: entryTarget(entry),
        envNames: [...entry.envNames],
        sandbox: sandboxes[i]!,
        ...(entry.timeoutMs === undefined ? {} : { timeoutMs: entry.timeoutMs }),
        ...(entry.notes === undefined ? {} : { notes: [...entry.notes] }),
      };
      if (entry.disabled) return { ...base, state: "disabled" };
      if (entry.problem !== undefined) return { ...base, state: "invalid", reason: entry.problem };
      if (entry.held !== undefined) return { ...base, state: "held", reason: entry.held };
      const live = this.#live.get(entry.name);
      if (live && live.usable && live.fingerprint === entry.fingerprint) {
        const { resources, prompts } = live.offers;
        const counts = live.counts;
        const asked = live.requests.counts;
        return {
          ...base,
          state: "connected",
          toolCount: live.toolCount,
          pid: live.pid,
          offers: {
            resources,
            prompts,
            ...(counts.resources === undefined ? {} : { resourceCount: counts.resources }),
            ...(counts.resourceTemplates === undefined
              ? {}
              : { resourceTemplateCount: counts.resourceTemplates }),
            ...(counts.prompts === undefined ? {} : { promptCount: counts.prompts }),
          },
          ...(asked.sampling + asked.elicitation > 0 ? { requests: { ...asked } } : {}),
        };
      }
      const pending = this.#connecting.get(entry.name);
      if (pending?.fingerprint === entry.fingerprint) {
        return pending.turn.queued
          ? {
            ...base,
            state: "connecting",
            reason: `waiting to start: ${this.#maxStarts} servers are starting at once`,
          }
          : { ...base, state: "connecting" };
      }
      const finishing = this.#finishing(entry);
      if (finishing !== undefined) return { ...base, ...finishing };
      const remark = this.#remarks.get(entry.name);
      if (remark && remark.fingerprint === entry.fingerprint) {
        const retry = this.#retryNote(remark);
        return {
          ...base,
          state: remark.state,
          reason: `${remark.reason}${retry ? `; ${retry}` : ""}`,
        };
      }
      return { ...base, state: "not-started" };
    });
    return { config, servers };
  }

  /**
   * The state of `entry` while an old connection of it is still finishing calls and no current
   * one runs: restarting after a config change, or failed with its process gone.
   */
  #finishing(entry: ServerEntry): Pick<ServerStatus, "state" | "reason" | "pid"> | undefined {
    const old = [...this.#retired].find((c) => c.name === entry.name && c.inFlight > 0);
    if (old === undefined || old.closed) return undefined;
    const calls = plural(old.inFlight, "call");
    const stdio = old.entry.transport === "stdio";
    const remark = this.#remarks.get(entry.name);
    if (old.exit !== undefined && remark?.fingerprint === entry.fingerprint) {
      return {
        state: "failed",
        pid: old.pid,
        reason: `${remark.reason}; ${calls} still running on the processes it started ` +
          `(they finish there); the next call starts it again`,
      };
    }
    if (old.fingerprint === entry.fingerprint) return undefined;
    const where = stdio
      ? `the old process${old.pid === undefined ? "" : ` (pid ${old.pid})`}`
      : "the old connection";
    return {
      state: "restarting",
      pid: old.pid,
      reason: `its config changed; finishing ${calls} on ${where}, then it closes. The next ` +
        `call ${stdio ? "starts it" : "connects"} with the new settings.`,
    };
  }

  /**
   * Closes every connection (waiting for nothing in flight) and refuses further calls. Connects
   * still under way are given up at once (what they started is stopped).
   */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = [...this.#connecting.values()].map((p) => {
      p.abort.abort();
      return p.promise.catch(() => undefined);
    });
    await Promise.all(pending);
    this.#oauth?.close();
    for (const conn of [...this.#live.values(), ...this.#retired]) this.#closeConn(conn);
    this.#live.clear();
    this.#retired.clear();
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
    await this.#tracker?.close();
  }

  // -- connection lifecycle ---------------------------------------------------------------

  /**
   * A usable connection for `name` with one use already counted (pair with #release), and the
   * entry in force. While it starts, `o.onProgress` hears what is happening about once a second.
   */
  async #acquire(
    name: string,
    o: Pick<RequestOptions, "signal" | "onProgress">,
  ): Promise<{ conn: Connection; entry: ServerEntry; config: McpConfig }> {
    const signal = o.signal;
    for (let attempt = 0;; attempt++) {
      this.#assertOpen(name);
      const config = await this.#config.current();
      this.#reconcile(config);
      let entry: ServerEntry;
      try {
        entry = usableEntry(config, name);
      } catch (error) {
        if (error instanceof ConfigError) {
          throw new McpServerError(error.message, { server: name, kind: "config", cause: error });
        }
        throw error;
      }
      const live = this.#live.get(name);
      if (live && live.usable && live.fingerprint === entry.fingerprint) {
        this.#begin(live);
        return { conn: live, entry, config };
      }
      let pending = this.#connecting.get(name);
      if (pending === undefined || pending.fingerprint !== entry.fingerprint) {
        this.#assertNotFailedRecently(entry);
        pending = this.#startConnect(entry);
      }
      const reporting = o.onProgress === undefined
        ? undefined
        : startReporter(entry, pending, o.onProgress, (e) =>
          this.#log.debug("progress callback failed", { error: errorMessage(e) }));
      let conn: Connection;
      try {
        conn = await raceAbort(pending.promise, signal);
      } catch (error) {
        if (signal?.aborted) {
          throw new McpServerError(
            `Cancelled while connecting to MCP server "${name}".`,
            { server: name, kind: "cancelled", cause: error },
          );
        }
        throw error;
      } finally {
        reporting?.stop();
      }
      if (conn.usable) {
        this.#begin(conn);
        return { conn, entry, config };
      }
      // It closed (or the config changed) between connecting and this caller resuming: retry.
      if (attempt >= 2) {
        const tail = conn.stderr.lines.map((line) => redactEntryText(entry, line));
        throw new McpServerError(
          `MCP server "${name}" closed its connection right after connecting.` +
            (conn.entry.transport === "stdio" ? formatTail(tail) : ""),
          { server: name, kind: "closed", stderrTail: tail },
        );
      }
    }
  }

  #assertOpen(name: string): void {
    if (this.#closed) {
      throw new McpServerError(
        `Cannot use MCP server "${name}": the connection pool is closed (the bridge is shutting down).`,
        { server: name, kind: "closed" },
      );
    }
  }

  /** When a failed start of `remark`'s entry is tried again, if that is still to come. */
  #retryNote(remark: Remark): string | undefined {
    const failed = remark.failedStart;
    if (failed === undefined) return undefined;
    const wait = failed.retryAt - this.#now();
    if (wait <= 0) return undefined;
    return `not tried again for ${Math.ceil(wait / 1000)} s (at ${clockTime(failed.retryAt)}) ` +
      "unless its config entry changes";
  }

  /**
   * Throws at once when `entry` failed to start a moment ago (and has not changed since), saying
   * when it is tried again, rather than making every caller wait out the connect timeout again.
   */
  #assertNotFailedRecently(entry: ServerEntry): void {
    const remark = this.#remarks.get(entry.name);
    if (remark?.fingerprint !== entry.fingerprint || remark.failedStart === undefined) return;
    const retry = this.#retryNote(remark);
    if (retry === undefined) return;
    const { error, at } = remark.failedStart;
    const ago = Math.max(0, Math.round((this.#now() - at) / 1000));
    const message = `MCP server "${entry.name}" failed to start ${ago} s ago and is ${retry}: ` +
      errorMessage(error);
    throw new McpServerError(message, {
      server: entry.name,
      kind: error instanceof McpServerError ? error.kind : "spawn",
      stderrTail: error instanceof McpServerError ? error.stderrTail : undefined,
      cause: error,
    });
  }

  #startConnect(entry: ServerEntry): Pending {
    const name = entry.name;
    const seq = ++this.#seq;
    const abort = new AbortController();
    const phase: ConnectPhase = { what: "starting" };
    const turn = { queued: false };
    const started = this.#inTurn(
      name,
      turn,
      abort.signal,
      () => this.#connect(entry, abort.signal, phase),
    );
    const promise = started.then(
      (conn) => {
        conn.seq = seq;
        conn.onToolsChanged = () => {
          if (this.#keptTools.get(name)?.fingerprint === conn.fingerprint) {
            this.#keptTools.delete(name);
          }
        };
        if (this.#connecting.get(name)?.promise === promise) this.#connecting.delete(name);
        const newer = (this.#connecting.get(name)?.seq ?? 0) > seq ||
          (this.#live.get(name)?.seq ?? 0) > seq;
        if (this.#closed || newer || !conn.usable) {
          // Waiting callers see it unusable and retry with the current entry.
          this.#retire(conn);
          return conn;
        }
        this.#remarks.delete(name);
        const current = this.#live.get(name);
        if (current && current !== conn) this.#retire(current);
        this.#live.set(name, conn);
        this.#log.debug("connected", { server: name, pid: conn.pid });
        return conn;
      },
      (raw: unknown) => {
        // Whatever the error shows (a command line, a URL, stderr) has the entry's secrets hidden.
        const error = redactError(raw, (text) => redactEntryText(entry, text));
        if (this.#connecting.get(name)?.promise !== promise) throw error;
        this.#connecting.delete(name);
        const at = this.#now();
        // Given up because the pool closed: nothing to remember about the server. Nor when it
        // waits for the user to authorize the bridge: the next call, once they did, goes on.
        const remember = this.#retryFailedStartMs > 0 && !abort.signal.aborted &&
          !(error instanceof McpServerError && error.kind === "unauthorized");
        this.#remarks.set(name, {
          fingerprint: entry.fingerprint,
          state: "failed",
          reason: errorMessage(error),
          ...(remember
            ? { failedStart: { error, at, retryAt: at + this.#retryFailedStartMs } }
            : {}),
        });
        this.#log.debug("connect failed", { server: name, error: errorMessage(error) });
        throw error;
      },
    );
    const pending: Pending = {
      fingerprint: entry.fingerprint,
      seq,
      promise,
      abort,
      startedAt: performance.now(),
      phase,
      turn,
    };
    this.#connecting.set(name, pending);
    // Callers may all have given up (aborted); the outcome is recorded above either way.
    promise.catch(() => undefined);
    return pending;
  }

  /**
   * Runs `start` once fewer than `maxConcurrentStarts` starts are under way (`turn.queued`
   * meanwhile); a start given up while waiting (`signal`: the pool closes) fails without running.
   */
  async #inTurn<T>(
    name: string,
    turn: { queued: boolean },
    signal: AbortSignal,
    start: () => Promise<T>,
  ): Promise<T> {
    while (this.#starting >= this.#maxStarts) {
      turn.queued = true;
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener("abort", wake);
          const i = this.#startTurns.indexOf(wake);
          if (i >= 0) this.#startTurns.splice(i, 1);
          resolve();
        };
        this.#startTurns.push(wake);
        signal.addEventListener("abort", wake);
      });
      if (signal.aborted) {
        throw new McpServerError(
          `Gave up starting MCP server "${name}": the bridge is shutting down.`,
          { server: name, kind: "closed" },
        );
      }
    }
    turn.queued = false;
    this.#starting++;
    try {
      return await start();
    } finally {
      this.#starting--;
      this.#startTurns[0]?.();
    }
  }

  /** Closes connections whose entry vanished, changed, got disabled or became invalid. */
  #reconcile(config: McpConfig): void {
    const byName = new Map(config.servers.map((s) => [s.name, s]));
    for (const [name, kept] of this.#keptTools) {
      if (byName.get(name)?.fingerprint !== kept.fingerprint) this.#keptTools.delete(name);
    }
    for (const [name, conn] of this.#live) {
      const entry = byName.get(name);
      let why: string | undefined;
      if (entry === undefined) why = "removed from the config";
      else if (entry.disabled) why = "disabled in the config";
      else if (entry.problem !== undefined) why = "its config entry became invalid";
      else if (entry.held !== undefined) why = "its config entry changed while a model worked";
      else if (entry.fingerprint !== conn.fingerprint) why = "its config entry changed";
      if (why === undefined) continue;
      this.#log.info(`closing MCP server "${name}": ${why}`, { inFlight: conn.inFlight });
      this.#live.delete(name);
      this.#retire(conn);
    }
  }

  #begin(conn: Connection): void {
    conn.inFlight++;
  }

  #release(conn: Connection): void {
    conn.inFlight--;
    if (conn.inFlight > 0) return;
    if (conn.retiring) {
      this.#closeConn(conn);
      return;
    }
    if (this.#idleMs <= 0 || conn.closed || this.#live.get(conn.name) !== conn) return;
    // An idle connection must not keep a CLI process alive.
    conn.idle ??= new QuietTimer(this.#idleMs, () => this.#idleClose(conn), {
      now: this.#now,
      unref: true,
    });
    conn.idle.touch();
  }

  #idleClose(conn: Connection): void {
    // Busy now: its timer runs again when its last call ends.
    if (conn.inFlight > 0 || this.#live.get(conn.name) !== conn) return;
    this.#log.debug("closing idle connection", { server: conn.name, idleMs: this.#idleMs });
    this.#live.delete(conn.name);
    this.#remarks.set(conn.name, {
      fingerprint: conn.fingerprint,
      state: "not-started",
      reason: `closed after ${Math.round(this.#idleMs / 1000)} s idle; starts again on next use`,
    });
    this.#closeConn(conn);
  }

  /** Takes a broken connection out of service; it closes once its in-flight calls finish. */
  #dropBroken(conn: Connection, reason: string): void {
    if (this.#live.get(conn.name) !== conn) return;
    this.#live.delete(conn.name);
    this.#remarks.set(conn.name, { fingerprint: conn.fingerprint, state: "failed", reason });
    this.#retire(conn);
  }

  /** No new calls on `conn`; it closes once its in-flight calls finish. */
  #retire(conn: Connection): void {
    conn.retiring = true;
    if (conn.inFlight === 0) this.#closeConn(conn);
    else this.#retired.add(conn);
  }

  #closeConn(conn: Connection): void {
    this.#retired.delete(conn);
    if (this.#live.get(conn.name) === conn) this.#live.delete(conn.name);
    const closing = conn.close();
    if (this.#closing.has(closing)) return;
    this.#closing.add(closing);
    closing.finally(() => this.#closing.delete(closing));
  }

  /** The server went away (exit, broken pipe, HTTP stream closed) or we closed it. */
  #onClosed(conn: Connection): void {
    conn.idle?.stop();
    if (this.#live.get(conn.name) === conn) this.#live.delete(conn.name);
    if (conn.closedByUs) return;
    this.#reportGone(conn);
    // Release the process and pipes (and stop what is left of its process group).
    this.#closeConn(conn);
  }

  /**
   * A stdio server's spawned process exited. The connection takes no new calls: the next call
   * starts a new process. Calls already running finish on whatever still holds the pipes (a
   * launcher's child); then it closes, which stops the rest of the process group.
   */
  #onExited(conn: Connection): void {
    if (conn.closedByUs || conn.closing !== undefined) return; // We are closing it.
    if (this.#live.get(conn.name) === conn) this.#live.delete(conn.name);
    this.#reportGone(conn);
    this.#retire(conn);
  }

  /** Warns once that a server went away and records why, for status(). */
  #reportGone(conn: Connection): void {
    if (conn.goneReported) return;
    conn.goneReported = true;
    const stdio = conn.entry.transport === "stdio";
    const how = stdio
      ? exitText(conn.exit)
      : `lost its connection: ${conn.lostReason ?? "the server closed it"}`;
    this.#log.warn(
      `MCP server "${conn.name}" ${how}; the next call ${stdio ? "starts it again" : "reconnects"}`,
      { pid: conn.pid },
    );
    const remark: Remark = { fingerprint: conn.fingerprint, state: "failed", reason: how };
    const withLastWords = () => {
      const last = conn.stderr.lines.at(-1);
      remark.reason = redactEntryText(conn.entry, `${how}${last === undefined ? "" : `: ${last}`}`);
    };
    withLastWords();
    this.#remarks.set(conn.name, remark);
    // The process may have exited before its last stderr lines were read.
    conn.settledStderr().then(withLastWords, () => undefined);
  }

  // -- connecting ---------------------------------------------------------------------------

  #connect(entry: ServerEntry, signal: AbortSignal, phase: ConnectPhase): Promise<Connection> {
    const options: ConnectOptions = {
      signal,
      maxMessageBytes: this.#maxMessageBytes,
      clientInfo: this.#clientInfo,
      capabilities: this.#capabilities,
      phase,
      connectTimeoutMs: entry.timeoutMs ?? this.#connectTimeoutMs,
      log: this.#log,
      extraEnv: this.#extraEnv,
      stderrLines: this.#stderrLines,
      onClosed: (c) => this.#onClosed(c),
      onExited: (c) => this.#onExited(c),
      signalGroup: this.#signalGroup,
      tracker: this.#tracker,
      track: (p) => this.#track(p),
      config: this.#config,
      oauth: this.#oauth?.for(entry),
      waitForAuthorization: this.#waitForAuthorization,
    };
    return connectServer(entry, options);
  }

  #track(promise: Promise<unknown>): void {
    const p = promise.then(() => undefined, () => undefined);
    this.#closing.add(p);
    p.finally(() => this.#closing.delete(p));
  }
}

/** `ms` (epoch) as the local time of day, "14:03:05". */
function clockTime(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

/** The text parts of a result, joined (what the server said). */
function textOf(result: CallToolResult): string {
  return result.content.map((part) => part.type === "text" ? part.text : "").join(" ").trim();
}

/**
 * Bounds one tool call: fires after `timeoutMs` without a result or progress, unless the bridge
 * is answering one of the server's own requests then (sampling, elicitation: the server is
 * waiting for the bridge); once that answer is sent, the call gets `timeoutMs` again. Firing
 * aborts {@linkcode signal} with the SDK's timeout error, so the call fails as one that timed out.
 * Progress costs no timers ({@linkcode QuietTimer}).
 */
class CallWatchdog {
  readonly #ms: number;
  readonly #conn: Connection;
  readonly #abort = new AbortController();
  readonly #offIdle: () => void;
  #offCancel?: () => void;
  readonly #quiet: QuietTimer;

  /** `cancel`: the caller's signal, which aborts this one with its reason. */
  constructor(ms: number, conn: Connection, cancel?: AbortSignal) {
    this.#ms = ms;
    this.#conn = conn;
    this.#quiet = new QuietTimer(ms, () => this.#fire());
    this.#offIdle = conn.requests.onIdle(() => this.reset());
    if (cancel !== undefined) {
      // Followed by hand rather than with AbortSignal.any: one signal fewer on every call.
      const onCancel = () => this.#abort.abort(cancel.reason);
      if (cancel.aborted) onCancel();
      else {
        cancel.addEventListener("abort", onCancel, { once: true });
        this.#offCancel = () => cancel.removeEventListener("abort", onCancel);
      }
    }
    this.reset();
  }

  /** Aborted when the call timed out or the caller cancelled it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Something came from the server: the call has `ms` again. */
  reset(): void {
    if (!this.#abort.signal.aborted) this.#quiet.touch();
  }

  #fire(): void {
    // Waiting for the bridge's own answer: the clock restarts when it is sent (onIdle).
    if (this.#conn.requests.answering > 0) return;
    this.#abort.abort(
      new McpError(ErrorCode.RequestTimeout, "Request timed out", { timeout: this.#ms }),
    );
  }

  stop(): void {
    this.#quiet.stop();
    this.#offIdle();
    this.#offCancel?.();
  }
}

/** `server` declares no `kind` (resources, prompts), so `what` cannot be asked of it. */
function notOffered(server: string, kind: "resources" | "prompts", what: string): McpServerError {
  return new McpServerError(
    `MCP server "${server}" offers no ${kind} (it does not declare the capability), so the bridge ` +
      `cannot do ${what}. Run \`lmstudio-bridge tools ${
        shellWord(server)
      }\` to see what it offers.`,
    { server, kind: "unsupported" },
  );
}

/**
 * Why prompt `name` cannot be got with `args`, from the server's list: it is not listed (with a
 * close name and the list), or a required argument is missing, or an argument is unknown.
 */
function promptProblem(
  server: string,
  name: string,
  args: Record<string, string>,
  prompts: readonly Prompt[],
): McpServerError | undefined {
  const prompt = prompts.find((p) => p.name === name);
  const base = { server, kind: "unknown_prompt" as const };
  if (prompt === undefined) {
    const names = prompts.map((p) => p.name);
    const near = closestName(name, names);
    return new McpServerError(
      `MCP server "${server}" has no prompt "${name}". ` +
        `${near === undefined ? "" : `Did you mean "${near}"? `}` +
        (names.length === 0 ? "It lists no prompts." : `Its prompts: ${listNames(names)}.`),
      base,
    );
  }
  const declared = prompt.arguments ?? [];
  const missing = declared.filter((a) => a.required === true && args[a.name] === undefined);
  const unknown = Object.keys(args).filter((k) => !declared.some((a) => a.name === k));
  if (missing.length === 0 && unknown.length === 0) return undefined;
  const takes = declared.length === 0
    ? "It takes no arguments."
    : `It takes: ${declared.map((a) => `${a.name}${a.required === true ? "" : "?"}`).join(", ")}.`;
  const wrong = [
    missing.length > 0 ? `missing ${listNames(missing.map((a) => a.name))}` : "",
    unknown.length > 0 ? `unknown ${listNames(unknown)}` : "",
  ].filter((x) => x !== "").join("; ");
  return new McpServerError(
    `Prompt "${name}" of MCP server "${server}" cannot be got with these arguments (${wrong}). ` +
      takes,
    { server, kind: "protocol" },
  );
}
