import { assert, assertEquals, assertMatch, assertStringIncludes } from "../assert.ts";
import { chatReply, FakeLmStudio } from "./lmstudio.ts";

async function post(fake: FakeLmStudio, path: string, body: unknown, headers = {}) {
  const response = await fetch(`${fake.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

Deno.test("fake chat echoes the last user message and JIT-loads an unloaded model", async () => {
  await using fake = await FakeLmStudio.start({
    models: [{ id: "m", type: "llm", state: "not-loaded", maxContextLength: 8192 }],
  });
  const { status, body } = await post(fake, "/v1/chat/completions", {
    model: "m",
    messages: [
      { role: "user", content: "first" },
      { role: "assistant", content: "x" },
      { role: "user", content: [{ type: "text", text: "second" }] },
    ],
  });
  assertEquals(status, 200);
  const choice = (body.choices as Record<string, Record<string, unknown>>[])[0];
  assertEquals(choice?.message?.content, "Echo: second");
  assertEquals([fake.models[0]?.state, fake.models[0]?.loadedContextLength], ["loaded", 4096]);
});

Deno.test("fake chat refuses embedding models and images for non-vision models", async () => {
  await using fake = await FakeLmStudio.start({
    models: [
      { id: "llm", type: "llm", state: "loaded" },
      { id: "vlm", type: "vlm", state: "loaded" },
      { id: "emb", type: "embeddings" },
    ],
  });
  const image = {
    role: "user",
    content: [
      { type: "text", text: "what is it" },
      { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
    ],
  };
  const emb = await post(fake, "/v1/chat/completions", { model: "emb", messages: [image] });
  assertEquals(emb.status, 400);
  const llm = await post(fake, "/v1/chat/completions", { model: "llm", messages: [image] });
  assertEquals(llm.status, 400);
  assertStringIncludes(JSON.stringify(llm.body), "does not support images");
  const vlm = await post(fake, "/v1/chat/completions", { model: "vlm", messages: [image] });
  assertEquals(vlm.status, 200);
  assertStringIncludes(JSON.stringify(vlm.body), "Echo: what is it [1 image(s)]");
});

Deno.test("fake plays scripted replies in order, then falls back to the default", async () => {
  await using fake = await FakeLmStudio.start();
  fake.script(
    "/v1/chat/completions",
    { status: 503, body: { error: "busy" } },
    (req) => ({ body: chatReply({ content: `seen ${req.path}` }) }),
    () => new Response("raw response", { status: 202 }),
  );
  const ask = () =>
    fetch(`${fake.baseUrl}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "qwen2.5-7b-instruct",
        messages: [{ role: "user", content: "d" }],
      }),
    });
  const r1 = await ask();
  assertEquals([r1.status, await r1.json()], [503, { error: "busy" }]);
  const r2 = await ask();
  assertStringIncludes(await r2.text(), "seen /v1/chat/completions");
  const r3 = await ask();
  assertEquals([r3.status, await r3.text()], [202, "raw response"]);
  assertEquals(fake.pending("/v1/chat/completions"), 0);
  const r4 = await ask();
  assertStringIncludes(await r4.text(), "Echo: d");
  assertEquals(fake.requests.length, 4);
  assertEquals(fake.requests[0]?.body, {
    model: "qwen2.5-7b-instruct",
    messages: [{ role: "user", content: "d" }],
  });
});

Deno.test("fake chatReply builds the LM Studio wire quirks", () => {
  const plain = chatReply({ content: "hi", emptyToolCalls: true });
  assertStringIncludes(JSON.stringify(plain), '"tool_calls":[]');
  const calls = chatReply({ toolCalls: [{ id: null, name: "t", arguments: "{" }] });
  const text = JSON.stringify(calls);
  assertStringIncludes(text, '"finish_reason":"tool_calls"');
  assertStringIncludes(text, '"content":""');
  assert(!text.includes('"id":"call_'), "id: null leaves the id out");
  assertStringIncludes(text, '"total_tokens":15');
});

Deno.test("fake requires the bearer token when one is set", async () => {
  await using fake = await FakeLmStudio.start({ token: "t0k" });
  const without = await fetch(`${fake.baseUrl}/v1/models`);
  assertEquals(without.status, 401);
  await without.body?.cancel();
  const withToken = await fetch(`${fake.baseUrl}/v1/models`, {
    headers: { authorization: "Bearer t0k" },
  });
  assertEquals(withToken.status, 200);
  await withToken.body?.cancel();
});

Deno.test("fake flavors answer /api/* like their servers", async () => {
  await using ollama = await FakeLmStudio.start({ flavor: "openai-only" });
  const r1 = await fetch(`${ollama.baseUrl}/api/v0/models`);
  assertEquals([r1.status, await r1.text()], [404, "404 page not found"]);
  await using v0 = await FakeLmStudio.start({ flavor: "lmstudio-v0" });
  const r2 = await fetch(`${v0.baseUrl}/api/v1/models`);
  // LM Studio answers a route it does not have with 200 and an error object.
  assertEquals([r2.status, await r2.json()], [200, {
    error: "Unexpected endpoint or method. (GET /api/v1/models)",
  }]);
  const r3 = await fetch(`${v0.baseUrl}/api/v0/models/qwen2.5-7b-instruct`);
  assertEquals((await r3.json() as Record<string, unknown>).state, "loaded");
});

Deno.test("fake REST load and unload change model state", async () => {
  await using fake = await FakeLmStudio.start();
  const id = "text-embedding-nomic-embed-text-v1.5";
  const load = await post(fake, "/api/v1/models/load", { model: id, context_length: 1024 });
  assertEquals([load.status, load.body.instance_id, load.body.status], [200, id, "loaded"]);
  assertEquals(fake.models[1]?.loadedContextLength, 1024);
  const unload = await post(fake, "/api/v1/models/unload", { instance_id: id });
  assertEquals(unload.status, 200);
  assertEquals(fake.models[1]?.state, "not-loaded");
  assertEquals((await post(fake, "/api/v1/models/unload", { instance_id: id })).status, 404);
  assertEquals((await post(fake, "/api/v1/models/load", { model: "nope" })).status, 404);
});

Deno.test("fake cuts a delayed reply short when the client goes away or the fake closes", async () => {
  const fake = await FakeLmStudio.start();
  fake.script("/v1/models", { delayMs: 60_000, body: {} }, { delayMs: 60_000, body: {} });
  const controller = new AbortController();
  // Each fetch resolves once its headers are in, so the fake is then holding back the body.
  const aborted = await fetch(`${fake.baseUrl}/v1/models`, { signal: controller.signal });
  const waiting = await fetch(`${fake.baseUrl}/v1/models`);
  const [first, second] = fake.requestsTo("/v1/models");
  assert(first !== undefined && second !== undefined, "both requests reached the fake");
  controller.abort();
  await aborted.text().catch((e: unknown) => e);
  assertEquals(await fake.delayedEnd(first), "abandoned");
  await fake.close();
  assertEquals(await waiting.text(), "", "the reply was cut short");
  assertEquals(await fake.delayedEnd(second), "closed");
});

Deno.test("fake runs standalone and prints its URL on stderr", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--cached-only",
      "--frozen",
      "--no-check",
      new URL("./lmstudio.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--flavor",
      "openai-only",
    ],
    cwd: new URL("../..", import.meta.url).pathname,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/listening on http:\/\/\S+\n/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    assertMatch(text, /fake LM Studio \(openai-only\) listening on http:\/\/127\.0\.0\.1:\d+/);
    const url = text.match(/http:\/\/127\.0\.0\.1:\d+/)?.[0];
    const response = await fetch(`${url}/v1/models`);
    assertEquals(response.status, 200);
    await response.body?.cancel();
    reader.releaseLock();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel().catch(() => {
      // Already released or closed; nothing left to clean up.
    });
  }
});

/** The `data:` values of a stream, JSON parsed (`[DONE]` as the string). */
async function streamOf(fake: FakeLmStudio, path: string, body: Record<string, unknown>) {
  const response = await fetch(`${fake.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "qwen2.5-7b-instruct", stream: true, ...body }),
  });
  const text = await response.text();
  const blocks = text.split("\n\n").filter((b) => b !== "");
  return {
    type: response.headers.get("content-type"),
    names: blocks.map((b) => /^event: (.*)$/m.exec(b)?.[1]),
    data: blocks.map((b) => {
      const data = /^data: (.*)$/m.exec(b)?.[1] ?? "";
      return data === "[DONE]" ? data : JSON.parse(data) as Record<string, unknown>;
    }),
  };
}

type Chunk = { choices: { delta: Record<string, unknown>; finish_reason: unknown }[] };

Deno.test("fake streams chat replies as LM Studio does: role first, pieces, finish, usage, [DONE]", async () => {
  await using fake = await FakeLmStudio.start({ stream: "sse" });
  const messages = [{ role: "user", content: "hello there" }];
  const s = await streamOf(fake, "/v1/chat/completions", {
    messages,
    stream_options: { include_usage: true },
  });
  assertEquals(s.type, "text/event-stream");
  assertEquals(s.data.at(-1), "[DONE]");
  const chunks = s.data.slice(0, -1) as Record<string, unknown>[];
  const usage = chunks.at(-1)!;
  assertEquals([usage.choices, typeof usage.usage], [[], "object"]);
  const pieces = chunks.slice(0, -1) as unknown as Chunk[];
  assertEquals(pieces[0]!.choices[0]!.delta.role, "assistant");
  assertEquals(pieces.at(-1)!.choices[0], {
    index: 0,
    delta: {},
    logprobs: null,
    finish_reason: "stop",
  });
  assertEquals(pieces.map((c) => c.choices[0]!.delta.content ?? "").join(""), "Echo: hello there");
  assert(pieces.length > 3, "about a token a chunk");
  // Without include_usage (or for a server that ignores it) no usage chunk.
  const plain = await streamOf(fake, "/v1/chat/completions", { messages });
  assert(plain.data.every((d) => d === "[DONE]" || !("usage" in d)));
});

Deno.test("fake streams tool calls as fragments per index, or whole like Ollama (openai-only)", async () => {
  for (const flavor of ["lmstudio", "openai-only"] as const) {
    await using fake = await FakeLmStudio.start({ stream: "sse", flavor });
    fake.script("/v1/chat/completions", {
      body: chatReply({
        toolCalls: [{ id: "c1", name: "read_file", arguments: '{"path":"a.md"}' }],
      }),
    });
    const s = await streamOf(fake, "/v1/chat/completions", { messages: [] });
    const fragments = (s.data.slice(0, -1) as unknown as Chunk[])
      .flatMap((c) => (c.choices[0]?.delta.tool_calls as Record<string, unknown>[]) ?? []);
    assertEquals(fragments[0], {
      index: 0,
      id: "c1",
      type: "function",
      function: { name: "read_file", arguments: flavor === "openai-only" ? '{"path":"a.md"}' : "" },
    });
    if (flavor === "lmstudio") {
      assert(fragments.length > 2, "argument fragments follow");
      assert(fragments.slice(1).every((f) => f.id === undefined && f.index === 0));
    } else {
      assertEquals(fragments.length, 1);
    }
  }
});

Deno.test("fake streams responses as named events ending with the whole response", async () => {
  await using fake = await FakeLmStudio.start({ stream: "sse" });
  const s = await streamOf(fake, "/v1/responses", { input: "hi" });
  assertEquals(s.names[0], "response.created");
  assertEquals(s.names.at(-1), "response.completed");
  assert(s.names.includes("response.output_text.delta"));
  const completed = s.data.at(-1) as { response: { output_text?: string; status: string } };
  assertEquals(completed.response.status, "completed");
});

Deno.test("fake answers in one body when told to ignore stream, and never streams an error", async () => {
  await using ignoring = await FakeLmStudio.start({ stream: "ignore" });
  const plain = await post(ignoring, "/v1/chat/completions", {
    model: "qwen2.5-7b-instruct",
    messages: [{ role: "user", content: "x" }],
    stream: true,
  });
  assertEquals(plain.body.object, "chat.completion");
  await using fake = await FakeLmStudio.start({ stream: "sse" });
  const refused = await post(fake, "/v1/chat/completions", {
    model: "text-embedding-nomic-embed-text-v1.5",
    messages: [{ role: "user", content: "x" }],
    stream: true,
  });
  assertEquals(refused.status, 400);
});
