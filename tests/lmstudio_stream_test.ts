/**
 * Streamed replies (lib/lmstudio_stream.ts and the streaming of lib/lmstudio.ts) against the fake
 * LM Studio streaming as LM Studio does: server-sent events read in pieces cut anywhere, results
 * identical to the same replies in one JSON body, the events a caller gets, stalls, errors and
 * cuts inside a stream, cancellation closing the connection, and servers that do not stream.
 */
import { LmStudioClient, type LmStudioClientOptions } from "../lib/lmstudio.ts";
import { LmStudioError } from "../lib/lmstudio_errors.ts";
import { type SseEvent, SseParser, ThinkSplitter } from "../lib/lmstudio_stream.ts";
import type { ChatRequest, ChatStreamEvent } from "../lib/lmstudio_types.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import {
  chatReply,
  FakeLmStudio,
  type FakeLmStudioOptions,
  type ScriptedReplyValue,
  sseData,
  sseEvent,
  sseReply,
} from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

const QWEN = "qwen2.5-7b-instruct";
const CHAT = "/v1/chat/completions";
const ask: ChatRequest = { model: QWEN, messages: [{ role: "user", content: "x" }] };

/** A fake that streams whatever FAKE_LMSTUDIO_STREAM says (these tests are about streams). */
function streamingFake(o: FakeLmStudioOptions = {}): Promise<FakeLmStudio> {
  return FakeLmStudio.start({ stream: "sse", ...o });
}

function client(baseUrl: string, o: Partial<LmStudioClientOptions> = {}): LmStudioClient {
  return new LmStudioClient({ baseUrl, retries: 0, log: quiet, ...o });
}

/** The result without what differs between two requests of the same reply (timings). */
function comparable<T extends { stats: unknown }>(result: T): Omit<T, "stats"> {
  const { stats: _, ...rest } = result;
  return rest;
}

/** Parses `text` fed in pieces cut at `cuts`. */
function parseInPieces(text: string, cuts: number[]): SseEvent[] {
  const parser = new SseParser();
  const events: SseEvent[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    parser.feed(text.slice(at, cut), events);
    at = cut;
  }
  parser.end(events);
  return events;
}

Deno.test("server-sent events are read the same wherever the text is cut", () => {
  const text = 'data: {"a":1}\r\n\r\n: keep-alive\n\nevent: error\ndata: {"b":\ndata: 2}\n\n' +
    'data: x\r\rerror: {"code":500}\n\ndata: [DONE]';
  const expected: SseEvent[] = [
    { event: "message", data: '{"a":1}' },
    { event: "error", data: '{"b":\n2}' },
    { event: "message", data: "x" },
    // llama.cpp writes a failure in a stream as an "error:" line.
    { event: "error", data: '{"code":500}' },
    // The last event counts even without its blank line.
    { event: "message", data: "[DONE]" },
  ];
  assertEquals(parseInPieces(text, []), expected);
  for (let cut = 1; cut < text.length; cut++) {
    assertEquals(parseInPieces(text, [cut]), expected, `cut at ${cut}`);
  }
  const everyChar = Array.from({ length: text.length - 1 }, (_, i) => i + 1);
  assertEquals(parseInPieces(text, everyChar), expected);
});

Deno.test("inline <think> tags are split from the answer even when cut across pieces", () => {
  const text = "<think>plan it</think>The answer <THINK>again</think>!";
  for (let cut = 1; cut < text.length; cut++) {
    const split = new ThinkSplitter();
    const a = split.take(text.slice(0, cut));
    const b = split.take(text.slice(cut));
    assertEquals(
      { content: a.content + b.content, reasoning: a.reasoning + b.reasoning },
      { content: "The answer !", reasoning: "plan itagain" },
      `cut at ${cut}`,
    );
  }
});

/** Replies whose streamed and unstreamed results must be identical. */
const CHAT_REPLIES: [string, ScriptedReplyValue][] = [
  ["a plain answer", { body: chatReply({ content: "Paris is the capital of France." }) }],
  ["reasoning_content", {
    body: chatReply({ content: "42", reasoning_content: "Think about it. Carefully." }),
  }],
  ["reasoning (gpt-oss)", { body: chatReply({ content: "ok", reasoning: "short thought" }) }],
  ["inline <think>", { body: chatReply({ content: '<think>user wants json</think>{"ok":true}' }) }],
  ["an unterminated <think>", {
    body: chatReply({ content: "<think>still thinking", finishReason: "length" }),
  }],
  ["empty tool_calls on a plain answer", {
    body: chatReply({ content: "no tools needed", emptyToolCalls: true }),
  }],
  ["several tool calls: string, invalid JSON, object, no id", {
    body: chatReply({
      content: null,
      toolCalls: [
        { id: "365174485", name: "read_file", arguments: '{"path":"README.md"}' },
        { id: null, name: "broken", arguments: '{"path": "x"' },
        { id: "c3", name: "obj", arguments: { path: "y" } },
        { name: "empty", arguments: "" },
      ],
    }),
  }],
  ["tool calls interleaved by index", {
    body: chatReply({
      toolCalls: [
        { name: "first", arguments: '{"a":"one two three four"}' },
        { name: "second", arguments: '{"b":"five six seven eight"}' },
      ],
    }),
    stream: { interleave: true },
  }],
  ["usage on the finishing chunk", {
    body: chatReply({ content: "done", usage: { prompt_tokens: 3, completion_tokens: 1 } }),
    stream: { usageOnFinish: true },
  }],
  ["unusable spare fields", {
    body: { ...chatReply({ content: "answer", finishReason: "stop" }), usage: "12 tokens" },
  }],
];

for (const flavor of ["lmstudio", "openai-only"] as const) {
  Deno.test(`streamed chat replies give the results of the same replies in one body (${flavor})`, async (t) => {
    await using sse = await streamingFake({ flavor });
    await using plain = await FakeLmStudio.start({ flavor, stream: "ignore" });
    for (const [name, reply] of CHAT_REPLIES) {
      await t.step(name, async () => {
        sse.script(CHAT, reply);
        plain.script(CHAT, reply);
        const streamed = await client(sse.baseUrl).chat(ask);
        const whole = await client(plain.baseUrl).chat(ask);
        assertEquals(comparable(streamed), comparable(whole));
      });
    }
    // Each streamed one was a stream (so the comparison compared something).
    assert(sse.requestsTo(CHAT).every((r) => (r.body as { stream?: unknown }).stream === true));
  });
}

Deno.test("streamed completions and responses give the results of the same replies in one body", async () => {
  await using sse = await streamingFake();
  await using plain = await FakeLmStudio.start({ stream: "ignore" });
  const completion = { model: QWEN, prompt: "def add(a, b):\n    return a + b" };
  assertEquals(
    comparable(await client(sse.baseUrl).complete(completion)),
    comparable(await client(plain.baseUrl).complete(completion)),
  );
  const response = {
    id: "resp_7",
    object: "response",
    status: "completed",
    model: QWEN,
    previous_response_id: null,
    output: [
      { id: "rs_1", type: "reasoning", content: [{ type: "reasoning_text", text: "hmm, yes" }] },
      { id: "fc_1", type: "function_call", call_id: "call_1", name: "f", arguments: '{"x":1}' },
      {
        id: "msg_1",
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text: "<think>aside</think>Hello there" }],
      },
    ],
    usage: { input_tokens: 20, output_tokens: 5, total_tokens: 25 },
  };
  sse.script("/v1/responses", { body: response });
  plain.script("/v1/responses", { body: response });
  const streamed = await client(sse.baseUrl).respond({ model: QWEN, input: "hi" });
  assertEquals(streamed.text, "Hello there");
  assertEquals(
    comparable(streamed),
    comparable(await client(plain.baseUrl).respond({ model: QWEN, input: "hi" })),
  );
  // The default, stateful replies too.
  const first = await client(sse.baseUrl).respond({ model: QWEN, input: "one" });
  const second = await client(sse.baseUrl).respond({
    model: QWEN,
    input: "two",
    previous_response_id: first.id,
  });
  assertEquals(second.text, "Echo: two (turn 2)");
});

Deno.test("tool call fragments without an index, or that repeat the name, are put together", async () => {
  await using fake = await streamingFake();
  const base = { id: "c", object: "chat.completion.chunk", model: QWEN };
  const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta: d, finish_reason: finish }],
  });
  fake.script(
    CHAT,
    sseReply([
      delta({ tool_calls: [{ id: "a", function: { name: "alpha", arguments: '{"n":' } }] }),
      delta({ tool_calls: [{ function: { name: "alpha", arguments: "1}" } }] }),
      delta({ tool_calls: [{ id: "b", function: { name: "beta", arguments: "{}" } }] }),
      delta({ tool_calls: [{ id: "a", function: { name: "", arguments: "" } }] }),
      delta({}, "tool_calls"),
      "data: [DONE]\n\n",
    ]),
  );
  const result = await client(fake.baseUrl).chat(ask);
  assertEquals(result.toolCalls, [
    { id: "a", name: "alpha", arguments: '{"n":1}' },
    { id: "b", name: "beta", arguments: "{}" },
  ]);
  assertEquals(result.finishReason, "tool_calls");
});

Deno.test("a streamed reply reports each piece with the tokens so far, then its figures", async (t) => {
  await t.step("with the usage the server reports", async () => {
    await using fake = await streamingFake();
    fake.script(CHAT, {
      body: chatReply({
        content: "one two three four five",
        reasoning_content: "first think",
        toolCalls: [{ name: "f", arguments: '{"q":"x"}' }],
        usage: { prompt_tokens: 30, completion_tokens: 12 },
      }),
    });
    const events: ChatStreamEvent[] = [];
    const result = await client(fake.baseUrl).chat(ask, { onEvent: (e) => events.push(e) });
    const deltas = events.flatMap((e) => e.type === "delta" ? [e] : []);
    assertEquals(deltas.map((d) => d.tokens), deltas.map((_, i) => i + 1));
    assertEquals(deltas.map((d) => d.content ?? "").join(""), "one two three four five");
    assertEquals(deltas.map((d) => d.reasoning ?? "").join(""), "first think");
    assertEquals(deltas.at(-1)?.toolCalls, 1);
    const done = events.at(-1);
    assert(done?.type === "done", JSON.stringify(done));
    assertEquals(done.stats, result.stats);
    assertEquals(
      [result.stats.promptTokens, result.stats.completionTokens, result.stats.estimated],
      [30, 12, false],
    );
    assert(result.stats.ttftMs !== undefined && result.stats.ttftMs <= result.stats.totalMs);
  });
  await t.step("without usage (LM Studio before 0.3.18): the pieces counted", async () => {
    await using fake = await streamingFake({ streamUsage: false });
    fake.script(CHAT, { body: chatReply({ content: "a b c d e f" }) });
    const result = await client(fake.baseUrl).chat(ask);
    assertEquals(result.usage, undefined);
    assertEquals([result.stats.completionTokens, result.stats.estimated], [6, true]);
  });
});

Deno.test("while nothing has come, the caller hears that it is still waiting, with the time", async () => {
  await using fake = await streamingFake();
  const heard = Promise.withResolvers<void>();
  // The reply waits until the caller has heard at least one "waiting".
  fake.script(CHAT, async () => {
    await heard.promise;
    return { body: chatReply({ content: "at last" }) };
  });
  const events: ChatStreamEvent[] = [];
  const result = await client(fake.baseUrl).chat(ask, {
    onEvent: (e) => {
      events.push(e);
      if (e.type === "waiting") heard.resolve();
    },
  });
  assertEquals(result.content, "at last");
  const waiting = events.flatMap((e) => e.type === "waiting" ? [e] : []);
  assert(waiting.length >= 1 && waiting[0]!.elapsedMs >= 900, JSON.stringify(waiting));
  // No waiting once the reply has begun.
  const first = events.findIndex((e) => e.type === "delta");
  assert(events.slice(first).every((e) => e.type !== "waiting"));
});

Deno.test("a stream that goes silent ends early, saying what came last and what to do", async (t) => {
  await t.step("in the middle of the reply", async () => {
    await using fake = await streamingFake();
    fake.script(CHAT, {
      body: chatReply({ content: "It was a dark and stormy night" }),
      stream: { stallAfter: 3 },
    });
    const error = await assertRejects(
      () => client(fake.baseUrl, { stallMs: 1000 }).chat(ask),
      LmStudioError,
      "sent nothing for 1 s in the middle of the reply, after",
    );
    assertEquals(error.kind, "stalled");
    assertMatch(error.message, /after \d tokens? \(the last: ".*"\)/);
    assertStringIncludes(error.message, "LMSTUDIO_STALL_MS");
    assertStringIncludes(error.message, "lms log stream");
    assertEquals(await fake.delayedEnd(fake.requestsTo(CHAT)[0]!), "abandoned");
  });
  await t.step("after the headers, before the first token", async () => {
    await using fake = await streamingFake();
    fake.script(CHAT, sseReply(["data: [DONE]\n\n"], { delayMs: 60_000 }));
    const error = await assertRejects(
      () => client(fake.baseUrl, { stallMs: 200 }).chat(ask),
      LmStudioError,
      "after the reply's headers, before the first token",
    );
    assertEquals(error.kind, "stalled");
  });
  await t.step("before any reply", async () => {
    await using fake = await streamingFake();
    const release = Promise.withResolvers<void>();
    fake.script(CHAT, async () => {
      await release.promise;
      return { body: chatReply({ content: "late" }) };
    });
    try {
      const error = await assertRejects(
        () => client(fake.baseUrl, { stallMs: 200 }).chat(ask),
        LmStudioError,
        "before any reply (not even its headers)",
      );
      assertEquals(error.kind, "stalled");
    } finally {
      release.resolve();
    }
  });
  await t.step("0 turns the check off", async () => {
    await using fake = await streamingFake();
    fake.script(CHAT, { body: chatReply({ content: "slow" }), stream: { chunkMs: 100 } });
    const result = await client(fake.baseUrl, { stallMs: 0 }).chat(ask);
    assertEquals(result.content, "slow");
  });
});

Deno.test("cancelling mid-stream ends the request at once and closes the connection", async () => {
  await using fake = await streamingFake();
  // The fake sends a few pieces, then waits: only the client going away ends the reply.
  fake.script(CHAT, {
    body: chatReply({ content: "one two three four" }),
    stream: { stallAfter: 2 },
  });
  const controller = new AbortController();
  const error = await assertRejects(
    () =>
      client(fake.baseUrl).chat(ask, {
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type === "delta") controller.abort();
        },
      }),
    LmStudioError,
    "was cancelled",
  );
  assertEquals(error.kind, "aborted");
  assertEquals(await fake.delayedEnd(fake.requestsTo(CHAT)[0]!), "abandoned");
});

Deno.test("an error inside a stream ends the request with the server's message", async (t) => {
  const base = { id: "c", object: "chat.completion.chunk", model: QWEN };
  const piece = {
    ...base,
    choices: [{ index: 0, delta: { content: "Hel" }, finish_reason: null }],
  };
  const overflow = "Trying to keep the first 9000 tokens when context the overflows. However, " +
    "the model is loaded with context length of only 8192 tokens";
  const cases: [string, ScriptedReplyValue, string][] = [
    [
      "data: {error} (OpenAI, LM Studio 0.3.18+)",
      sseReply([piece, { error: { message: overflow } }]),
      overflow,
    ],
    ["event: error", sseReply([piece, sseEvent("error", { error: { message: "boom" } })]), "boom"],
    [
      "llama.cpp's error: line",
      sseReply([piece, 'error: {"code":500,"message":"slot failed"}\n\n']),
      "slot failed",
    ],
  ];
  await using fake = await streamingFake();
  for (const [name, reply, said] of cases) {
    await t.step(name, async () => {
      fake.script(CHAT, reply);
      const error = await assertRejects(() => client(fake.baseUrl).chat(ask), LmStudioError, said);
      assertStringIncludes(error.message, "reported an error in its streamed reply");
      assertStringIncludes(error.message, "after 1 token");
      assertEquals(error.serverMessage, said);
    });
  }
  await t.step("the advice for a context overflow holds mid-stream too", async () => {
    fake.script(CHAT, cases[0]![1]);
    const error = await assertRejects(() => client(fake.baseUrl).chat(ask), LmStudioError);
    assertStringIncludes(error.message, "does not fit the model's context window");
  });
  await t.step("responses: response.failed and error events", async () => {
    for (
      const events of [
        [sseEvent("response.failed", {
          type: "response.failed",
          response: { id: "r", status: "failed", error: { code: "x", message: "model crashed" } },
        })],
        [sseEvent("error", { type: "error", code: "bad", message: "model crashed" })],
      ]
    ) {
      fake.script("/v1/responses", { events });
      await assertRejects(
        () => client(fake.baseUrl).respond({ model: QWEN, input: "i" }),
        LmStudioError,
        "model crashed",
      );
    }
  });
  await t.step("an event that is not JSON is a bad reply", async () => {
    fake.script(CHAT, sseReply([piece, "data: {not json\n\n"]));
    const error = await assertRejects(() => client(fake.baseUrl).chat(ask), LmStudioError);
    assertEquals(error.kind, "bad_response");
    assertStringIncludes(error.message, "a streamed event is not JSON");
  });
});

Deno.test("a stream cut off before its end is an error, not a short answer", async () => {
  await using fake = await streamingFake();
  fake.script(CHAT, {
    body: chatReply({ content: "a long answer here" }),
    stream: { cutAfter: 2 },
  });
  const error = await assertRejects(
    () => client(fake.baseUrl).chat(ask),
    LmStudioError,
    "ended in the middle of the reply, after 2 tokens",
  );
  assertStringIncludes(error.message, "without a finish reason or end marker");
});

Deno.test("a server that ignores stream still works, and gets no stall limit once known", async () => {
  await using fake = await FakeLmStudio.start({ stream: "ignore" });
  const c = client(fake.baseUrl, { stallMs: 200 });
  const events: ChatStreamEvent[] = [];
  const first = await c.chat(ask, { onEvent: (e) => events.push(e) });
  assertEquals(first.content, "Echo: x");
  assertEquals(events.at(-1)?.type, "done");
  assertEquals(first.stats.estimated, false);
  // Known to answer in one piece: a slow whole answer is not taken for a stall.
  fake.script(CHAT, { body: chatReply({ content: "slow but whole" }), delayMs: 600 });
  assertEquals((await c.chat(ask)).content, "slow but whole");
});

Deno.test("a stream sent with the wrong content type is still read as one", async () => {
  await using fake = await streamingFake();
  const chunk = {
    id: "c",
    choices: [{ index: 0, delta: { content: "labelled json" }, finish_reason: "stop" }],
  };
  fake.script(CHAT, {
    raw: `${sseData(chunk)}data: [DONE]\n\n`,
    headers: { "content-type": "application/json" },
  });
  assertEquals((await client(fake.baseUrl).chat(ask)).content, "labelled json");
});

Deno.test("a server still loading the model (503 Loading model) is retried, and says it is loading", async () => {
  await using fake = await streamingFake({ flavor: "openai-only" });
  fake.script(CHAT, {
    status: 503,
    body: { error: { code: 503, message: "Loading model", type: "unavailable_error" } },
  });
  const events: ChatStreamEvent[] = [];
  const result = await client(fake.baseUrl, { retries: 1, sleep: () => Promise.resolve() }).chat(
    ask,
    { onEvent: (e) => events.push(e) },
  );
  assertEquals(result.content, "Echo: x");
  assertEquals(events[0], { type: "loading", model: QWEN });
});
