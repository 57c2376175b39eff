/**
 * The only place that writes diagnostics. Everything goes to stderr: in `serve`, stdout carries
 * the MCP protocol and a single stray byte there corrupts the JSON-RPC stream.
 *
 * Levels come from `LOG_LEVEL` (debug, info, warn, error, silent; default info) and colour is off
 * when `NO_COLOR` is set or stderr is not a terminal.
 */

import { safeText } from "./text.ts";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };
const COLOUR: Record<Exclude<LogLevel, "silent">, string> = {
  debug: "\x1b[90m",
  info: "\x1b[36m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
};

/** Extra structured context appended to a line as `key=value`. */
export type LogFields = Record<string, unknown>;

/** A leveled logger writing one line per message to stderr. */
export interface Logger {
  readonly level: LogLevel;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that prefixes every line with `[scope]`. */
  child(scope: string): Logger;
}

/** Options for {@linkcode createLogger}; every field has a production default. */
export interface LoggerOptions {
  level?: LogLevel;
  color?: boolean;
  scope?: string;
  /** Receives each finished line (without newline). Defaults to a synchronous stderr write. */
  write?: (line: string) => void;
}

/** Reads LOG_LEVEL; an unknown value falls back to info (a bad log level must not stop the server). */
export function levelFromEnv(value: string | undefined): LogLevel {
  const v = value?.trim().toLowerCase();
  if (v === "warning") return "warn";
  return v !== undefined && v in ORDER ? v as LogLevel : "info";
}

function envOrUndefined(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env the defaults apply; that is not worth failing over.
    return undefined;
  }
}

const encoder = new TextEncoder();

function stderrWrite(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let written = 0;
  while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  if (value instanceof Error) return JSON.stringify(value.message);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Builds a logger; see {@linkcode LoggerOptions}. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? levelFromEnv(envOrUndefined("LOG_LEVEL"));
  const color = options.color ??
    (envOrUndefined("NO_COLOR") === undefined && safeIsTerminal());
  const write = options.write ?? stderrWrite;
  const scope = options.scope;

  const emit = (at: Exclude<LogLevel, "silent">, message: string, fields?: LogFields) => {
    if (ORDER[at] < ORDER[level]) return;
    const tag = color ? `${COLOUR[at]}${at.toUpperCase()}\x1b[0m` : at.toUpperCase();
    const prefix = scope ? `[${scope}] ` : "";
    const extra = fields
      ? Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => ` ${k}=${formatValue(v)}`)
        .join("")
      : "";
    // Messages and fields carry outside text (a server's stderr); the tag's colour is our own.
    write(`${tag} ${safeText(`${prefix}${message}${extra}`)}`);
  };

  return {
    level,
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (child) =>
      createLogger({ level, color, write, scope: scope ? `${scope}:${child}` : child }),
  };
}

function safeIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** The process-wide logger. */
export const log: Logger = createLogger();
