/**
 * Sampling requests of downstream servers, answered by the task's local model: the request as the
 * model gets it (system prompt, messages, max_tokens within the limit), the reply as the server
 * gets it, the per-task count, the context window, the approval rules (`sampling/createMessage`),
 * and the records in the result and the trace. The loop side runs with a tool run in-process that
 * asks as a server would (tests/agent_harness.ts `featureHost`, contract 3); the end-to-end test
 * against server-everything's trigger-sampling-request runs through the pool.
 */
import { memoryTrace } from "../lib/agent_trace.ts";
import type { AgentResult, ApprovalRequest, ServerRequestHandlers } from "../lib/agent_types.ts";
import { approvalQuestion } from "../lib/server_agent.ts";
import type { CallToolResult, CreateMessageRequestParams } from "../lib/sdk.ts";
import { errorMessage } from "../lib/errors.ts";
import {
  answer,
  calls,
  CHAT,
  featureHost,
  type Harness,
  messagesOf,
  toolMessages,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { chatReply, type RecordedRequest } from "./fakes/lmstudio.ts";
import { cachedEntry, REFERENCE_SERVERS } from "./fixtures/pool_support.ts";

const HAIKU: CreateMessageRequestParams = {
  systemPrompt: "You are a poet.",
  messages: [{ role: "user", content: { type: "text", text: "A haiku about rain." } }],
  maxTokens: 5000,
};

/**
 * A host whose fixture server has a tool `ask_llm` that sends `requests` for sampling, one after
 * the other, and answers with what came back (or the error), one line each.
 */
function samplingHost(h: Harness, requests: CreateMessageRequestParams[]) {
  return featureHost(h.pool, {
    fixture: {
      tools: {
        ask_llm: {
          definition: {
            description: "Asks the client's LLM.",
            inputSchema: { type: "object" },
            annotations: { readOnlyHint: true },
          },
          run: async (_args, handlers: ServerRequestHandlers, signal): Promise<CallToolResult> => {
            const lines: string[] = [];
            for (const params of requests) {
              try {
                if (handlers.sample === undefined) throw new Error("no sampling handler");
                const result = await handlers.sample(params, signal);
                const content = result.content;
                lines.push(
                  `${result.stopReason}: ${content.type === "text" ? content.text : content.type}`,
                );
              } catch (error: unknown) {
                lines.push(`error: ${errorMessage(error)}`);
              }
            }
            return { content: [{ type: "text", text: lines.join("\n") }] };
          },
        },
      },
    },
  });
}

Deno.test("a server's sampling request is answered by the task's model within max_tokens, and recorded", async () => {
  await withHarness(async (h) => {
    const host = samplingHost(h, [HAIKU]);
    const trace = memoryTrace();
    h.fake.script(
      CHAT,
      calls({ name: "ask_llm", arguments: {} }),
      {
        body: chatReply({
          content: "Rain on the roof",
          usage: { prompt_tokens: 20, completion_tokens: 5 },
        }),
      },
      answer("done"),
    );
    const result = await h.run({
      deps: { pool: host },
      sampling: { max_tokens: 300 },
      temperature: 0.2,
      trace,
    });
    assertEquals(result.stopped_because, "answer");
    const [, sampled, last] = h.fake.requestsTo(CHAT);
    const body = sampled!.body as Record<string, unknown>;
    assertEquals(messagesOf(sampled!), [
      { role: "system", content: "You are a poet." },
      { role: "user", content: "A haiku about rain." },
    ]);
    // The reply gets the smaller of what the server asked for and the limit; no tools.
    assertEquals(body.max_tokens, 300);
    assertEquals(body.tools, undefined);
    assertEquals(body.temperature, 0.2);
    assertEquals(body.model, result.model);
    assertEquals(String(toolMessages(last!)[0]!.content), "endTurn: Rain on the roof");
    assertEquals(result.sampling.length, 1);
    const { duration_ms: _ms, ...record } = result.sampling[0]!;
    assertEquals(record, {
      round: 1,
      server: "fixture",
      tool: "ask_llm",
      ok: true,
      requested_max_tokens: 5000,
      max_tokens: 300,
      prompt_tokens: 20,
      completion_tokens: 5,
      stop_reason: "endTurn",
    });
    // The sampling's tokens count in the task's usage (each of the two rounds reports 15).
    assertEquals(result.usage.total_tokens, 15 + 25 + 15);
    assert(trace.events.some((e) => e.type === "sampling" && e.ok === true));
    assertEquals(
      result.approvals.find((a) => a.tool === "sampling/createMessage")?.rule,
      "default: sampling within limits",
    );
  });
});

Deno.test("sampling requests beyond per_task, with tools, or too large for the window are refused with why", async () => {
  await withHarness(async (h) => {
    const host = samplingHost(h, [
      HAIKU,
      { ...HAIKU, tools: [{ name: "x", inputSchema: { type: "object" } }] },
      {
        ...HAIKU,
        messages: [{ role: "user", content: { type: "text", text: "w".repeat(40_000) } }],
      },
      HAIKU,
    ]);
    h.fake.script(
      CHAT,
      calls({ name: "ask_llm", arguments: {} }),
      answer("Rain"),
      answer("done"),
    );
    const result = await h.run({
      deps: { pool: host },
      sampling: { per_task: 1, max_tokens: 100 },
    });
    const lines = String(toolMessages(h.fake.requestsTo(CHAT)[2]!)[0]!.content).split("\n");
    assertEquals(lines, [
      "endTurn: Rain",
      "error: lmstudio-bridge did not answer the sampling request: it offers the model tools, " +
      "and the bridge samples without tools",
      "error: lmstudio-bridge did not answer the sampling request: its messages (about 10012 " +
      "tokens) and a reply of up to 100 tokens do not fit the model's context window (8192 tokens)",
      "error: lmstudio-bridge did not answer the sampling request: this task has had its 1 " +
      "sampling request (sampling.per_task in lmstudio-bridge.json)",
    ]);
    assertEquals(result.sampling.map((s) => s.ok), [true, false, false, false]);
    // Only the one answered reached the model.
    assertEquals(h.fake.requestsTo(CHAT).length, 3);
  });
});

Deno.test("the approval rules decide sampling like a call of sampling/createMessage", async (t) => {
  const run = (o: {
    rules: Record<string, "allow" | "ask" | "deny">;
    answer?: "once" | "deny";
  }) => {
    const asked: ApprovalRequest[] = [];
    let outcome: { result: AgentResult; text: string; sampled: boolean } | undefined;
    return withHarness(async (h) => {
      const host = samplingHost(h, [HAIKU]);
      // A sampling request carries no tools; the rounds of the task do.
      const reply = (req: RecordedRequest) =>
        (req.body as { tools?: unknown }).tools === undefined ? answer("Rain") : answer("ok");
      h.fake.script(CHAT, calls({ name: "ask_llm", arguments: {} }), reply, reply);
      const result = await h.run({
        deps: { pool: host },
        rules: { tools: o.rules },
        approve: (req) => {
          asked.push(req);
          return Promise.resolve(o.answer ?? "deny");
        },
      });
      const requests = h.fake.requestsTo(CHAT);
      const text = String(toolMessages(requests.at(-1)!)[0]!.content);
      outcome = { result, text, sampled: requests.length === 3 };
    }).then(() => ({ ...outcome!, asked }));
  };
  await t.step("deny", async () => {
    const { result, asked, text, sampled } = await run({
      rules: { "fixture/sampling/*": "deny" },
    });
    assertEquals(asked, []);
    assert(!sampled);
    assertStringIncludes(text, 'denied by the rule tools["fixture/sampling/*"]');
    assertEquals(result.approvals.at(-1)?.answer, "deny");
  });
  await t.step("ask, approved once", async () => {
    const { asked, text, sampled, result } = await run({
      rules: { "fixture/sampling/createMessage": "ask" },
      answer: "once",
    });
    assert(sampled);
    assertEquals(text, "endTurn: Rain");
    assertEquals(asked.length, 1);
    assertEquals(asked[0]!.kind, "sampling");
    assertEquals(asked[0]!.tool, "sampling/createMessage");
    assertEquals(asked[0]!.arguments, {
      during_tool: "ask_llm",
      max_tokens: 1024,
      system_prompt: "You are a poet.",
      messages: ["user: A haiku about rain."],
    });
    assertEquals(result.approvals.at(-1)?.answer, "once");
  });
  await t.step("ask, declined", async () => {
    const { text, sampled } = await run({ rules: { "*/sampling/*": "ask" } });
    assert(!sampled);
    assertStringIncludes(text, "declined by the user");
  });
});

Deno.test({
  name: "end to end: server-everything's trigger-sampling-request is answered by the local model",
  fn: async () => {
    await withHarness(async (h) => {
      h.fake.script(
        CHAT,
        calls({
          name: "trigger-sampling-request",
          arguments: { prompt: "a haiku", maxTokens: 50 },
        }),
        answer("Drops on a tin roof"),
        answer("done"),
      );
      const result = await h.run({
        servers: ["everything"],
        rules: { tools: { "everything/*": "allow" } },
      });
      assertEquals(result.stopped_because, "answer");
      const [, sampled, last] = h.fake.requestsTo(CHAT);
      assertEquals((sampled!.body as Record<string, unknown>).max_tokens, 50);
      assertStringIncludes(JSON.stringify(messagesOf(sampled!)), "a haiku");
      assertStringIncludes(String(toolMessages(last!)[0]!.content), "Drops on a tin roof");
      assertEquals(result.sampling.map((s) => [s.server, s.tool, s.ok]), [
        ["everything", "trigger-sampling-request", true],
      ]);
    }, { servers: { everything: cachedEntry([REFERENCE_SERVERS.everything]) } });
  },
});

Deno.test("the person asked about sampling is told which server asks, during which tool, for what", () => {
  assertEquals(
    approvalQuestion({
      server: "everything",
      tool: "sampling/createMessage",
      kind: "sampling",
      arguments: {
        during_tool: "trigger-sampling-request",
        max_tokens: 50,
        messages: ["user: hi"],
      },
      task: "Write a poem",
      readOnly: true,
      destructive: false,
    }),
    [
      'MCP server "everything" asks the local model to generate text (sampling) while its tool ' +
      "trigger-sampling-request runs.",
      'Request: {"during_tool":"trigger-sampling-request","max_tokens":50,"messages":["user: hi"]}',
      "Task: Write a poem",
    ].join("\n"),
  );
});
