/**
 * The error a downstream MCP server's failure becomes ({@linkcode McpServerError}, with its
 * {@linkcode McpServerErrorKind}), and the pieces of text its messages are made of: the server's
 * last stderr lines, how its process exited, and a short network reason ("connection refused")
 * dug out of a chain of wrapped errors.
 */
import { StreamableHTTPError } from "./sdk_client.ts";
import type { ExitInfo } from "./pool_stdio.ts";
import { BridgeError, causeChain } from "./errors.ts";
import { formatBytes } from "./text.ts";

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
  | "unsupported"
  | "unknown_tool"
  | "unknown_prompt"
  /** A remote server needs the user to authorize the bridge (OAuth); the message has the URL. */
  | "unauthorized"
  | "too_large";

/**
 * The message of an McpError a server sent, once: the SDK prefixes "MCP error -32602: " when
 * the server throws and again when the client receives it, so it would read twice.
 */
export function serverErrorText(message: string): string {
  return message.replace(/^(MCP error -?\d+: )\1+/, "$1");
}

/** A downstream MCP server failed; the message says what failed, why and what to do. */
export class McpServerError extends BridgeError<McpServerErrorKind> {
  override name = "McpServerError";
  /** The server's name in the config. */
  readonly server: string;
  /** The last lines the server wrote to stderr (stdio only), oldest first. */
  readonly stderrTail: string[];
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
    super(options.kind, message, options);
    this.server = options.server;
    this.stderrTail = options.stderrTail ?? [];
    this.exitCode = options.exitCode;
    this.tool = options.tool;
  }
}

/**
 * A remote server sent one message (a tool result, an event) larger than the bridge accepts; the
 * bridge stopped reading it instead of holding it all in memory.
 */
export class MessageTooLargeError extends BridgeError<"too_large"> {
  override name = "MessageTooLargeError";
  constructor(readonly limitBytes: number) {
    super(
      "too_large",
      `it sent a message larger than ${formatBytes(limitBytes)} (one JSON-RPC message, e.g. a ` +
        "huge tool result), so the bridge stopped reading it",
    );
  }
}

/**
 * `error` with `redact` applied to what it shows (message and stderr lines), when it is an
 * {@linkcode McpServerError}; anything else is returned as it is.
 */
export function redactError(error: unknown, redact: (text: string) => string): unknown {
  if (!(error instanceof McpServerError)) return error;
  const message = redact(error.message);
  const stderrTail = error.stderrTail.map(redact);
  if (message === error.message && stderrTail.every((l, i) => l === error.stderrTail[i])) {
    return error;
  }
  return new McpServerError(message, {
    server: error.server,
    kind: error.kind,
    stderrTail,
    exitCode: error.exitCode,
    tool: error.tool,
    cause: error.cause,
  });
}

/** The server's last stderr lines as the end of a message (or that it wrote none). */
export function formatTail(lines: readonly string[]): string {
  if (lines.length === 0) return " It wrote nothing to stderr.";
  return ` Last stderr lines:\n${lines.map((l) => `  | ${l}`).join("\n")}`;
}

/** How a stdio server's process ended: "exited with code 1", "was killed by SIGTERM". */
export function exitText(exit: ExitInfo | undefined): string {
  if (exit === undefined) return "exited";
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return exit.signal ? `was killed by ${exit.signal}` : "exited";
}

/** The HTTP status a remote server answered with, found anywhere in the error's cause chain. */
export function httpStatusOf(error: unknown): number | undefined {
  for (const e of causeChain(error)) {
    if (e instanceof StreamableHTTPError && typeof e.code === "number") return e.code;
    const code = typeof e === "object" && e !== null ? Reflect.get(e, "code") : undefined;
    if (e instanceof Error && e.name !== "McpError" && typeof code === "number" && code >= 100) {
      return code;
    }
  }
  return undefined;
}
