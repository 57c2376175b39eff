/**
 * Attack: broken model replies (the fake LM Studio, played per step) during autonomous tasks
 * through one `serve`. Each ends within its bounds with a clear result (`stopped_because` and a
 * summary of the work), the server survives, and `health_check` answers on the same server.
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { chatReply } from "./fakes/lmstudio.ts";
import {
  answer,
  cpuSeconds,
  cutReply,
  drippingReply,
  type ModelReply,
  paddedReply,
  ProgrammableModel,
  toolCalls,
} from "./fixtures/attack_model.ts";
import {
  attackEntry,
  figure,
  resultText,
  rssKb,
  type Serve,
  startServe,
  tempProject,
} from "./fixtures/attack_support.ts";

/** One pathological model and the ways the task may end with it. */
interface Case {
  name: string;
  replies: ModelReply[] | (() => ModelReply[]);
  /** After the replies (default: an answer, so a loop that survives a bad reply finishes). */
  last?: ModelReply;
  stops: string[];
  args?: Record<string, unknown>;
}

const reply = (body: unknown, status = 200): ModelReply => ({ status, body });
const withMessage = (message: unknown) =>
  reply({ id: "x", choices: [{ index: 0, finish_reason: "stop", message }] });

const CASES: Case[] = [
  {
    name: "no choices field",
    replies: [reply({ id: "x", object: "chat.completion" })],
    stops: ["error"],
  },
  { name: "empty choices", replies: [reply({ id: "x", choices: [] })], stops: ["error"] },
  {
    name: "choice without message",
    replies: [reply({ choices: [{ index: 0 }] })],
    stops: ["error"],
  },
  {
    name: "content is a number",
    replies: [withMessage({ role: "assistant", content: 42 })],
    stops: ["error"],
  },
  {
    name: "tool_calls is a string",
    replies: [withMessage({ role: "assistant", content: "", tool_calls: "echo" })],
    stops: ["error"],
  },
  {
    name: "tool call with broken JSON arguments, then an answer",
    replies: [toolCalls({ name: "echo", arguments: '{"text": "unterminated' })],
    stops: ["answer"],
  },
  {
    name: "tool call with 5 MB of arguments, then an answer",
    replies: () => [toolCalls({ name: "echo", arguments: { text: "h".repeat(5 << 20) } })],
    // The arguments stay in the assistant message, which cannot be shed: an honest overflow.
    stops: ["answer", "context_overflow"],
  },
  {
    name: "unknown tool, then an answer",
    replies: [toolCalls({ name: "no_such_tool", arguments: {} })],
    stops: ["answer"],
  },
  {
    name: "endless distinct tool calls",
    replies: [],
    last: undefined,
    stops: ["max_rounds"],
    args: { max_rounds: 4 },
  },
  {
    name: "the same call again and again",
    replies: [],
    last: toolCalls({ name: "echo", arguments: { text: "again" } }),
    stops: ["repeated_call", "max_rounds"],
    args: { max_rounds: 10 },
  },
  { name: "empty answers", replies: [], last: answer(""), stops: ["error"] },
  {
    name: "500 Internal Server Error",
    replies: [reply({ error: { message: "model crashed" } }, 500)],
    stops: ["error"],
  },
  {
    name: "429 Too Many Requests",
    replies: [reply({ error: { message: "slow down" } }, 429)],
    stops: ["error"],
  },
  {
    name: "400 Bad Request",
    replies: [reply({ error: { message: "context length exceeded" } }, 400)],
    stops: ["error"],
  },
  {
    name: "connection cut mid-body",
    replies: () => [cutReply('{"id":"cut","choices":[{"message":{"content":"hal')],
    stops: ["error"],
  },
  {
    name: "a reply that drips forever (time budget 2 s)",
    replies: () => [drippingReply()],
    stops: ["time_budget"],
    args: { time_budget_seconds: 2 },
  },
  { name: "non-JSON body", replies: [{ raw: "<html>Gateway</html>" }], stops: ["error"] },
  {
    name: "a 50 MB body",
    replies: () => [paddedReply("fine after 50 MB", 50 << 20)],
    stops: ["answer"],
  },
  {
    name: "null message fields everywhere",
    replies: [withMessage({ role: null, content: null, tool_calls: null })],
    stops: ["error", "answer"],
  },
  {
    name: "tool call without a function",
    replies: [withMessage({ role: "assistant", content: "", tool_calls: [{ id: "c1" }] })],
    stops: ["answer", "error"],
  },
];

async function withServe(fn: (serve: Serve, model: ProgrammableModel) => Promise<void>) {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject({ a: attackEntry() });
  await using serve = await startServe(project.dir, model.baseUrl);
  await fn(serve, model);
}

/** Runs one task on server "a"; returns stopped_because, rounds and the result text. */
async function task(serve: Serve, args: Record<string, unknown> = {}) {
  const r = await serve.call("autonomous_with_mcp", {
    mcp_name: "a",
    task: "use the tools",
    max_rounds: 6,
    ...args,
  });
  const structured = (r.structuredContent ?? {}) as { stopped_because?: string; rounds?: number };
  return { stopped: structured.stopped_because, rounds: structured.rounds, text: resultText(r) };
}

Deno.test("20 kinds of broken model reply: every task ends within its bounds with a clear result; serve and health_check survive", async () => {
  await withServe(async (serve, model) => {
    const rows: string[] = [];
    for (const c of CASES) {
      const replies = typeof c.replies === "function" ? c.replies() : c.replies;
      if (c.name === "endless distinct tool calls") {
        model.play((_req, n) => toolCalls({ name: "echo", arguments: { text: `call ${n}` } }));
      } else model.sequence(replies, c.last);
      const out = await task(serve, c.args);
      assert(
        out.stopped !== undefined && c.stops.includes(out.stopped),
        `${c.name}: stopped_because ${out.stopped}, expected ${c.stops.join("|")}: ${
          out.text.slice(0, 500)
        }`,
      );
      assertStringIncludes(out.text, `stopped_because: ${out.stopped}`);
      if (out.stopped !== "answer") assert(/tool calls|Tool calls/.test(out.text), out.text);
      const health = await serve.call("health_check");
      assertEquals(health.isError, undefined, `${c.name}: health_check failed`);
      rows.push(`${c.name}: ${out.stopped} after ${out.rounds} round(s)`);
    }
    figure(`${rows.length}/${CASES.length} ended cleanly; bridge RSS ${rssKb(serve.pid)} kB`);
    for (const row of rows) figure(row);
  });
});

Deno.test({
  name: "a string usage and a numeric finish_reason do not fail a task that has its answer",
  fn: async () => {
    await withServe(async (serve, model) => {
      model.sequence([reply({ ...chatReply({ content: "usage is odd" }), usage: "lots" })]);
      assertEquals((await task(serve)).stopped, "answer");
      const numeric = chatReply({ content: "finish is odd" });
      const choices = numeric.choices as Record<string, unknown>[];
      choices[0]!.finish_reason = 1;
      model.sequence([reply(numeric)]);
      assertEquals((await task(serve)).stopped, "answer");
    });
  },
});

/** Tool arguments nested `levels` deep: {"a":{"a":...}}. */
function nested(levels: number): string {
  return '{"a":'.repeat(levels) + "1" + "}".repeat(levels);
}

Deno.test({
  name: "tool arguments nested 100,000 levels deep end the task with stopped_because and a summary",
  fn: async () => {
    await withServe(async (serve, model) => {
      model.sequence([toolCalls({ name: "echo", arguments: nested(100_000) })]);
      const out = await task(serve);
      assert(out.stopped !== undefined, `no stopped_because: ${out.text.slice(0, 300)}`);
      assertEquals((await serve.call("health_check")).isError, undefined);
    });
  },
});

Deno.test({
  name:
    "80,000 unclosed <think> tags cost the bridge no more CPU than a reply of the same size without them, and health_check answers meanwhile",
  fn: async () => {
    await withServe(async (serve, model) => {
      // The same bytes in the same number of streamed pieces, once with tags and once without:
      // the scan of inline reasoning must stay linear (a quadratic scan took 7-12 s more).
      const cpuOf = async (text: string) => {
        let served!: () => void;
        const reached = new Promise<void>((resolve) => served = resolve);
        model.play((_req, n) => {
          if (n > 0) return answer("done");
          served();
          return answer(text);
        });
        const before = cpuSeconds(serve.pid);
        const running = task(serve);
        await reached;
        const health = await serve.call("health_check");
        assertEquals(health.isError, undefined);
        const out = await running;
        assert(out.stopped !== undefined);
        return { cpu: cpuSeconds(serve.pid) - before, stopped: out.stopped };
      };
      const plain = await cpuOf("<thunk>".repeat(80_000) + " and an answer");
      const tags = await cpuOf("<think>".repeat(80_000) + " and an answer");
      figure(
        `80,000 <think> tags: ${tags.cpu.toFixed(2)} s CPU in the bridge (${tags.stopped}); ` +
          `the same size without tags: ${plain.cpu.toFixed(2)} s`,
      );
      // CPU time, not wall-clock: a loaded machine does not inflate it.
      assert(
        tags.cpu < plain.cpu * 2 + 1,
        `the bridge spent ${tags.cpu.toFixed(2)} s of CPU on the tags, ${
          plain.cpu.toFixed(2)
        } s without them`,
      );
    });
  },
});
