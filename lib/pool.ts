/**
 * Live connections to the downstream MCP servers of the config: one per server, created on first
 * use, shared by every caller, keyed by server name + entry fingerprint.
 *
 * - Concurrent first uses share one connect; later calls cost no spawn.
 * - Hot reload: every call checks the config (a stat). A changed entry gets a new connection and
 *   the old one closes once its in-flight calls finish; removed or disabled entries are closed.
 * - A server that exits or breaks its pipe fails its in-flight calls with an
 *   {@linkcode McpServerError} naming the server, its exit code and its last stderr lines; the
 *   next call starts it again. A remote (HTTP/SSE) server that goes away mid-call (its response
 *   or event stream ends or breaks before the answer) fails them at once too, saying the
 *   connection was lost; the next call reconnects.
 * - Tools that can only run as MCP tasks are not offered ({@linkcode needsMcpTasks}); calling one
 *   fails with a message saying so.
 * - Start-up is bounded by `connectTimeoutMs`; a missing command, a Deno permission denial and a
 *   server that never answers `initialize` each get a message that says what to do.
 * - Idle connections close after `idleMs`; {@linkcode McpPool.close} closes everything.
 */
import {
  type CallToolResult,
  CallToolResultSchema,
  Client,
  ErrorCode,
  getDefaultEnvironment,
  McpError,
  SSEClientTransport,
  SseError,
  StdioClientTransport,
  type StdioServerParameters,
  StreamableHTTPClientTransport,
  StreamableHTTPError,
  type Tool,
  ToolListChangedNotificationSchema,
  type Transport,
} from "./sdk.ts";
import type { ConfigSource, McpConfig } from "./config.ts";
import { ConfigError } from "./config_error.ts";
import type { ServerEntry } from "./server_entry.ts";
import { log as defaultLog, type Logger } from "./log.ts";
import { VERSION } from "./version.ts";
import { raceAbort } from "./abort.ts";
import { z } from "zod";

/** Options of {@linkcode McpPool.listTools}. */
export interface ListToolsOptions {
  signal?: AbortSignal;
  /** Also return the tools that can only run as MCP tasks (the bridge cannot call them). */
  includeTaskRequired?: boolean;
}

/**
 * True when `tool` can only run as an MCP task (`execution.taskSupport: "required"`). The bridge
 * does not support MCP tasks, so it cannot call such a tool.
 */
export function needsMcpTasks(tool: Pick<Tool, "execution">): boolean {
  return tool.execution?.taskSupport === "required";
}

/** A progress notification of a running tool. */
export interface ToolProgress {
  progress: number;
  total?: number;
  message?: string;
}

/** Per-call options of {@linkcode McpPool.callTool}. */
export interface CallToolOptions {
  /** Cancels the call; the server receives `notifications/cancelled`. */
  signal?: AbortSignal;
  /** Fails the call when the server sends neither a result nor progress for this long. */
  timeoutMs?: number;
  onProgress?: (p: ToolProgress) => void;
}

/** What {@linkcode McpPool.status} says about a server. */
export type ServerState =
  | "not-started"
  | "connecting"
  | "connected"
  | "failed"
  | "disabled"
  | "invalid";

/** One configured server as the pool sees it. */
export interface ServerStatus {
  name: string;
  transport: "stdio" | "http" | "sse";
  /** The command line (stdio) or URL (http/sse). */
  target: string;
  state: ServerState;
  /** Why it failed, is invalid, or was closed. */
  reason?: string;
  configPath?: string;
  /** Names of the entry's env variables, never their values. */
  envNames: string[];
  /** Number of tools the bridge can call (not counting those that need MCP tasks), once listed. */
  toolCount?: number;
  /** Process id of a connected stdio server. */
  pid?: number;
}

/** What went wrong with a downstream server. */
export type McpServerErrorKind =
  | "config"
  | "not_found"
  | "permission"
  | "spawn"
  | "connect_timeout"
  | "unreachable"
  | "handshake"
  | "exited"
  | "timeout"
  | "cancelled"
  | "protocol"
  | "closed"
  | "unsupported";

/** A downstream MCP server failed; the message says what failed, why and what to do. */
export class McpServerError extends Error {
  override name = "McpServerError";
  /** The server's name in the config. */
  readonly server: string;
  /** The last lines the server wrote to stderr (stdio only), oldest first. */
  readonly stderrTail: string[];
  readonly kind: McpServerErrorKind;
  /** Exit code of a stdio server that exited (null when killed by a signal). */
  readonly exitCode?: number | null;
  /** The tool being called, if any. */
  readonly tool?: string;
  constructor(
    message: string,
    options: {
      server: string;
      kind: McpServerErrorKind;
      stderrTail?: string[];
      exitCode?: number | null;
      tool?: string;
      cause?: unknown;
    },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.server = options.server;
    this.kind = options.kind;
    this.stderrTail = options.stderrTail ?? [];
    this.exitCode = options.exitCode;
    this.tool = options.tool;
  }
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
  /** Added to every stdio child's environment (e.g. the recursion depth marker). */
  extraEnv?: Record<string, string>;
  /** Lines of each server's stderr kept for error messages. Default 20. */
  stderrLines?: number;
}

const DEFAULT_IDLE_MS = 300_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_CALL_TIMEOUT_MS = 300_000;
const MAX_TOOL_PAGES = 1000;

type Timer = ReturnType<typeof setTimeout>;

// ---------------------------------------------------------------------------------------------
// Display helpers

function quoteArg(arg: string): string {
  return arg === "" || /[\s"'$`\\]/.test(arg) ? JSON.stringify(arg) : arg;
}

/** The command line (stdio) or URL (http/sse) of an entry, for display. */
export function describeTarget(entry: ServerEntry): string {
  if (entry.transport === "stdio") {
    return [entry.command ?? "", ...entry.args].map(quoteArg).join(" ").trim();
  }
  return entry.url ?? "";
}

function formatTail(lines: readonly string[]): string {
  if (lines.length === 0) return " It wrote nothing to stderr.";
  return ` Last stderr lines:\n${lines.map((l) => `  | ${l}`).join("\n")}`;
}

function exitText(exit: ExitInfo | undefined): string {
  if (exit === undefined) return "exited";
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return exit.signal ? `was killed by ${exit.signal}` : "exited";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errnoCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code: unknown = Reflect.get(error, "code");
  return typeof code === "string" ? code : undefined;
}

function isPermissionDenial(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

/** Waits for `promise` (never rejecting) at most `ms`. */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: Timer | undefined;
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/** Rejects with `onTimeout()` after `ms` unless `promise` settles first. */
function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// stderr capture

/** Keeps the last lines of a child's stderr and logs each line at debug level. */
class StderrTail {
  readonly #max: number;
  readonly #lines: string[] = [];
  readonly #onLine: (line: string) => void;
  readonly #decoder = new TextDecoder();
  #partial = "";

  constructor(max: number, onLine: (line: string) => void) {
    this.#max = max;
    this.#onLine = onLine;
  }

  push(chunk: unknown): void {
    const text = typeof chunk === "string"
      ? chunk
      : chunk instanceof Uint8Array
      ? this.#decoder.decode(chunk, { stream: true })
      : String(chunk);
    const parts = (this.#partial + text).split(/\r?\n/);
    this.#partial = parts.pop() ?? "";
    if (this.#partial.length > 4000) {
      parts.push(this.#partial);
      this.#partial = "";
    }
    for (const part of parts) this.#add(part);
  }

  flush(): void {
    if (this.#partial !== "") this.#add(this.#partial);
    this.#partial = "";
  }

  #add(raw: string): void {
    // deno-lint-ignore no-control-regex
    const line = raw.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").trimEnd();
    if (line === "") return;
    const clipped = line.length > 500 ? `${line.slice(0, 500)}…` : line;
    this.#onLine(clipped);
    this.#lines.push(clipped);
    if (this.#lines.length > this.#max) this.#lines.shift();
  }

  get lines(): string[] {
    return [...this.#lines];
  }
}

// ---------------------------------------------------------------------------------------------
// Remote servers: noticing that one went away

type RequestId = string | number;

const RequestIdSchema = z.union([z.string(), z.number()]);
/** The fields of a JSON-RPC message that tell requests, responses and cancellations apart. */
const RpcMessageSchema = z.object({
  id: RequestIdSchema.optional(),
  method: z.string().optional(),
  params: z.object({ requestId: RequestIdSchema.optional() }).optional().catch(undefined),
});

function rpcMessages(json: string): z.infer<typeof RpcMessageSchema>[] {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return [];
  }
  return (Array.isArray(data) ? data : [data]).flatMap((item: unknown) => {
    const parsed = RpcMessageSchema.safeParse(item);
    return parsed.success ? [parsed.data] : [];
  });
}

/**
 * Reads a server-sent event stream as it passes by: which JSON-RPC responses it carried and
 * whether it had event ids (then the SDK may resume it after a break).
 */
class SseScan {
  readonly #decoder = new TextDecoder();
  readonly #onData: (data: string) => void;
  #line = "";
  #data: string[] = [];
  #event = "";
  /** It carried an event id, so the SDK tries to resume it when it ends early. */
  resumable = false;

  constructor(onData: (data: string) => void) {
    this.#onData = onData;
  }

  push(bytes: Uint8Array): void {
    const lines = (this.#line + this.#decoder.decode(bytes, { stream: true })).split(/\r?\n/);
    this.#line = lines.pop() ?? "";
    for (const line of lines) this.#onLine(line);
  }

  #onLine(line: string): void {
    if (line === "") {
      if (this.#data.length > 0 && (this.#event === "" || this.#event === "message")) {
        this.#onData(this.#data.join("\n"));
      }
      this.#data = [];
      this.#event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const raw = colon < 0 ? "" : line.slice(colon + 1);
    const value = raw.startsWith(" ") ? raw.slice(1) : raw;
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && value !== "") this.resumable = true;
  }
}

/** Passes `body` through, telling `onEnd` once how it ended (unless the reader cancelled it). */
function observeBody(
  body: ReadableStream<Uint8Array>,
  hooks: { onChunk(bytes: Uint8Array): void; onEnd(outcome: { error?: unknown }): void },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = (outcome: { error?: unknown }) => {
    if (ended) return;
    ended = true;
    hooks.onEnd(outcome);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        end({ error });
        controller.error(error);
        return;
      }
      if (next.done) {
        end({});
        controller.close();
        return;
      }
      hooks.onChunk(next.value);
      controller.enqueue(next.value);
    },
    cancel(reason) {
      ended = true;
      return reader.cancel(reason);
    },
  });
}

/** A short reason for a failed request or stream: "connection refused" rather than a stack of wrappers. */
function networkReason(error: unknown): string {
  const text = causeChain(error).map(errorText).join(": ");
  if (/connection refused|ECONNREFUSED/i.test(text)) return "connection refused";
  if (/connection reset|reset by peer|ECONNRESET/i.test(text)) return "the connection was reset";
  if (/dns error|failed to lookup|name or service not known|ENOTFOUND/i.test(text)) {
    return "its host name could not be resolved";
  }
  if (/timed out|ETIMEDOUT/i.test(text)) return "the connection timed out";
  if (/unexpected eof|incomplete|end of file|broken pipe|error reading a body/i.test(text)) {
    return "the connection closed in the middle of a response";
  }
  if (/fetch failed|error sending request/i.test(text)) return "the server could not be reached";
  const cleaned = text.replace(/\b(?:TypeError|SSE error|Error): /g, "").trim();
  return cleaned === "" || cleaned === "undefined" ? "the server closed the connection" : cleaned;
}

/**
 * Watches one remote (streamable HTTP or SSE) connection for signs that the server went away,
 * which the SDK does not pass on to waiting requests (they would wait out their timeout):
 * - a POST response stream that ends or breaks before it carried the answer, and cannot be
 *   resumed (it had no event ids);
 * - the SDK giving up reconnecting the server's event stream (streamable HTTP);
 * - the event stream of an SSE connection dropping (a new one would be a new session).
 * It then calls `onLost` once with the reason; the pool closes the connection, which fails its
 * in-flight calls at once, and the next call reconnects.
 */
class RemoteWatch {
  readonly #baseFetch: typeof fetch;
  /** Requests the client gave up on (timeout, abort): the server need not answer them. */
  readonly #cancelled = new Set<RequestId>();
  #lastReconnectError?: string;
  #onLost: (reason: string) => void = () => {};
  /** Why the connection was lost, once it was. */
  lostReason?: string;

  constructor(baseFetch: typeof fetch = fetch) {
    this.#baseFetch = baseFetch;
  }

  /** Watches `transport`'s errors; `onLost` closes it. Call before connecting. */
  attach(transport: Transport, onLost: (reason: string) => void): void {
    this.#onLost = onLost;
    const sse = transport instanceof SSEClientTransport;
    transport.onerror = (error: Error) => {
      const message = errorText(error);
      if (sse && error instanceof SseError && typeof error.code !== "number") {
        this.#lost(`its event stream dropped (${networkReason(error)})`);
      } else if (message.startsWith("Failed to reconnect SSE stream: ")) {
        this.#lastReconnectError = message.slice("Failed to reconnect SSE stream: ".length);
      } else if (message.startsWith("Maximum reconnection attempts")) {
        const last = this.#lastReconnectError;
        this.#lost(
          `its event stream dropped and reconnecting failed${
            last === undefined ? "" : ` (${networkReason(new Error(last))})`
          }`,
        );
      }
    };
  }

  /** The fetch for the streamable HTTP transport: watches POST response streams. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    if (init?.method !== "POST" || typeof body !== "string") {
      return await this.#baseFetch(input, init);
    }
    const messages = rpcMessages(body);
    for (const m of messages) {
      // Noted before sending: the server may end the cancelled call's stream right away.
      if (m.method === "notifications/cancelled" && m.params?.requestId !== undefined) {
        if (this.#cancelled.size >= 1000) this.#cancelled.clear();
        this.#cancelled.add(m.params.requestId);
      }
    }
    const response = await this.#baseFetch(input, init);
    const ids = new Set<RequestId>();
    for (const m of messages) if (m.id !== undefined && m.method !== undefined) ids.add(m.id);
    const type = response.headers.get("content-type") ?? "";
    if (ids.size === 0 || !response.ok || response.body === null) return response;
    if (!type.toLowerCase().startsWith("text/event-stream")) return response;
    const scan = new SseScan((data) => {
      if (ids.size === 0) return; // answered; no need to parse the rest
      for (const m of rpcMessages(data)) {
        if (m.id !== undefined && m.method === undefined) ids.delete(m.id);
      }
    });
    const signal = init.signal ?? undefined;
    const watched = observeBody(response.body, {
      onChunk: (bytes) => scan.push(bytes),
      onEnd: ({ error }) => {
        if (signal?.aborted || scan.resumable) return;
        const unanswered = [...ids].filter((id) => !this.#cancelled.delete(id));
        if (unanswered.length === 0) return;
        this.#lost(
          error === undefined
            ? "the server ended its response stream without answering"
            : `its response stream broke (${networkReason(error)})`,
        );
      },
    });
    return new Response(watched, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };

  #lost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    this.#onLost(reason);
  }
}

// ---------------------------------------------------------------------------------------------
// One live connection

interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** Filled in by the transport when the child exits. */
interface ProcessWatch {
  exit?: ExitInfo;
}

interface ChildLike {
  once(event: "exit", listener: (code: number | null, signal: string | null) => void): unknown;
}

/**
 * The SDK keeps its ChildProcess private; we read only its exit code and signal, for error
 * messages. Without it (a future SDK) messages say "exited" without a code.
 */
function childOf(transport: StdioClientTransport): ChildLike | undefined {
  const child: unknown = Reflect.get(transport, "_process");
  if (typeof child !== "object" || child === null) return undefined;
  return typeof Reflect.get(child, "once") === "function" ? child as ChildLike : undefined;
}

/** StdioClientTransport that also reports how its child exited. */
class ObservedStdioTransport extends StdioClientTransport {
  readonly #onExit: (exit: ExitInfo) => void;
  constructor(params: StdioServerParameters, onExit: (exit: ExitInfo) => void) {
    super(params);
    this.#onExit = onExit;
  }
  override async start(): Promise<void> {
    await super.start();
    childOf(this)?.once("exit", (code, signal) => this.#onExit({ code, signal }));
  }
}

interface EndSignal {
  readonly ended: Promise<void>;
}

function streamEnd(stream: { once(event: string, listener: () => void): unknown }): EndSignal {
  return {
    ended: new Promise<void>((resolve) => {
      stream.once("end", resolve);
      stream.once("close", resolve);
    }),
  };
}

class Connection {
  readonly name: string;
  readonly entry: ServerEntry;
  readonly client: Client;
  readonly stderr: StderrTail;
  readonly connectedAt: number;
  pid?: number;
  readonly #watch: ProcessWatch;
  /** Set once the transport closed, by us or by the server. */
  closed = false;
  /** True when we closed it (idle, config change, pool close), false when the server went away. */
  closedByUs = false;
  /** No new calls; close when in-flight calls finish. */
  retiring = false;
  inFlight = 0;
  /** The connect attempt that made it (see Pending.seq). */
  seq = 0;
  idleTimer?: Timer;
  closing?: Promise<void>;
  readonly #stderrEnd?: EndSignal;
  readonly #remote?: RemoteWatch;
  readonly #onClosed: (conn: Connection) => void;
  #tools?: Tool[];
  #toolsPromise?: Promise<Tool[]>;
  #toolsVersion = 0;

  constructor(options: {
    entry: ServerEntry;
    client: Client;
    stderr: StderrTail;
    stderrEnd?: EndSignal;
    watch?: ProcessWatch;
    remote?: RemoteWatch;
    pid?: number;
    onClosed: (conn: Connection) => void;
  }) {
    this.name = options.entry.name;
    this.entry = options.entry;
    this.client = options.client;
    this.stderr = options.stderr;
    this.#stderrEnd = options.stderrEnd;
    this.#watch = options.watch ?? {};
    this.#remote = options.remote;
    this.pid = options.pid;
    this.#onClosed = options.onClosed;
    this.connectedAt = Date.now();
    this.client.onclose = () => this.#markClosed();
    this.client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.#toolsVersion++;
      this.#tools = undefined;
      this.#toolsPromise = undefined;
    });
  }

  /** How the process exited, once it has. */
  get exit(): ExitInfo | undefined {
    return this.#watch.exit;
  }

  get fingerprint(): string {
    return this.entry.fingerprint;
  }

  /** Why a remote server's connection was found lost (it went away mid-call), if it was. */
  get lostReason(): string | undefined {
    return this.#remote?.lostReason;
  }

  /** The tool named `name`, if the tool list is cached. */
  cachedTool(name: string): Tool | undefined {
    return this.#tools?.find((t) => t.name === name);
  }

  get usable(): boolean {
    return !this.closed && !this.retiring && this.closing === undefined;
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
    if (this.#stderrEnd) await settleWithin(this.#stderrEnd.ended, 250);
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

// ---------------------------------------------------------------------------------------------
// The pool

interface Pending {
  fingerprint: string;
  /** Order of connect attempts, so a slow connect for an old entry never replaces a newer one. */
  seq: number;
  promise: Promise<Connection>;
}

interface Connected {
  client: Client;
  remote: RemoteWatch;
}

interface Remark {
  fingerprint: string;
  state: "failed" | "not-started";
  reason: string;
}

/** Live MCP client connections, one per configured server; see the module docs. */
export class McpPool {
  readonly #config: ConfigSource;
  readonly #idleMs: number;
  readonly #connectTimeoutMs: number;
  readonly #callTimeoutMs: number;
  readonly #log: Logger;
  readonly #clientInfo: { name: string; version: string };
  readonly #extraEnv: Record<string, string>;
  readonly #stderrLines: number;
  readonly #live = new Map<string, Connection>();
  readonly #connecting = new Map<string, Pending>();
  readonly #remarks = new Map<string, Remark>();
  readonly #retired = new Set<Connection>();
  readonly #closing = new Set<Promise<void>>();
  #closed = false;
  #seq = 0;

  constructor(options: McpPoolOptions) {
    this.#config = options.config;
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#log = options.log ?? defaultLog.child("pool");
    this.#clientInfo = options.clientInfo ?? { name: "lmstudio-bridge", version: VERSION };
    this.#extraEnv = { ...options.extraEnv };
    this.#stderrLines = options.stderrLines ?? 20;
  }

  /** The config source the pool reads (for callers that need the raw configuration). */
  get config(): ConfigSource {
    return this.#config;
  }

  /**
   * The tools of `server` (every page), cached per connection, refreshed on list_changed.
   * Tools that can only run as MCP tasks ({@linkcode needsMcpTasks}) are left out unless
   * `includeTaskRequired` is set: the bridge cannot call them.
   */
  async listTools(server: string, o: ListToolsOptions = {}): Promise<Tool[]> {
    const conn = await this.#acquire(server, o.signal);
    try {
      const tools = await raceAbort(conn.tools(this.#connectTimeoutMs), o.signal);
      return o.includeTaskRequired === true ? tools : tools.filter((t) => !needsMcpTasks(t));
    } catch (error) {
      throw await this.#explain(conn, error, { signal: o.signal, what: "listing its tools" });
    } finally {
      this.#release(conn);
    }
  }

  /** Calls one tool; failures of the server (not `isError` results) throw McpServerError. */
  async callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    o: CallToolOptions = {},
  ): Promise<CallToolResult> {
    const conn = await this.#acquire(server, o.signal);
    const timeoutMs = o.timeoutMs ?? this.#callTimeoutMs;
    const onProgress = o.onProgress;
    try {
      const known = conn.cachedTool(tool);
      if (known !== undefined && needsMcpTasks(known)) throw this.#taskRequired(server, tool);
      const result = await conn.client.callTool({ name: tool, arguments: args }, undefined, {
        signal: o.signal,
        timeout: timeoutMs,
        resetTimeoutOnProgress: true,
        // Always ask for progress so that long tools which report it are not timed out.
        onprogress: (p) => {
          onProgress?.({ progress: p.progress, total: p.total, message: p.message });
        },
      });
      const parsed = CallToolResultSchema.safeParse(result);
      if (parsed.success) {
        if (parsed.data.isError === true && known === undefined) {
          // It may have failed because it needs MCP tasks; say so rather than "method not found".
          if (await this.#requiresTasks(conn, tool)) throw this.#taskRequired(server, tool);
        }
        return parsed.data;
      }
      // A pre-2024-11-05 server answered with `toolResult`; show it as text.
      return { content: [{ type: "text", text: JSON.stringify(result.toolResult ?? result) }] };
    } catch (error) {
      const rejected = error instanceof McpError && !conn.closed && !o.signal?.aborted &&
        error.code !== ErrorCode.RequestTimeout && error.code !== ErrorCode.ConnectionClosed;
      if (rejected && await this.#requiresTasks(conn, tool)) {
        throw this.#taskRequired(server, tool, error);
      }
      throw await this.#explain(conn, error, { signal: o.signal, tool, timeoutMs });
    } finally {
      this.#release(conn);
    }
  }

  /** Whether the server lists `tool` as one that can only run as an MCP task. */
  async #requiresTasks(conn: Connection, tool: string): Promise<boolean> {
    const listed = await conn.tools(this.#connectTimeoutMs).catch(() => []);
    return listed.some((t) => t.name === tool && needsMcpTasks(t));
  }

  #taskRequired(server: string, tool: string, cause?: unknown): McpServerError {
    return new McpServerError(
      `Tool "${tool}" of MCP server "${server}" can only run as an MCP task ` +
        `(its execution.taskSupport is "required"), and the bridge does not support MCP tasks. ` +
        `Use another tool of the server, or an MCP client that supports tasks.`,
      { server, tool, kind: "unsupported", cause },
    );
  }

  /** Every configured server with its state; never starts anything. */
  async status(): Promise<{ config: McpConfig; servers: ServerStatus[] }> {
    const config = await this.#config.current();
    this.#reconcile(config);
    const servers = config.servers.map((entry): ServerStatus => {
      const base = {
        name: entry.name,
        transport: entry.transport,
        target: describeTarget(entry),
        configPath: config.path,
        envNames: [...entry.envNames],
      };
      if (entry.disabled) return { ...base, state: "disabled" };
      if (entry.problem !== undefined) return { ...base, state: "invalid", reason: entry.problem };
      const live = this.#live.get(entry.name);
      if (live && live.usable && live.fingerprint === entry.fingerprint) {
        return { ...base, state: "connected", toolCount: live.toolCount, pid: live.pid };
      }
      if (this.#connecting.get(entry.name)?.fingerprint === entry.fingerprint) {
        return { ...base, state: "connecting" };
      }
      const remark = this.#remarks.get(entry.name);
      if (remark && remark.fingerprint === entry.fingerprint) {
        return { ...base, state: remark.state, reason: remark.reason };
      }
      return { ...base, state: "not-started" };
    });
    return { config, servers };
  }

  /** Closes every connection (waiting for nothing in flight) and refuses further calls. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = [...this.#connecting.values()].map((p) => p.promise.catch(() => undefined));
    await Promise.all(pending);
    for (const conn of [...this.#live.values(), ...this.#retired]) this.#closeConn(conn);
    this.#live.clear();
    this.#retired.clear();
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // -- connection lifecycle ---------------------------------------------------------------

  /** A usable connection for `name` with one use already counted (pair with #release). */
  async #acquire(name: string, signal?: AbortSignal): Promise<Connection> {
    for (let attempt = 0;; attempt++) {
      this.#assertOpen(name);
      const config = await this.#config.current();
      this.#reconcile(config);
      let entry: ServerEntry;
      try {
        entry = await this.#config.get(name);
      } catch (error) {
        if (error instanceof ConfigError) {
          throw new McpServerError(error.message, { server: name, kind: "config", cause: error });
        }
        throw error;
      }
      const live = this.#live.get(name);
      if (live && live.usable && live.fingerprint === entry.fingerprint) {
        this.#begin(live);
        return live;
      }
      let pending = this.#connecting.get(name);
      if (pending === undefined || pending.fingerprint !== entry.fingerprint) {
        pending = this.#startConnect(entry);
      }
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
      }
      if (conn.usable) {
        this.#begin(conn);
        return conn;
      }
      // It closed (or the config changed) between connecting and this caller resuming: retry.
      if (attempt >= 2) {
        throw new McpServerError(
          `MCP server "${name}" closed its connection right after connecting.` +
            (conn.entry.transport === "stdio" ? formatTail(conn.stderr.lines) : ""),
          { server: name, kind: "closed", stderrTail: conn.stderr.lines },
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

  #startConnect(entry: ServerEntry): Pending {
    const name = entry.name;
    const seq = ++this.#seq;
    const promise = this.#connect(entry).then(
      (conn) => {
        conn.seq = seq;
        if (this.#connecting.get(name)?.promise === promise) this.#connecting.delete(name);
        const newer = (this.#connecting.get(name)?.seq ?? 0) > seq ||
          (this.#live.get(name)?.seq ?? 0) > seq;
        if (this.#closed || newer) {
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
      (error: unknown) => {
        if (this.#connecting.get(name)?.promise !== promise) throw error;
        this.#connecting.delete(name);
        this.#remarks.set(name, {
          fingerprint: entry.fingerprint,
          state: "failed",
          reason: errorText(error),
        });
        this.#log.debug("connect failed", { server: name, error: errorText(error) });
        throw error;
      },
    );
    const pending = { fingerprint: entry.fingerprint, seq, promise };
    this.#connecting.set(name, pending);
    // Callers may all have given up (aborted); the outcome is recorded above either way.
    promise.catch(() => undefined);
    return pending;
  }

  /** Closes connections whose entry vanished, changed, got disabled or became invalid. */
  #reconcile(config: McpConfig): void {
    const byName = new Map(config.servers.map((s) => [s.name, s]));
    for (const [name, conn] of this.#live) {
      const entry = byName.get(name);
      let why: string | undefined;
      if (entry === undefined) why = "removed from the config";
      else if (entry.disabled) why = "disabled in the config";
      else if (entry.problem !== undefined) why = "its config entry became invalid";
      else if (entry.fingerprint !== conn.fingerprint) why = "its config entry changed";
      if (why === undefined) continue;
      this.#log.info(`closing MCP server "${name}": ${why}`, { inFlight: conn.inFlight });
      this.#live.delete(name);
      this.#retire(conn);
    }
  }

  #begin(conn: Connection): void {
    conn.inFlight++;
    clearTimeout(conn.idleTimer);
    conn.idleTimer = undefined;
  }

  #release(conn: Connection): void {
    conn.inFlight--;
    if (conn.inFlight > 0) return;
    if (conn.retiring) {
      this.#closeConn(conn);
      return;
    }
    if (this.#idleMs > 0 && !conn.closed && this.#live.get(conn.name) === conn) {
      const timer = setTimeout(() => this.#idleClose(conn), this.#idleMs);
      // An idle connection must not keep a CLI process alive.
      Deno.unrefTimer(timer);
      conn.idleTimer = timer;
    }
  }

  #idleClose(conn: Connection): void {
    conn.idleTimer = undefined;
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
    clearTimeout(conn.idleTimer);
    if (this.#live.get(conn.name) === conn) this.#live.delete(conn.name);
    if (conn.closedByUs) return;
    const stdio = conn.entry.transport === "stdio";
    const how = stdio
      ? exitText(conn.exit)
      : `lost its connection: ${conn.lostReason ?? "the server closed it"}`;
    this.#log.warn(
      `MCP server "${conn.name}" ${how}; the next call ${stdio ? "starts it again" : "reconnects"}`,
      { pid: conn.pid },
    );
    this.#remarks.set(conn.name, {
      fingerprint: conn.fingerprint,
      state: "failed",
      reason: `${how}${conn.stderr.lines.length > 0 ? `: ${conn.stderr.lines.at(-1)}` : ""}`,
    });
    // Release the process and pipes (the SDK already cleared its handle; this is cheap).
    this.#closeConn(conn);
  }

  // -- connecting ---------------------------------------------------------------------------

  #connect(entry: ServerEntry): Promise<Connection> {
    return entry.transport === "stdio" ? this.#connectStdio(entry) : this.#connectRemote(entry);
  }

  #newClient(): Client {
    const client = new Client(this.#clientInfo, { capabilities: {} });
    return client;
  }

  async #connectStdio(entry: ServerEntry): Promise<Connection> {
    const name = entry.name;
    const command = entry.command ?? "";
    const target = describeTarget(entry);
    const serverLog = this.#log.child(name);
    const stderr = new StderrTail(this.#stderrLines, (line) => serverLog.debug(line));
    const watch: ProcessWatch = {};
    const transport = new ObservedStdioTransport({
      command,
      args: entry.args,
      env: { ...getDefaultEnvironment(), ...this.#extraEnv, ...entry.env },
      cwd: entry.cwd,
      stderr: "pipe",
    }, (info) => {
      watch.exit = info;
    });
    const stream = transport.stderr;
    stream?.on("data", (chunk: unknown) => stderr.push(chunk));
    const stderrEnd = stream ? streamEnd(stream) : undefined;
    const client = this.#newClient();
    client.onerror = (error) => serverLog.debug(`transport: ${errorText(error)}`);
    const started = performance.now();
    try {
      await withTimeout(
        client.connect(transport, { timeout: this.#connectTimeoutMs }),
        this.#connectTimeoutMs + 1000,
        () => new Error("timeout"),
      );
    } catch (error) {
      const closed = client.close().catch(() => undefined);
      this.#track(closed);
      if (stderrEnd && watch.exit !== undefined) await settleWithin(stderrEnd.ended, 250);
      stderr.flush();
      const exit = watch.exit;
      throw await this.#stdioConnectError({ entry, error, exit, stderr: stderr.lines, target });
    }
    const conn = new Connection({
      entry,
      client,
      stderr,
      stderrEnd,
      watch,
      pid: transport.pid ?? undefined,
      onClosed: (c) => this.#onClosed(c),
    });
    this.#log.debug("started", {
      server: name,
      pid: conn.pid,
      ms: Math.round(performance.now() - started),
    });
    // It may have exited between the handshake and now; callers then retry with a new one.
    if (watch.exit !== undefined) conn.closed = true;
    return conn;
  }

  async #stdioConnectError(o: {
    entry: ServerEntry;
    error: unknown;
    exit: ExitInfo | undefined;
    stderr: string[];
    target: string;
  }): Promise<McpServerError> {
    const { entry, error, exit, stderr, target } = o;
    const name = entry.name;
    const command = entry.command ?? "";
    const base = { server: name, stderrTail: stderr, cause: error };
    if (isPermissionDenial(error)) {
      return new McpServerError(
        `Cannot start MCP server "${name}": Deno's sandbox does not allow running "${command}" ` +
          `(${errorText(error)}). Add "${command}" to the "run" list of the "bridge" permission ` +
          `set in deno.json, or run/rebuild with --allow-run=${command}.`,
        { ...base, kind: "permission" },
      );
    }
    if (errnoCode(error) === "ENOENT") {
      const cwdMissing = entry.cwd !== undefined && !(await isDirectory(entry.cwd));
      if (cwdMissing) {
        return new McpServerError(
          `Cannot start MCP server "${name}": its working directory "${entry.cwd}" does not ` +
            `exist. Fix "cwd" in the config.`,
          { ...base, kind: "spawn" },
        );
      }
      return new McpServerError(
        `Cannot start MCP server "${name}": command "${command}" was not found. Install it, ` +
          `or put its full path in the config, and check that it is on the PATH the bridge ` +
          `sees (children get PATH, HOME, USER, SHELL, TERM, LOGNAME and the entry's env).`,
        { ...base, kind: "not_found" },
      );
    }
    if (exit !== undefined) {
      return new McpServerError(
        `MCP server "${name}" ${exitText(exit)} before completing the MCP handshake. ` +
          `Command: ${target}.${formatTail(stderr)}\nRun the command by hand to see why.`,
        { ...base, kind: "exited", exitCode: exit.code },
      );
    }
    const timedOut = (error instanceof McpError && error.code === ErrorCode.RequestTimeout) ||
      (error instanceof Error && error.message === "timeout");
    if (timedOut) {
      return new McpServerError(
        `MCP server "${name}" did not complete the MCP handshake within ` +
          `${this.#connectTimeoutMs} ms. Command: ${target}.${formatTail(stderr)}\n` +
          `If it downloads on first start (npx -y, uvx), run the command once by hand, or raise ` +
          `MCP_CONNECT_TIMEOUT_MS; otherwise check that it speaks MCP over stdio.`,
        { ...base, kind: "connect_timeout" },
      );
    }
    const code = errnoCode(error);
    return new McpServerError(
      `Cannot start MCP server "${name}" (${target}): ${errorText(error)}` +
        `${code ? ` [${code}]` : ""}.${formatTail(stderr)}`,
      { ...base, kind: "spawn" },
    );
  }

  async #connectRemote(entry: ServerEntry): Promise<Connection> {
    const name = entry.name;
    const url = entry.url ?? "";
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (error) {
      throw new McpServerError(
        `MCP server "${name}" has an invalid url ${JSON.stringify(url)}. Fix it in the config.`,
        { server: name, kind: "config", cause: error },
      );
    }
    const requestInit: RequestInit = { headers: { ...entry.headers } };
    const stderr = new StderrTail(0, () => {});
    const attempt = async (kind: "http" | "sse"): Promise<Connected> => {
      const remote = new RemoteWatch();
      const transport = kind === "sse"
        ? new SSEClientTransport(parsed, { requestInit })
        : new StreamableHTTPClientTransport(parsed, { requestInit, fetch: remote.fetch });
      remote.attach(transport, (reason) => {
        this.#log.debug("connection lost", { server: name, reason });
        // Closing the transport fails every request still waiting on it.
        transport.close().catch(() => undefined);
      });
      const client = this.#newClient();
      client.onerror = (error) =>
        this.#log.debug(`transport: ${errorText(error)}`, { server: name });
      try {
        await withTimeout(
          client.connect(transport, { timeout: this.#connectTimeoutMs }),
          this.#connectTimeoutMs + 1000,
          () => new Error("timeout"),
        );
        return { client, remote };
      } catch (error) {
        this.#track(client.close().catch(() => undefined));
        if (remote.lostReason !== undefined && !(error instanceof SseError)) {
          throw new McpServerError(
            `Cannot connect to MCP server "${name}" at ${url}: ${remote.lostReason} during ` +
              `the MCP handshake. Check that the server is up and speaks MCP at that URL.`,
            { server: name, kind: "handshake", cause: error },
          );
        }
        throw error;
      }
    };
    let connected: Connected;
    try {
      if (entry.transport === "sse") {
        connected = await attempt("sse");
      } else {
        try {
          connected = await attempt("http");
        } catch (error) {
          if (!shouldFallBackToSse(error)) throw error;
          this.#log.debug("streamable HTTP refused; trying SSE", {
            server: name,
            error: errorText(error),
          });
          try {
            connected = await attempt("sse");
          } catch (sseError) {
            throw new McpServerError(
              `Cannot connect to MCP server "${name}" at ${url}: streamable HTTP failed ` +
                `(${errorText(error)}) and so did the SSE fallback (${networkReason(sseError)}). ` +
                `Check the URL (many servers use /mcp for HTTP and /sse for SSE).`,
              { server: name, kind: "handshake", cause: sseError },
            );
          }
        }
      }
    } catch (error) {
      throw error instanceof McpServerError ? error : this.#remoteConnectError(entry, error);
    }
    return new Connection({
      entry,
      client: connected.client,
      remote: connected.remote,
      stderr,
      onClosed: (c) => this.#onClosed(c),
    });
  }

  #remoteConnectError(entry: ServerEntry, error: unknown): McpServerError {
    const name = entry.name;
    const url = entry.url ?? "";
    const base = { server: name, cause: error };
    const chain = causeChain(error);
    const denial = chain.find(isPermissionDenial);
    if (denial !== undefined) {
      let host = url;
      try {
        host = new URL(url).host;
      } catch {
        // keep the raw url in the message
      }
      return new McpServerError(
        `Cannot connect to MCP server "${name}" at ${url}: Deno's sandbox does not allow network ` +
          `access to ${host} (${errorText(denial)}). Add it to the "net" list of the "bridge" ` +
          `permission set in deno.json, or run/rebuild with --allow-net=${host}.`,
        { ...base, kind: "permission" },
      );
    }
    const status = httpStatusOf(error);
    if (status === 401 || status === 403) {
      return new McpServerError(
        `MCP server "${name}" at ${url} refused the connection with HTTP ${status}: ` +
          `${errorText(error)}. Set the credentials it needs in the entry's "headers" ` +
          `(e.g. "Authorization": "Bearer \${TOKEN}").`,
        { ...base, kind: "handshake" },
      );
    }
    if (status !== undefined && status > 0) {
      return new McpServerError(
        `MCP server "${name}" at ${url} answered HTTP ${status}: ${errorText(error)}. ` +
          `Check the URL and that the server speaks MCP there.`,
        { ...base, kind: "handshake" },
      );
    }
    const timedOut = (error instanceof McpError && error.code === ErrorCode.RequestTimeout) ||
      (error instanceof Error && error.message === "timeout");
    if (timedOut) {
      return new McpServerError(
        `MCP server "${name}" at ${url} did not complete the MCP handshake within ` +
          `${this.#connectTimeoutMs} ms. Check that the server is up and speaks MCP at that URL.`,
        { ...base, kind: "connect_timeout" },
      );
    }
    const network = chain.some((e) =>
      e instanceof TypeError || errnoCode(e) === "ECONNREFUSED" ||
      (e instanceof SseError && typeof e.code !== "number")
    );
    if (network) {
      return new McpServerError(
        `Cannot connect to MCP server "${name}" at ${url}: ${networkReason(error)}. ` +
          `Start the server or fix the URL in the config.`,
        { ...base, kind: "unreachable" },
      );
    }
    return new McpServerError(
      `Cannot connect to MCP server "${name}" at ${url}: ${networkReason(error)}.`,
      { ...base, kind: "handshake" },
    );
  }

  #track(promise: Promise<unknown>): void {
    const p = promise.then(() => undefined, () => undefined);
    this.#closing.add(p);
    p.finally(() => this.#closing.delete(p));
  }

  // -- call errors ---------------------------------------------------------------------------

  /** Turns a failed request on `conn` into an McpServerError that says what happened. */
  async #explain(
    conn: Connection,
    error: unknown,
    o: { signal?: AbortSignal; tool?: string; timeoutMs?: number; what?: string },
  ): Promise<unknown> {
    if (error instanceof McpServerError) return error;
    const name = conn.name;
    const what = o.tool !== undefined ? `tool "${o.tool}"` : (o.what ?? "a request");
    const base = { server: name, tool: o.tool, cause: error };
    if (o.signal?.aborted) {
      return new McpServerError(
        `Call to ${what} on MCP server "${name}" was cancelled.`,
        { ...base, kind: "cancelled", stderrTail: conn.stderr.lines },
      );
    }
    const closedError = error instanceof McpError && error.code === ErrorCode.ConnectionClosed;
    if (conn.closed || closedError) {
      if (conn.closedByUs) {
        return new McpServerError(
          `Connection to MCP server "${name}" was closed by the bridge (shutting down or ` +
            `restarting the server) while running ${what}.`,
          { ...base, kind: "closed" },
        );
      }
      const tail = await conn.settledStderr();
      if (conn.entry.transport === "stdio") {
        return new McpServerError(
          `MCP server "${name}" ${exitText(conn.exit)} while running ${what}.${
            formatTail(tail)
          }\n` +
            `The next call starts it again.`,
          { ...base, kind: "exited", stderrTail: tail, exitCode: conn.exit?.code },
        );
      }
      return new McpServerError(
        `Lost the connection to MCP server "${name}" (${conn.entry.url}) while running ${what}: ` +
          `${conn.lostReason ?? "the connection closed"}. The server went away or restarted. ` +
          `The next call reconnects.`,
        { ...base, kind: "closed" },
      );
    }
    if (conn.entry.transport !== "stdio" && !(error instanceof McpError)) {
      // The HTTP session broke (server restarted or went away): start a fresh one next time.
      const status = httpStatusOf(error);
      const reason = status === undefined
        ? networkReason(error)
        : `it answered HTTP ${status} (${networkReason(error)})`;
      this.#dropBroken(conn, reason);
      return new McpServerError(
        `MCP server "${name}" (${conn.entry.url}) failed ${what}: ${reason}. ` +
          `The server went away or restarted. The next call reconnects.`,
        { ...base, kind: "closed" },
      );
    }
    if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
      const stdio = conn.entry.transport === "stdio";
      return new McpServerError(
        `MCP server "${name}" did not answer ${what} within ${o.timeoutMs ?? "the"} ms ` +
          `(and sent no progress); the call was cancelled. Give it a longer timeout or check ` +
          `the server.${stdio ? formatTail(conn.stderr.lines) : ""}`,
        { ...base, kind: "timeout", stderrTail: conn.stderr.lines },
      );
    }
    if (error instanceof McpError) {
      return new McpServerError(
        `MCP server "${name}" rejected ${what}: ${error.message}`,
        { ...base, kind: "protocol" },
      );
    }
    return new McpServerError(
      `MCP server "${name}" failed ${what}: ${errorText(error)}`,
      { ...base, kind: "protocol" },
    );
  }
}

function shouldFallBackToSse(error: unknown): boolean {
  const status = httpStatusOf(error);
  return status !== undefined && status >= 400 && status < 500 && status !== 401 &&
    status !== 403;
}

function httpStatusOf(error: unknown): number | undefined {
  for (const e of causeChain(error)) {
    if (e instanceof StreamableHTTPError && typeof e.code === "number") return e.code;
    const code = typeof e === "object" && e !== null ? Reflect.get(e, "code") : undefined;
    if (e instanceof Error && e.name !== "McpError" && typeof code === "number" && code >= 100) {
      return code;
    }
  }
  return undefined;
}

function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && chain.length < 10) {
    chain.push(current);
    current = current instanceof Error ? current.cause : undefined;
  }
  return chain;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}
