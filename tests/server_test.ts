/**
 * The MCP server through a real SDK Client (in-memory transport) against the fake LM Studio.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { createApp } from "../lib/app.ts";
import { createServer } from "../lib/server.ts";
import { resolveSettings } from "../lib/settings.ts";
import { connectInMemory, type InMemoryClient, quiet, resultText as text } from "./rigs.ts";

const ALL_TOOLS = [
  "analyze_image",
  "autonomous_discover_and_execute",
  "autonomous_with_mcp",
  "autonomous_with_multiple_mcps",
  "chat_completion",
  "close_session",
  "create_response",
  "generate_embeddings",
  "get_current_model",
  "health_check",
  "list_available_mcps",
  "list_models",
  "list_sessions",
  "lms_ensure_model_loaded",
  "lms_list_downloaded_models",
  "lms_list_loaded_models",
  "lms_load_model",
  "lms_server_status",
  "lms_unload_model",
  "text_completion",
];

interface Harness extends InMemoryClient {
  fake: FakeLmStudio;
}

async function harness(
  env: Record<string, string> = {},
  fakeOptions: Parameters<typeof FakeLmStudio.start>[0] = {},
): Promise<Harness> {
  const fake = await FakeLmStudio.start(fakeOptions);
  const dir = await Deno.makeTempDir();
  const configPath = `${dir}/.mcp.json`;
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: {} }));
  const settings = resolveSettings({
    LMSTUDIO_BASE_URL: fake.baseUrl,
    LMSTUDIO_RETRIES: "0",
    ...env,
  });
  const app = createApp(settings, {
    configPath,
    log: quiet,
  });
  const connection = await connectInMemory(createServer(app));
  return {
    client: connection.client,
    fake,
    call: connection.call,
    async [Symbol.asyncDispose]() {
      await connection[Symbol.asyncDispose]();
      await app.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function chatRequests(fake: FakeLmStudio): Record<string, unknown>[] {
  return fake.requests
    .filter((r) => r.path === "/v1/chat/completions")
    .map((r) => r.body as Record<string, unknown>);
}

Deno.test("serve lists every tool with a description, an input schema and annotations", async () => {
  await using h = await harness();
  const { tools } = await h.client.listTools();
  assertEquals(tools.map((t) => t.name).sort(), ALL_TOOLS);
  for (const tool of tools) {
    assert((tool.description ?? "").length > 40, `${tool.name} needs a real description`);
    assertEquals(tool.inputSchema.type, "object");
    assert(tool.annotations !== undefined, `${tool.name} has annotations`);
  }
  const chat = tools.find((t) => t.name === "chat_completion")!;
  assertEquals(chat.inputSchema.required, ["prompt"]);
  const props = chat.inputSchema.properties as Record<string, { default?: unknown }>;
  assertEquals(props.temperature?.default, 0.7);
  assertEquals(props.max_tokens?.default, 1024);
});

Deno.test("health_check reports a live server and explains a dead one", async (t) => {
  await using h = await harness();
  await t.step("live", async () => {
    const r = await h.call("health_check");
    assertEquals(r.isError, undefined);
    assertMatch(text(r), /is answering \(\d+ ms, 2 models\)/);
  });
  await t.step("down", async () => {
    const dead = await FakeLmStudio.start();
    await dead.close();
    await using down = await harness({ LMSTUDIO_BASE_URL: dead.baseUrl });
    const r = await down.call("health_check");
    assertEquals(r.isError, true);
    assertStringIncludes(text(r), "lms server start");
  });
});

Deno.test("list_models shows type, state and context length from the REST API", async () => {
  await using h = await harness();
  const r = await h.call("list_models");
  assertStringIncludes(text(r), "qwen2.5-7b-instruct (llm, loaded, context 8192");
  assertStringIncludes(text(r), "text-embedding-nomic-embed-text-v1.5 (embedding, not-loaded");
  const s = r.structuredContent as { models: { id: string }[]; source: string };
  assertEquals(s.models.length, 2);
});

Deno.test("get_current_model reads model state and never asks the model", async () => {
  await using h = await harness();
  const r = await h.call("get_current_model");
  assertEquals(r.isError, undefined, text(r));
  assertStringIncludes(text(r), "qwen2.5-7b-instruct");
  assertEquals(chatRequests(h.fake).length, 0);
  assertEquals(h.fake.requests.some((q) => q.path === "/v1/completions"), false);
});

Deno.test("chat_completion sends the prompt with defaults and ttl, and keeps reasoning apart", async () => {
  await using h = await harness();
  h.fake.script(
    "/v1/chat/completions",
    {
      body: chatReply({ content: "Paris.", reasoning_content: "The capital of France is Paris." }),
    },
  );
  const r = await h.call("chat_completion", {
    prompt: "Capital of France?",
    system_prompt: "Answer briefly.",
  });
  assertEquals(r.isError, undefined, text(r));
  assertEquals(r.content[0], { type: "text", text: "Paris." });
  assertStringIncludes(text(r), "The capital of France is Paris.");
  const s = r.structuredContent as Record<string, unknown>;
  assertEquals(s.answer, "Paris.");
  assertEquals(s.reasoning, "The capital of France is Paris.");
  const [body] = chatRequests(h.fake);
  assertEquals(body?.model, "qwen2.5-7b-instruct");
  assertEquals(body?.temperature, 0.7);
  assertEquals(body?.max_tokens, 1024);
  assertEquals(body?.ttl, 600);
  assertEquals(body?.messages, [
    { role: "system", content: "Answer briefly." },
    { role: "user", content: "Capital of France?" },
  ]);
});

Deno.test("chat_completion strips inline <think> and passes a JSON schema response format", async () => {
  await using h = await harness();
  h.fake.script("/v1/chat/completions", {
    body: chatReply({ content: '<think>user wants json</think>{"ok":true}', emptyToolCalls: true }),
  });
  const r = await h.call("chat_completion", {
    prompt: "json please",
    response_format: {
      type: "json_schema",
      json_schema: {
        name: "r",
        schema: { type: "object", properties: { ok: { type: "boolean" } } },
      },
    },
  });
  assertEquals(r.content[0], { type: "text", text: '{"ok":true}' });
  assertEquals((r.structuredContent as Record<string, unknown>).reasoning, "user wants json");
  const [body] = chatRequests(h.fake);
  assertEquals((body?.response_format as { type: string }).type, "json_schema");
});

Deno.test("chat_completion explains an answer cut off by max_tokens", async () => {
  await using h = await harness();
  h.fake.script("/v1/chat/completions", {
    body: chatReply({ content: "", reasoning_content: "thinking...", finishReason: "length" }),
  });
  const r = await h.call("chat_completion", { prompt: "hard question", max_tokens: 5 });
  assertStringIncludes(text(r), "larger max_tokens");
});

Deno.test("text_completion passes stop sequences", async () => {
  await using h = await harness();
  const r = await h.call("text_completion", { prompt: "def add(a, b):", stop_sequences: ["\n\n"] });
  assertEquals(r.isError, undefined, text(r));
  const body = h.fake.requests.find((q) => q.path === "/v1/completions")?.body as Record<
    string,
    unknown
  >;
  assertEquals(body.stop, ["\n\n"]);
  assertEquals(body.prompt, "def add(a, b):");
});

Deno.test("generate_embeddings uses an embedding model, never the chat model", async () => {
  await using h = await harness();
  const r = await h.call("generate_embeddings", { text: ["one", "two"] });
  assertEquals(r.isError, undefined, text(r));
  const s = r.structuredContent as { model: string; embeddings: number[][]; dimensions: number };
  assertEquals(s.model, "text-embedding-nomic-embed-text-v1.5");
  assertEquals(s.embeddings.length, 2);
  assertEquals(s.dimensions, 8);
  const body = h.fake.requests.find((q) => q.path === "/v1/embeddings")?.body as Record<
    string,
    unknown
  >;
  assertEquals(body.model, "text-embedding-nomic-embed-text-v1.5");
});

Deno.test("create_response continues a conversation by id and explains an unknown id", async () => {
  await using h = await harness();
  const first = await h.call("create_response", { input_text: "My name is Ada." });
  assertEquals(first.isError, undefined, text(first));
  const id = (first.structuredContent as { response_id: string }).response_id;
  assertStringIncludes(text(first), `response_id: ${id}`);
  const second = await h.call("create_response", {
    input_text: "What is my name?",
    previous_response_id: id,
  });
  assertEquals(second.isError, undefined, text(second));
  assertEquals((second.structuredContent as Record<string, unknown>).previous_response_id, id);
  const bad = await h.call("create_response", {
    input_text: "hi",
    previous_response_id: "resp_nope",
  });
  assertEquals(bad.isError, true);
  assertStringIncludes(text(bad), "resp_nope");
});

Deno.test("bad arguments come back as errors and the server keeps serving", async () => {
  await using h = await harness();
  const r1 = await h.call("chat_completion", { prompt: "x", temperature: "hot" });
  assertEquals(r1.isError, true);
  assertStringIncludes(text(r1), "temperature");
  const r2 = await h.call("chat_completion", {});
  assertEquals(r2.isError, true);
  assertStringIncludes(text(r2), "prompt");
  const r3 = await h.call("no_such_tool");
  assertEquals(r3.isError, true);
  const ok = await h.call("chat_completion", { prompt: "still there?" });
  assertEquals(ok.isError, undefined, text(ok));
});

Deno.test("an unknown model names the models that exist", async () => {
  await using h = await harness();
  const r = await h.call("chat_completion", { prompt: "hi", model: "llama-9000" });
  assertEquals(r.isError, true);
  assertStringIncludes(text(r), "llama-9000");
  assertStringIncludes(text(r), "qwen2.5-7b-instruct");
});

Deno.test("LM Studio down: generation tools say how to start it", async () => {
  const dead = await FakeLmStudio.start();
  await dead.close();
  await using h = await harness({ LMSTUDIO_BASE_URL: dead.baseUrl });
  for (
    const [tool, args] of [
      ["chat_completion", { prompt: "hi" }],
      ["text_completion", { prompt: "hi" }],
      ["list_models", {}],
    ] as const
  ) {
    const r = await h.call(tool, args);
    assertEquals(r.isError, true, tool);
    assertStringIncludes(text(r), "Cannot reach LM Studio");
    assertStringIncludes(text(r), "lms server start");
  }
});

Deno.test("a server that requires a token: 401 says to set LM_API_TOKEN, the token fixes it", async () => {
  await using noToken = await harness({}, { token: "sekrit" });
  const r = await noToken.call("chat_completion", { prompt: "hi", model: "qwen2.5-7b-instruct" });
  assertEquals(r.isError, true);
  assertStringIncludes(text(r), "LM_API_TOKEN");
  await using withToken = await harness({ LM_API_TOKEN: "sekrit" }, { token: "sekrit" });
  const ok = await withToken.call("chat_completion", { prompt: "hi" });
  assertEquals(ok.isError, undefined, text(ok));
});

Deno.test("a model the bridge loads gets LMSTUDIO_CONTEXT_LENGTH as its context length", async () => {
  await using h = await harness({ LMSTUDIO_CONTEXT_LENGTH: "6000" }, {
    models: [{ id: "big-model", type: "llm", state: "not-loaded", maxContextLength: 32768 }],
  });
  const r = await h.call("lms_ensure_model_loaded", { model_name: "big-model" });
  assertEquals(r.isError, undefined, text(r));
  const load = h.fake.requests.find((q) => q.path === "/api/v1/models/load");
  assertEquals((load?.body as { context_length?: number }).context_length, 6000);
});

Deno.test("a server on an app built on first need lists its tools without building it, and builds it once at the first call", async () => {
  await using fake = await FakeLmStudio.start();
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" });
  const app = createApp(settings, { log: quiet });
  let builds = 0;
  const source = {
    settings,
    log: quiet,
    app: () => {
      builds++;
      return Promise.resolve(app);
    },
    close: () => app.close(),
  };
  await using connection = await connectInMemory(createServer(source));
  const { tools } = await connection.client.listTools();
  assertEquals(tools.map((t) => t.name).sort(), ALL_TOOLS);
  assertEquals(builds, 0);
  const first = await connection.call("health_check", {});
  assertStringIncludes(text(first), "is answering");
  await connection.call("list_models", {});
  assertEquals(builds, 1);
  await app.close();
});

Deno.test("a tool whose app cannot be built says so in its result, and arguments are still checked first", async () => {
  const settings = resolveSettings({});
  const source = {
    settings,
    log: quiet,
    app: () => Promise.reject(new Error("Module not found: lib/app.ts")),
    close: () => Promise.resolve(),
  };
  await using connection = await connectInMemory(createServer(source));
  const failed = await connection.call("health_check", {});
  assertEquals(failed.isError, true);
  assertStringIncludes(
    text(failed),
    "The bridge could not load the code of health_check: Module not found: lib/app.ts",
  );
  const invalid = await connection.call("chat_completion", {});
  assertEquals(invalid.isError, true);
  assertStringIncludes(text(invalid), "Input validation error");
});
