/**
 * The one error type of the MCP configuration modules ({@linkcode ConfigError}): a file that cannot
 * be read or parsed, an unknown server name, or a disabled or unusable entry. It lives on its own
 * so the JSONC parser, the entry resolver and the reader can all throw it without importing each
 * other.
 */
import { BridgeError } from "./errors.ts";

/** A configuration problem: bad file, unknown server, disabled or unusable entry. */
export class ConfigError extends BridgeError<"config"> {
  override name = "ConfigError";
  /** The config file concerned, if any. */
  readonly path?: string;
  /** The server entry concerned, if any. */
  readonly server?: string;
  /** 1-based position of a syntax error. */
  readonly line?: number;
  readonly column?: number;
  constructor(
    message: string,
    options: { path?: string; server?: string; line?: number; column?: number; cause?: unknown } =
      {},
  ) {
    super("config", message, options);
    this.path = options.path;
    this.server = options.server;
    this.line = options.line;
    this.column = options.column;
  }
}
