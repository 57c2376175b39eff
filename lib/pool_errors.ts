/**
 * The error a downstream MCP server's failure becomes ({@linkcode McpServerError}, with its
 * {@linkcode McpServerErrorKind}), and the pieces of text its messages are made of: the server's
 * last stderr lines, how its process exited, and a short network reason ("connection refused")
 * dug out of a chain of wrapped errors.
 */
import { StreamableHTTPError } from "./sdk.ts";
import type { ExitInfo } from "./stdio_child.ts";

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
  | "unknown_tool";

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

/** A short reason for a failed request or stream: "connection refused" rather than a stack of wrappers. */
export function networkReason(error: unknown): string {
  const text = causeChain(error).map((e) => e instanceof Error ? e.message : String(e)).join(": ");
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

/** `error` and its causes, outermost first (at most 10). */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && chain.length < 10) {
    chain.push(current);
    current = current instanceof Error ? current.cause : undefined;
  }
  return chain;
}
