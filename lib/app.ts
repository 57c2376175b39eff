/**
 * The application's services, built from Settings. Constructors do no I/O: nothing is contacted or
 * spawned until a command or tool needs it. The MCP client side (the pool and the SDK behind it)
 * is not even loaded until first asked for, so commands that only talk to LM Studio start fast.
 */
import { ConfigSource } from "./config.ts";
import { LmStudioClient } from "./lmstudio.ts";
import type { LmClient } from "./lmstudio_endpoints.ts";
import { Lms } from "./lms.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { endpointServices } from "./model_endpoints.ts";
import { ModelManager, type Models } from "./models.ts";
import type { Output } from "./output.ts";
import type { McpPool } from "./pool.ts";
import { SessionRegistry } from "./server_sessions.ts";
import { DEPTH_VARIABLE, type Settings } from "./settings.ts";
import { NAME, VERSION } from "./version.ts";

/**
 * Everything a command or tool may use: the one services type. Each command and tool group takes
 * it whole and narrows it in its own signature to what it uses (`Pick<App, "client" | "models">`),
 * so a test builds only that.
 */
export interface App {
  readonly settings: Settings;
  readonly log: Logger;
  /**
   * LM Studio (or another OpenAI-compatible server); with LMSTUDIO_ENDPOINTS, a router that
   * sends each request to the endpoint that has its model (lmstudio_endpoints.ts).
   */
  readonly client: LmClient;
  readonly config: ConfigSource;
  readonly lms: Lms;
  /** Model state and loading; with LMSTUDIO_ENDPOINTS, per endpoint (model_endpoints.ts). */
  readonly models: Models;
  /** The autonomous tools' sessions, kept per MCP session (server_sessions.ts). */
  readonly sessions: SessionRegistry;
  /** The downstream MCP connections; created (and the MCP SDK loaded) on first call. */
  pool(): Promise<McpPool>;
  /** Closes downstream connections and stops watching the config; safe to call more than once. */
  close(): Promise<void>;
}

/**
 * What main.ts hands every command, `(argv, ctx) => exit code`: the services (`A`, the part of
 * {@linkcode App} the command uses), where its output goes, and Ctrl-C.
 */
export interface CommandContext<A = App> {
  readonly app: A;
  readonly out: Output;
  /** Aborted by Ctrl-C. */
  readonly signal: AbortSignal;
}

/** Options that come from the command line rather than the environment. */
export interface AppOptions {
  /** `--config FILE`; wins over MCP_JSON_PATH. */
  configPath?: string;
  log?: Logger;
  /**
   * A remote server that needs the user to authorize the bridge (OAuth) makes the command wait
   * for the answer to the page it names, instead of failing with it (the CLI on a terminal).
   */
  waitForAuthorization?: boolean;
  /**
   * Watch the config directories so that an unchanged config costs no stat per call
   * (ConfigSource `watch`); `close` stops it. Default false.
   */
  watchConfig?: boolean;
}

/** Builds the services for `settings`. */
export function createApp(settings: Settings, options: AppOptions = {}): App {
  const log = options.log ?? rootLog;
  const config = new ConfigSource({
    explicitPath: options.configPath,
    mcpJsonPath: settings.mcpJsonPath,
    bridgeConfigPath: settings.bridgeConfigPath,
    cwd: settings.workDir,
    log: log.child("config"),
    watch: options.watchConfig === true,
  });
  // A model loaded or unloaded with `lms` changes the model lists: the next is read afresh.
  const lms = new Lms({ log: log.child("lms"), onModelsChange: () => client.forgetModelList() });
  const { client, models } = settings.namedEndpoints
    ? endpointServices(settings, { lms, log })
    : singleServer(settings, { lms, log });
  let pool: Promise<McpPool> | undefined;
  let closing: Promise<void> | undefined;
  const makePool = async (): Promise<McpPool> => {
    const { McpPool } = await import("./pool.ts");
    return new McpPool({
      config,
      idleMs: settings.mcpIdleMs,
      connectTimeoutMs: settings.mcpConnectTimeoutMs,
      callTimeoutMs: settings.mcpCallTimeoutMs,
      log: log.child("pool"),
      clientInfo: { name: NAME, version: VERSION },
      extraEnv: { [DEPTH_VARIABLE]: String(settings.depth + 1) },
      waitForAuthorization: options.waitForAuthorization,
    });
  };
  return {
    settings,
    log,
    client,
    config,
    lms,
    models,
    sessions: new SessionRegistry(),
    pool: () => pool ??= makePool(),
    close: () =>
      closing ??= (pool ? pool.then((p) => p.close()) : Promise.resolve()).finally(() =>
        config.close()
      ),
  };
}

/** The client and model manager of the one server of LMSTUDIO_BASE_URL and LM_API_TOKEN. */
function singleServer(
  settings: Settings,
  o: { lms: Lms; log: Logger },
): { client: LmClient; models: Models } {
  const client = new LmStudioClient({
    baseUrl: settings.baseUrl,
    token: settings.token,
    timeoutMs: settings.requestTimeoutMs,
    retries: settings.retries,
    maxReplyBytes: settings.maxReplyBytes,
    stream: settings.stream,
    stallMs: settings.stallMs,
    listReuseMs: settings.listReuseMs,
    log: o.log.child("lmstudio"),
  });
  const models = new ModelManager({
    client,
    lms: o.lms,
    ttlSeconds: settings.modelTtlSeconds,
    defaultContextLength: settings.defaultContextLength,
    log: o.log.child("models"),
  });
  return { client, models };
}
