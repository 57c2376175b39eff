/**
 * Environment -> one immutable Settings object, resolved once at start-up. Invalid values are a
 * clear start-up error ({@linkcode SettingsError}) rather than a surprise later.
 */
import { BridgeError } from "./errors.ts";
import { ALL_TOOLS, chooseTools, type ToolName } from "./tool_groups.ts";

/** Everything the bridge reads from its environment. */
export interface Settings {
  /** LM Studio (or any OpenAI-compatible server) origin, without trailing slash or `/v1`. */
  readonly baseUrl: string;
  /** Bearer token for LM Studio 0.4+ "Require Authentication". */
  readonly token: string | undefined;
  /** Model used when a call names none. */
  readonly defaultModel: string | undefined;
  /** Per-request timeout for LM Studio HTTP calls. */
  readonly requestTimeoutMs: number;
  /** Retries on connection refused / 5xx / 429. */
  readonly retries: number;
  /** Largest reply body read from LM Studio, in bytes (LMSTUDIO_MAX_REPLY_BYTES). */
  readonly maxReplyBytes: number;
  /** TTL in seconds sent with requests and `lms load` so JIT-loaded models stay for a long task. */
  readonly modelTtlSeconds: number;
  /** Context window assumed when the server does not tell. */
  readonly defaultContextLength: number;
  /** How long an unused downstream MCP connection stays open. */
  readonly mcpIdleMs: number;
  /** How long a downstream MCP server may take to start and answer initialize. */
  readonly mcpConnectTimeoutMs: number;
  /** Default time limit of one downstream tool call. */
  readonly mcpCallTimeoutMs: number;
  /**
   * The directory the user ran the bridge from: `INIT_CWD` when started through `deno task`
   * (which runs tasks in the repository), else undefined (the process's cwd). The MCP config
   * search (`./.mcp.json`) and relative image paths start here.
   */
  readonly workDir: string | undefined;
  /** Nesting depth of this bridge (children started by the bridge get depth + 1). */
  readonly depth: number;
  /** `MCP_JSON_PATH`: the MCP config file to use instead of searching (it must exist). */
  readonly mcpJsonPath: string | undefined;
  /**
   * `LMSTUDIO_BRIDGE_CONFIG`: the bridge settings file to use (it must exist) instead of
   * `lmstudio-bridge.json` next to the MCP config file.
   */
  readonly bridgeConfigPath: string | undefined;
  /**
   * `LMSTUDIO_BRIDGE_TOOLS`: the bridge's own tools that `serve` exposes (groups and tool names,
   * tool_groups.ts); every tool when unset.
   */
  readonly tools: readonly ToolName[];
}

/** A setting that cannot be used; the message names the variable and what would be valid. */
export class SettingsError extends BridgeError<"settings"> {
  override name = "SettingsError";
  constructor(readonly variable: string, message: string) {
    super("settings", message);
  }
}

/** Per-request timeout of LM Studio HTTP calls when LMSTUDIO_TIMEOUT_MS is not set. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 300_000;

/** Retries of an LM Studio request when LMSTUDIO_RETRIES is not set. */
export const DEFAULT_RETRIES = 2;

/**
 * Largest LM Studio reply body read when LMSTUDIO_MAX_REPLY_BYTES is not set: 64 MiB, like the
 * longest message accepted from a stdio MCP server.
 */
export const DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** Idle TTL (seconds) of loaded models when LMSTUDIO_MODEL_TTL is not set. */
export const DEFAULT_MODEL_TTL_SECONDS = 600;

/** The environment variable that carries the bridge's nesting depth to its children. */
export const DEPTH_VARIABLE = "LMSTUDIO_BRIDGE_DEPTH";

type Env = Readonly<Record<string, string | undefined>>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SettingsError(
      name,
      `${name}=${JSON.stringify(raw)} is not valid: expected a whole number from ${min} to ${max}.`,
    );
  }
  return value;
}

function nonEmpty(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw === undefined || raw === "" ? undefined : raw;
}

function resolveBaseUrl(env: Env): string {
  const explicit = nonEmpty(env, "LMSTUDIO_BASE_URL");
  if (explicit !== undefined) {
    let url: URL;
    try {
      url = new URL(explicit);
    } catch {
      throw new SettingsError(
        "LMSTUDIO_BASE_URL",
        `LMSTUDIO_BASE_URL=${JSON.stringify(explicit)} is not a URL. ` +
          "Use the form http://127.0.0.1:1234 (LM Studio), http://127.0.0.1:11434 (Ollama) " +
          "or http://127.0.0.1:8080 (llama.cpp).",
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new SettingsError(
        "LMSTUDIO_BASE_URL",
        `LMSTUDIO_BASE_URL=${JSON.stringify(explicit)} must start with http:// or https://.`,
      );
    }
    // Accept ".../v1" as users paste it from OpenAI client configs; the client adds it itself.
    const path = url.pathname.replace(/\/+$/, "").replace(/\/v1$/, "");
    return `${url.origin}${path}`;
  }
  const host = nonEmpty(env, "LMSTUDIO_HOST") ?? "127.0.0.1";
  const port = integer(env, "LMSTUDIO_PORT", 1234, 1, 65535);
  if (/[\s/]/.test(host)) {
    throw new SettingsError(
      "LMSTUDIO_HOST",
      `LMSTUDIO_HOST=${JSON.stringify(host)} is not a host name; use e.g. 127.0.0.1 ` +
        "(or set LMSTUDIO_BASE_URL to a full URL).",
    );
  }
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `http://${bracketed}:${port}`;
}

const LOG_LEVELS = ["debug", "info", "warn", "warning", "error", "silent"];

function checkLogLevel(env: Env): void {
  const raw = env.LOG_LEVEL?.trim();
  if (raw === undefined || raw === "" || LOG_LEVELS.includes(raw.toLowerCase())) return;
  throw new SettingsError(
    "LOG_LEVEL",
    `LOG_LEVEL=${JSON.stringify(raw)} is not valid: use debug, info, warn, error or silent.`,
  );
}

function toolChoice(env: Env): readonly ToolName[] {
  const raw = env.LMSTUDIO_BRIDGE_TOOLS;
  if (raw === undefined || raw.trim() === "") return ALL_TOOLS;
  const choice = chooseTools(raw, `LMSTUDIO_BRIDGE_TOOLS=${JSON.stringify(raw)}`);
  if ("problem" in choice) throw new SettingsError("LMSTUDIO_BRIDGE_TOOLS", choice.problem);
  return choice.tools;
}

/** Resolves settings from an environment map. Pure: tests pass their own map. */
export function resolveSettings(env: Env): Settings {
  checkLogLevel(env);
  return Object.freeze({
    baseUrl: resolveBaseUrl(env),
    token: nonEmpty(env, "LM_API_TOKEN"),
    defaultModel: nonEmpty(env, "DEFAULT_MODEL"),
    requestTimeoutMs: integer(
      env,
      "LMSTUDIO_TIMEOUT_MS",
      DEFAULT_REQUEST_TIMEOUT_MS,
      100,
      86_400_000,
    ),
    retries: integer(env, "LMSTUDIO_RETRIES", DEFAULT_RETRIES, 0, 10),
    maxReplyBytes: integer(
      env,
      "LMSTUDIO_MAX_REPLY_BYTES",
      DEFAULT_MAX_REPLY_BYTES,
      1024,
      2 ** 31 - 1,
    ),
    modelTtlSeconds: integer(env, "LMSTUDIO_MODEL_TTL", DEFAULT_MODEL_TTL_SECONDS, 0, 604_800),
    defaultContextLength: integer(env, "LMSTUDIO_CONTEXT_LENGTH", 8192, 256, 10_000_000),
    mcpIdleMs: integer(env, "MCP_IDLE_MS", 300_000, 0, 86_400_000),
    mcpConnectTimeoutMs: integer(env, "MCP_CONNECT_TIMEOUT_MS", 30_000, 100, 3_600_000),
    mcpCallTimeoutMs: integer(env, "MCP_CALL_TIMEOUT_MS", 300_000, 100, 86_400_000),
    workDir: nonEmpty(env, "INIT_CWD"),
    depth: integer(env, DEPTH_VARIABLE, 0, 0, 100),
    mcpJsonPath: nonEmpty(env, "MCP_JSON_PATH"),
    bridgeConfigPath: nonEmpty(env, "LMSTUDIO_BRIDGE_CONFIG"),
    tools: toolChoice(env),
  });
}

/** Settings from the process environment. */
export function settingsFromEnv(): Settings {
  return resolveSettings(Deno.env.toObject());
}
