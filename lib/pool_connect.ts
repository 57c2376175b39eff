/**
 * Starting a connection to a downstream MCP server ({@linkcode connectServer}), within the
 * connect timeout, with an error that says why in the user's terms when it fails.
 *
 * - stdio: spawn its command with the SDK's default environment plus the pool's and the entry's
 *   variables, keep its stderr tail, and do the MCP handshake. A failed start says whether the
 *   sandbox does not allow the command, the command or the working directory does not exist, or
 *   the server exited (with its exit code and last stderr lines) or never answered `initialize`.
 * - remote: streamable HTTP, falling back to the older SSE transport when the server refuses HTTP
 *   with a 4xx other than 401/403, or SSE directly. Each connection gets a
 *   {@linkcode RemoteWatch} so a server that goes away mid-call fails its calls at once. A failed
 *   connect says whether the sandbox does not allow the host, the server wants credentials,
 *   answered an HTTP error, cannot be reached, or never completed the handshake.
 */
import { widenCommand } from "./launch.ts";
import { type ClientCapabilities, ErrorCode, McpError, type Transport } from "./sdk.ts";
import {
  Client,
  getDefaultEnvironment,
  SSEClientTransport,
  SseError,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from "./sdk_client.ts";
import type { ConnectPhase } from "./pool_progress.ts";
import { entryTarget, entryUrl, redactEntryText, type ServerEntry } from "./config_entry.ts";
import type { LogFields, Logger } from "./log.ts";
import { Connection } from "./pool_connection.ts";
import { exitText, formatTail, httpStatusOf, McpServerError } from "./pool_errors.ts";
import { RemoteWatch } from "./pool_remote.ts";
import { answerRequests, type ServerRequests } from "./pool_requests.ts";
import { OWNER_VARIABLE, type ProcessTracker } from "./pool_reaper.ts";
import {
  type ExitInfo,
  type GroupSignaller,
  settleWithin,
  StderrTail,
  StdioChildTransport,
} from "./pool_stdio.ts";
import { causeChain, errnoCode, errorMessage, isSandboxDenial, networkFailure } from "./errors.ts";
import type { ConfigSource } from "./config.ts";
import { sandboxLaunch } from "./sandbox.ts";
import { raceAbort } from "./abort.ts";
import type { OAuthSession } from "./pool_oauth.ts";

type Timer = ReturnType<typeof setTimeout>;

/** What connecting to a server takes from the pool. */
export interface ConnectOptions {
  clientInfo: { name: string; version: string };
  /** What the client advertises (sampling, elicitation); the connection answers accordingly. */
  capabilities: ClientCapabilities;
  /** What the connect is doing now, for the start-up progress of the callers waiting for it. */
  phase?: ConnectPhase;
  /** Bound on spawn + MCP handshake. */
  connectTimeoutMs: number;
  log: Logger;
  /** Added to a stdio child's environment; wins over the entry's own `env`. */
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
  /** Puts stdio servers in their own process group and signals it (see pool_stdio.ts). */
  signalGroup?: GroupSignaller;
  /** Cleanup still running after a failed connect (closing its client); the pool waits for it on close. */
  track: (cleanup: Promise<unknown>) => void;
  /** The configuration in force: its bridge settings say how each stdio server is sandboxed. */
  config?: Pick<ConfigSource, "current">;
  /** Aborted when the pool closes: the connect gives up at once and stops what it started. */
  signal?: AbortSignal;
  /** Largest message (a tool result) accepted from a server. Default 64 MiB. */
  maxMessageBytes?: number;
  /** Follows what stdio servers start, and ends it at close (pool_reaper.ts). */
  tracker?: ProcessTracker;
  /**
   * The OAuth client of a streamable HTTP entry without an `Authorization` header of its own
   * (pool_oauth.ts): a 401 answer starts the authorization, and the connect fails with the page
   * to open, or waits for the user's answer when {@linkcode waitForAuthorization} is set.
   */
  oauth?: OAuthSession;
  /** Wait for the user to answer an authorization page (the CLI on a terminal) and go on. */
  waitForAuthorization?: boolean;
}

/** The connect was given up because the pool closed (the bridge is shutting down). */
function abandonedError(entry: ServerEntry, cause: unknown): McpServerError {
  return new McpServerError(
    `Stopped connecting to MCP server "${entry.name}": the bridge is shutting down.`,
    { server: entry.name, kind: "closed", cause },
  );
}

/**
 * The SDK client the bridge connects to `server` with: `clientInfo`, the capabilities it
 * advertises, and the router of the server's requests those capabilities promise answers to.
 */
function newClient(
  server: string,
  o: Pick<ConnectOptions, "clientInfo" | "capabilities">,
): { client: Client; requests: ServerRequests } {
  const client = new Client(o.clientInfo, { capabilities: o.capabilities });
  return { client, requests: answerRequests(client, server, o.capabilities) };
}

/**
 * Connects `client` over `transport` (starting it and doing the MCP handshake), bounded by
 * `timeoutMs` for the handshake request plus a second for the transport to start; past that it
 * rejects with an error that {@linkcode isHandshakeTimeout} recognises.
 */
function handshake(
  client: Client,
  transport: Transport,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const { timeoutMs, signal } = options;
  return raceAbort(
    withTimeout(
      client.connect(transport, { timeout: timeoutMs, signal }),
      timeoutMs + 1000,
      () => new Error("timeout"),
    ),
    signal,
  );
}

/** True when {@linkcode handshake} failed because the server did not answer in time. */
function isHandshakeTimeout(error: unknown): boolean {
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

/**
 * Starts `entry`'s server (stdio) or connects to it (http, sse); a failure throws an
 * McpServerError. What it logs about the server (its stderr, transport errors) has the entry's
 * secrets hidden ({@linkcode redactEntryText}).
 */
export function connectServer(entry: ServerEntry, o: ConnectOptions): Promise<Connection> {
  const options = { ...o, log: redactingLogger(o.log, (text) => redactEntryText(entry, text)) };
  return entry.transport === "stdio" ? connectStdio(entry, options) : connectRemote(entry, options);
}

/** `log` with `redact` applied to every message and every string (or error) field. */
function redactingLogger(log: Logger, redact: (text: string) => string): Logger {
  const fields = (f?: LogFields) =>
    f === undefined ? undefined : Object.fromEntries(
      Object.entries(f).map(([k, v]) => [
        k,
        typeof v === "string" ? redact(v) : v instanceof Error ? redact(errorMessage(v)) : v,
      ]),
    );
  return {
    level: log.level,
    debug: (m, f) => log.debug(redact(m), fields(f)),
    info: (m, f) => log.info(redact(m), fields(f)),
    warn: (m, f) => log.warn(redact(m), fields(f)),
    error: (m, f) => log.error(redact(m), fields(f)),
    child: (scope) => redactingLogger(log.child(scope), redact),
  };
}

// -- stdio ----------------------------------------------------------------------------------------

/** Spawns `entry`'s command and connects to it; a failed start throws an McpServerError. */
async function connectStdio(entry: ServerEntry, o: ConnectOptions): Promise<Connection> {
  const name = entry.name;
  const target = entryTarget(entry);
  const serverLog = o.log.child(name);
  const stderr = new StderrTail(o.stderrLines, (line) => serverLog.debug(line));
  // Until the connection exists, an exit is only recorded (and checked once it does).
  let exited = (): void => {};
  const tracker = o.tracker;
  const marker = tracker?.newMarker();
  // The bridge's own variables: the recursion depth, and the mark of what this server starts.
  const own = { ...o.extraEnv, ...(marker === undefined ? {} : { [OWNER_VARIABLE]: marker }) };
  const overridden = Object.keys(entry.env).filter((key) => Object.hasOwn(own, key));
  if (overridden.length > 0) {
    o.log.warn(
      `MCP server "${name}" sets ${overridden.join(", ")} in its "env"; the bridge's own value ` +
        "is used (it carries the recursion depth and cannot be reset by an entry)",
    );
  }
  // The server's own sandbox (sandbox.ts): the command that starts it confined. The bridge's
  // own variables win over the entry's.
  const launch = await sandboxLaunch(entry, {
    env: { ...getDefaultEnvironment(), ...entry.env, ...own },
    config: await o.config?.current(),
  });
  const transport = new StdioChildTransport({
    command: launch.command,
    args: launch.args,
    env: launch.env,
    cwd: entry.cwd,
    onStderr: (chunk) => stderr.push(chunk),
    onExit: () => exited(),
    signalGroup: o.signalGroup,
    maxLineChars: o.maxMessageBytes,
    onSpawned: tracker === undefined || marker === undefined
      ? undefined
      : (pid) => tracker.spawned(pid, marker, o.signalGroup !== undefined),
    reap: tracker === undefined ? undefined : (pid) => tracker.reap(pid),
  });
  const { client, requests } = newClient(name, o);
  client.onerror = (error) => serverLog.debug(`transport: ${errorMessage(error)}`);
  const started = performance.now();
  try {
    await handshake(client, launch.wrap(transport), {
      timeoutMs: o.connectTimeoutMs,
      signal: o.signal,
    });
  } catch (error) {
    const closed = client.close().catch(() => undefined);
    o.track(closed);
    if (o.signal?.aborted) throw abandonedError(entry, error);
    await exitAfterBrokenPipe(transport, error);
    if (transport.exit !== undefined) await settleWithin(transport.stderrEnded, 250);
    stderr.flush();
    throw launch.explain(
      await stdioConnectError({
        entry,
        error,
        exit: transport.exit,
        stderr: stderr.lines,
        target,
        connectTimeoutMs: o.connectTimeoutMs,
      }),
    );
  }
  const conn = new Connection({
    entry,
    client,
    stderr,
    child: transport,
    onClosed: o.onClosed,
    onExited: o.onExited,
    requests,
  });
  o.log.debug("started", {
    server: name,
    pid: conn.pid,
    ms: Math.round(performance.now() - started),
  });
  exited = () => conn.processExited();
  // It may have exited between the handshake and now: not usable, callers retry with a new one.
  if (transport.exit !== undefined) conn.processExited();
  return conn;
}

/**
 * How long a server whose input closed during the handshake (a broken pipe) is given to exit: one
 * that exits at once can close its input before the handshake's first message is written, and how
 * it exited (and what it said on stderr) explains more than the pipe.
 */
const EXIT_AFTER_BROKEN_PIPE_MS = 1000;

/** Waits (at most `ms`) for `child` to exit when `error` is a broken pipe and it has not yet. */
export async function exitAfterBrokenPipe(
  child: { readonly exit: ExitInfo | undefined; readonly exited: Promise<unknown> },
  error: unknown,
  ms = EXIT_AFTER_BROKEN_PIPE_MS,
): Promise<void> {
  if (child.exit !== undefined) return;
  if (!causeChain(error).some((e) => errnoCode(e) === "EPIPE")) return;
  await settleWithin(child.exited, ms);
}

async function stdioConnectError(o: {
  entry: ServerEntry;
  error: unknown;
  exit: ExitInfo | undefined;
  stderr: string[];
  target: string;
  connectTimeoutMs: number;
}): Promise<McpServerError> {
  const { entry, error, exit, stderr, target } = o;
  const name = entry.name;
  const command = entry.command ?? "";
  const base = { server: name, stderrTail: stderr, cause: error };
  if (isSandboxDenial(error)) {
    return new McpServerError(
      `Cannot start MCP server "${name}": Deno's sandbox does not allow running "${command}" ` +
        `(${errorMessage(error)}). Allow it (the "bridge" permission set plus ` +
        `--allow-run=${command}) with: ${widenCommand({ run: [command] })}`,
      { ...base, kind: "permission" },
    );
  }
  if (errnoCode(error) === "EACCES") {
    return new McpServerError(
      `Cannot start MCP server "${name}": the system refused to run "${command}" ` +
        `(${errorMessage(error)}). Check that it is an executable file (chmod +x) and that its ` +
        `directory can be read.`,
      { ...base, kind: "spawn" },
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
  if (isHandshakeTimeout(error)) {
    return new McpServerError(
      `MCP server "${name}" did not complete the MCP handshake within ` +
        `${o.connectTimeoutMs} ms. Command: ${target}.${formatTail(stderr)}\n` +
        `If it downloads on first start (npx -y, uvx), run the command once by hand, or give ` +
        `it longer: "timeout" in its config entry (milliseconds, e.g. 120000) or ` +
        `MCP_CONNECT_TIMEOUT_MS for every server; otherwise check that it speaks MCP over stdio.`,
      { ...base, kind: "connect_timeout" },
    );
  }
  const code = errnoCode(error);
  return new McpServerError(
    `Cannot start MCP server "${name}" (${target}): ${errorMessage(error)}` +
      `${code ? ` [${code}]` : ""}.${formatTail(stderr)}`,
    { ...base, kind: "spawn" },
  );
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

// -- remote: streamable HTTP, SSE, the fallback ---------------------------------------------------

interface Connected {
  client: Client;
  requests: ServerRequests;
  remote: RemoteWatch;
}

/** Connects to `entry`'s URL; a failed connect throws an McpServerError. */
async function connectRemote(entry: ServerEntry, o: ConnectOptions): Promise<Connection> {
  const name = entry.name;
  // As written, credentials hidden: what messages show.
  const url = entryUrl(entry);
  let parsed: URL;
  try {
    parsed = new URL(entry.url ?? "");
  } catch (error) {
    throw new McpServerError(
      `MCP server "${name}" has an invalid url ${JSON.stringify(url)}. Fix it in the config.`,
      { server: name, kind: "config", cause: error },
    );
  }
  const requestInit: RequestInit = { headers: { ...entry.headers } };
  const stderr = new StderrTail(0, () => {});
  const oauth = entry.transport === "sse" ? undefined : o.oauth;
  const attempt = async (kind: "http" | "sse"): Promise<Connected> => {
    const remote = new RemoteWatch({ maxMessageBytes: o.maxMessageBytes });
    // Every response goes through the watch, which also bounds the size of each message.
    const transport = kind === "sse"
      ? new SSEClientTransport(parsed, { requestInit, fetch: remote.fetch })
      : new StreamableHTTPClientTransport(parsed, {
        requestInit,
        fetch: remote.fetch,
        authProvider: oauth,
      });
    remote.attach(transport, (reason) => {
      o.log.debug("connection lost", { server: name, reason });
      // Closing the transport fails every request still waiting on it.
      transport.close().catch(() => undefined);
    });
    const { client, requests } = newClient(name, o);
    client.onerror = (error) => o.log.debug(`transport: ${errorMessage(error)}`, { server: name });
    try {
      await handshake(client, transport, { timeoutMs: o.connectTimeoutMs, signal: o.signal });
      return { client, requests, remote };
    } catch (error) {
      o.track(client.close().catch(() => undefined));
      if (o.signal?.aborted) throw abandonedError(entry, error);
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
        connected = await authorized(oauth, o, () => attempt("http"));
      } catch (error) {
        if (!shouldFallBackToSse(error) || oauth?.tried) throw error;
        o.log.debug("streamable HTTP refused; trying SSE", {
          server: name,
          error: errorMessage(error),
        });
        try {
          connected = await attempt("sse");
        } catch (sseError) {
          throw new McpServerError(
            `Cannot connect to MCP server "${name}" at ${url}: streamable HTTP failed ` +
              `(${errorMessage(error)}) and so did the SSE fallback (${
                networkFailure(sseError).reason
              }). ` +
              `Check the URL (many servers use /mcp for HTTP and /sse for SSE).`,
            { server: name, kind: "handshake", cause: sseError },
          );
        }
      }
    }
  } catch (error) {
    throw error instanceof McpServerError ? error : remoteConnectError({
      entry,
      host: parsed.host,
      error,
      connectTimeoutMs: o.connectTimeoutMs,
      oauth,
    });
  }
  return new Connection({
    entry,
    client: connected.client,
    remote: connected.remote,
    stderr,
    onClosed: o.onClosed,
    requests: connected.requests,
  });
}

/**
 * Runs `attempt` (a streamable HTTP connect) with `oauth`: a server that wants authorization
 * fails it with the page to open, or, with `waitForAuthorization`, the user's answer is awaited
 * and the connect tried again. An authorization still waiting for its answer is not started
 * anew: the same page is named again.
 */
async function authorized<T>(
  oauth: OAuthSession | undefined,
  o: Pick<ConnectOptions, "waitForAuthorization" | "signal" | "phase">,
  attempt: () => Promise<T>,
): Promise<T> {
  if (oauth === undefined) return await attempt();
  // While the user has the page open, the callers' progress says so.
  const awaitUser = async () => {
    if (o.phase !== undefined) {
      Object.assign(o.phase, { what: "authorizing", url: oauth.waiting?.url });
    }
    try {
      await oauth.awaitAuthorization(o.signal);
    } finally {
      if (o.phase !== undefined) Object.assign(o.phase, { what: "starting", url: undefined });
    }
  };
  await oauth.load();
  if (oauth.waiting !== undefined && await oauth.tokens() === undefined) {
    if (o.waitForAuthorization !== true) throw oauth.authorizationError();
    await awaitUser();
  }
  oauth.beginConnect();
  try {
    return await attempt();
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || o.signal?.aborted) throw error;
    if (o.waitForAuthorization !== true) throw oauth.authorizationError(error);
    await awaitUser();
    oauth.beginConnect();
    try {
      return await attempt();
    } catch (again) {
      throw again instanceof UnauthorizedError ? oauth.authorizationError(again) : again;
    }
  }
}

function remoteConnectError(
  o: {
    entry: ServerEntry;
    host: string;
    error: unknown;
    connectTimeoutMs: number;
    oauth?: OAuthSession;
  },
): McpServerError {
  const { entry, error } = o;
  let host = o.host;
  const name = entry.name;
  const url = entryUrl(entry);
  const base = { server: name, cause: error };
  const chain = causeChain(error);
  const denial = chain.find(isSandboxDenial);
  if (denial !== undefined) {
    // The host refused may be another (the server's authorization server, for OAuth).
    const denied = /net access to "([^"]+)"/.exec(errorMessage(denial))?.[1] ?? host;
    host = denied.replace(/:(80|443)$/, "");
    return new McpServerError(
      `Cannot connect to MCP server "${name}" at ${url}: Deno's sandbox does not allow network ` +
        `access to ${host} (${errorMessage(denial)}). Allow it (the "bridge" permission set ` +
        `plus --allow-net=${host}) with: ${widenCommand({ net: [host] })}`,
      { ...base, kind: "permission" },
    );
  }
  const status = httpStatusOf(error);
  if (o.oauth?.tried) {
    return new McpServerError(
      `MCP server "${name}" at ${url} wants authorization, and the bridge's OAuth sign-in ` +
        `with it failed: ${errorMessage(error)}. If the server takes a fixed credential ` +
        `instead, set it in the entry's "headers" (e.g. "Authorization": "Bearer \${TOKEN}").`,
      { ...base, kind: "unauthorized" },
    );
  }
  if (status === 401 || status === 403) {
    return new McpServerError(
      `MCP server "${name}" at ${url} refused the connection with HTTP ${status}: ` +
        `${errorMessage(error)}. Set the credentials it needs in the entry's "headers" ` +
        `(e.g. "Authorization": "Bearer \${TOKEN}").`,
      { ...base, kind: "handshake" },
    );
  }
  if (status !== undefined && status > 0) {
    return new McpServerError(
      `MCP server "${name}" at ${url} answered HTTP ${status}: ${errorMessage(error)}. ` +
        `Check the URL and that the server speaks MCP there.`,
      { ...base, kind: "handshake" },
    );
  }
  if (isHandshakeTimeout(error)) {
    return new McpServerError(
      `MCP server "${name}" at ${url} did not complete the MCP handshake within ` +
        `${o.connectTimeoutMs} ms. Check that the server is up and speaks MCP at that URL (a ` +
        `slow one can be given longer: "timeout" in its config entry, in milliseconds).`,
      { ...base, kind: "connect_timeout" },
    );
  }
  const network = chain.some((e) =>
    e instanceof TypeError || errnoCode(e) === "ECONNREFUSED" ||
    (e instanceof SseError && typeof e.code !== "number")
  );
  if (network) {
    return new McpServerError(
      `Cannot connect to MCP server "${name}" at ${url}: ${networkFailure(error).reason}. ` +
        `Start the server or fix the URL in the config.`,
      { ...base, kind: "unreachable" },
    );
  }
  return new McpServerError(
    `Cannot connect to MCP server "${name}" at ${url}: ${networkFailure(error).reason}.`,
    { ...base, kind: "handshake" },
  );
}

function shouldFallBackToSse(error: unknown): boolean {
  const status = httpStatusOf(error);
  return status !== undefined && status >= 400 && status < 500 && status !== 401 &&
    status !== 403;
}
