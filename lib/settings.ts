/**
 * Environment -> one immutable Settings object, resolved once at start-up. Invalid values are a
 * clear start-up error ({@linkcode SettingsError}) rather than a surprise later.
 */
import { BridgeError } from "./errors.ts";
import { ALL_TOOLS, chooseTools, type ToolName } from "./tool_groups.ts";

/** One model server the bridge talks to: its name, origin and bearer token. */
export interface EndpointSetting {
  /** As written in LMSTUDIO_ENDPOINTS; {@linkcode DEFAULT_ENDPOINT} for the single server. */
  readonly name: string;
  /** Origin without trailing slash or `/v1`. */
  readonly baseUrl: string;
  readonly token: string | undefined;
  /** The variable the token comes from (LM_API_TOKEN, LMSTUDIO_ENDPOINT_<NAME>_TOKEN). */
  readonly tokenVariable: string;
}

/** Everything the bridge reads from its environment. */
export interface Settings {
  /**
   * LM Studio (or any OpenAI-compatible server) origin, without trailing slash or `/v1`; with
   * LMSTUDIO_ENDPOINTS, the first endpoint's.
   */
  readonly baseUrl: string;
  /** Bearer token for LM Studio 0.4+ "Require Authentication"; with LMSTUDIO_ENDPOINTS, the first endpoint's. */
  readonly token: string | undefined;
  /**
   * The model servers, in the order configured (the first that lists a model serves it): the
   * one server of LMSTUDIO_BASE_URL (or LMSTUDIO_HOST/PORT) and LM_API_TOKEN, named
   * {@linkcode DEFAULT_ENDPOINT}, unless LMSTUDIO_ENDPOINTS names several.
   */
  readonly endpoints: readonly EndpointSetting[];
  /** True when the endpoints come from LMSTUDIO_ENDPOINTS. */
  readonly namedEndpoints: boolean;
  /** Model used when a call names none. */
  readonly defaultModel: string | undefined;
  /** Per-request timeout for LM Studio HTTP calls. */
  readonly requestTimeoutMs: number;
  /** Retries on connection refused / 5xx / 429. */
  readonly retries: number;
  /** Largest reply body read from LM Studio, in bytes (LMSTUDIO_MAX_REPLY_BYTES). */
  readonly maxReplyBytes: number;
  /** Whether model replies are asked for as streams (LMSTUDIO_STREAM, default on). */
  readonly stream: boolean;
  /**
   * Longest silence of a streamed reply before the request is ended (LMSTUDIO_STALL_MS); 0: no
   * such limit, only the request timeout.
   */
  readonly stallMs: number;
  /**
   * How long the autonomous tasks reuse a model list read by an earlier one, in ms
   * (LMSTUDIO_MODEL_LIST_REUSE_MS); 0: each task reads its own.
   */
  readonly listReuseMs: number;
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

/**
 * Longest silence of a streamed reply when LMSTUDIO_STALL_MS is not set: 2 minutes. Tokens come
 * many a second; before the first one a model may still be loading or reading a long prompt, and
 * the OpenAI-compatible stream says nothing meanwhile, so the limit leaves room for that.
 */
export const DEFAULT_STALL_MS = 120_000;

/**
 * How long a model list is reused by the next tasks when LMSTUDIO_MODEL_LIST_REUSE_MS is not set:
 * 2 s, for tasks that come in bursts (parallel subagents, scripts), each of which would otherwise
 * wait for one more round trip to the server before its first request. A list is always a moment
 * old (the models may change right after it is read); reuse makes that moment at most 2 s, and a
 * load or unload the bridge makes itself has the next list read afresh.
 */
export const DEFAULT_LIST_REUSE_MS = 2_000;

/** Idle TTL (seconds) of loaded models when LMSTUDIO_MODEL_TTL is not set. */
export const DEFAULT_MODEL_TTL_SECONDS = 600;

/** The name of the one endpoint when LMSTUDIO_ENDPOINTS is not set. */
export const DEFAULT_ENDPOINT = "default";

/** The variable that names several model servers: `name=url` pairs, separated by commas. */
export const ENDPOINTS_VARIABLE = "LMSTUDIO_ENDPOINTS";

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

const TRUE_WORDS = ["1", "true", "on", "yes"];
const FALSE_WORDS = ["0", "false", "off", "no"];

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return fallback;
  if (TRUE_WORDS.includes(raw)) return true;
  if (FALSE_WORDS.includes(raw)) return false;
  throw new SettingsError(
    name,
    `${name}=${JSON.stringify(env[name])} is not valid: use on or off (also 1/0, true/false).`,
  );
}

function nonEmpty(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw === undefined || raw === "" ? undefined : raw;
}

/**
 * A server URL as written in `variable` (`shown` is how the message quotes it): http(s) only, a
 * trailing "/" or "/v1" dropped (users paste it from OpenAI client configs; the client adds it).
 */
function serverUrl(variable: string, raw: string, shown = `${variable}=${JSON.stringify(raw)}`) {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SettingsError(
      variable,
      `${shown} is not a URL. ` +
        "Use the form http://127.0.0.1:1234 (LM Studio), http://127.0.0.1:11434 (Ollama) " +
        "or http://127.0.0.1:8080 (llama.cpp).",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SettingsError(variable, `${shown} must start with http:// or https://.`);
  }
  const path = url.pathname.replace(/\/+$/, "").replace(/\/v1$/, "");
  return `${url.origin}${path}`;
}

function resolveBaseUrl(env: Env): string {
  const explicit = nonEmpty(env, "LMSTUDIO_BASE_URL");
  if (explicit !== undefined) return serverUrl("LMSTUDIO_BASE_URL", explicit);
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

/** The variable that holds the token of endpoint `name`: LMSTUDIO_ENDPOINT_<NAME>_TOKEN. */
export function endpointTokenVariable(name: string): string {
  return `LMSTUDIO_ENDPOINT_${name.toUpperCase().replaceAll("-", "_")}_TOKEN`;
}

const ENDPOINT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const ENDPOINT_TOKEN = /^LMSTUDIO_ENDPOINT_(.+)_TOKEN$/;
/** The single-server variables LMSTUDIO_ENDPOINTS replaces. */
const SINGLE_SERVER_VARIABLES = ["LMSTUDIO_BASE_URL", "LMSTUDIO_HOST", "LMSTUDIO_PORT"];

/**
 * The endpoints of LMSTUDIO_ENDPOINTS (`laptop=http://127.0.0.1:1234, gpu=http://10.0.0.5:1234`),
 * each with its own token variable; undefined when it is not set. The single-server variables
 * and LM_API_TOKEN must not be set with it: which server they meant would be a guess, and a token
 * is never sent to a server it was not given for.
 */
function namedEndpoints(env: Env): EndpointSetting[] | undefined {
  const V = ENDPOINTS_VARIABLE;
  const raw = nonEmpty(env, V);
  const tokenVariables = Object.keys(env).filter((k) =>
    ENDPOINT_TOKEN.test(k) && nonEmpty(env, k) !== undefined
  );
  if (raw === undefined) {
    const stray = tokenVariables[0];
    if (stray !== undefined) {
      throw new SettingsError(
        stray,
        `${stray} is set but ${V} is not, so it belongs to no endpoint. Name the endpoints in ` +
          `${V} (e.g. ${V}="laptop=http://127.0.0.1:1234, gpu=http://192.168.1.20:1234"), or ` +
          "use LM_API_TOKEN for the single server of LMSTUDIO_BASE_URL.",
      );
    }
    return undefined;
  }
  const endpoints: EndpointSetting[] = [];
  for (const pair of raw.split(/[\s,]+/).filter((p) => p !== "")) {
    const at = pair.indexOf("=");
    const name = at < 0 ? "" : pair.slice(0, at);
    const url = at < 0 ? pair : pair.slice(at + 1);
    if (!ENDPOINT_NAME.test(name)) {
      throw new SettingsError(
        V,
        `${V} has ${JSON.stringify(pair)}: each endpoint is written name=url, the name made of ` +
          `letters, digits, "-" and "_" (at most 32), e.g. ${V}="laptop=http://127.0.0.1:1234, ` +
          `gpu=http://192.168.1.20:1234".`,
      );
    }
    const baseUrl = serverUrl(V, url, `${V} has ${name}=${JSON.stringify(url)}, which`);
    const tokenVariable = endpointTokenVariable(name);
    const same = endpoints.find((e) => e.tokenVariable === tokenVariable);
    if (same !== undefined) {
      throw new SettingsError(
        V,
        (same.name === name
          ? `${V} names the endpoint ${JSON.stringify(name)} twice`
          : `${V} names ${JSON.stringify(same.name)} and ${JSON.stringify(name)}, which would ` +
            `both take their token from ${tokenVariable}`) + "; give each endpoint its own name.",
      );
    }
    const twin = endpoints.find((e) => e.baseUrl === baseUrl);
    if (twin !== undefined) {
      throw new SettingsError(
        V,
        `${V} gives ${twin.name} and ${name} the same URL ${baseUrl}; list each server once.`,
      );
    }
    endpoints.push({ name, baseUrl, token: nonEmpty(env, tokenVariable), tokenVariable });
  }
  if (endpoints.length === 0) {
    throw new SettingsError(V, `${V} names no endpoint; write it as name=url pairs, or unset it.`);
  }
  for (const single of [...SINGLE_SERVER_VARIABLES, "LM_API_TOKEN"]) {
    if (nonEmpty(env, single) === undefined) continue;
    throw new SettingsError(
      single,
      single === "LM_API_TOKEN"
        ? `LM_API_TOKEN is set together with ${V}, where each endpoint has its own token ` +
          `(a token goes only to the server it was given for): set ${
            endpoints.map((e) => `${e.tokenVariable} for ${e.name}`).join(", ")
          } as needed, and unset LM_API_TOKEN.`
        : `${single} is set together with ${V}: ${V} names every server, so unset ${single} ` +
          `(or add that server to ${V} as name=url).`,
    );
  }
  for (const variable of tokenVariables) {
    if (endpoints.some((e) => e.tokenVariable === variable)) continue;
    throw new SettingsError(
      variable,
      `${variable} names no endpoint of ${V} (${
        endpoints.map((e) => e.name).join(", ")
      }): fix the name in it, or unset it.`,
    );
  }
  return endpoints;
}

/** The endpoints: those of LMSTUDIO_ENDPOINTS, else the one server of LMSTUDIO_BASE_URL. */
function resolveEndpoints(env: Env): { endpoints: EndpointSetting[]; named: boolean } {
  const named = namedEndpoints(env);
  if (named !== undefined) return { endpoints: named, named: true };
  return {
    endpoints: [{
      name: DEFAULT_ENDPOINT,
      baseUrl: resolveBaseUrl(env),
      token: nonEmpty(env, "LM_API_TOKEN"),
      tokenVariable: "LM_API_TOKEN",
    }],
    named: false,
  };
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
  const { endpoints, named } = resolveEndpoints(env);
  const first = endpoints[0]!;
  return Object.freeze({
    baseUrl: first.baseUrl,
    token: first.token,
    endpoints: Object.freeze(endpoints.map((e) => Object.freeze(e))),
    namedEndpoints: named,
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
    stream: flag(env, "LMSTUDIO_STREAM", true),
    stallMs: integer(env, "LMSTUDIO_STALL_MS", DEFAULT_STALL_MS, 0, 86_400_000),
    listReuseMs: integer(
      env,
      "LMSTUDIO_MODEL_LIST_REUSE_MS",
      DEFAULT_LIST_REUSE_MS,
      0,
      3_600_000,
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
