/**
 * The MCP server's own overhead: a real SDK Client calls chat_completion over an in-memory
 * transport (JSON-RPC, zod validation of the arguments, the tool handler, the result) against
 * the fake LM Studio; the baseline is the same chat through the LM Studio client directly.
 */
import { createApp } from "../../lib/app.ts";
import type { CallToolResult } from "../../lib/sdk.ts";
import { Client, InMemoryTransport } from "../../lib/sdk.ts";
import { createServer } from "../../lib/server.ts";
import { resolveSettings } from "../../lib/settings.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { check, quiet, Shared, textOf } from "./support.ts";

const MODEL = "qwen2.5-7b-instruct";

const served = new Shared(async () => {
  const fake = await FakeLmStudio.start();
  const dir = await Deno.makeTempDir({ prefix: "server_bench_" });
  const configPath = `${dir}/.mcp.json`;
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: {} }));
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" });
  const app = createApp(settings, { configPath, log: quiet });
  const server = await createServer(app);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: "bench", version: "1" });
  await client.connect(clientSide);
  return {
    value: { fake, app, client },
    async close() {
      await client.close();
      await server.close();
      await app.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
    abandon: () => Deno.removeSync(dir, { recursive: true }),
  };
});

const group = "MCP server (in-memory client)";

Deno.bench({
  name: "chat through the LM Studio client directly (floor)",
  group,
  baseline: true,
  async fn(b) {
    const { fake, app } = await served.get();
    fake.requests.length = 0;
    b.start();
    const result = await app.client.chat({
      model: MODEL,
      messages: [{ role: "user", content: "ping" }],
      temperature: 0.7,
      max_tokens: 1024,
    });
    b.end();
    check(result.content === "Echo: ping", "echo answer");
  },
});

Deno.bench({
  name: "tools/call chat_completion",
  group,
  async fn(b) {
    const { fake, client } = await served.get();
    fake.requests.length = 0;
    b.start();
    const result = await client.callTool({
      name: "chat_completion",
      arguments: { prompt: "ping", model: MODEL },
    }) as CallToolResult;
    b.end();
    check(textOf(result) === "Echo: ping", `echo answer, got ${textOf(result)}`);
  },
});

Deno.bench({
  name: "tools/list (18 tools)",
  group,
  async fn(b) {
    const { client } = await served.get();
    b.start();
    const { tools } = await client.listTools();
    b.end();
    check(tools.length === 18, `18 tools, got ${tools.length}`);
  },
});
