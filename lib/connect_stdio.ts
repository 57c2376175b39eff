/**
 * Starting a stdio MCP server ({@linkcode connectStdio}): spawn its command with the SDK's default
 * environment plus the pool's and the entry's variables, keep its stderr tail, and do the MCP
 * handshake within the connect timeout. When that fails the error says why in the user's terms:
 * the sandbox does not allow the command, the command or the working directory does not exist,
 * the server exited (with its exit code and last stderr lines) or never answered `initialize`.
 */
import { getDefaultEnvironment } from "./sdk.ts";
import {
  Connection,
  type ConnectOptions,
  handshake,
  isHandshakeTimeout,
  newClient,
} from "./mcp_connection.ts";
import { exitText, formatTail, McpServerError } from "./pool_errors.ts";
import { entryTarget, type ServerEntry } from "./config_entry.ts";
import { type ExitInfo, settleWithin, StderrTail } from "./stdio_child.ts";
import { StdioChildTransport } from "./stdio_transport.ts";
import { errnoCode, errorMessage, isSandboxDenial } from "./errors.ts";

/** Spawns `entry`'s command and connects to it; a failed start throws an McpServerError. */
export async function connectStdio(entry: ServerEntry, o: ConnectOptions): Promise<Connection> {
  const name = entry.name;
  const command = entry.command ?? "";
  const target = entryTarget(entry);
  const serverLog = o.log.child(name);
  const stderr = new StderrTail(o.stderrLines, (line) => serverLog.debug(line));
  // Until the connection exists, an exit is only recorded (and checked once it does).
  let exited = (): void => {};
  const transport = new StdioChildTransport({
    command,
    args: entry.args,
    env: { ...getDefaultEnvironment(), ...o.extraEnv, ...entry.env },
    cwd: entry.cwd,
    onStderr: (chunk) => stderr.push(chunk),
    onExit: () => exited(),
    signalGroup: o.signalGroup,
  });
  const client = newClient(o.clientInfo);
  client.onerror = (error) => serverLog.debug(`transport: ${errorMessage(error)}`);
  const started = performance.now();
  try {
    await handshake(client, transport, { timeoutMs: o.connectTimeoutMs });
  } catch (error) {
    const closed = client.close().catch(() => undefined);
    o.track(closed);
    if (transport.exit !== undefined) await settleWithin(transport.stderrEnded, 250);
    stderr.flush();
    throw await stdioConnectError({
      entry,
      error,
      exit: transport.exit,
      stderr: stderr.lines,
      target,
      connectTimeoutMs: o.connectTimeoutMs,
    });
  }
  const conn = new Connection({
    entry,
    client,
    stderr,
    child: transport,
    onClosed: o.onClosed,
    onExited: o.onExited,
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
        `(${errorMessage(error)}). Add "${command}" to the "run" list of the "bridge" permission ` +
        `set in deno.json, or run/rebuild with --allow-run=${command}.`,
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
        `If it downloads on first start (npx -y, uvx), run the command once by hand, or raise ` +
        `MCP_CONNECT_TIMEOUT_MS; otherwise check that it speaks MCP over stdio.`,
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
