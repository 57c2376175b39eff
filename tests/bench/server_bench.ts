/**
 * The MCP server's real cost, as a client sees it: `tools/call chat_completion` over stdio on the
 * bridge started as users start it (`deno task start`), against the same chat made directly with
 * the LM Studio client (the baseline) and against a hand-written chat tool on the same SDK
 * behind the same process boundary (floor_server.ts). The in-process row (an in-memory
 * transport, no process boundary) splits the cost between the server's own work and the hop.
 */
import { createApp } from "../../lib/app.ts";
import { LmStudioClient } from "../../lib/lmstudio.ts";
import { join } from "../../lib/path.ts";
import type { CallToolResult } from "../../lib/sdk.ts";
import { Client, InMemoryTransport } from "../../lib/sdk_client.ts";
import { createServer } from "../../lib/server.ts";
import { resolveSettings } from "../../lib/settings.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { benchServerLaunch, bridgeTaskLaunch, serve } from "./serve_rig.ts";
import { benchChildrenCached, check, memoryEntry, quiet, Shared, textOf } from "./support.ts";

const MODEL = "qwen2.5-7b-instruct";

const served = new Shared(async () => {
  await benchChildrenCached();
  const fake = await FakeLmStudio.start();
  const dir = await Deno.makeTempDir({ prefix: "server_bench_" });
  const memory = memoryEntry(join(dir, "memory.jsonl"));
  const configPath = join(dir, ".mcp.json");
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: { memory } }));
  const env = { LMSTUDIO_BASE_URL: fake.baseUrl };
  const bridge = await serve(bridgeTaskLaunch(), { cwd: dir, env });
  const floor = await serve(benchServerLaunch("floor", "floor_server.ts"), {
    cwd: dir,
    env: { ...env, FLOOR_MODEL: MODEL, FLOOR_SERVER: JSON.stringify(memory) },
  });
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" });
  const app = createApp(settings, { configPath, log: quiet });
  const server = createServer(app);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const inMemory = new Client({ name: "bench", version: "1" });
  await inMemory.connect(clientSide);
  return {
    value: { fake, client, bridge, floor, inMemory },
    async close() {
      await inMemory.close();
      await server.close();
      await app.close();
      await bridge.close();
      await floor.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
    abandon: () => Deno.removeSync(dir, { recursive: true }),
  };
});

const group = "MCP server: one chat (fake LM Studio)";

Deno.bench({
  name: "the chat direct, LM Studio client (floor)",
  group,
  baseline: true,
  async fn(b) {
    const { fake, client } = await served.get();
    fake.requests.length = 0;
    b.start();
    const result = await client.chat({
      model: MODEL,
      messages: [{ role: "user", content: "ping" }],
      temperature: 0.7,
      max_tokens: 1024,
    });
    b.end();
    check(result.content === "Echo: ping", "echo answer");
  },
});

const overStdio = [
  ["tools/call chat_completion through serve (stdio)", "bridge", "chat_completion"],
  ["hand-written chat tool through its serve (stdio)", "floor", "chat"],
] as const;

for (const [name, who, tool] of overStdio) {
  Deno.bench({
    name,
    group,
    async fn(b) {
      const resources = await served.get();
      resources.fake.requests.length = 0;
      b.start();
      const text = await resources[who].call(tool, { prompt: "ping", model: MODEL });
      b.end();
      check(text === "Echo: ping", `echo answer, got ${text}`);
    },
  });
}

Deno.bench({
  name: "tools/call chat_completion in-process (in-memory transport)",
  group,
  async fn(b) {
    const { fake, inMemory } = await served.get();
    fake.requests.length = 0;
    b.start();
    const result = await inMemory.callTool({
      name: "chat_completion",
      arguments: { prompt: "ping", model: MODEL },
    }) as CallToolResult;
    b.end();
    check(textOf(result) === "Echo: ping", `echo answer, got ${textOf(result)}`);
  },
});

Deno.bench({
  name: "tools/list through serve (stdio)",
  group: "MCP server: listing",
  async fn(b) {
    const { bridge } = await served.get();
    b.start();
    const { tools } = await bridge.client.listTools();
    b.end();
    check(tools.length > 0, "tools listed");
  },
});
