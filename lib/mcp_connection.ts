/**
 * One live connection to a downstream MCP server ({@linkcode Connection}): its SDK client, how
 * its process exited or why its remote end was lost, its in-flight count and idle timer (kept by
 * the pool), and its tool list, fetched page by page and cached until the server says the list
 * changed. Also what the connect functions share: the options they take from the pool
 * ({@linkcode ConnectOptions}), the client they connect with ({@linkcode newClient}) and the
 * bounded MCP handshake ({@linkcode handshake}, {@linkcode isHandshakeTimeout}).
 */
import {
  Client,
  ErrorCode,
  McpError,
  type Tool,
  ToolListChangedNotificationSchema,
  type Transport,
} from "./sdk.ts";
import type { Logger } from "./log.ts";
import { McpServerError } from "./pool_errors.ts";
import type { GroupSignaller } from "./process_group.ts";
import type { RemoteWatch } from "./remote_watch.ts";
import type { ServerEntry } from "./config_entry.ts";
import { type ChildState, type ExitInfo, settleWithin, type StderrTail } from "./stdio_child.ts";

const MAX_TOOL_PAGES = 1000;

type Timer = ReturnType<typeof setTimeout>;

/**
 * True when `tool` can only run as an MCP task (`execution.taskSupport: "required"`). The bridge
 * does not support MCP tasks, so it cannot call such a tool.
 */
export function needsMcpTasks(tool: Pick<Tool, "execution">): boolean {
  return tool.execution?.taskSupport === "required";
}

/** What connecting to a server takes from the pool. */
export interface ConnectOptions {
  clientInfo: { name: string; version: string };
  /** Bound on spawn + MCP handshake. */
  connectTimeoutMs: number;
  log: Logger;
  /** Added to a stdio child's environment. */
  extraEnv: Record<string, string>;
  /** Lines of a stdio server's stderr kept for error messages. */
  stderrLines: number;
  /** Called once when the connection closes, by the bridge or by the server. */
  onClosed: (conn: Connection) => void;
  /**
   * Called once when a stdio server's spawned process exits, which can come before the close:
   * a launcher's child (`npx`) may still hold the pipes and answer calls already running.
   */
  onExited: (conn: Connection) => void;
  /** Puts stdio servers in their own process group and signals it (see process_group.ts). */
  signalGroup?: GroupSignaller;
  /** Cleanup still running after a failed connect (closing its client); the pool waits for it on close. */
  track: (cleanup: Promise<unknown>) => void;
}

/** The SDK client the bridge connects with: `clientInfo`, no client capabilities. */
export function newClient(clientInfo: { name: string; version: string }): Client {
  return new Client(clientInfo, { capabilities: {} });
}

/**
 * Connects `client` over `transport` (starting it and doing the MCP handshake), bounded by
 * `timeoutMs` for the handshake request plus a second for the transport to start; past that it
 * rejects with an error that {@linkcode isHandshakeTimeout} recognises.
 */
export function handshake(
  client: Client,
  transport: Transport,
  options: { timeoutMs: number },
): Promise<void> {
  const { timeoutMs } = options;
  return withTimeout(
    client.connect(transport, { timeout: timeoutMs }),
    timeoutMs + 1000,
    () => new Error("timeout"),
  );
}

/** True when {@linkcode handshake} failed because the server did not answer in time. */
export function isHandshakeTimeout(error: unknown): boolean {
  return (error instanceof McpError && error.code === ErrorCode.RequestTimeout) ||
    (error instanceof Error && error.message === "timeout");
}

/** Rejects with `onTimeout()` after `ms` unless `promise` settles first. */
function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A live connection to one server; the pool counts its uses and closes it. */
export class Connection {
  readonly name: string;
  readonly entry: ServerEntry;
  readonly client: Client;
  readonly stderr: StderrTail;
  /** Set once the transport closed, by us or by the server. */
  closed = false;
  /** True when we closed it (idle, config change, pool close), false when the server went away. */
  closedByUs = false;
  /** The pool warned that the server went away (exit or lost connection); once is enough. */
  goneReported = false;
  /** No new calls; close when in-flight calls finish. */
  retiring = false;
  /** Calls and listings running on it (kept by the pool). */
  inFlight = 0;
  /** The pool's connect attempt that made it (a newer attempt's connection wins). */
  seq = 0;
  /** Closes it after the pool's idle time; set while nothing runs on it. */
  idleTimer?: Timer;
  /** Set once closing started. */
  closing?: Promise<void>;
  readonly #child?: ChildState;
  readonly #remote?: RemoteWatch;
  readonly #onClosed: (conn: Connection) => void;
  readonly #onExited: (conn: Connection) => void;
  #exitNoted = false;
  #tools?: Tool[];
  #toolsPromise?: Promise<Tool[]>;
  #toolsVersion = 0;

  constructor(options: {
    entry: ServerEntry;
    client: Client;
    stderr: StderrTail;
    /** A stdio server's child process, read live from its transport. */
    child?: ChildState;
    remote?: RemoteWatch;
    onClosed: (conn: Connection) => void;
    onExited?: (conn: Connection) => void;
  }) {
    this.name = options.entry.name;
    this.entry = options.entry;
    this.client = options.client;
    this.stderr = options.stderr;
    this.#child = options.child;
    this.#remote = options.remote;
    this.#onClosed = options.onClosed;
    this.#onExited = options.onExited ?? (() => {});
    this.client.onclose = () => this.#markClosed();
    this.client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.#toolsVersion++;
      this.#tools = undefined;
      this.#toolsPromise = undefined;
    });
  }

  /** Process id of a stdio server's spawned process. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How the process exited, once it has. */
  get exit(): ExitInfo | undefined {
    return this.#child?.exit;
  }

  /** The fingerprint of the config entry it was made from. */
  get fingerprint(): string {
    return this.entry.fingerprint;
  }

  /**
   * Why the connection was found lost, if it was: a remote server that went away mid-call, or a
   * stdio server whose output the transport had to give up on.
   */
  get lostReason(): string | undefined {
    return this.#remote?.lostReason ?? this.#child?.closeReason;
  }

  /** The tool named `name`, if the tool list is cached. */
  cachedTool(name: string): Tool | undefined {
    return this.#tools?.find((t) => t.name === name);
  }

  /**
   * Open, not retiring, and its process (for stdio) still running: new calls may use it. Once
   * the spawned process exited, what is left of it only finishes the calls already running.
   */
  get usable(): boolean {
    return !this.closed && !this.retiring && this.closing === undefined &&
      this.exit === undefined;
  }

  /** The spawned process exited (the transport says so); tells the pool once. */
  processExited(): void {
    if (this.#exitNoted) return;
    this.#exitNoted = true;
    this.#onExited(this);
  }

  /** Number of tools the bridge can call, once listed. */
  get toolCount(): number | undefined {
    return this.#tools?.filter((t) => !needsMcpTasks(t)).length;
  }

  #markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.#onClosed(this);
  }

  /** Waits (briefly) until the child's last stderr output has been read. */
  async settledStderr(): Promise<string[]> {
    if (this.#child) await settleWithin(this.#child.stderrEnded, 250);
    this.stderr.flush();
    return this.stderr.lines;
  }

  /** All tools (every page), cached until the server says the list changed. */
  tools(timeoutMs: number): Promise<Tool[]> {
    if (this.#tools) return Promise.resolve(this.#tools);
    if (this.#toolsPromise) return this.#toolsPromise;
    const version = this.#toolsVersion;
    const promise = this.#fetchTools(timeoutMs).then((tools) => {
      if (this.#toolsVersion === version) this.#tools = tools;
      return tools;
    }).finally(() => {
      if (this.#toolsPromise === promise) this.#toolsPromise = undefined;
    });
    this.#toolsPromise = promise;
    return promise;
  }

  async #fetchTools(timeoutMs: number): Promise<Tool[]> {
    if (this.client.getServerCapabilities()?.tools === undefined) return [];
    const tools: Tool[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const result = await this.client.listTools(cursor === undefined ? undefined : { cursor }, {
        timeout: timeoutMs,
      });
      tools.push(...result.tools);
      cursor = result.nextCursor;
      if (cursor === undefined || cursor === "") return tools;
      if (seen.has(cursor)) {
        throw new McpServerError(
          `MCP server "${this.name}" returned the tools/list cursor ${
            JSON.stringify(cursor)
          } twice; its pagination is broken. Report it to the server's authors.`,
          { server: this.name, kind: "protocol" },
        );
      }
      seen.add(cursor);
    }
    throw new McpServerError(
      `MCP server "${this.name}" returned more than ${MAX_TOOL_PAGES} pages of tools; giving up.`,
      { server: this.name, kind: "protocol" },
    );
  }

  /** Closes the client (and the child or session); the same promise on every call. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    if (!this.closed) this.closedByUs = true;
    clearTimeout(this.idleTimer);
    this.closing = this.client.close().catch(() => {
      // Closing a transport whose process already died can fail; the process is gone either way.
    });
    return this.closing;
  }
}
