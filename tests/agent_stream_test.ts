/**
 * Progress from a streaming model request and the figures of each round (lib/agent_stream.ts),
 * through runAgent with a client that emits the stream events of a scripted request against a
 * clock the test moves, and the rate limit of ProgressReporter.update on its own.
 */
import { agentResultJson } from "../lib/agent.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { ProgressReporter, UPDATE_GAP_MS } from "../lib/agent_progress.ts";
import type { AgentLmClient, AgentProgress } from "../lib/agent_types.ts";
import type { ChatResult, ChatStreamEvent, GenerationStats } from "../lib/lmstudio_types.ts";
import { answer, CHAT, settlesWithin, withHarness } from "./agent_harness.ts";
import { defaultFakeModels } from "./fakes/lmstudio.ts";
import { assert, assertEquals } from "./assert.ts";
import { quiet } from "./rigs.ts";

/** A clock the test moves. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 0;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** One scripted request: its stream, as steps of the clock and events, and its reply. */
interface ScriptedStream {
  steps: { afterMs: number; event: ChatStreamEvent }[];
  reply: ChatResult & { stats?: GenerationStats };
}

/**
 * A client that plays `streams` (one per chat request) to `onEvent`, moving `clock`, and answers
 * each with its reply; the model list and name resolution are the real client's.
 */
function streamingClient(
  real: AgentLmClient,
  clock: { advance(ms: number): void },
  streams: ScriptedStream[],
): AgentLmClient {
  return {
    baseUrl: real.baseUrl,
    resolveModel: (...args) => real.resolveModel(...args),
    listModels: (...args) => real.listModels(...args),
    chat: (_request, options) => {
      const stream = streams.shift();
      if (stream === undefined) return Promise.reject(new Error("no scripted stream left"));
      for (const step of stream.steps) {
        clock.advance(step.afterMs);
        options?.onEvent?.(step.event);
      }
      return Promise.resolve(stream.reply);
    },
  };
}

/** 100 tokens over one second, 10 ms apart, after `startMs`. */
function deltas(): { afterMs: number; event: ChatStreamEvent }[] {
  return Array.from({ length: 100 }, (_, i) => ({
    afterMs: 10,
    event: { type: "delta", content: "x", tokens: i + 1 },
  }));
}

Deno.test("a streamed request reports loading, prompt, waiting and tokens at most 4 times a second, and its figures", async () => {
  await withHarness(async (h) => {
    const clock = manualClock();
    const stats: GenerationStats = {
      ttftMs: 1000,
      tokensPerSecond: 100,
      promptTokens: 50,
      completionTokens: 100,
      estimated: false,
      totalMs: 2000,
    };
    const client = streamingClient(h.client, clock, [
      {
        steps: [
          { afterMs: 250, event: { type: "loading", model: "qwen3-8b", progress: 0.6 } },
          { afterMs: 250, event: { type: "prompt", progress: 0.35 } },
          { afterMs: 250, event: { type: "waiting", elapsedMs: 12_000 } },
          ...deltas(),
          { afterMs: 0, event: { type: "done", stats } },
        ],
        reply: { content: "streamed answer", toolCalls: [], stats },
      },
    ]);
    const events: { at: number; message: string }[] = [];
    const result = await h.run({
      maxRounds: 4,
      deps: { client, now: clock.now },
      onProgress: (e: AgentProgress) => events.push({ at: clock.now(), message: e.message }),
    });
    assertEquals(result.answer, "streamed answer");
    const messages = events.map((e) => e.message);
    assertEquals(messages.slice(0, 4), [
      "round 1/4: asking qwen2.5-7b-instruct",
      "round 1/4: loading qwen3-8b 60%",
      "round 1/4: reading the prompt 35%",
      "round 1/4: waiting for the first token (12 s)",
    ]);
    const generating = events.filter((e) => /^round 1\/4: model: \d+ tokens, /.test(e.message));
    // One second of tokens: at most 4 a second, however many deltas came.
    assert(generating.length >= 2 && generating.length <= 5, messages.join("\n"));
    for (let i = 1; i < generating.length; i++) {
      assert(generating[i]!.at - generating[i - 1]!.at >= UPDATE_GAP_MS, messages.join("\n"));
    }
    // 24 tokens after the first, 10 ms apart: the 100 tok/s they came at.
    assertEquals(generating[0]!.message, "round 1/4: model: 25 tokens, 100 tok/s");
    assertEquals(messages.at(-2), "round 1/4: model: 100 tokens in 2.0 s, 100 tok/s");
    assertEquals(messages.at(-1), "done: answer");
    // The fixture's definitions, as estimated (tests/tool_demand_test.ts checks the figure).
    const toolTokens = result.rounds_detail[0]?.tool_tokens ?? 0;
    assert(toolTokens > 100, String(toolTokens));
    assertEquals(result.rounds_detail, [{
      round: 1,
      model_ms: 2000,
      ttft_ms: 1000,
      tokens_per_second: 100,
      prompt_tokens: 50,
      completion_tokens: 100,
      estimated: false,
      tool_calls: 0,
      tool_tokens: toolTokens,
    }]);
    // As `run --json` and the autonomous tools report it.
    assertEquals(agentResultJson(result).rounds_detail, result.rounds_detail);
  });
});

Deno.test("without stats or usage a round's tokens are estimated and say so; a server's usage is taken as it is", async (t) => {
  await withHarness(async (h) => {
    await t.step("estimated", async () => {
      const clock = manualClock();
      const client = streamingClient(h.client, clock, [{
        steps: [
          { afterMs: 400, event: { type: "delta", reasoning: "hmm", tokens: 3 } },
          { afterMs: 600, event: { type: "delta", content: "x".repeat(40), tokens: 13 } },
        ],
        reply: { content: "x".repeat(40), reasoning: "hmm", toolCalls: [] },
      }]);
      const messages: string[] = [];
      const result = await h.run({
        maxRounds: 2,
        deps: { client, now: clock.now },
        onProgress: (e) => messages.push(e.message),
      });
      assertEquals(messages.includes("round 1/2: model: thinking, 3 tokens"), true);
      const [detail] = result.rounds_detail;
      assertEquals(detail?.estimated, true);
      assertEquals(detail?.ttft_ms, 400);
      assertEquals(detail?.completion_tokens, 11); // 43 characters / 4
      assertEquals(detail?.tokens_per_second, 18.3); // 11 tokens in the 600 ms after the first
      assert((detail?.prompt_tokens ?? 0) > 100, "the system prompt, the task and the tools");
      assertEquals(messages.at(-2), "round 1/2: model: about 11 tokens in 1.0 s, 18 tok/s");
    });

    await t.step("from the server's usage, without streaming", async () => {
      h.fake.script(CHAT, answer("plain"));
      const client = new LmStudioClient({ baseUrl: h.fake.baseUrl, stream: false, log: quiet });
      const result = await h.run({ deps: { client } });
      const [detail] = result.rounds_detail;
      assertEquals(detail?.prompt_tokens, 10);
      assertEquals(detail?.completion_tokens, 5);
      assertEquals(detail?.estimated, false);
      assertEquals(detail?.ttft_ms, undefined);
    });
  });
});

Deno.test("a held-back update goes out when the gap has passed, and an event of its own drops it", async () => {
  const clock = manualClock();
  const got: string[] = [];
  const arrived = Promise.withResolvers<void>();
  const progress = new ProgressReporter({
    sink: (e) => {
      got.push(e.message);
      if (e.message === "c") arrived.resolve();
    },
    total: 3,
    info: () => ({
      elapsedMs: 0,
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    }),
    log: quiet,
    now: clock.now,
  });
  progress.update(1, "a");
  clock.advance(100);
  progress.update(1, "b");
  clock.advance(100);
  progress.update(1, "c");
  assertEquals(got, ["a"]);
  await settlesWithin(arrived.promise, "the held update");
  assertEquals(got, ["a", "c"]);
  progress.update(1, "d");
  progress.report(1, 2, "round 2");
  progress.dispose();
  assertEquals(got, ["a", "c", "round 2"]);
});

Deno.test("a task whose model is not loaded says it is loading it, with the time so far, until the load ends", async () => {
  const models = defaultFakeModels().map((m) =>
    m.type === "llm" ? { ...m, state: "not-loaded" as const } : m
  );
  await withHarness(async (h) => {
    const messages: string[] = [];
    const beat = Promise.withResolvers<void>();
    let loads = 0;
    const result = await h.run({
      heartbeatMs: 1,
      deps: {
        models: {
          ensureLoaded: async (model) => {
            loads++;
            // The load ends once a heartbeat has said it is still going (at once when nothing
            // said it was loading, so that the assertions below fail rather than hang).
            if (messages.includes("loading qwen2.5-7b-instruct")) await beat.promise;
            return { model, via: "lms" };
          },
        },
      },
      onProgress: (e) => {
        messages.push(e.message);
        if (/^loading qwen2\.5-7b-instruct \(\d+ s\)$/.test(e.message)) beat.resolve();
      },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(loads, 1);
    assert(messages.includes("loading qwen2.5-7b-instruct"), messages.join(" | "));
    assert(messages.some((m) => /^loading qwen2\.5-7b-instruct \(\d+ s\)$/.test(m)));
    // Nothing about loading once the load has ended.
    const asking = messages.findIndex((m) => m.includes("asking"));
    assert(
      asking > 0 && messages.slice(asking).every((m) => !m.startsWith("loading")),
      messages.join(" | "),
    );
  }, { models });
});

Deno.test("a streamed round's events are asked for only when progress goes somewhere; its figures come either way", async (t) => {
  await withHarness(async (h) => {
    const real = new LmStudioClient({ baseUrl: h.fake.baseUrl, log: quiet });
    const asked: boolean[] = [];
    const client: AgentLmClient = {
      baseUrl: real.baseUrl,
      resolveModel: (...args) => real.resolveModel(...args),
      listModels: (...args) => real.listModels(...args),
      chat: (req, o) => {
        asked.push(o?.onEvent !== undefined);
        return real.chat(req, o);
      },
    };
    for (const progress of [false, true]) {
      await t.step(progress ? "with progress" : "without progress", async () => {
        h.fake.script(CHAT, answer("several words of an answer"));
        const messages: string[] = [];
        const result = await h.run({
          deps: { client },
          ...(progress ? { onProgress: (e: AgentProgress) => messages.push(e.message) } : {}),
        });
        assertEquals(asked.at(-1), progress);
        const [detail] = result.rounds_detail;
        // The server's usage, and the stream's own timing, as the reply's stats carry them.
        assertEquals(detail?.completion_tokens, 5);
        assertEquals(detail?.estimated, false);
        assert(typeof detail?.ttft_ms === "number", JSON.stringify(detail));
        assertEquals(messages.some((m) => m.includes("model:")), progress);
      });
    }
  });
});
