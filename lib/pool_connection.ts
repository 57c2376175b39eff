/**
 * One live connection to a downstream MCP server ({@linkcode Connection}): its SDK client, how
 * its process exited or why its remote end was lost, its in-flight count and idle timer (kept by
 * the pool), its lists (tools, resources, resource templates, prompts), each fetched page by page
 * and cached until the server says it changed (pool_lists.ts), and the calls that may answer the
 * server's own requests (sampling, elicitation: pool_requests.ts).
 *
 * And what a failed call on it becomes: {@linkcode explainCallError} reads the connection's state
 * (closed by the bridge, exited with its stderr tail, lost mid-call) and the SDK's error (timeout,
 * JSON-RPC rejection, broken HTTP session) and says in one message what happened and what the
 * next call will do; {@linkcode taskRequiredError} explains a tool that only runs as an MCP task,
 * {@linkcode unknownToolError} a tool the server does not have.
 */
import {
  ErrorCode,
  McpError,
  type Prompt,
  PromptListChangedNotificationSchema,
  PromptSchema,
  type Resource,
  ResourceListChangedNotificationSchema,
  ResourceSchema,
  type ResourceTemplate,
  ResourceTemplateSchema,
  type Tool,
  ToolListChangedNotificationSchema,
} from "./sdk.ts";
import type { Client } from "./sdk_client.ts";
import { entryUrl, type ServerEntry } from "./config_entry.ts";
import {
  exitText,
  formatTail,
  httpStatusOf,
  McpServerError,
  MessageTooLargeError,
  serverErrorText,
} from "./pool_errors.ts";
import type { RemoteWatch } from "./pool_remote.ts";
import { readToolList } from "./pool_tools.ts";
import { CachedList, fetchPages, type Listed, readItems } from "./pool_lists.ts";
import { ServerRequests } from "./pool_requests.ts";
import type { QuietTimer } from "./quiet_timer.ts";
import { type ChildState, type ExitInfo, settleWithin, type StderrTail } from "./pool_stdio.ts";
import { causeChain, errorMessage, networkFailure } from "./errors.ts";
import { clip, closestName, formatBytes, shellWord } from "./text.ts";

/**
 * True when `tool` can only run as an MCP task (`execution.taskSupport: "required"`). The bridge
 * does not support MCP tasks, so it cannot call such a tool.
 */
export function needsMcpTasks(tool: Pick<Tool, "execution">): boolean {
  return tool.execution?.taskSupport === "required";
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
  /**
   * Closes it after the pool's idle time: touched when its last call ends, and declining to close
   * it while calls run (then touched again when they end).
   */
  idle?: QuietTimer;
  /** Set once closing started. */
  closing?: Promise<void>;
  /** Called when the server says its tool list changed (the pool drops what it kept of it). */
  onToolsChanged?: () => void;
  readonly #child?: ChildState;
  readonly #remote?: RemoteWatch;
  readonly #onClosed: (conn: Connection) => void;
  readonly #onExited: (conn: Connection) => void;
  #exitNoted = false;
  readonly #tools: CachedList<Tool>;
  readonly #resources: CachedList<Resource>;
  readonly #templates: CachedList<ResourceTemplate>;
  readonly #prompts: CachedList<Prompt>;
  /** The calls in flight that answer the server's sampling and elicitation requests. */
  readonly requests: ServerRequests;

  constructor(options: {
    entry: ServerEntry;
    client: Client;
    stderr: StderrTail;
    /** A stdio server's child process, read live from its transport. */
    child?: ChildState;
    remote?: RemoteWatch;
    onClosed: (conn: Connection) => void;
    onExited?: (conn: Connection) => void;
    /** Answers the server's sampling and elicitation requests (installed before the handshake). */
    requests?: ServerRequests;
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
    const name = this.name;
    const client = this.client;
    const has = (what: "tools" | "resources" | "prompts") =>
      client.getServerCapabilities()?.[what] !== undefined;
    const list = <T>(
      what: "tools" | "resources" | "prompts",
      method: string,
      key: string,
      read: (raw: readonly unknown[]) => Listed<T>,
    ) =>
      new CachedList<T>((timeoutMs) =>
        has(what)
          ? fetchPages({ client, server: name, method, key, timeoutMs, read })
          : Promise.resolve({ items: [], notes: [] })
      );
    this.#tools = list("tools", "tools/list", "tools", (raw) => {
      const { tools, notes } = readToolList(raw, name);
      return { items: tools, notes };
    });
    this.#resources = list(
      "resources",
      "resources/list",
      "resources",
      (raw) =>
        readItems(raw, { schema: ResourceSchema, server: name, what: "resource", label: "uri" }),
    );
    this.#templates = list(
      "resources",
      "resources/templates/list",
      "resourceTemplates",
      (raw) =>
        readItems(raw, {
          schema: ResourceTemplateSchema,
          server: name,
          what: "resource template",
          label: "uriTemplate",
        }),
    );
    this.#prompts = list(
      "prompts",
      "prompts/list",
      "prompts",
      (raw) =>
        readItems(raw, { schema: PromptSchema, server: name, what: "prompt", label: "name" }),
    );
    this.client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.#tools.invalidate();
      this.onToolsChanged?.();
    });
    this.client.setNotificationHandler(ResourceListChangedNotificationSchema, () => {
      this.#resources.invalidate();
      this.#templates.invalidate();
    });
    this.client.setNotificationHandler(PromptListChangedNotificationSchema, () => {
      this.#prompts.invalidate();
    });
    this.requests = options.requests ?? new ServerRequests(name);
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

  /** Set when a remote connection was lost because an event was over the size limit. */
  get tooLarge(): MessageTooLargeError | undefined {
    return this.#remote?.tooLarge;
  }

  /** The tool named `name`, if the tool list is cached. */
  cachedTool(name: string): Tool | undefined {
    return this.#tools.cached?.items.find((t) => t.name === name);
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
    return this.#tools.cached?.items.filter((t) => !needsMcpTasks(t)).length;
  }

  /** What the server declared it offers (its capabilities), once connected. */
  get offers(): { tools: boolean; resources: boolean; prompts: boolean } {
    const caps = this.client.getServerCapabilities();
    return {
      tools: caps?.tools !== undefined,
      resources: caps?.resources !== undefined,
      prompts: caps?.prompts !== undefined,
    };
  }

  /** Numbers of resources, resource templates and prompts, for the lists fetched so far. */
  get counts(): { resources?: number; resourceTemplates?: number; prompts?: number } {
    return {
      resources: this.#resources.cached?.items.length,
      resourceTemplates: this.#templates.cached?.items.length,
      prompts: this.#prompts.cached?.items.length,
    };
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

  /**
   * What was wrong with the tools of the cached list (repaired or skipped tools, see
   * pool_tools.ts), one note each; empty when nothing was.
   */
  get toolNotes(): readonly string[] {
    return this.#tools.cached?.notes ?? [];
  }

  /** The pool logged {@linkcode toolNotes} of the current list. */
  toolNotesLogged = false;

  /** The notes of other lists (resources, prompts) the pool has logged. */
  readonly loggedNotes = new WeakSet<readonly string[]>();

  /**
   * All tools (every page), cached until the server says the list changed. A tool declared
   * wrongly is repaired or left out ({@linkcode toolNotes} say which), never the whole list.
   */
  async tools(timeoutMs: number): Promise<Tool[]> {
    const before = this.#tools.cached;
    const listed = await this.#tools.get(timeoutMs);
    if (listed !== before) this.toolNotesLogged = false;
    return listed.items;
  }

  /** All resources (every page), cached until the server says its resources changed. */
  resources(timeoutMs: number): Promise<Listed<Resource>> {
    return this.#resources.get(timeoutMs);
  }

  /** All resource templates (every page), cached like the resources. */
  resourceTemplates(timeoutMs: number): Promise<Listed<ResourceTemplate>> {
    return this.#templates.get(timeoutMs);
  }

  /** All prompts (every page), cached until the server says its prompts changed. */
  prompts(timeoutMs: number): Promise<Listed<Prompt>> {
    return this.#prompts.get(timeoutMs);
  }

  /** Closes the client (and the child or session); the same promise on every call. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    if (!this.closed) this.closedByUs = true;
    this.idle?.stop();
    this.closing = this.client.close().catch(() => {
      // Closing a transport whose process already died can fail; the process is gone either way.
    });
    return this.closing;
  }
}

// -- explaining a failed call ---------------------------------------------------------------------

/** What {@linkcode explainCallError} needs to know about the failed request. */
export interface CallErrorOptions {
  /** The caller's signal: aborted means the caller cancelled. */
  signal?: AbortSignal;
  /** The tool called, if it was a tool call. */
  tool?: string;
  /** The call's timeout, for the message. */
  timeoutMs?: number;
  /** What the request was, when not a tool call ("listing its tools"). */
  what?: string;
  /** Called when a remote session broke: the pool takes the connection out of service. */
  onBroken: (reason: string) => void;
}

/**
 * Turns a failed request on `conn` into an McpServerError that says what happened: cancelled,
 * closed by the bridge, the server exited or went away, timed out, or rejected the request.
 * Anything already an McpServerError is returned as it is.
 */
export async function explainCallError(
  conn: Connection,
  error: unknown,
  o: CallErrorOptions,
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
  const tooLarge = causeChain(error).find((e) => e instanceof MessageTooLargeError) ??
    conn.tooLarge;
  if (tooLarge instanceof MessageTooLargeError) {
    const closed = conn.tooLarge !== undefined;
    return new McpServerError(
      `MCP server "${name}" (${entryUrl(conn.entry)}) sent an answer to ${what} larger than ` +
        `${formatBytes(tooLarge.limitBytes)}; the bridge stopped reading it` +
        `${closed ? " and closed the connection (the next call reconnects)" : ""}. Ask the ` +
        "tool for less data (a smaller range, a filter, a page).",
      { ...base, kind: "too_large" },
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
    if (conn.entry.transport === "stdio" && conn.lostReason !== undefined) {
      return new McpServerError(
        `MCP server "${name}" failed while running ${what}: ${conn.lostReason}. ` +
          "The next call starts it again.",
        { ...base, kind: "protocol", stderrTail: tail },
      );
    }
    if (conn.entry.transport === "stdio") {
      return new McpServerError(
        `MCP server "${name}" ${exitText(conn.exit)} while running ${what}.${formatTail(tail)}\n` +
          `The next call starts it again.`,
        { ...base, kind: "exited", stderrTail: tail, exitCode: conn.exit?.code },
      );
    }
    return new McpServerError(
      `Lost the connection to MCP server "${name}" (${
        entryUrl(conn.entry)
      }) while running ${what}: ` +
        `${conn.lostReason ?? "the connection closed"}. The server went away or restarted. ` +
        `The next call reconnects.`,
      { ...base, kind: "closed" },
    );
  }
  if (conn.entry.transport !== "stdio" && !(error instanceof McpError)) {
    // The HTTP session broke (server restarted or went away): start a fresh one next time.
    const status = httpStatusOf(error);
    const reason = status === undefined
      ? networkFailure(error).reason
      : `it answered HTTP ${status} (${networkFailure(error).reason})`;
    o.onBroken(reason);
    return new McpServerError(
      `MCP server "${name}" (${entryUrl(conn.entry)}) failed ${what}: ${reason}. ` +
        `The server went away or restarted. The next call reconnects.`,
      { ...base, kind: "closed" },
    );
  }
  if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
    const stdio = conn.entry.transport === "stdio";
    return new McpServerError(
      `MCP server "${name}" did not answer ${what} within ${o.timeoutMs ?? "the"} ms ` +
        `(and sent no progress); the call was cancelled. Give it longer ("timeout" in the ` +
        `server's config entry, in milliseconds, or MCP_CALL_TIMEOUT_MS for every server) or ` +
        `check the server.${stdio ? formatTail(conn.stderr.lines) : ""}`,
      { ...base, kind: "timeout", stderrTail: conn.stderr.lines },
    );
  }
  if (error instanceof McpError) {
    return new McpServerError(
      `MCP server "${name}" rejected ${what}: ${serverErrorText(error.message)}`,
      { ...base, kind: "protocol" },
    );
  }
  return new McpServerError(
    `MCP server "${name}" failed ${what}: ${errorMessage(error)}`,
    { ...base, kind: "protocol" },
  );
}

/** A tool of `server` can only run as an MCP task, which the bridge does not support. */
export function taskRequiredError(
  o: { server: string; tool: string; cause?: unknown },
): McpServerError {
  const { server, tool, cause } = o;
  return new McpServerError(
    `Tool "${tool}" of MCP server "${server}" can only run as an MCP task ` +
      `(its execution.taskSupport is "required"), and the bridge does not support MCP tasks. ` +
      `Use another tool of the server, or an MCP client that supports tasks.`,
    { server, tool, kind: "unsupported", cause },
  );
}

/** How many tool names {@linkcode unknownToolError} lists before "and N more". */
const LISTED_TOOLS = 15;

/**
 * `tool` is not among the tools `server` lists (`names`, the callable ones): says so, suggests a
 * close name, lists the tools (the first {@linkcode LISTED_TOOLS}) and the command that shows
 * them. `answer` is what the server itself said, if anything.
 */
export function unknownToolError(o: {
  server: string;
  tool: string;
  names: readonly string[];
  answer?: string;
  cause?: unknown;
}): McpServerError {
  const { server, tool, names, cause } = o;
  const answer = serverErrorText((o.answer ?? "").replace(/\s+/g, " ").trim());
  const said = answer === "" ? "" : ` (it answered: ${clip(answer, 200)})`;
  const near = closestName(tool, names);
  const shown = names.slice(0, LISTED_TOOLS);
  const more = names.length - shown.length;
  const list = names.length === 0
    ? "It lists no tools."
    : `Its ${names.length === 1 ? "only tool is" : `${names.length} tools are`}: ` +
      `${shown.join(", ")}${more > 0 ? `, and ${more} more` : ""}.`;
  return new McpServerError(
    `MCP server "${server}" has no tool "${tool}"${said}. ` +
      `${near === undefined ? "" : `Did you mean "${near}"? `}${list} ` +
      `Run \`lmstudio-bridge tools ${shellWord(server)}\` to see them with their parameters.`,
    { server, tool, kind: "unknown_tool", cause },
  );
}
