/**
 * LM Studio's native chat (lib/lmstudio_native.ts and `native` in lib/lmstudio.ts) against the
 * fake LM Studio over real HTTP: which requests fit it, its stream's load and prompt progress
 * passed on as events, its reply turned into the same result as /v1/chat/completions gives, its
 * errors and stalls, and the servers without it (LM Studio before 0.4, Ollama, llama.cpp) asked
 * /v1/chat/completions instead, once found out.
 */
import { LmStudioClient, type LmStudioClientOptions } from "../lib/lmstudio.ts";
import { LmStudioError } from "../lib/lmstudio_errors.ts";
import { nativeChatBody } from "../lib/lmstudio_native.ts";
import type { ChatRequest, ChatStreamEvent } from "../lib/lmstudio_types.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { FakeLmStudio, type FakeLmStudioOptions, nativeReply, sseEvent } from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

const QWEN = "qwen2.5-7b-instruct";
const NATIVE = "/api/v1/chat";
const CHAT = "/v1/chat/completions";
const ask: ChatRequest = {
  model: QWEN,
  messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hello" }],
  temperature: 0.2,
  max_tokens: 100,
};

function fake(o: FakeLmStudioOptions = {}): Promise<FakeLmStudio> {
  return FakeLmStudio.start({ stream: "sse", ...o });
}

function client(baseUrl: string, o: Partial<LmStudioClientOptions> = {}): LmStudioClient {
  return new LmStudioClient({ baseUrl, retries: 0, log: quiet, ...o });
}

Deno.test("only one user turn of text without tools or format goes to the native chat", () => {
  assertEquals(nativeChatBody(ask, 4096), {
    model: QWEN,
    input: "hello",
    system_prompt: "be brief",
    temperature: 0.2,
    max_output_tokens: 100,
    context_length: 4096,
    stream: true,
    store: false,
  });
  const user = { role: "user" as const, content: "x" };
  const tool = { type: "function" as const, function: { name: "f", parameters: {} } };
  const image = {
    role: "user" as const,
    content: [{ type: "image_url" as const, image_url: { url: "data:image/png;base64,AA" } }],
  };
  for (
    const unfit of [
      { model: QWEN, messages: [user], tools: [tool] },
      { model: QWEN, messages: [user], tool_choice: "none" as const },
      { model: QWEN, messages: [user], response_format: { type: "json_object" } },
      { model: QWEN, messages: [user], stop: ["\n"] },
      { model: QWEN, messages: [user], temperature: 1.5 },
      { model: QWEN, messages: [user, { role: "assistant" as const, content: "y" }, user] },
      { model: QWEN, messages: [{ role: "system" as const, content: "only system" }] },
      { model: QWEN, messages: [image] },
    ]
  ) {
    assertEquals(nativeChatBody(unfit), undefined, JSON.stringify(unfit));
  }
  // Text parts are text.
  assertEquals(
    nativeChatBody({
      model: QWEN,
      messages: [{
        role: "user",
        content: [{ type: "text", text: "a" }, {
          type: "text",
          text: "b",
        }],
      }],
    })?.input,
    "a\nb",
  );
});

Deno.test("a model loaded for the request: its load and prompt percentages come as events", async () => {
  await using lm = await fake({
    models: [{ id: QWEN, type: "llm", state: "not-loaded", maxContextLength: 8192 }],
  });
  const events: ChatStreamEvent[] = [];
  const result = await client(lm.baseUrl).chat(ask, {
    native: true,
    loadContextLength: 4096,
    onEvent: (e) => events.push(e),
  });
  assertEquals(result.content, "Echo: hello");
  assertEquals(result.model, QWEN);
  assertEquals(result.finishReason, "stop");
  assertEquals(result.usage, { prompt_tokens: 8, completion_tokens: 3, total_tokens: 11 });
  assertEquals(result.stats.estimated, false);
  const phases = events.filter((e) => e.type === "loading" || e.type === "prompt")
    .map((e) => `${e.type}${"progress" in e && e.progress !== undefined ? ` ${e.progress}` : ""}`);
  assertEquals(phases, [
    "loading",
    "loading 0.2",
    "loading 0.6",
    "loading 1",
    "loading 1",
    "prompt",
    "prompt 0.35",
    "prompt 1",
  ]);
  const text = events.filter((e) => e.type === "delta").map((e) => e.type === "delta" && e.content)
    .join("");
  assertEquals(text, "Echo: hello");
  assertEquals(events.at(-1)?.type, "done");
  assertEquals(lm.requestsTo(CHAT).length, 0);
  assertEquals(
    (lm.requestsTo(NATIVE)[0]?.body as { context_length?: number }).context_length,
    4096,
  );
});

Deno.test("without `native`, or for a request that does not fit, /v1/chat/completions is asked", async () => {
  await using lm = await fake();
  const c = client(lm.baseUrl);
  assertEquals((await c.chat(ask)).content, "Echo: hello");
  const tools = [{ type: "function" as const, function: { name: "f", parameters: {} } }];
  await c.chat({ ...ask, tools }, { native: true });
  assertEquals(lm.requestsTo(NATIVE).length, 0);
  assertEquals(lm.requestsTo(CHAT).length, 2);
});

Deno.test("reasoning, inline <think> and a reply cut at max_tokens read as on /v1/chat/completions", async () => {
  await using lm = await fake();
  lm.script(
    NATIVE,
    { body: nativeReply({ content: "42", reasoning: "six times seven", outputTokens: 100 }) },
    { body: nativeReply({ content: "<think>hmm</think>fine" }) },
  );
  const c = client(lm.baseUrl);
  const first = await c.chat(ask, { native: true });
  assertEquals([first.content, first.reasoning, first.finishReason], [
    "42",
    "six times seven",
    "length",
  ]);
  const reasoning: string[] = [];
  const second = await c.chat(ask, {
    native: true,
    onEvent: (e) => e.type === "delta" && e.reasoning && reasoning.push(e.reasoning),
  });
  assertEquals([second.content, second.reasoning], ["fine", "hmm"]);
  assertEquals(reasoning.join(""), "hmm");
});

Deno.test("a server that answers the native chat in one body gives the same result", async () => {
  await using lm = await fake({ stream: "ignore" });
  const result = await client(lm.baseUrl).chat(ask, { native: true });
  assertEquals(result.content, "Echo: hello");
  assertEquals(result.usage?.completion_tokens, 3);
  assertEquals(lm.requestsTo(CHAT).length, 0);
});

for (const flavor of ["lmstudio-v0", "openai-only"] as const) {
  Deno.test(`a server without the native chat is asked /v1/chat/completions, and not again natively (${flavor})`, async () => {
    await using lm = await fake({ flavor });
    const c = client(lm.baseUrl);
    const events: ChatStreamEvent[] = [];
    assertEquals(
      (await c.chat(ask, { native: true, onEvent: (e) => events.push(e) })).content,
      "Echo: hello",
    );
    assert(events.some((e) => e.type === "delta"), JSON.stringify(events));
    await c.chat(ask, { native: true });
    assertEquals(lm.requestsTo(NATIVE).length, 1);
    assertEquals(lm.requestsTo(CHAT).length, 2);
  });
}

Deno.test("a model list without LM Studio's REST API v1 says there is no native chat", async () => {
  await using lm = await fake({ flavor: "openai-only" });
  const c = client(lm.baseUrl);
  await c.listModels();
  await c.chat(ask, { native: true });
  assertEquals(lm.requestsTo(NATIVE).length, 0);
});

Deno.test("an unknown model on the native chat fails as on /v1/chat/completions, naming the models", async () => {
  await using lm = await fake();
  const c = client(lm.baseUrl);
  const error = await assertRejects(
    () => c.chat({ ...ask, model: "nope" }, { native: true }),
    LmStudioError,
  );
  assertEquals(error.kind, "not_found");
  assertMatch(error.message, /nope/);
  assertMatch(error.message, /qwen2\.5-7b-instruct/);
  // The server has the native chat: the next request asks it again.
  await c.chat(ask, { native: true });
  assertEquals(lm.requestsTo(NATIVE).length, 2);
});

Deno.test("an error event in the native stream ends the request with the server's message", async () => {
  await using lm = await fake();
  lm.script(NATIVE, {
    events: [
      sseEvent("chat.start", { type: "chat.start", model_instance_id: QWEN }),
      sseEvent("error", {
        type: "error",
        error: { type: "internal_error", message: "the model crashed while generating" },
      }),
      sseEvent("chat.end", { type: "chat.end", result: nativeReply({ content: "" }) }),
    ],
  });
  const error = await assertRejects(
    () => client(lm.baseUrl).chat(ask, { native: true }),
    LmStudioError,
  );
  assertMatch(error.message, /the model crashed while generating/);
  assertEquals(lm.requestsTo(CHAT).length, 0);
});

Deno.test("a native stream that stalls while the prompt is read says so", async () => {
  await using lm = await fake();
  // chat.start, prompt_processing.start, its 35%: then nothing, the connection left open.
  lm.script(NATIVE, { body: nativeReply({ content: "never" }), stream: { stallAfter: 3 } });
  const error = await assertRejects(
    () => client(lm.baseUrl, { stallMs: 200 }).chat(ask, { native: true }),
    LmStudioError,
  );
  assertEquals(error.kind, "stalled");
  assertMatch(error.message, /reading the prompt \(35%\)/);
});

Deno.test("a native stream that ends without chat.end is an error, not half an answer", async () => {
  await using lm = await fake();
  lm.script(NATIVE, {
    body: nativeReply({ content: "one two three four" }),
    stream: { cutAfter: 8 },
  });
  const error = await assertRejects(
    () => client(lm.baseUrl).chat(ask, { native: true }),
    LmStudioError,
  );
  assertMatch(error.message, /ended|before/);
  assertEquals(lm.requestsTo(CHAT).length, 0);
});
