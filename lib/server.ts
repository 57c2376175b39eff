/**
 * The MCP server: registers every tool from one list and serves it over stdio. stdout carries
 * JSON-RPC only; the banner and all diagnostics go to stderr through the logger.
 */
import process from "node:process";
import type { Readable, Writable } from "node:stream";
import { ListToolsRequestSchema, McpServer } from "./sdk.ts";
import { LineStdioServerTransport } from "./server_stdio.ts";
import type { App } from "./app.ts";
import { registerAutonomousTools } from "./server_agent.ts";
import { registerLmsTools } from "./server_lms.ts";
import { registerLmStudioTools } from "./server_lmstudio.ts";
import { registerListAvailableMcpsTool } from "./server_mcp.ts";
import { registerAnalyzeImageTool } from "./server_vision.ts";
import { errorResult } from "./server_result.ts";
import { registerChosen, toolListing } from "./server_tools.ts";
import { ALL_TOOLS, groupOf, groupsOf, type ToolName } from "./tool_groups.ts";
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

/** A tool of the table, each group registering those of `chosen` (from the app). */
type Registration = (server: McpServer, app: App, chosen: readonly ToolName[]) => void;

/**
 * The table of tool groups; each registers its tools with their schemas and annotations, and takes
 * from the app what it uses (the pool on first use, so the tools that never touch a downstream
 * server never create it).
 */
const REGISTRATIONS: readonly Registration[] = [
  registerLmStudioTools,
  (server, app, chosen) =>
    registerChosen({ analyze_image: registerAnalyzeImageTool }, server, app, chosen),
  (server, app, chosen) =>
    registerChosen({ list_available_mcps: registerListAvailableMcpsTool }, server, app, chosen),
  (server, app, chosen) => registerAutonomousTools(server, app, {}, chosen),
  registerLmsTools,
];

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
export function createServer(app: App): McpServer {
  const chosen = app.settings.tools;
  const server = new McpServer(
    { name: NAME, version: VERSION },
    { capabilities: { tools: {}, logging: {} }, instructions: instructions(chosen) },
  );
  for (const register of REGISTRATIONS) register(server, app, chosen);
  for (const name of ALL_TOOLS) if (!chosen.includes(name)) registerHidden(server, name, chosen);
  // Replaces the SDK's listing (registration above installed it): only the chosen tools, lean,
  // built on the first tools/list (once; it takes longer than the rest of the start-up's own
  // work) rather than before the handshake is answered.
  const facts = { defaultContextLength: app.models.defaultContextLength };
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
export async function serveStdio(app: App, options: StdioOptions = {}): Promise<void> {
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const log = app.log;
  const server = createServer(app);
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
  if (options.banner !== false) {
    // Once the first request is answered (or a second passes without one): the health check
    // loads fetch and asks LM Studio, work the client's `initialize` need not wait behind.
    const handle = transport.onmessage;
    const show = () => {
      clearTimeout(banner);
      transport.onmessage = handle;
      void printBanner(app);
    };
    const banner = setTimeout(show, 1000);
    transport.onmessage = (message) => {
      // The SDK's handler first; the banner after what it answers.
      handle?.(message);
      clearTimeout(banner);
      transport.onmessage = handle;
      setTimeout(() => void printBanner(app), 0);
    };
    void stopped.then(() => clearTimeout(banner));
  }

  const why = await stopped;
  log.debug("shutting down", { why });
  // Close the downstream servers while the signal handlers are still installed: an MCP client
  // ends our stdin, then sends SIGTERM 2 s later, and that must not cut the cleanup short and
  // leave servers running.
  await server.close();
  await app.close();
  for (const sig of signals) Deno.removeSignalListener(sig, onSignal[sig]);
  stdin.off("end", onEnd);
  stdin.off("close", onEnd);
  globalThis.removeEventListener("unhandledrejection", onRejection);
}

/** One status line on stderr: version, LM Studio URL and whether it answers. */
async function printBanner(app: App): Promise<void> {
  app.log.info(`${NAME} ${VERSION} serving MCP on stdio; ${await lmStudioState(app)}`);
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
