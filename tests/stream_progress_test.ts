/**
 * Streamed progress reaching a real MCP SDK client: the tools that ask the model once
 * (chat_completion, text_completion, create_response, analyze_image) and the autonomous loop over
 * several rounds, against the fake LM Studio streaming as LM Studio does and as Ollama/llama.cpp
 * do ("openai-only"). The fake holds a stream at a gate until the client has seen what the test
 * waits for, so nothing depends on timing.
 */
import { createApp } from "../lib/app.ts";
import { ConfigSource } from "../lib/config.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { createServer } from "../lib/server.ts";
import { registerAutonomousTools } from "../lib/server_agent.ts";
import { resolveSettings } from "../lib/settings.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  chatReply,
  FakeLmStudio,
  type FakeLmStudioOptions,
  nativeReply,
} from "./fakes/lmstudio.ts";
import { cachedEntry } from "./fixtures/pool_support.ts";
import { connectInMemory, quiet, resultText } from "./rigs.ts";

const FIXTURE = new URL("./fixtures/agent_server.ts", import.meta.url).pathname;
const CHAT = "/v1/chat/completions";
const NATIVE = "/api/v1/chat";
const PNG_1X1 =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8" +
  "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/** Resolves when a progress message matching `pattern` arrives (see {@linkcode Seen.seen}). */
class Seen {
  readonly messages: string[] = [];
  readonly #waits: { pattern: RegExp; resolve: () => void }[] = [];

  /** Takes one progress message. */
  readonly seen = (message: string | undefined): void => {
    if (message === undefined) return;
    this.messages.push(message);
    for (const w of this.#waits) if (w.pattern.test(message)) w.resolve();
  };

  /** Settles once a message matching `pattern` has arrived. */
  until(pattern: RegExp): Promise<void> {
    const wait = Promise.withResolvers<void>();
    if (this.messages.some((m) => pattern.test(m))) wait.resolve();
    this.#waits.push({ pattern, resolve: wait.resolve });
    return wait.promise;
  }
}

/** The bridge's MCP server over the fake, and a real SDK client connected in memory. */
async function bridge(fakeOptions: FakeLmStudioOptions = {}) {
  const fake = await FakeLmStudio.start({
    stream: "sse",
    models: [
      { id: "qwen2.5-7b-instruct", type: "llm", state: "loaded", maxContextLength: 8192 },
      { id: "qwen2.5-vl-7b-instruct", type: "vlm", state: "loaded", maxContextLength: 8192 },
    ],
    ...fakeOptions,
  });
  const dir = await Deno.makeTempDir();
  const configPath = join(dir, ".mcp.json");
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: {} }));
  const app = createApp(
    resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" }),
    { configPath, log: quiet },
  );
  const connection = await connectInMemory(createServer(app));
  return {
    fake,
    /** Calls `tool` with a progress token; the messages go to `seen`. */
    call: (tool: string, args: Record<string, unknown>, seen: Seen) =>
      connection.client.callTool({ name: tool, arguments: args }, undefined, {
        onprogress: (p) => seen.seen(p.message),
      }),
    async [Symbol.asyncDispose]() {
      await connection[Symbol.asyncDispose]();
      await app.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const TOKENS = /^model: (thinking, )?\d+ tokens?(, [\d.]+ tok\/s)?$/;
const FIGURES = /^model: (about )?\d+ tokens? in \d+\.\d s/;

// LM Studio 0.4+ answers a watched chat_completion on its native chat; one before 0.4 (no
// /api/v1) on /v1/chat/completions. Both stream; the caller hears the same.
const CHAT_SERVERS = [
  {
    flavor: "lmstudio",
    path: NATIVE,
    reply: (content: string) => nativeReply({ content }),
    // chat.start, prompt_processing start, 2 progress, end, message.start: then the tokens.
    before: 6,
  },
  {
    flavor: "lmstudio-v0",
    path: CHAT,
    reply: (content: string) => chatReply({ content }),
    before: 0,
  },
] as const;

for (const server of CHAT_SERVERS) {
  Deno.test(`chat_completion sends the model's streamed progress with token counts, then its figures (${server.flavor})`, async () => {
    await using b = await bridge({ flavor: server.flavor });
    const seen = new Seen();
    b.fake.script(server.path, {
      body: server.reply("one two three four five six seven eight nine ten"),
      // Half the answer, then nothing until the client has heard the token count.
      stream: { gate: { after: server.before + 4, until: seen.until(TOKENS) } },
    });
    const result = await b.call("chat_completion", { prompt: "count" }, seen);
    assertEquals(resultText(result as never), "one two three four five six seven eight nine ten");
    assert(seen.messages.some((m) => TOKENS.test(m)), JSON.stringify(seen.messages));
    assertMatch(seen.messages.at(-1) ?? "", FIGURES);
    assertEquals(b.fake.pending(server.path), 0);
  });

  Deno.test(`before the first token the caller hears that the model is still waited for (${server.flavor})`, async () => {
    await using b = await bridge({ flavor: server.flavor });
    const seen = new Seen();
    const waiting = seen.until(/^waiting for the first token \(\d+ s\)$/);
    b.fake.script(server.path, async () => {
      await waiting;
      return { body: server.reply("here") };
    });
    const result = await b.call("chat_completion", { prompt: "slow" }, seen);
    assertEquals(resultText(result as never), "here");
    assertMatch(seen.messages[0] ?? "", /^waiting for the first token/);
  });
}

Deno.test("chat_completion forwards LM Studio's own load and prompt percentages (native chat)", async () => {
  await using b = await bridge({
    models: [{
      id: "qwen2.5-7b-instruct",
      type: "llm",
      state: "not-loaded",
      maxContextLength: 6000,
    }],
  });
  const seen = new Seen();
  b.fake.script(NATIVE, {
    body: nativeReply({ content: "loaded and read", loadSeconds: 3.2 }),
    stream: {
      gate: [
        // chat.start, model_load.start and progress 20% and 60%: held until the 60% is heard.
        { after: 4, until: seen.until(/^loading qwen2\.5-7b-instruct 60%$/) },
        // Then the rest of the load, prompt_processing.start and 35%: held until that is heard.
        { after: 8, until: seen.until(/^reading the prompt 35%$/) },
      ],
    },
  });
  const result = await b.call("chat_completion", { prompt: "hi" }, seen);
  assertEquals(resultText(result as never), "loaded and read");
  assertMatch(seen.messages.at(-1) ?? "", FIGURES);
  // The load was left to the request, with the bridge's context length capped at the model's.
  assertEquals(b.fake.requestsTo("/api/v1/models/load").length, 0);
  const body = b.fake.requestsTo(NATIVE)[0]?.body as Record<string, unknown>;
  assertEquals(
    [body.model, body.input, body.context_length, body.stream, body.store],
    ["qwen2.5-7b-instruct", "hi", 6000, true, false],
  );
  assertEquals(b.fake.requestsTo(CHAT).length, 0);
});

Deno.test("a model LM Studio does not load for the request is loaded by the bridge, then asked", async () => {
  await using b = await bridge({
    jit: false,
    models: [
      { id: "qwen2.5-7b-instruct", type: "llm", state: "not-loaded", maxContextLength: 8192 },
    ],
  });
  const seen = new Seen();
  const result = await b.call("chat_completion", { prompt: "hi" }, seen);
  assertEquals(resultText(result as never), "Echo: hi");
  assertEquals(b.fake.requestsTo(NATIVE).length, 1);
  assertEquals(b.fake.requestsTo("/api/v1/models/load").length, 1);
});

Deno.test("text_completion, create_response and analyze_image report the model's progress too", async (t) => {
  for (
    const [tool, args] of [
      ["text_completion", { prompt: "def add(a, b):" }],
      ["create_response", { input_text: "hello" }],
      ["analyze_image", { images: PNG_1X1, prompt: "what is it?" }],
    ] as const
  ) {
    await t.step(tool, async () => {
      await using b = await bridge();
      const seen = new Seen();
      const result = await b.call(tool, args, seen);
      assertEquals(
        (result as { isError?: boolean }).isError,
        undefined,
        resultText(result as never),
      );
      assertMatch(seen.messages.at(-1) ?? "", FIGURES);
    });
  }
});

for (const flavor of ["lmstudio", "openai-only"] as const) {
  Deno.test(`a real SDK client gets streamed progress with token counts during a multi-round task (${flavor})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "stream_progress_" });
    await Deno.writeTextFile(
      join(dir, ".mcp.json"),
      JSON.stringify({ mcpServers: { fixture: cachedEntry([FIXTURE]) } }),
    );
    await using fake = await FakeLmStudio.start({ stream: "sse", flavor });
    const config = new ConfigSource({ explicitPath: join(dir, ".mcp.json"), log: quiet });
    const pool = new McpPool({ config, log: quiet, idleMs: 0 });
    const server = new McpServer({ name: "bridge-under-test", version: "0" });
    registerAutonomousTools(server, {
      client: new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet }),
      pool: () => Promise.resolve(pool),
      config,
      settings: {
        defaultModel: undefined,
        modelTtlSeconds: 600,
        defaultContextLength: 8192,
        depth: 0,
      },
      log: quiet,
    }, { heartbeatMs: 60_000 });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const client = new Client({ name: "test", version: "0" });
    await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
    try {
      const seen = new Seen();
      const round = (n: number, what: string) =>
        new RegExp(`^round ${n}/\\d+: model: ${what}\\d+ tokens?(, [\\d.]+ tok/s)?$`);
      fake.script(
        CHAT,
        {
          body: chatReply({
            content: "",
            toolCalls: [{ name: "fixture__sleep", arguments: { ms: 1 } }],
          }),
          stream: { gate: { after: 2, until: seen.until(round(1, "writing 1 tool call, ")) } },
        },
        {
          body: chatReply({ content: "all done after one careful look at the result" }),
          stream: { gate: { after: 3, until: seen.until(round(2, "")) } },
        },
      );
      const result = await client.callTool(
        {
          name: "autonomous_with_mcp",
          arguments: { mcp_name: "fixture", task: "t", max_rounds: 4 },
        },
        undefined,
        { onprogress: (p) => seen.seen(p.message) },
      );
      assertMatch(resultText(result as never), /all done after one careful look/);
      const figures = seen.messages.filter((m) => /^round \d\/4: model: .* in \d+\.\d s/.test(m));
      assertEquals(figures.length, 2, JSON.stringify(seen.messages));
      // The figures of each round are the server's (usage) in a streamed reply: no "about".
      assert(figures.every((m) => !m.includes("about")), JSON.stringify(figures));
    } finally {
      await client.close();
      await server.close();
      await pool.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
