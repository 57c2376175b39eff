/**
 * In-process rigs shared by tests: the model stack (a fake LM Studio and a fake `lms` wired into
 * the real LmStudioClient, Lms and ModelManager), a real SDK client connected in memory to an
 * McpServer (both `await using` resources that close what they started), and the context a
 * command gets from main.ts.
 */
import type { App, CommandContext } from "../lib/app.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { Lms } from "../lib/lms.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { ModelManager, type ModelManagerOptions } from "../lib/models.ts";
import type { Output } from "../lib/output.ts";
import type { McpPool } from "../lib/pool.ts";
import type { CallToolResult, McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { FakeLms, type FakeLmsScenario } from "./fakes/lms.ts";
import { FakeLmStudio, type FakeLmStudioOptions } from "./fakes/lmstudio.ts";

/** A logger that writes nothing. */
export const quiet: Logger = createLogger({ level: "silent" });

/** Options of {@linkcode modelStack}. */
export interface ModelStackOptions {
  server?: FakeLmStudioOptions;
  /**
   * The fake `lms`'s scenario (its `server status` reports the fake LM Studio's port unless the
   * scenario sets `port`); false: `lms` is not installed.
   */
  lms?: FakeLmsScenario | false;
  /** Close the fake LM Studio at once, so nothing answers at its address. */
  closed?: boolean;
  /** ModelManager options over the rig's own (silent log). */
  manager?: Partial<ModelManagerOptions>;
}

/** The keys of every downloaded model the manager reports, in order, whatever the source. */
export const DOWNLOADED_KEYS: string[] = [
  "id",
  "type",
  "loaded",
  "displayName",
  "sizeBytes",
  "maxContextLength",
  "vision",
  "toolUse",
];

/** A fake LM Studio and a fake `lms` behind the real client, `Lms` and ModelManager. */
export interface ModelStack extends AsyncDisposable {
  server: FakeLmStudio;
  fake: FakeLms;
  lms: Lms;
  client: LmStudioClient;
  models: ModelManager;
}

/** Starts a {@linkcode ModelStack}; disposing it stops the fake server and removes the fake `lms`. */
export async function modelStack(o: ModelStackOptions = {}): Promise<ModelStack> {
  const server = await FakeLmStudio.start(o.server);
  const fake = await FakeLms.create({
    port: Number(new URL(server.baseUrl).port),
    ...(o.lms === false ? {} : o.lms),
  });
  if (o.closed) await server.close();
  const client = new LmStudioClient({ baseUrl: server.baseUrl, retries: 0, log: quiet });
  const lms = new Lms({
    ...(o.lms === false ? { searchPath: "/nonexistent", home: fake.dir } : fake.lookup),
    log: quiet,
  });
  const models = new ModelManager({ client, lms, log: quiet, ...o.manager });
  return {
    server,
    fake,
    lms,
    client,
    models,
    async [Symbol.asyncDispose]() {
      await server.close();
      await fake.cleanup();
    },
  };
}

/** A real SDK client connected in memory to an McpServer. */
export interface InMemoryClient extends AsyncDisposable {
  client: Client;
  /** Calls a tool of the server. */
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
}

/** Connects a real SDK client to `server` in memory; disposing it closes both. */
export async function connectInMemory(server: McpServer): Promise<InMemoryClient> {
  const client = new Client({ name: "test", version: "0" });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  return {
    client,
    call: async (name, args = {}) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.close();
    },
  };
}

/** The text of a tool result, one line per content item (`<image>` etc. for the others). */
export function resultText(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : `<${c.type}>`)).join("\n");
}

/** The context main.ts hands a command, over the part of the app the command uses. */
export function commandContext<A>(
  app: A,
  out: Output,
  signal: AbortSignal = new AbortController().signal,
): CommandContext<A> {
  return { app, out, signal };
}

/** The part of the app that holds only `pool` (what the MCP commands and list_available_mcps use). */
export function poolApp(pool: McpPool): Pick<App, "pool"> {
  return { pool: () => Promise.resolve(pool) };
}

/** The context of an MCP command over `pool`. */
export function poolContext(pool: McpPool, out: Output): CommandContext<Pick<App, "pool">> {
  return commandContext(poolApp(pool), out);
}
