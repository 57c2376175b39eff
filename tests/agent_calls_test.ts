/**
 * The tool calls of a round and the loop's progress (lib/agent_calls.ts), through runAgent against
 * the fixture server (see tests/agent_harness.ts): calls run in parallel, every mistake goes back
 * to the model, results are complete and cut to fit, running calls are cancelled on the server,
 * and progress increases strictly, relays the tools' own and beats while they are silent.
 */
import { agentResultJson } from "../lib/agent.ts";
import { ProgressReporter } from "../lib/agent_progress.ts";
import { openTraceFile } from "../lib/agent_trace.ts";
import type { AgentProgress } from "../lib/agent_types.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import {
  answer,
  calls,
  CHAT,
  figures,
  messagesOf,
  replyAfterHeartbeat,
  settlesWithin,
  toolMessages,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import { chatReply } from "./fakes/lmstudio.ts";
import { sharedArgumentValidator } from "../lib/tool_schema.ts";
import { join } from "../lib/path.ts";
import { quiet } from "./rigs.ts";

Deno.test("calls of one round run in parallel and their results return in call order", async () => {
  await withHarness(async (h) => {
    h.fake.script(
      CHAT,
      calls(
        { name: "sleep", arguments: { ms: 600, label: "a" }, id: null },
        { name: "sleep", arguments: { ms: 200, label: "b" }, id: null },
        { name: "sleep", arguments: { ms: 400, label: "c" }, id: null },
      ),
      answer("done"),
    );
    // Start the server first so the figure is the calls, not the spawn.
    await h.pool.listTools("fixture");
    const started = performance.now();
    const result = await h.run({});
    const wall = performance.now() - started;
    assertEquals(result.stopped_because, "answer");
    const req = h.fake.requestsTo(CHAT)[1]!;
    const tools = toolMessages(req);
    assertEquals(tools.map((m) => m.content), [
      "slept 600 ms (a)",
      "slept 200 ms (b)",
      "slept 400 ms (c)",
    ]);
    // Ids were missing on the wire: synthesised, unique, and the same in both messages.
    const assistant = messagesOf(req).find((m) => m.role === "assistant")!;
    const ids = assistant.tool_calls!.map((c) => c.id);
    assertEquals(new Set(ids).size, 3);
    assertEquals(tools.map((m) => m.tool_call_id), ids);
    // The server ran the three at once: each started before any of them ended.
    const events = (await h.fixtureEvents()).map((e) => `${e.event} ${e.label}`);
    assertEquals(events.slice(0, 3).sort(), ["start a", "start b", "start c"]);
    assertEquals(events.slice(3).sort(), ["end a", "end b", "end c"]);
    figures.info(`parallel round: 600+200+400 ms calls took ${Math.round(wall)} ms in total`);
  });
});

Deno.test("every class of model mistake goes back to the model as a tool result", async () => {
  await withHarness(async (h) => {
    let seen: ChatMessage[] = [];
    h.fake.script(
      CHAT,
      calls(
        { name: "typed", arguments: "please use notes.txt" },
        { name: "typed", arguments: '{"path": "a.txt", "count": "many"}' },
        { name: "delete_everything", arguments: "{}" },
        { name: "fail", arguments: "{}" },
        { name: "typed", arguments: "{'path': 'b.txt', 'count': 2,}" },
        { name: "sleep", arguments: { ms: 3000 } },
      ),
      (req) => {
        seen = toolMessages(req);
        return answer("recovered");
      },
    );
    const result = await h.run({ toolTimeoutMs: 300 });
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.answer, "recovered");
    const texts = seen.map((m) => String(m.content));
    assertStringIncludes(texts[0]!, "arguments for typed could not be read");
    assertStringIncludes(texts[0]!, "path (string, required), count (integer, required)");
    assertStringIncludes(texts[1]!, "do not match its input schema");
    assertStringIncludes(texts[1]!, "arguments.count must be integer");
    assertStringIncludes(texts[2]!, 'there is no tool named "delete_everything"');
    assertStringIncludes(texts[2]!, "Available tools: sleep, progress, cancellations");
    assertStringIncludes(texts[3]!, "The tool reported an error:\ndisk on fire");
    assertEquals(texts[4], 'typed got {"path":"b.txt","count":2}');
    assertStringIncludes(texts[5]!, "calling sleep failed");
    assertMatch(texts[5]!, /time/i);
    assertEquals(result.tool_calls.map((c) => c.ok), [false, false, false, false, true, false]);
  });
});

Deno.test("arguments nested 100,000 levels deep go back to the model as a tool result", async () => {
  await withHarness(async (h) => {
    const levels = 100_000;
    const deepText = `{"path":${'{"a":'.repeat(levels)}1${"}".repeat(levels)},"count":1}`;
    // The same arguments sent as an object, as some servers do.
    const asObject = JSON.stringify(
      chatReply({ toolCalls: [{ name: "typed", arguments: { deep: "HERE" } }] }),
    ).replace('{"deep":"HERE"}', deepText);
    let seen: ChatMessage[] = [];
    let echoed: ChatMessage | undefined;
    h.fake.script(
      CHAT,
      calls({ name: "typed", arguments: deepText }),
      { raw: asObject, headers: { "content-type": "application/json" } },
      (req) => {
        seen = toolMessages(req);
        echoed = messagesOf(req).findLast((m) => m.role === "assistant");
        return answer("flattened");
      },
    );
    const trace = join(h.dir, "deep.jsonl");
    const sink = await openTraceFile(trace);
    const result = await h.run({ trace: sink });
    await sink.close();
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.answer, "flattened");
    assertEquals(result.tool_calls.map((c) => [c.ok, c.error]), [
      [false, "arguments nested too deeply (> 64 levels)"],
      [false, "arguments nested too deeply (> 64 levels)"],
    ]);
    assertEquals(seen.length, 2);
    for (const message of seen) {
      assertStringIncludes(String(message.content), "nested too deeply (> 64 levels)");
      assertStringIncludes(String(message.content), "with far less nesting");
    }
    // The model sees a bounded echo of what it sent, not 500,000 characters.
    assert(echoed!.tool_calls![0]!.function.arguments.length <= 2000);
    // The result serialises, as the surfaces do.
    assert(JSON.stringify(agentResultJson(result)).length < 20_000);
    const events = (await Deno.readTextFile(trace)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(events.filter((e) => e.type === "tool_result").map((e) => e.ok), [false, false]);
  });
});

Deno.test("tasks share the compiled argument checks", async () => {
  await withHarness(async (h) => {
    const before = sharedArgumentValidator.compilations;
    for (const count of [1, 2]) {
      h.fake.script(CHAT, calls({ name: "typed", arguments: { path: "a", count } }), answer("ok"));
      const result = await h.run({});
      assertEquals(result.tool_calls.map((c) => c.ok), [true]);
    }
    // At most one compilation (none when an earlier test compiled the same schema).
    assert(sharedArgumentValidator.compilations - before <= 1);
  });
});

Deno.test("tool results carry every content part and structured content", async () => {
  await withHarness(async (h) => {
    let seen: ChatMessage[] = [];
    h.fake.script(
      CHAT,
      calls({ name: "mixed", arguments: "{}" }, { name: "structured", arguments: "{}" }),
      (req) => {
        seen = toolMessages(req);
        return answer("seen");
      },
    );
    await h.run({});
    assertMatch(
      String(seen[0]!.content),
      /^alpha\n\[image: image\/png, \d+ B\]\n\[resource memo:\/\/note, text\/plain\]\nresource body\nomega$/,
    );
    assertEquals(seen[1]!.content, '{"answer":42}');
  });
});

Deno.test("oversized tool results are truncated with a marker that says how much was cut", async () => {
  await withHarness(async (h) => {
    let seen = "";
    h.fake.script(CHAT, calls({ name: "huge", arguments: { chars: 200_000 } }), (req) => {
      seen = String(toolMessages(req)[0]!.content);
      return answer("ok");
    });
    const result = await h.run({});
    // Context 8192 tokens (the fake's loaded context) -> far less than 200 000 characters fit.
    assert(seen.length < 30_000, `tool message has ${seen.length} characters`);
    assertMatch(seen, /truncated: \d+ of 200000 characters cut/);
    assert(seen.endsWith("END"), "the tail is kept");
    assert((result.tool_calls[0]!.truncated_chars ?? 0) > 170_000);
    assertEquals(result.tool_calls[0]!.result_chars, 200_000);
    assertEquals(result.context_tokens, 8192);
  });
});

Deno.test("cancellation aborts in-flight tool calls and the server sees it", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 60_000 } }));
    const controller = new AbortController();
    const running = h.run({ signal: controller.signal });
    const said = async (event: string) => (await h.fixtureEvents()).some((e) => e.event === event);
    await waitFor("the sleep to start on the server", () => said("start"));
    const t0 = performance.now();
    controller.abort();
    // The call sleeps for a minute: only a cancellation ends the task before that.
    const result = await settlesWithin(running, "the cancelled task to end");
    const latency = performance.now() - t0;
    assertEquals(result.stopped_because, "cancelled");
    assertEquals(result.tool_calls[0]!.error, "cancelled");
    figures.info(`cancel during a tool call: ${latency.toFixed(1)} ms`);
    await waitFor("the server to see the cancellation", () => said("cancelled"));
    const r = await h.pool.callTool("fixture", "cancellations", {});
    assertEquals((r.content as { text: string }[])[0]!.text, "1");
  });
});

Deno.test("progress increases strictly, covers rounds and tool calls, and beats during long generations", async () => {
  await withHarness(async (h) => {
    // The model generates until a heartbeat has gone out.
    const generating = replyAfterHeartbeat(calls({ name: "sleep", arguments: { ms: 1 } }));
    h.fake.script(CHAT, generating.reply, answer("done"));
    const events: AgentProgress[] = [];
    const ensured: string[] = [];
    const result = await h.run({
      maxRounds: 5,
      heartbeatMs: 50,
      onProgress: (p) => {
        events.push(p);
        generating.seen(p.message);
      },
      deps: {
        client: h.client,
        pool: h.pool,
        config: h.config,
        models: {
          ensureLoaded: (model: string) => {
            ensured.push(model);
            return Promise.resolve({ note: "loaded for the test" });
          },
        },
      },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(ensured, ["qwen2.5-7b-instruct"]);
    assert(result.notes.includes("loaded for the test"));
    for (let i = 1; i < events.length; i++) {
      assert(events[i]!.progress > events[i - 1]!.progress, `event ${i} does not increase`);
    }
    assert(events.every((e) => e.total === 5));
    assert(events.some((e) => e.message.includes("still generating")), "heartbeat");
    assert(events.some((e) => e.tool === "sleep"));
    assert(events.some((e) => e.message.startsWith("round 2/5")));
    assertEquals(events.at(-1)!.message, "done: answer");
  });
});

Deno.test("a tool's own progress is relayed as strictly increasing steps of its round", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, calls({ name: "progress", arguments: { steps: 3, ms: 30 } }), answer("ok"));
    const events: AgentProgress[] = [];
    const result = await h.run({
      maxRounds: 5,
      heartbeatMs: 60_000,
      onProgress: (p) => events.push(p),
    });
    assertEquals(result.answer, "ok");
    const relayed = events.filter((e) => e.message.startsWith("round 1/5: progress: "));
    assertEquals(relayed.map((e) => e.message), [
      "round 1/5: progress: 1/3 step 1",
      "round 1/5: progress: 2/3 step 2",
      "round 1/5: progress: 3/3 step 3",
    ]);
    assert(relayed.every((e) => e.tool === "progress" && e.round === 1));
    for (let i = 1; i < events.length; i++) {
      assert(events[i]!.progress > events[i - 1]!.progress, `event ${i} does not increase`);
    }
    // Round 1's events stay below 1, where round 2 starts.
    assert(relayed.every((e) => e.progress < 1), JSON.stringify(relayed.map((e) => e.progress)));
  });
});

Deno.test("a heartbeat names the tool calls still running when they are silent", async () => {
  await withHarness(async (h) => {
    h.fake.script(
      CHAT,
      calls({ name: "sleep", arguments: { ms: 400 } }, { name: "sleep", arguments: { ms: 1 } }),
      answer("ok"),
    );
    const events: AgentProgress[] = [];
    await h.run({ maxRounds: 5, heartbeatMs: 10, onProgress: (p) => events.push(p) });
    const beats = events.filter((e) => e.message.includes("still running"));
    assert(beats.length >= 3, `${beats.length} heartbeats in 400 ms at 10 ms`);
    assertMatch(beats.at(-1)!.message, /^round 1\/5: still running sleep \(\d+ s\)$/);
    assert(beats.every((e) => e.progress < 1));
    for (let i = 1; i < events.length; i++) {
      assert(events[i]!.progress > events[i - 1]!.progress, `event ${i} does not increase`);
    }
    // The heartbeat ends with the round: none while the model answers the last request.
    const last = events.findIndex((e) => e.message.startsWith("round 2/5"));
    assert(last > 0 && !events.slice(last).some((e) => e.message.includes("still running")));
  });
});

Deno.test("small steps of a round never reach the next round, however many there are", () => {
  const values: number[] = [];
  const progress = new ProgressReporter({
    sink: (e) => values.push(e.progress),
    total: 3,
    info: () => ({
      elapsedMs: 0,
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    }),
    log: quiet,
  });
  progress.report(0.5, 1, "calling x");
  for (let i = 0; i < 5000; i++) progress.bump(1, "x: step");
  for (let i = 1; i < values.length; i++) assert(values[i]! > values[i - 1]!, `value ${i}`);
  assert(values.at(-1)! < 1.01, `drifted to ${values.at(-1)}`);
  progress.report(1, 2, "round 2");
  assert(values.at(-1)! > values.at(-2)!);
});
