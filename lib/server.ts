/**
 * The MCP server: registers every tool from one list and serves it over stdio. stdout carries
 * JSON-RPC only; the banner and all diagnostics go to stderr through the logger.
 */
import process from "node:process";
import type { Readable, Writable } from "node:stream";
import { ListToolsRequestSchema, McpServer } from "./sdk.ts";
import { LineStdioServerTransport } from "./server_stdio.ts";
import type { CallToolResult } from "./sdk.ts";
import type { App } from "./app.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { errorResult } from "./server_result.ts";
import { type ListingFacts, registerChosen, toolDefinition, toolListing } from "./server_tools.ts";
import type { Settings } from "./settings.ts";
import { ALL_TOOLS, groupOf, groupsOf, type ToolGroup, type ToolName } from "./tool_groups.ts";
import { NAME, VERSION } from "./version.ts";

/** What the server tells its client of the tools it serves: [what it says, when it serves...]. */
const GUIDANCE: ReadonlyArray<readonly [string, (tool: ToolName) => boolean]> = [
  [
    "delegate self-contained work with the autonomous_* tools (the local model runs the tool " +
    "loop itself)",
    (t) => t.startsWith("autonomous_"),
  ],
  ["ask it directly with chat_completion", (t) => t === "chat_completion"],
  ["manage models with the lms_* tools", (t) => t.startsWith("lms_")],
];

/** The server's instructions for a client offered `tools`. */
function instructions(tools: readonly ToolName[]): string {
  const uses = GUIDANCE.filter(([, serves]) => tools.some(serves)).map(([text]) => text);
  const first = uses.length === 0
    ? ""
    : ` ${uses[0]![0]!.toUpperCase()}${uses.join(", ").slice(1)}.`;
  const health = tools.includes("health_check") ? " Start with health_check if a call fails." : "";
  return `${NAME} gives you a local LLM (LM Studio, Ollama or llama.cpp on this machine) and lets ` +
    `it use the MCP servers configured in .mcp.json.${first}${health}`;
}

/** A tool group's registration: it registers those of `chosen` (from the app) on `server`. */
type Registration = (server: McpServer, app: App, chosen: readonly ToolName[]) => void;

/** Loads the module of a tool group; its registration registers the group's tools. */
type RegistrationModule = () => Promise<Registration>;

const LMSTUDIO: RegistrationModule = async () =>
  (await import("./server_lmstudio.ts")).registerLmStudioTools;
const VISION: RegistrationModule = async () => {
  const { registerAnalyzeImageTool } = await import("./server_vision.ts");
  return (server, app, chosen) =>
    registerChosen({ analyze_image: registerAnalyzeImageTool }, server, app, chosen);
};
const MCP: RegistrationModule = async () => {
  const { registerListAvailableMcpsTool } = await import("./server_mcp.ts");
  return (server, app, chosen) =>
    registerChosen({ list_available_mcps: registerListAvailableMcpsTool }, server, app, chosen);
};
const AGENT: RegistrationModule = async () => {
  const { registerAutonomousTools } = await import("./server_agent.ts");
  return (server, app, chosen) => registerAutonomousTools(server, app, {}, chosen);
};
const LMS: RegistrationModule = async () => (await import("./server_lms.ts")).registerLmsTools;

/**
 * The module of each tool group. A module, and the app its tools use, is loaded on the first call
 * of one of its tools, so `initialize` is answered before any of them is loaded.
 */
const MODULES: Record<ToolGroup, RegistrationModule> = {
  lmstudio: LMSTUDIO,
  vision: VISION,
  mcp: MCP,
  autonomous: AGENT,
  sessions: AGENT,
  lms: LMS,
};

/**
 * The app a server's tools use: built already, or built on first need (`serve` answers
 * `initialize` before it loads the app's modules: LM Studio's client, the config, the models).
 */
export interface AppSource {
  /** The settings the app is built from: which tools are served, the load defaults. */
  readonly settings: Settings;
  readonly log: Logger;
  /** The app, built on the first call (one app for every call). */
  app(): Promise<App>;
  /** Closes the app if it was built; safe to call more than once. */
  close(): Promise<void>;
}

/** `app` itself as an {@linkcode AppSource}, or the source given. */
function sourceOf(app: App | AppSource): AppSource {
  if ("app" in app) return app;
  const built = Promise.resolve(app);
  return { settings: app.settings, log: app.log, app: () => built, close: () => app.close() };
}

/** A tool's handler as the SDK calls it: `(args, extra)`, or `(extra)` for a tool without any. */
type ToolHandler = (...params: unknown[]) => CallToolResult | Promise<CallToolResult>;

/**
 * Registers each tool of `chosen` with its definition (the SDK checks the arguments against it as
 * ever) and a handler that, on the first call, loads the tool's module and the app, has the module
 * register its tools on a stand-in for `server` that keeps their handlers, and then calls the
 * tool's own handler with what the SDK passed. A module that fails to load fails its tools' calls
 * with an error that says so (and the next call tries again).
 */
function registerDeferred(
  server: McpServer,
  source: AppSource,
  chosen: readonly ToolName[],
  facts: ListingFacts,
): void {
  const handlers = new Map<string, ToolHandler>();
  const loads = new Map<RegistrationModule, Promise<void>>();
  const load = (module: RegistrationModule): Promise<void> => {
    let loading = loads.get(module);
    if (loading === undefined) {
      loading = Promise.all([module(), source.app()]).then(([register, app]) => {
        // The real server for everything else a module's tools use (`server.server`).
        const standIn: McpServer = Object.create(server);
        Object.defineProperty(standIn, "registerTool", {
          value: (name: string, _definition: unknown, handler: ToolHandler) => {
            handlers.set(name, handler);
          },
        });
        register(standIn, app, chosen);
      });
      loads.set(module, loading);
      loading.catch(() => loads.delete(module));
    }
    return loading;
  };
  for (const name of chosen) {
    const module = MODULES[groupOf(name)];
    server.registerTool(
      name,
      toolDefinition(name, facts),
      async (...params: unknown[]): Promise<CallToolResult> => {
        try {
          await load(module);
        } catch (error: unknown) {
          source.log.error(`could not load the code of the ${name} tool`, {
            error: errorMessage(error),
          });
          return errorResult(error, `The bridge could not load the code of ${name}`);
        }
        const handler = handlers.get(name);
        if (handler === undefined) return errorResult(`${name} was not registered by its module.`);
        return await handler(...params);
      },
    );
  }
}

/**
 * A tool left out of `chosen`: unlisted, and a call to it (from a client that remembers an
 * earlier listing, or a model that guesses) says why it is not there and how to get it.
 */
function registerHidden(server: McpServer, name: ToolName, chosen: readonly ToolName[]): void {
  const group = groupOf(name);
  server.registerTool(name, { description: `Not served (tool group ${group}).` }, () =>
    errorResult(
      `${name} is not served here: this bridge serves only the tool groups ` +
        `${
          groupsOf(chosen).join(", ")
        } (LMSTUDIO_BRIDGE_TOOLS or serve --tools). To use ${name}, ` +
        `add ${group} (or ${name}) to that list and restart the server.`,
    ));
}

/**
 * Builds the MCP server with the tools of `app.settings.tools` (LMSTUDIO_BRIDGE_TOOLS, serve
 * --tools; every tool by default), listed as server_tools.ts writes them for a calling model.
 */
export function createServer(app: App | AppSource): McpServer {
  const source = sourceOf(app);
  const chosen = source.settings.tools;
  const server = new McpServer(
    { name: NAME, version: VERSION },
    { capabilities: { tools: {}, logging: {} }, instructions: instructions(chosen) },
  );
  // The load default a listing states: the app's models have it from the same settings.
  const facts: ListingFacts = {
    defaultContextLength: "app" in app
      ? source.settings.defaultContextLength
      : app.models.defaultContextLength,
  };
  registerDeferred(server, source, chosen, facts);
  for (const name of ALL_TOOLS) if (!chosen.includes(name)) registerHidden(server, name, chosen);
  // Replaces the SDK's listing (registration above installed it): only the chosen tools, lean,
  // built on the first tools/list (once; it takes longer than the rest of the start-up's own
  // work) rather than before the handshake is answered.
  server.server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: toolListing(chosen, facts),
  }));
  return server;
}

/** Streams for {@linkcode serveStdio}; the process's own by default. */
export interface StdioOptions {
  stdin?: Readable;
  stdout?: Writable;
  /** Resolves the banner's health check; injectable for tests. */
  banner?: boolean;
}

/**
 * Serves MCP on stdio until stdin ends, the client disconnects, or SIGINT/SIGTERM arrives; then
 * closes the transport. (The SDK's stdio transport does not notice stdin EOF by itself.)
 */
export async function serveStdio(app: App | AppSource, options: StdioOptions = {}): Promise<void> {
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const source = sourceOf(app);
  const log = source.log;
  const server = createServer(source);
  const transport = new LineStdioServerTransport(stdin, stdout, { log: log.child("stdio") });

  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const onEnd = () => stop("stdin closed");
  stdin.once("end", onEnd);
  stdin.once("close", onEnd);
  transport.onclose = () => stop("transport closed");
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const onSignal = {} as Record<Deno.Signal, () => void>;
  for (const sig of signals) {
    onSignal[sig] = () => stop(sig);
    Deno.addSignalListener(sig, onSignal[sig]);
  }
  // A stray rejection in a tool must not take the whole server down.
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    log.error("unhandled rejection (server keeps running)", { reason: String(event.reason) });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);

  await server.connect(transport);
  let banner: Promise<void> | undefined;
  if (options.banner !== false) {
    // Once the first request is answered (or a second passes without one): the banner loads the
    // app and its health check asks LM Studio, work the client's `initialize` need not wait
    // behind.
    const handle = transport.onmessage;
    const show = () => {
      clearTimeout(timer);
      transport.onmessage = handle;
      banner = printBanner(source);
    };
    const timer = setTimeout(show, 1000);
    transport.onmessage = (message) => {
      // The SDK's handler first; the banner after what it answers.
      handle?.(message);
      clearTimeout(timer);
      transport.onmessage = handle;
      banner = new Promise((resolve) => setTimeout(resolve, 0)).then(() => printBanner(source));
    };
    void stopped.then(() => clearTimeout(timer));
  }

  const why = await stopped;
  log.debug("shutting down", { why });
  // A session that ends at once still shows the banner it began (loading the app takes a while).
  if (banner !== undefined) await atMost(banner, BANNER_WAIT_MS);
  // Close the downstream servers while the signal handlers are still installed: an MCP client
  // ends our stdin, then sends SIGTERM 2 s later, and that must not cut the cleanup short and
  // leave servers running.
  await server.close();
  await source.close();
  for (const sig of signals) Deno.removeSignalListener(sig, onSignal[sig]);
  stdin.off("end", onEnd);
  stdin.off("close", onEnd);
  globalThis.removeEventListener("unhandledrejection", onRejection);
}

/** How long a server that is stopping waits for the banner it began. */
const BANNER_WAIT_MS = 1000;

/** Waits for `work` (never failing), at most `ms`. */
async function atMost(work: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    work.catch(() => undefined),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/** One status line on stderr: version, LM Studio URL and whether it answers. */
async function printBanner(source: AppSource): Promise<void> {
  let state: string;
  try {
    state = await lmStudioState(await source.app());
  } catch (error: unknown) {
    state = `could not load the bridge's code: ${errorMessage(error)}`;
  }
  source.log.info(`${NAME} ${VERSION} serving MCP on stdio; ${state}`);
}

/** "LM Studio at URL answering (N models, T ms)" or "... not answering: why", for banners. */
export async function lmStudioState(app: Pick<App, "client" | "settings">): Promise<string> {
  const health = await app.client.health({ timeoutMs: 2000 });
  const state = (h: Omit<typeof health, "endpoints">) =>
    h.ok
      ? `answering (${h.modelCount ?? "?"} models, ${h.latencyMs} ms)`
      : `not answering: ${h.error ?? "unknown error"}`;
  if (health.endpoints) {
    // Several model servers (LMSTUDIO_ENDPOINTS): each one's state.
    return `model servers: ${
      health.endpoints.map((e) => `${e.name} at ${e.baseUrl} ${state(e)}`).join("; ")
    }`;
  }
  return `LM Studio at ${app.settings.baseUrl} ${state(health)}`;
}
