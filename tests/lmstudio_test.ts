import {
  LmStudioClient,
  type LmStudioClientOptions,
  LmStudioError,
  splitReasoning,
} from "../lib/lmstudio.ts";
import { createLogger } from "../lib/log.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";

const QWEN = "qwen2.5-7b-instruct";
const NOMIC = "text-embedding-nomic-embed-text-v1.5";

/** A client for tests: quiet logger, recorded sleeps that return at once. */
function client(
  baseUrl: string,
  options: Partial<LmStudioClientOptions> = {},
): { client: LmStudioClient; sleeps: number[] } {
  const sleeps: number[] = [];
  const c = new LmStudioClient({
    baseUrl,
    log: createLogger({ level: "silent" }),
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    random: () => 0.5,
    ...options,
  });
  return { client: c, sleeps };
}

const user = (content: string) => ({ role: "user" as const, content });

Deno.test("chat returns the answer, usage and an empty tool call list", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const result = await c.chat({ model: QWEN, messages: [user("hello there")], temperature: 0.1 });
  assertEquals(result.content, "Echo: hello there");
  assertEquals(result.toolCalls, []);
  assertEquals(result.finishReason, "stop");
  assertEquals(result.model, QWEN);
  assert(result.usage !== undefined && result.usage.total_tokens > 0);
  const sent = fake.requestsTo("/v1/chat/completions")[0];
  assertEquals((sent?.body as Record<string, unknown>).temperature, 0.1);
  assertEquals((sent?.body as Record<string, unknown>).stream, false);
  assertEquals(sent?.headers["content-type"], "application/json");
});

Deno.test("chat sends tools, tool_choice, response_format and ttl as given", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const tools = [{
    type: "function" as const,
    function: { name: "read_file", parameters: { type: "object", properties: {} } },
  }];
  const format = { type: "json_schema", json_schema: { name: "x", schema: { type: "object" } } };
  await c.chat({
    model: QWEN,
    messages: [user("x")],
    tools,
    tool_choice: "required",
    response_format: format,
    ttl: 600,
    max_tokens: 64,
  });
  const body = fake.requestsTo("/v1/chat/completions")[0]?.body as Record<string, unknown>;
  assertEquals(body.tools, tools);
  assertEquals(body.tool_choice, "required");
  assertEquals(body.response_format, format);
  assertEquals(body.ttl, 600);
  assertEquals(body.max_tokens, 64);
});

Deno.test("chat leaves tool call arguments raw: string, invalid JSON, object, missing id", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  fake.script(
    "/v1/chat/completions",
    {
      body: chatReply({
        toolCalls: [
          { id: "365174485", name: "read_file", arguments: '{"path":"README.md"}' },
          { id: null, name: "broken", arguments: '{"path": "x"' },
          { id: "c3", name: "obj", arguments: { path: "y" } },
        ],
      }),
    },
  );
  const result = await c.chat({ model: QWEN, messages: [user("x")] });
  assertEquals(result.content, "");
  assertEquals(result.finishReason, "tool_calls");
  assertEquals(result.toolCalls, [
    { id: "365174485", name: "read_file", arguments: '{"path":"README.md"}' },
    { name: "broken", arguments: '{"path": "x"' },
    { id: "c3", name: "obj", arguments: { path: "y" } },
  ]);
});

Deno.test("chat separates reasoning from the answer", async (t) => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const ask = () => c.chat({ model: QWEN, messages: [user("x")] });

  await t.step("from reasoning_content (DeepSeek style)", async () => {
    fake.script("/v1/chat/completions", {
      body: chatReply({ content: "42", reasoning_content: "Let me add." }),
    });
    const r = await ask();
    assertEquals([r.content, r.reasoning], ["42", "Let me add."]);
  });

  await t.step("from reasoning (gpt-oss style)", async () => {
    fake.script("/v1/chat/completions", {
      body: chatReply({ content: "42", reasoning: "Adding." }),
    });
    const r = await ask();
    assertEquals([r.content, r.reasoning], ["42", "Adding."]);
  });

  await t.step("from inline <think> blocks", async () => {
    fake.script("/v1/chat/completions", {
      body: chatReply({ content: "<think>\nSix times seven.\n</think>\n\n42" }),
    });
    const r = await ask();
    assertEquals([r.content, r.reasoning], ["42", "Six times seven."]);
  });

  await t.step("an unterminated <think> (out of tokens) leaves no answer", async () => {
    fake.script("/v1/chat/completions", {
      body: chatReply({ content: "<think>Still thinking about", finishReason: "length" }),
    });
    const r = await ask();
    assertEquals([r.content, r.reasoning, r.finishReason], [
      "",
      "Still thinking about",
      "length",
    ]);
  });

  await t.step("content empty while reasoning is filled", async () => {
    fake.script("/v1/chat/completions", {
      body: chatReply({ content: null, reasoning_content: "Long thought", finishReason: "length" }),
    });
    const r = await ask();
    assertEquals([r.content, r.reasoning], ["", "Long thought"]);
  });

  await t.step("no reasoning means no reasoning field", async () => {
    const r = await ask();
    assertEquals(r.reasoning, undefined);
  });
});

Deno.test("splitReasoning handles several, unterminated and prompt-opened think blocks", () => {
  assertEquals(splitReasoning("<think>a</think>x<think>b</think>y"), {
    content: "xy",
    reasoning: "a\n\nb",
  });
  assertEquals(splitReasoning("plan it</think>\nThe answer"), {
    content: "The answer",
    reasoning: "plan it",
  });
  assertEquals(splitReasoning("Answer <think>half"), { content: "Answer", reasoning: "half" });
  assertEquals(splitReasoning("  plain  "), { content: "plain" });
  assertEquals(splitReasoning("<THINK></THINK>ok"), { content: "ok" });
});

Deno.test("listModels reads the REST API v1 on LM Studio 0.4+", async () => {
  await using fake = await FakeLmStudio.start({
    models: [
      { id: "llava", type: "vlm", state: "not-loaded", maxContextLength: 4096 },
      {
        id: QWEN,
        type: "llm",
        state: "loaded",
        maxContextLength: 32768,
        loadedContextLength: 8192,
        toolUse: true,
      },
      { id: NOMIC, type: "embeddings", state: "loaded", maxContextLength: 2048 },
    ],
  });
  const { client: c } = client(fake.baseUrl);
  const list = await c.listModels();
  assertEquals(list.source, "api/v1");
  assertEquals(list.notes, []);
  assertEquals(list.models.map((m) => [m.id, m.type, m.state]), [
    ["llava", "vlm", "not-loaded"],
    [QWEN, "llm", "loaded"],
    [NOMIC, "embedding", "loaded"],
  ]);
  const qwen = list.models[1];
  assertEquals(qwen?.maxContextLength, 32768);
  assertEquals(qwen?.loadedContextLength, 8192);
  assertEquals(qwen?.toolUse, true);
  assertEquals(qwen?.instanceIds, [QWEN]);
  assertEquals(list.models[0]?.vision, true);
});

Deno.test("listModels falls back to the REST API v0 on older LM Studio", async () => {
  await using fake = await FakeLmStudio.start({ flavor: "lmstudio-v0" });
  const { client: c } = client(fake.baseUrl);
  const list = await c.listModels();
  assertEquals(list.source, "api/v0");
  assertEquals(list.models.map((m) => [m.id, m.type, m.state]), [
    [QWEN, "llm", "loaded"],
    [NOMIC, "embedding", "not-loaded"],
  ]);
  assertEquals(list.models[0]?.loadedContextLength, 8192);
  assertEquals(list.models[0]?.maxContextLength, 32768);
});

Deno.test("listModels falls back to /v1/models on Ollama-like servers and says what it guessed", async () => {
  await using fake = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [{ id: "llama3:latest" }, { id: "nomic-embed-text:latest", type: "embeddings" }],
  });
  const { client: c } = client(fake.baseUrl);
  const list = await c.listModels();
  assertEquals(list.source, "openai");
  assertEquals(list.models, [
    { id: "llama3:latest", type: "unknown" },
    { id: "nomic-embed-text:latest", type: "embedding" },
  ]);
  assertEquals(list.notes.length, 1);
  assertStringIncludes(list.notes[0] ?? "", "no LM Studio REST API");
  assertStringIncludes(list.notes[0] ?? "", "guessed");
});

Deno.test("listModels asks /v1/models and the REST APIs in parallel", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  // Each of the three replies is delayed 150 ms; in sequence that would be 450 ms.
  for (const path of ["/v1/models", "/api/v1/models", "/api/v0/models"]) {
    fake.script(path, async (req) => {
      await new Promise((r) => setTimeout(r, 150));
      return new Response(
        await (await fetch(`${fake.baseUrl}${req.path}`)).arrayBuffer(),
        { headers: { "content-type": "application/json" } },
      );
    });
  }
  const started = performance.now();
  const list = await c.listModels();
  const elapsed = performance.now() - started;
  assertEquals(list.source, "api/v1");
  assert(elapsed < 400, `took ${elapsed} ms`);
});

Deno.test("resolveModel picks models by the documented rules", async (t) => {
  await t.step("explicit, then the default model, win without asking the server", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    assertEquals(await c.resolveModel(" mine ", { defaultModel: "dflt" }), "mine");
    assertEquals(await c.resolveModel(undefined, { defaultModel: "dflt" }), "dflt");
    assertEquals(fake.requests.length, 0);
  });

  await t.step("then the first loaded LLM", async () => {
    await using fake = await FakeLmStudio.start({
      models: [
        { id: NOMIC, type: "embeddings", state: "loaded" },
        { id: "unloaded-llm", type: "llm", state: "not-loaded" },
        { id: "loaded-llm", type: "llm", state: "loaded" },
      ],
    });
    const { client: c } = client(fake.baseUrl);
    assertEquals(await c.resolveModel(undefined), "loaded-llm");
    assertEquals(await c.resolveModel(""), "loaded-llm");
  });

  await t.step("then the first non-embedding model in /v1/models", async () => {
    await using fake = await FakeLmStudio.start({
      flavor: "openai-only",
      models: [{ id: "nomic-embed-text" }, { id: "llama3" }, { id: "mistral" }],
    });
    const { client: c } = client(fake.baseUrl);
    assertEquals(await c.resolveModel(undefined), "llama3");
  });

  await t.step("an embedding request never picks the chat model", async () => {
    await using fake = await FakeLmStudio.start({
      models: [
        { id: QWEN, type: "llm", state: "loaded" },
        { id: "embed-a", type: "embeddings", state: "not-loaded" },
        { id: "embed-b", type: "embeddings", state: "loaded" },
      ],
    });
    const { client: c } = client(fake.baseUrl);
    assertEquals(
      await c.resolveModel(undefined, { kind: "embedding", defaultModel: QWEN }),
      "embed-b",
    );
    assertEquals(await c.resolveModel("explicit-embed", { kind: "embedding" }), "explicit-embed");
    fake.models[2]!.state = "not-loaded";
    assertEquals(await c.resolveModel(undefined, { kind: "embedding" }), "embed-a");
  });

  await t.step("no embedding model is an error naming what exists", async () => {
    await using fake = await FakeLmStudio.start({ models: [{ id: QWEN, type: "llm" }] });
    const { client: c } = client(fake.baseUrl);
    const error = await assertRejects(
      () => c.resolveModel(undefined, { kind: "embedding" }),
      LmStudioError,
      "No embedding model",
    );
    assertStringIncludes(error.message, `${QWEN} (llm)`);
    assertEquals(error.kind, "not_found");
  });

  await t.step("no chat model is an error naming what exists", async () => {
    await using fake = await FakeLmStudio.start({ models: [{ id: NOMIC, type: "embeddings" }] });
    const { client: c } = client(fake.baseUrl);
    const error = await assertRejects(() => c.resolveModel(undefined), LmStudioError);
    assertStringIncludes(error.message, "No chat model");
    assertStringIncludes(error.message, `${NOMIC} (embedding)`);
    assertStringIncludes(error.message, "DEFAULT_MODEL");
  });

  await t.step("an empty server says so", async () => {
    await using fake = await FakeLmStudio.start({ models: [] });
    const { client: c } = client(fake.baseUrl);
    await assertRejects(() => c.resolveModel(undefined), LmStudioError, "lists no models");
  });
});
