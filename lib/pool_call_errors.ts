/**
 * What a failed call to a downstream MCP server becomes: {@linkcode explainCallError} reads the
 * connection's state (closed by the bridge, exited with its stderr tail, lost mid-call) and the
 * SDK's error (timeout, JSON-RPC rejection, broken HTTP session) and says in one message what
 * happened and what the next call will do; {@linkcode taskRequiredError} explains a tool that
 * only runs as an MCP task, {@linkcode unknownToolError} a tool the server does not have.
 */
import { ErrorCode, McpError } from "./sdk.ts";
import type { Connection } from "./mcp_connection.ts";
import { exitText, formatTail, httpStatusOf, McpServerError } from "./pool_errors.ts";
import { errorMessage, networkFailure } from "./errors.ts";
import { clip, closestName, shellWord } from "./text.ts";

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
      ? networkFailure(error).reason
      : `it answered HTTP ${status} (${networkFailure(error).reason})`;
    o.onBroken(reason);
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
  // An McpError thrown by a server comes back wrapped in one more "MCP error -32602: ".
  const answer = (o.answer ?? "").replace(/\s+/g, " ").trim().replace(
    /^(MCP error -?\d+: )\1+/,
    "$1",
  );
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
