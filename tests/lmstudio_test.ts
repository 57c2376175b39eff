import { z } from "zod";
import {
  backoffMs,
  LmStudioClient,
  type LmStudioClientOptions,
  MAX_RETRY_AFTER_MS,
} from "../lib/lmstudio.ts";
import { LmStudioError } from "../lib/lmstudio_errors.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import { createLogger } from "../lib/log.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import {
  chatReply,
  defaultFakeModels,
  errorBody,
  fakeEmbedding,
  FakeLmStudio,
  type ScriptedReplyValue,
} from "./fakes/lmstudio.ts";
import { AbortingSleep } from "./fakes/sleep.ts";
import { countedController } from "./fixtures/signals.ts";

const QWEN = "qwen2.5-7b-instruct";
const NOMIC = "text-embedding-nomic-embed-text-v1.5";
const CHAT_PATH = "/v1/chat/completions";

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

/** A loopback port that nothing listens on (bound, then closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

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
  // Streamed, with the usage at the end where the server can add it.
  assertEquals((sent?.body as Record<string, unknown>).stream, true);
  assertEquals((sent?.body as Record<string, unknown>).stream_options, { include_usage: true });
  assertEquals(sent?.headers["content-type"], "application/json");
});

Deno.test("with streaming off, chat asks for one JSON body and gets the same result", async () => {
  await using fake = await FakeLmStudio.start();
  const streamed = await client(fake.baseUrl).client.chat({ model: QWEN, messages: [user("hi")] });
  const { client: c } = client(fake.baseUrl, { stream: false });
  const result = await c.chat({ model: QWEN, messages: [user("hi")] });
  const sent = fake.requestsTo("/v1/chat/completions")[1]?.body as Record<string, unknown>;
  assertEquals([sent.stream, sent.stream_options], [false, undefined]);
  const { stats: _streamed, id: _one, ...streamedResult } = streamed;
  const { stats, id: _other, ...plainResult } = result;
  assertEquals(plainResult, streamedResult);
  assertEquals(stats.estimated, false);
  assertEquals(stats.completionTokens, result.usage?.completion_tokens);
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

Deno.test("a json_object response_format is sent as a permissive JSON schema LM Studio accepts", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const result = await c.chat({
    model: QWEN,
    messages: [user("x")],
    response_format: { type: "json_object" },
  });
  assertEquals(result.content, "Echo: x");
  const body = fake.requestsTo(CHAT_PATH)[0]?.body as Record<string, unknown>;
  assertEquals(body.response_format, {
    type: "json_schema",
    json_schema: { name: "json_object", schema: { type: "object" } },
  });
  // What LM Studio says to any other type.
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")], response_format: { type: "yaml" } }),
    LmStudioError,
    "must be 'json_schema' or 'text'",
  );
  assertEquals(error.status, 400);
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

Deno.test("listModels reads /api/v1 capabilities.reasoning, an object only reasoning models have", async () => {
  await using fake = await FakeLmStudio.start({
    models: [
      { id: "qwen/qwen3-8b", type: "llm", state: "loaded", reasoning: true },
      { id: QWEN, type: "llm", state: "loaded" },
    ],
  });
  const { client: c } = client(fake.baseUrl);
  const wire = await (await fetch(`${fake.baseUrl}/api/v1/models`)).json() as {
    models: { capabilities?: { reasoning?: unknown } }[];
  };
  assertEquals(wire.models.map((m) => m.capabilities?.reasoning), [{
    allowed_options: ["off", "on"],
    default: "on",
  }, undefined]);
  const list = await c.listModels();
  assertEquals(list.models.map((m) => [m.id, m.reasoning]), [
    ["qwen/qwen3-8b", true],
    [QWEN, undefined],
  ]);
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

Deno.test("an Ollama with nothing pulled lists no models: data null is an empty list", async () => {
  await using fake = await FakeLmStudio.start({ flavor: "openai-only", models: [] });
  const { client: c } = client(fake.baseUrl);
  assertEquals((await c.listModels()).models, []);
  assertEquals((await c.health()).modelCount, 0);
  const error = await assertRejects(() => c.resolveModel(undefined), LmStudioError, "no models");
  assertStringIncludes(error.message, "`ollama pull <model>`");
});

Deno.test("listModels asks /v1/models and the REST APIs in parallel", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  // Each reply waits until all three requests have arrived, which only happens when they are
  // sent together; requests sent one after another are answered after a while anyway.
  const paths = ["/v1/models", "/api/v1/models", "/api/v0/models"];
  const allArrived = Promise.withResolvers<void>();
  let arrived = 0;
  const inFlight: number[] = [];
  for (const path of paths) {
    fake.script(path, async (req) => {
      if (++arrived === paths.length) allArrived.resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<void>((r) => timer = setTimeout(r, 10_000));
      await Promise.race([allArrived.promise, gaveUp]);
      clearTimeout(timer);
      inFlight.push(arrived);
      return new Response(
        await (await fetch(`${fake.baseUrl}${req.path}`)).arrayBuffer(),
        { headers: { "content-type": "application/json" } },
      );
    });
  }
  const list = await c.listModels();
  assertEquals(list.source, "api/v1");
  assertEquals(inFlight, [3, 3, 3], "all three were asked at once");
});

Deno.test("a list asked for with reuse is the last one while it is recent and nothing since may have changed the models", async (t) => {
  const llama = "llama-3.2-3b-instruct";
  await using fake = await FakeLmStudio.start({
    models: [...defaultFakeModels(), { id: llama, type: "llm", state: "not-loaded" }],
  });
  const { client: c } = client(fake.baseUrl, { listReuseMs: 600_000 });
  const reads = () => fake.requestsTo("/v1/models").length;
  const user: ChatMessage[] = [{ role: "user", content: "hi" }];
  let kept = await c.listModels({ reuse: true });
  await t.step("asked again with reuse: the same list, not asked of the server", async () => {
    assertEquals(reads(), 1);
    assert(await c.listModels({ reuse: true }) === kept);
    assertEquals(reads(), 1);
  });
  await t.step("asked without reuse: read afresh, and that list is the one kept", async () => {
    const fresh = await c.listModels();
    assertEquals(reads(), 2);
    assert(fresh !== kept);
    assert(await c.listModels({ reuse: true }) === fresh);
    kept = fresh;
  });
  await t.step("a chat with a model the list shows loaded leaves it in use", async () => {
    await c.chat({ model: QWEN, messages: user });
    assert(await c.listModels({ reuse: true }) === kept);
    assertEquals(reads(), 2);
  });
  await t.step(
    "a chat with a model it shows not loaded (loaded just in time) does not",
    async () => {
      await c.chat({ model: llama, messages: user });
      const after = await c.listModels({ reuse: true });
      assertEquals(reads(), 3);
      assertEquals(after.models.find((m) => m.id === llama)?.state, "loaded");
      kept = after;
    },
  );
  await t.step("nor does a load or an unload, nor forgetModelList", async () => {
    await c.loadModel(NOMIC);
    await c.listModels({ reuse: true });
    assertEquals(reads(), 4);
    await c.unloadModel(NOMIC);
    kept = await c.listModels({ reuse: true });
    assertEquals(reads(), 5);
    c.forgetModelList();
    assert(await c.listModels({ reuse: true }) !== kept);
    assertEquals(reads(), 6);
  });
  /**
   * `first`, its request to `path` held (answered by the fake itself, asked again) while
   * `meanwhile` runs; then the next reuse reads the list afresh.
   */
  const overlapped = async (
    path: string,
    first: () => Promise<unknown>,
    meanwhile: () => Promise<unknown>,
  ) => {
    const gate = Promise.withResolvers<void>();
    const arrived = Promise.withResolvers<void>();
    fake.script(path, async (req) => {
      arrived.resolve();
      await gate.promise;
      const init = req.method === "POST" ? { method: "POST", body: JSON.stringify(req.body) } : {};
      return new Response(await (await fetch(`${fake.baseUrl}${req.path}`, init)).arrayBuffer(), {
        headers: { "content-type": "application/json" },
      });
    });
    const running = first();
    await arrived.promise;
    await meanwhile();
    gate.resolve();
    await running;
    const before = reads();
    await c.listModels({ reuse: true });
    assertEquals(reads(), before + 1, "read afresh");
  };
  await t.step("a list that was on its way while a load went out is not kept", async () => {
    await overlapped("/v1/models", () => c.listModels(), () => c.loadModel(NOMIC));
  });
  await t.step("nor one read while a load was still on its way", async () => {
    await overlapped("/api/v1/models/load", () => c.loadModel(NOMIC), () => c.listModels());
  });
  await t.step("a list older than listReuseMs, or with listReuseMs 0, is read afresh", async () => {
    const { client: short } = client(fake.baseUrl, { listReuseMs: 1 });
    const first = await short.listModels({ reuse: true });
    const asked = performance.now();
    while (performance.now() - asked < 2) await new Promise((r) => setTimeout(r, 1));
    assert(await short.listModels({ reuse: true }) !== first);
    const { client: never } = client(fake.baseUrl, { listReuseMs: 0 });
    const once = await never.listModels({ reuse: true });
    assert(await never.listModels({ reuse: true }) !== once);
  });
});

Deno.test("a chat sent with unchanged messages reuses their JSON and sends the same bytes", async () => {
  await using fake = await FakeLmStudio.start();
  const bodies: string[] = [];
  const { client: c } = client(fake.baseUrl, {
    fetch: (input, init) => {
      if (typeof init?.body === "string") bodies.push(init.body);
      if (init?.body instanceof Uint8Array) bodies.push(new TextDecoder().decode(init.body));
      return fetch(input, init);
    },
  });
  const tool = {
    type: "function" as const,
    function: { name: "search", description: "Searches.", parameters: { type: "object" } },
  };
  const messages: ChatMessage[] = [
    { role: "system", content: "Work." },
    { role: "user", content: 'Find "x" \u2028 and ünïcode' },
  ];
  const send = async (unchanged: boolean) => {
    fake.script(CHAT_PATH, { body: chatReply({ content: "ok" }) });
    await c.chat({ model: QWEN, messages: [...messages], tools: [tool], tool_choice: "auto" }, {
      unchanged,
    });
  };
  for (let round = 0; round < 3; round++) {
    await send(true);
    await send(false);
    assertEquals(bodies.at(-2), bodies.at(-1), `round ${round}: the same bytes either way`);
    messages.push({ role: "assistant", content: `round ${round}` });
    // A condensed message is a new object: it is sent as it is now.
    messages[1] = { ...messages[1]!, content: `condensed ${round}` };
  }
  assertStringIncludes(bodies.at(-1)!, '"content":"condensed 1"');
  assertEquals(JSON.parse(bodies.at(-1)!).messages.length, 4);
  // The same messages again, fewer of them, and two conversations that share their first
  // message but not the rest, in turns: each is sent as it is.
  const sendEach = async (list: ChatMessage[]) => {
    for (const unchanged of [true, false]) {
      fake.script(CHAT_PATH, { body: chatReply({ content: "ok" }) });
      await c.chat({ model: QWEN, messages: [...list], tools: [tool] }, { unchanged });
    }
    assertEquals(bodies.at(-2), bodies.at(-1), `the same bytes for ${list.length} messages`);
    assertEquals(JSON.parse(bodies.at(-1)!).messages, JSON.parse(JSON.stringify(list)));
  };
  await sendEach(messages);
  await sendEach(messages.slice(0, 2));
  const other: ChatMessage[] = [messages[0]!, { role: "user", content: "another task" }];
  for (let turn = 0; turn < 3; turn++) {
    await sendEach(messages);
    await sendEach(other);
    other.push({ role: "assistant", content: `other ${turn}` });
    messages.push({ role: "assistant", content: `more ${turn}` });
  }
});

Deno.test("once a server answered /api/v1/models, /api/v0/models is asked only when that fails", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const asked = (from: number) => fake.requests.slice(from).map((r) => r.path).sort();
  let from = fake.requests.length;
  assertEquals((await c.listModels()).source, "api/v1");
  assertEquals(asked(from), ["/api/v0/models", "/api/v1/models", "/v1/models"]);
  from = fake.requests.length;
  const again = await c.listModels();
  assertEquals(again.source, "api/v1");
  assertEquals(asked(from), ["/api/v1/models", "/v1/models"]);
  // v1 fails: v0 is asked after it, and its details are used.
  fake.script("/api/v1/models", { status: 500, body: { error: "busy" } });
  from = fake.requests.length;
  const fallback = await c.listModels();
  assertEquals(fallback.source, "api/v0");
  assertEquals(asked(from), ["/api/v0/models", "/api/v1/models", "/v1/models"]);
  assertEquals(fallback.models.map((m) => m.id), again.models.map((m) => m.id));
  // Until v1 answers again, all three are asked together.
  from = fake.requests.length;
  assertEquals((await c.listModels()).source, "api/v1");
  assertEquals(asked(from), ["/api/v0/models", "/api/v1/models", "/v1/models"]);
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

  await t.step("an empty server says so, and that its models may just not be loaded", async () => {
    await using fake = await FakeLmStudio.start({ models: [] });
    const { client: c } = client(fake.baseUrl);
    const error = await assertRejects(
      () => c.resolveModel(undefined),
      LmStudioError,
      "lists no models",
    );
    assertStringIncludes(error.message, "`lms load <model>`");
    assertStringIncludes(error.message, "just-in-time loading");
  });

  await t.step("a model list the caller has is used, not read again", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    const list = await c.listModels();
    const read = fake.requests.length;
    assertEquals(await c.resolveModel(undefined, { list }), QWEN);
    assertEquals(await c.resolveModel(undefined, { list, kind: "embedding" }), NOMIC);
    assertEquals(fake.requests.length, read, "no request after the list was read");
  });
});

// ---------------------------------------------------------------------------------------------
// The other endpoints

Deno.test("complete sends the prompt and returns the completion text", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const result = await c.complete({
    model: QWEN,
    prompt: "Once upon",
    stop: ["\n"],
    max_tokens: 9,
  });
  assertEquals(result.text, "Once upon");
  assertEquals(result.finishReason, "stop");
  const body = fake.requestsTo("/v1/completions")[0]?.body as Record<string, unknown>;
  assertEquals([body.stop, body.max_tokens], [["\n"], 9]);
});

Deno.test("embed returns one vector per input, ordered by index", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const result = await c.embed({ model: NOMIC, input: ["alpha", "beta"] });
  assertEquals(result.embeddings, [fakeEmbedding("alpha"), fakeEmbedding("beta")]);
  assertEquals(result.model, NOMIC);

  fake.script("/v1/embeddings", {
    body: {
      object: "list",
      data: [
        { object: "embedding", index: 1, embedding: [2] },
        { object: "embedding", index: 0, embedding: [1] },
      ],
    },
  });
  assertEquals((await c.embed({ model: NOMIC, input: ["a", "b"] })).embeddings, [[1], [2]]);

  fake.script("/v1/embeddings", { body: { data: [{ index: 0, embedding: [1] }] } });
  await assertRejects(
    () => c.embed({ model: NOMIC, input: ["a", "b"] }),
    LmStudioError,
    "1 embeddings for 2 inputs",
  );
});

Deno.test("embed with a chat model reports the server's reason", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const error = await assertRejects(() => c.embed({ model: QWEN, input: "x" }), LmStudioError);
  assertEquals([error.kind, error.status], ["http", 400]);
  assertStringIncludes(error.message, "not an embedding model");
});

Deno.test("respond keeps state through previous_response_id", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const first = await c.respond({ model: QWEN, input: "hello" });
  assertEquals(first.text, "Echo: hello (turn 1)");
  assertEquals(first.previousResponseId, null);
  const second = await c.respond({ model: QWEN, input: "again", previous_response_id: first.id });
  assertEquals(second.text, "Echo: again (turn 2)");
  assertEquals(second.previousResponseId, first.id);
  assert(second.id !== first.id);
});

Deno.test("respond explains an unknown previous_response_id", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const error = await assertRejects(
    () => c.respond({ model: QWEN, input: "x", previous_response_id: "resp_gone" }),
    LmStudioError,
    'does not know previous_response_id "resp_gone"',
  );
  assertEquals(error.code, "previous_response_not_found");
  assertStringIncludes(error.message, "leaving previous_response_id out");
  // LM Studio keeps response history on disk: a restart is not why an id is unknown.
  assert(!/restart/i.test(error.message), error.message);
});

Deno.test("respond says so when the server kept no state for a follow-up", async () => {
  await using fake = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [{ id: "llama3" }],
  });
  const { client: c } = client(fake.baseUrl);
  const first = await c.respond({ model: "llama3", input: "hello" });
  assertEquals(first.previousResponseId, null, "a first turn has no previous response");
  const error = await assertRejects(
    () => c.respond({ model: "llama3", input: "again", previous_response_id: first.id }),
    LmStudioError,
    `ignored previous_response_id "${first.id}"`,
  );
  assertEquals(error.kind, "unsupported");
  assertStringIncludes(error.message, "keeps no conversation state");
  assertStringIncludes(error.message, "chat_completion");
});

Deno.test("respond reads reasoning and function calls from the output items", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  fake.script("/v1/responses", {
    body: {
      id: "resp_x",
      object: "response",
      status: "completed",
      output: [
        { type: "reasoning", content: [{ type: "reasoning_text", text: "Think." }] },
        { type: "function_call", call_id: "call_1", name: "lookup", arguments: { q: 1 } },
        {
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text: "Hello" }],
        },
      ],
      usage: { input_tokens: 20, output_tokens: 5, total_tokens: 25 },
    },
  });
  const r = await c.respond({ model: QWEN, input: "x" });
  assertEquals(r.text, "Hello");
  assertEquals(r.reasoning, "Think.");
  assertEquals(r.functionCalls, [{ callId: "call_1", name: "lookup", arguments: '{"q":1}' }]);
  assertEquals(r.usage, { input_tokens: 20, output_tokens: 5, total_tokens: 25 });
});

Deno.test("loadModel and unloadModel change the REST state", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const loaded = await c.loadModel(NOMIC, { contextLength: 2048, ttl: 60 });
  assertEquals(loaded, { instanceId: NOMIC, status: "loaded" });
  assertEquals(fake.requestsTo("/api/v1/models/load")[0]?.body, {
    model: NOMIC,
    context_length: 2048,
    ttl: 60,
  });
  let list = await c.listModels();
  assertEquals(list.models.find((m) => m.id === NOMIC)?.state, "loaded");
  await c.unloadModel(NOMIC);
  list = await c.listModels();
  assertEquals(list.models.find((m) => m.id === NOMIC)?.state, "not-loaded");
});

Deno.test("loadModel says which 404 it was: unknown model or no REST API", async (t) => {
  await t.step("unknown model", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    const error = await assertRejects(() => c.loadModel("nope"), LmStudioError, 'know "nope"');
    assertEquals(error.kind, "not_found");
  });
  for (const flavor of ["lmstudio-v0", "openai-only"] as const) {
    await t.step(`no REST API (${flavor})`, async () => {
      await using fake = await FakeLmStudio.start({ flavor });
      const { client: c } = client(fake.baseUrl);
      const error = await assertRejects(
        () => c.loadModel(QWEN),
        LmStudioError,
        "does not offer LM Studio's REST API",
      );
      assertEquals(error.kind, "not_found");
      assertStringIncludes(error.message, "`lms load`");
    });
  }
});

Deno.test("health reports reachability, latency and model count without throwing", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const ok = await c.health();
  assertEquals([ok.ok, ok.modelCount, ok.baseUrl], [true, 2, fake.baseUrl]);
  assert(ok.latencyMs >= 0);
  assertEquals(ok.auth, "ok");
  const down = await client(`http://127.0.0.1:${closedPort()}`).client.health();
  assertEquals(down.ok, false);
  assertStringIncludes(down.error ?? "", "connection refused");
});

Deno.test("health is not fooled by a model list that answers without the token chat needs", async (t) => {
  // llama.cpp under --api-key: /v1/models is public, chat answers 401 without the key.
  await using fake = await FakeLmStudio.start({
    flavor: "openai-only",
    token: "k3y",
    publicModels: true,
    models: [{ id: "llama" }],
  });
  await t.step("without the token: unhealthy, saying to set it", async () => {
    const h = await client(fake.baseUrl).client.health();
    assertEquals([h.ok, h.auth, h.modelCount], [false, "refused", 1]);
    assertStringIncludes(h.error ?? "", "lists its models without a token");
    assertStringIncludes(h.error ?? "", "LM_API_TOKEN");
  });
  await t.step("with it: healthy", async () => {
    const h = await client(fake.baseUrl, { token: "k3y" }).client.health();
    assertEquals([h.ok, h.auth], [true, "ok"]);
  });
  await t.step("a check that gets no answer is said to be unchecked", async () => {
    fake.script("GET /v1/chat/completions", { delayMs: 60_000, body: {} });
    const h = await client(fake.baseUrl, { token: "k3y" }).client.health({ timeoutMs: 200 });
    assertEquals([h.ok, h.auth], [true, "unchecked"]);
    assertStringIncludes(h.note ?? "", "not checked");
  });
});

Deno.test("a base URL with a trailing /v1 or slash is normalised", () => {
  assertEquals(client("http://127.0.0.1:1234/v1/").client.baseUrl, "http://127.0.0.1:1234");
  assertEquals(client("http://127.0.0.1:1234/").client.baseUrl, "http://127.0.0.1:1234");
});

// ---------------------------------------------------------------------------------------------
// Retries, timeouts, cancellation

Deno.test("a server that fails twice then answers is retried with growing backoff", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c, sleeps } = client(fake.baseUrl);
  fake.script(
    "/v1/chat/completions",
    { status: 503, body: errorBody("Model is loading") },
    { status: 500, raw: "internal error" },
  );
  const result = await c.chat({ model: QWEN, messages: [user("hi")] });
  assertEquals(result.content, "Echo: hi");
  assertEquals(fake.requestsTo("/v1/chat/completions").length, 3);
  // random() = 0.5: 75% of 500 ms, then 75% of 1000 ms.
  assertEquals(sleeps, [375, 750]);
});

Deno.test("backoff jitter stays within half and all of the exponential step", () => {
  for (let attempt = 0; attempt < 8; attempt++) {
    const step = Math.min(8_000, 500 * 2 ** attempt);
    for (const r of [0, 0.25, 0.999999]) {
      const ms = backoffMs(attempt, r);
      assert(ms >= step / 2 && ms <= step, `attempt ${attempt} r ${r}: ${ms}`);
    }
  }
  assertEquals(backoffMs(0, 0), 250);
  assertEquals(backoffMs(20, 0.999999), 8_000);
});

Deno.test("retries give up after the configured count and say so", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c, sleeps } = client(fake.baseUrl, { retries: 1 });
  const badGateway = { status: 502, raw: "Bad Gateway" };
  fake.script("/v1/models", badGateway, badGateway, badGateway);
  const error = await assertRejects(
    () => c.request("GET", "/v1/models", { schema: z.unknown() }),
    LmStudioError,
    "gave up after 2 attempts",
  );
  assertEquals([error.kind, error.status, error.serverMessage], ["http", 502, "Bad Gateway"]);
  assertEquals(fake.requestsTo("/v1/models").length, 2);
  assertEquals(sleeps, [375]);
});

Deno.test("429 is retried, honouring Retry-After within a bound", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c, sleeps } = client(fake.baseUrl);
  fake.script(
    "/v1/models",
    { status: 429, body: errorBody("busy"), headers: { "retry-after": "2" } },
    { status: 429, body: errorBody("busy"), headers: { "retry-after": "3600" } },
  );
  const list = await c.request("GET", "/v1/models", { schema: z.unknown() });
  assert(list !== undefined);
  assertEquals(sleeps, [2000, MAX_RETRY_AFTER_MS]);
});

Deno.test("4xx other than 429 is never retried", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c, sleeps } = client(fake.baseUrl);
  fake.script("/v1/chat/completions", {
    status: 400,
    body: errorBody("'messages' field is required"),
  });
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [] }),
    LmStudioError,
    "'messages' field is required",
  );
  assertEquals([error.kind, error.status], ["http", 400]);
  assertEquals(fake.requestsTo("/v1/chat/completions").length, 1);
  assertEquals(sleeps, []);
});

Deno.test("a slow server times out with advice on LMSTUDIO_TIMEOUT_MS and no retry", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c, sleeps } = client(fake.baseUrl, { timeoutMs: 1_000 });
  fake.script("/v1/chat/completions", { delayMs: 60_000, body: chatReply({ content: "late" }) });
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }),
    LmStudioError,
    "within 1000 ms",
  );
  assertEquals(error.kind, "timeout");
  assertStringIncludes(error.message, "LMSTUDIO_TIMEOUT_MS");
  assertEquals(sleeps, []);
  const sent = fake.requestsTo("/v1/chat/completions");
  assertEquals(sent.length, 1);
  assertEquals(await fake.delayedEnd(sent[0]!), "abandoned", "the client hung up at its timeout");
});

Deno.test("a per-call timeout overrides the client's", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  fake.script("/v1/models", { delayMs: 5_000, body: { data: [] } });
  const error = await assertRejects(
    () => c.request("GET", "/v1/models", { schema: z.unknown(), timeoutMs: 50 }),
    LmStudioError,
    "within 50 ms",
  );
  assertEquals(error.kind, "timeout");
});

Deno.test("aborting during a delayed reply returns at once as kind aborted", async () => {
  await using fake = await FakeLmStudio.start();
  fake.script("/v1/chat/completions", { delayMs: 60_000, body: chatReply({ content: "late" }) });
  const controller = new AbortController();
  // Cancelled once the reply's headers are in, while its body is still held back.
  const { client: c } = client(fake.baseUrl, {
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      controller.abort();
      return response;
    },
  });
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }, { signal: controller.signal }),
    LmStudioError,
    "cancelled",
  );
  assertEquals(error.kind, "aborted");
  const [sent] = fake.requestsTo("/v1/chat/completions");
  assertEquals(await fake.delayedEnd(sent!), "abandoned", "the client hung up at once");
});

Deno.test("aborting during the backoff sleep stops at once, and no retry is sent", async () => {
  await using fake = await FakeLmStudio.start();
  // The real sleep, for the 30 s the server asks; cancelled once the client is in it.
  const controller = new AbortController();
  const wait = new AbortingSleep(controller);
  const c = new LmStudioClient({
    baseUrl: fake.baseUrl,
    log: createLogger({ level: "silent" }),
    sleep: wait.sleep,
  });
  fake.script("/v1/models", {
    status: 503,
    headers: { "retry-after": "30" },
    body: errorBody("loading"),
  });
  const error = await assertRejects(
    () => c.listModels({ signal: controller.signal }),
    LmStudioError,
  );
  assertEquals(error.kind, "aborted");
  assertEquals(wait.waited, "cut short");
  assertEquals(fake.requestsTo("/v1/models").length, 1);
});

Deno.test("a caller's signal is let go of when each request ends, answered or failed", async () => {
  await using fake = await FakeLmStudio.start();
  let sent = Promise.withResolvers<void>();
  const { client: c } = client(fake.baseUrl, {
    fetch: (input, init) => {
      sent.resolve();
      return fetch(input, init);
    },
  });
  const { controller, listening } = countedController();
  const signal = controller.signal;
  for (let i = 0; i < 3; i++) {
    fake.script("/v1/chat/completions", { body: chatReply({ content: `ok ${i}` }) });
    const reply = await c.chat({ model: QWEN, messages: [user("x")] }, { signal });
    assertEquals(reply.content, `ok ${i}`);
    assertEquals(listening(), 0, `after answer ${i}`);
  }
  fake.script("/v1/chat/completions", { status: 400, body: { error: "bad request" } });
  await assertRejects(() => c.chat({ model: QWEN, messages: [user("x")] }, { signal }));
  assertEquals(listening(), 0, "after an error");
  // Still followed while a request is under way: aborting then ends it as cancelled.
  fake.script("/v1/chat/completions", { delayMs: 60_000, body: chatReply({ content: "late" }) });
  sent = Promise.withResolvers<void>();
  const pending = c.chat({ model: QWEN, messages: [user("x")] }, { signal });
  await sent.promise;
  assertEquals(listening(), 1, "followed while under way");
  controller.abort();
  const error = await assertRejects(() => pending, LmStudioError);
  assertEquals(error.kind, "aborted");
});

Deno.test("an already aborted signal sends nothing", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }, { signal: AbortSignal.abort() }),
    LmStudioError,
  );
  assertEquals(error.kind, "aborted");
  assertEquals(fake.requests.length, 0);
});

// ---------------------------------------------------------------------------------------------
// Error messages

Deno.test("connection refused says how to start LM Studio, after retrying", async () => {
  const port = closedPort();
  const { client: c, sleeps } = client(`http://127.0.0.1:${port}`);
  const error = await assertRejects(() => c.listModels(), LmStudioError);
  assertEquals(error.kind, "unreachable");
  assertStringIncludes(
    error.message,
    `Cannot reach LM Studio at http://127.0.0.1:${port}: connection refused. Start the server ` +
      "in LM Studio (Developer tab) or run `lms server start`.",
  );
  assertStringIncludes(error.message, "LMSTUDIO_BASE_URL");
  assertStringIncludes(error.message, "gave up after 3 attempts");
  assertEquals(error.url, `http://127.0.0.1:${port}/v1/models`);
  assertEquals(sleeps.length, 2);
});

Deno.test("401 without a token says to set LM_API_TOKEN", async () => {
  await using fake = await FakeLmStudio.start({ token: "secret" });
  const { client: c, sleeps } = client(fake.baseUrl);
  const error = await assertRejects(() => c.listModels(), LmStudioError);
  assertEquals([error.kind, error.status], ["auth", 401]);
  assertStringIncludes(error.message, "none was sent");
  assertStringIncludes(error.message, "set LM_API_TOKEN");
  assertEquals(sleeps, []);
});

Deno.test("401 with a wrong token says the token was refused", async () => {
  await using fake = await FakeLmStudio.start({ token: "secret" });
  const { client: c } = client(fake.baseUrl, { token: "wrong" });
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }),
    LmStudioError,
    "LM_API_TOKEN) was refused",
  );
  assertEquals(error.serverMessage, "Invalid API token");
});

Deno.test("the right token is sent as a bearer header and accepted", async () => {
  await using fake = await FakeLmStudio.start({ token: "secret" });
  const { client: c } = client(fake.baseUrl, { token: "secret" });
  assertEquals((await c.chat({ model: QWEN, messages: [user("x")] })).content, "Echo: x");
  assertEquals(fake.requests[0]?.headers["authorization"], "Bearer secret");
});

Deno.test("404 for a model names the models that exist", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  for (
    const call of [
      () => c.chat({ model: "gpt-4o", messages: [user("x")] }),
      () => c.complete({ model: "gpt-4o", prompt: "x" }),
      () => c.embed({ model: "gpt-4o", input: "x" }),
      () => c.respond({ model: "gpt-4o", input: "x" }),
    ]
  ) {
    const error = await assertRejects(call, LmStudioError);
    assertEquals([error.kind, error.status, error.code], [
      "not_found",
      404,
      "model_not_found",
    ]);
    assertStringIncludes(error.message, `The server at ${fake.baseUrl} has no model "gpt-4o"`);
    assertStringIncludes(error.message, `Models available: ${QWEN}, ${NOMIC}`);
  }
});

Deno.test("a 400 blaming an unknown model also names the models that exist", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  const invalid = errorBody('Invalid model identifier "gpt-4o".');
  fake.script("/v1/chat/completions", { status: 400, body: invalid });
  await assertRejects(
    () => c.chat({ model: "gpt-4o", messages: [user("x")] }),
    LmStudioError,
    `Models available: ${QWEN}, ${NOMIC}`,
  );
  // A model that exists: the server's own 400 message stands.
  fake.script("/v1/chat/completions", { status: 400, body: errorBody("Invalid model config") });
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }),
    LmStudioError,
    "Invalid model config",
  );
  assertEquals(error.kind, "http");
});

Deno.test("with nothing loaded and JIT off, a request says to load the model, not to download it", async () => {
  await using fake = await FakeLmStudio.start({
    jit: false,
    models: [{ id: QWEN, type: "llm", state: "not-loaded", maxContextLength: 32768 }],
  });
  const { client: c } = client(fake.baseUrl);
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }),
    LmStudioError,
    "has no model loaded and its just-in-time loading is off",
  );
  assertEquals(error.kind, "not_found");
  assertStringIncludes(error.message, `\`lms load ${QWEN}\``);
  assertStringIncludes(error.message, "No models loaded. Please load a model");
  assert(!/download|lms get/i.test(error.message), error.message);
});

Deno.test("a long model list in an error is cut after 20 ids", async () => {
  const models = Array.from({ length: 25 }, (_, i) => ({ id: `m${i}` }));
  await using fake = await FakeLmStudio.start({ models });
  const { client: c } = client(fake.baseUrl);
  await assertRejects(
    () => c.chat({ model: "gpt-4o", messages: [user("x")] }),
    LmStudioError,
    "m18, m19 and 5 more.",
  );
});

Deno.test("404 for an endpoint the server lacks says so instead of blaming the model", async () => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  fake.script("/v1/responses", { status: 404, raw: "404 page not found" });
  const error = await assertRejects(() => c.respond({ model: QWEN, input: "x" }), LmStudioError);
  assertStringIncludes(error.message, "has no /v1/responses endpoint");
  assertEquals(error.serverMessage, "404 page not found");
});

Deno.test("an error object in a 200 reply is an error like a 4xx with that message", async (t) => {
  await t.step("an endpoint this LM Studio lacks says which version has it", async () => {
    await using fake = await FakeLmStudio.start({ responses: false });
    const { client: c } = client(fake.baseUrl);
    const error = await assertRejects(() => c.respond({ model: QWEN, input: "x" }), LmStudioError);
    assertEquals(error.kind, "not_found");
    assertStringIncludes(error.message, "has no /v1/responses endpoint");
    assertStringIncludes(error.message, "update LM Studio to 0.3.29 or newer");
    assertEquals(error.serverMessage, "Unexpected endpoint or method. (POST /v1/responses)");
    assertEquals(fake.requestsTo("/v1/models").length, 0, "the model is not to blame");
  });
  await t.step("a context overflow answered with 200 says how to make it fit", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    const overflow = "Trying to keep the first 6203 tokens when context the overflows. However, " +
      "the model is loaded with context length of only 4096 tokens, which is not enough.";
    fake.script(CHAT_PATH, { status: 200, body: { error: overflow } });
    const error = await assertRejects(
      () => c.chat({ model: QWEN, messages: [user("x")] }),
      LmStudioError,
      "context length of only 4096 tokens",
    );
    assertEquals([error.kind, error.status], ["http", 200]);
    assertStringIncludes(error.message, "context window");
    assert(!error.message.includes("OpenAI-compatible"), error.message);
  });
  await t.step("the REST model lists answered so are missing, like a 404", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    for (const path of ["/api/v1/models", "/api/v0/models"]) {
      fake.script(path, {
        status: 200,
        body: { error: `Unexpected endpoint or method. (GET ${path})` },
      });
    }
    const list = await c.listModels();
    assertEquals(list.source, "openai");
    assertStringIncludes(list.notes[0] ?? "", "no LM Studio REST API");
  });
  await t.step("a REST load or unload answered so is not taken for a success", async () => {
    await using fake = await FakeLmStudio.start({ flavor: "lmstudio-v0" });
    const { client: c } = client(fake.baseUrl);
    for (const call of [() => c.loadModel(QWEN), () => c.unloadModel(QWEN)]) {
      const error = await assertRejects(call, LmStudioError, "does not offer LM Studio's REST API");
      assertStringIncludes(error.message, "Unexpected endpoint or method");
    }
  });
  await t.step("a null error field is no error", async () => {
    await using fake = await FakeLmStudio.start();
    const { client: c } = client(fake.baseUrl);
    fake.script(CHAT_PATH, { body: { ...chatReply({ content: "fine" }), error: null } });
    assertEquals((await c.chat({ model: QWEN, messages: [user("x")] })).content, "fine");
  });
});

/** A chat of `c` fails as too large, stopped while it was being read. */
async function assertTooLarge(c: LmStudioClient): Promise<void> {
  const error = await assertRejects(
    () => c.chat({ model: QWEN, messages: [user("x")] }),
    LmStudioError,
    "before the client stopped reading",
  );
  assertEquals(error.kind, "too_large");
}

/**
 * An in-process body of `total` chunks of 1 KiB of `char`, so that only the client's reading pulls
 * them; `pulled()` counts the chunks pulled so far.
 */
function chunkedBody(char: string, total: number, onCancel?: () => void) {
  const chunk = new TextEncoder().encode(char.repeat(1024));
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled++ < total) controller.enqueue(chunk);
      else controller.close();
    },
    ...(onCancel !== undefined ? { cancel: onCancel } : {}),
  });
  return { body, pulled: () => pulled };
}

Deno.test("a reply larger than the limit fails with its size and what to do, read no further", async (t) => {
  await using fake = await FakeLmStudio.start();
  // One JSON body (the limit counts the bytes of the body, and a stream's are many more).
  const { client: c } = client(fake.baseUrl, {
    maxReplyBytes: 64 * 1024,
    retries: 0,
    stream: false,
  });
  const ask = () => c.chat({ model: QWEN, messages: [user("x")], max_tokens: 100_000 });
  await t.step("one that announces its size is not read at all", async () => {
    fake.script(CHAT_PATH, { body: chatReply({ content: "x".repeat(200_000) }) });
    const error = await assertRejects(ask, LmStudioError, "larger than the limit of 64.0 KiB");
    assertEquals(error.kind, "too_large");
    assertMatch(error.message, /announces 19\d\.\d KiB/);
    assertStringIncludes(error.message, "lower max_tokens");
    assertStringIncludes(error.message, "LMSTUDIO_MAX_REPLY_BYTES");
  });
  await t.step("a streamed one is read up to the limit, then given up", async () => {
    const total = 4096; // 4 MiB in 1 KiB chunks, if all were read
    const cancelled = Promise.withResolvers<void>();
    const { body, pulled } = chunkedBody("x", total, () => cancelled.resolve());
    const streaming = client(fake.baseUrl, {
      maxReplyBytes: 64 * 1024,
      fetch: () =>
        Promise.resolve(new Response(body, { headers: { "content-type": "application/json" } })),
    }).client;
    await assertTooLarge(streaming);
    await cancelled.promise;
    assert(pulled() < 100, `stopped after ${pulled()} of ${total} chunks`);
  });
  await t.step("a compressed one that announces less is read up to the limit too", async () => {
    // Its Content-Length counts the compressed bytes; what it inflates to is read with the cap.
    const { body, pulled } = chunkedBody("z", 4096);
    const inflating = client(fake.baseUrl, {
      maxReplyBytes: 64 * 1024,
      fetch: () =>
        Promise.resolve(
          new Response(
            body,
            {
              headers: {
                "content-type": "application/json",
                "content-encoding": "gzip",
                "content-length": "2048",
              },
            },
          ),
        ),
    }).client;
    await assertTooLarge(inflating);
    assert(pulled() < 100, `stopped after ${pulled()} chunks`);
  });
  await t.step("one within the limit is read whole", async () => {
    fake.script(CHAT_PATH, { body: chatReply({ content: "y".repeat(60_000) }) });
    assertEquals((await ask()).content.length, 60_000);
  });
  await t.step("a stream is read up to the limit, then its connection closed", async () => {
    await using fake = await FakeLmStudio.start({ stream: "sse" });
    const streaming = client(fake.baseUrl, { maxReplyBytes: 64 * 1024, retries: 0 }).client;
    // About 230 bytes an event: 1,000 of them pass the limit; then the fake waits, so that only
    // the client closing the connection ends the reply.
    fake.script(CHAT_PATH, {
      body: chatReply({ content: "word ".repeat(2_000) }),
      stream: { stallAfter: 1_000 },
    });
    await assertTooLarge(streaming);
    const [request] = fake.requestsTo(CHAT_PATH).slice(-1);
    assertEquals(await fake.delayedEnd(request!), "abandoned");
  });
});

Deno.test("unusable fields the client can do without are ignored, and logged at debug", async (t) => {
  await using fake = await FakeLmStudio.start();
  const lines: string[] = [];
  const { client: c } = client(fake.baseUrl, {
    log: createLogger({ level: "debug", write: (line) => lines.push(line) }),
  });
  await t.step("chat: a string usage, a numeric finish_reason, an object id", async () => {
    const reply = chatReply({ content: "answer" });
    const choices = (reply.choices as Record<string, unknown>[]).map((c) => ({
      ...c,
      finish_reason: 3,
    }));
    fake.script(CHAT_PATH, { body: { ...reply, choices, usage: "12 tokens", id: { x: 1 } } });
    const result = await c.chat({ model: QWEN, messages: [user("x")] });
    assertEquals(result.content, "answer");
    assertEquals([result.usage, result.finishReason, result.id], [undefined, undefined, undefined]);
    const logged = lines.join("\n");
    assertStringIncludes(
      logged,
      "ignored unusable fields of the reply to POST /v1/chat/completions",
    );
    assertStringIncludes(logged, "12 tokens");
    assertStringIncludes(logged, "finish_reason");
  });
  await t.step("usage counts that are numbers are kept, the others left out", async () => {
    const body = {
      ...chatReply({ content: "a" }),
      usage: { prompt_tokens: 7, completion_tokens: "many", total_tokens: null },
    };
    fake.script(CHAT_PATH, { body });
    const result = await c.chat({ model: QWEN, messages: [user("x")] });
    assertEquals(result.usage, { prompt_tokens: 7, completion_tokens: 0, total_tokens: 7 });
  });
  await t.step("completions, embeddings and responses too", async () => {
    fake.script("/v1/completions", {
      body: { choices: [{ text: "t", finish_reason: 1 }], usage: [], model: 5 },
    });
    const { stats: _, ...completion } = await c.complete({ model: QWEN, prompt: "p" });
    assertEquals(completion, { text: "t" });
    fake.script("/v1/embeddings", {
      body: { data: [{ index: "0", embedding: [1] }], usage: "n/a", model: null },
    });
    assertEquals(await c.embed({ model: NOMIC, input: "e" }), { embeddings: [[1]] });
    fake.script("/v1/responses", {
      body: { id: "resp_x", status: 200, usage: "lots", output_text: "r" },
    });
    const r = await c.respond({ model: QWEN, input: "i" });
    assertEquals([r.text, r.status, r.usage], ["r", undefined, undefined]);
  });
});

Deno.test("a reply that is not JSON, or not the expected shape, is a bad_response", async (t) => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl);
  await t.step("an HTML page", async () => {
    fake.script("/v1/chat/completions", { raw: "<html>Welcome to nginx</html>" });
    const error = await assertRejects(
      () => c.chat({ model: QWEN, messages: [user("x")] }),
      LmStudioError,
      "not what an OpenAI-compatible server sends",
    );
    assertEquals(error.kind, "bad_response");
    assertStringIncludes(error.message, "Welcome to nginx");
  });
  await t.step("JSON of the wrong shape", async () => {
    fake.script("/v1/chat/completions", { body: { choices: [] } });
    const error = await assertRejects(
      () => c.chat({ model: QWEN, messages: [user("x")] }),
      LmStudioError,
      "not what an OpenAI-compatible server sends",
    );
    assertStringIncludes(error.message, "choices");
  });
});

Deno.test("server error messages are read from every error body shape", async (t) => {
  await using fake = await FakeLmStudio.start();
  const { client: c } = client(fake.baseUrl, { retries: 0 });
  const cases: [string, ScriptedReplyValue, string, string | undefined][] = [
    ["object", { status: 400, body: errorBody("bad thing", { code: "x1" }) }, "bad thing", "x1"],
    [
      "string",
      { status: 400, body: { error: "Unexpected endpoint" } },
      "Unexpected endpoint",
      undefined,
    ],
    ["text", { status: 500, raw: "upstream exploded" }, "upstream exploded", undefined],
    [
      "vLLM",
      { status: 400, body: { object: "error", message: "too long", code: 400 } },
      "too long",
      "400",
    ],
  ];
  for (const [name, reply, message, code] of cases) {
    await t.step(name, async () => {
      fake.script("/v1/models", reply);
      const error = await assertRejects(() => c.listModels(), LmStudioError, message);
      assertEquals([error.serverMessage, error.code], [message, code]);
      assertEquals(error.status, reply.status);
    });
  }
});

Deno.test("a sandbox denial names the host and the flag that would allow it", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const lib = new URL("../lib/lmstudio.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { LmStudioClient } from "${lib}";
const c = new LmStudioClient({ baseUrl: "http://192.0.2.10:1234", retries: 0 });
const h = await c.health();
Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(h)));`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        "--cached-only",
        "--frozen",
        "--no-check",
        "--no-prompt",
        "-P=bridge",
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const health = JSON.parse(stdout) as { ok: boolean; error: string; latencyMs: number };
    assertEquals(health.ok, false);
    assertStringIncludes(health.error, "sandbox blocked the connection");
    assertStringIncludes(health.error, "add --allow-net=192.0.2.10:1234");
    assert(health.latencyMs < 1_000);
  } finally {
    await Deno.remove(script);
  }
});
