/**
 * The autonomous loop end to end, against a scripted fake LM Studio and REAL MCP servers (see
 * tests/agent_harness.ts): multi-round tasks, tool calls printed as text, the context budget, stop
 * reasons, cancellation of the model request, traces, and the autonomous tools through a real SDK
 * client over an in-memory transport.
 */
import type { AgentLmClient } from "../lib/agent_types.ts";
import {
  memoryTrace,
  openTraceFile,
  TraceError,
  type WritePermissionQuery,
} from "../lib/agent_trace.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import type { LmStudioClient } from "../lib/lmstudio.ts";
import { join } from "../lib/path.ts";
import { McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { registerAutonomousTools } from "../lib/server_agent.ts";
import {
  answer,
  calls,
  CHAT,
  figures,
  type Harness,
  heldReply,
  messagesOf,
  replyAfterHeartbeat,
  settlesWithin,
  toolMessages,
  toolNamesOf,
  withHarness,
} from "./agent_harness.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { chatReply, type FakeModel } from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

Deno.test("a multi-round task creates entities in server-memory and reads a file through server-filesystem", async () => {
  await withHarness(async (h) => {
    const notes = join(h.dir, "notes.txt");
    await Deno.writeTextFile(notes, "The launch code is 4711.");
    h.fake.script(
      CHAT,
      calls(
        {
          name: "memory__create_entities",
          arguments: JSON.stringify({
            entities: [{ name: "Ada", entityType: "person", observations: ["likes tea"] }],
          }),
        },
        { name: "filesystem__read_text_file", arguments: JSON.stringify({ path: notes }) },
      ),
      calls({ name: "memory__read_graph", arguments: "{}" }),
      (req) => {
        const tools = toolMessages(req);
        const file = tools.find((m) => String(m.content).includes("launch code"));
        return answer(file ? `Stored Ada; ${file.content}` : "file content missing");
      },
    );
    const result = await h.run({
      servers: ["memory", "filesystem"],
      // Every definition in each request (tools on demand: tests/tool_demand_test.ts).
      toolShare: 1,
      task: "Store Ada, read notes",
      // create_entities changes the graph: without this rule it would need approval.
      rules: { servers: { memory: { tools: { "create_*": "allow" } } } },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.answer, "Stored Ada; The launch code is 4711.");
    assertEquals(result.rounds, 3);
    assertEquals(result.tool_calls.map((c) => [c.server, c.tool, c.ok]), [
      ["memory", "create_entities", true],
      ["filesystem", "read_text_file", true],
      ["memory", "read_graph", true],
    ]);
    assertEquals(result.approvals.map((a) => [a.tool, a.rule, a.answer]), [
      ["create_entities", 'servers.memory.tools["create_*"]: allow', "allow"],
      ["read_text_file", "default: read-only", "allow"],
      ["read_graph", "default: read-only", "allow"],
    ]);

    // The entity really exists in server-memory.
    const direct = await h.pool.callTool("memory", "open_nodes", { names: ["Ada"] });
    assertStringIncludes(JSON.stringify(direct.content), "likes tea");

    const requests = h.fake.requestsTo(CHAT);
    assertEquals(requests.length, 3);
    const first = requests[0]!.body as Record<string, unknown>;
    assertEquals(first.ttl, 600);
    assertEquals(first.tool_choice, "auto");
    assert(toolNamesOf(requests[0]!).includes("memory__create_entities"));
    assert(toolNamesOf(requests[0]!).includes("filesystem__read_text_file"));
    // Tool messages follow the assistant message with the same ids, in order.
    const second = messagesOf(requests[1]!);
    const assistant = second.find((m) => m.role === "assistant")!;
    const ids = assistant.tool_calls!.map((c) => c.id);
    assertEquals(toolMessages(requests[1]!).map((m) => m.tool_call_id), ids);
    assertStringIncludes(String(toolMessages(requests[1]!)[1]!.content), "4711");
    assertEquals(second[1], { role: "user", content: "Store Ada, read notes" });
  });
});

Deno.test("tool calls printed as text are recovered and run", async (t) => {
  await withHarness(async (h) => {
    const formats: [string, string][] = [
      ["<tool_call>", '<tool_call>\n{"name": "sleep", "arguments": {"ms": 1}}\n</tool_call>'],
      [
        "[TOOL_REQUEST]",
        '[TOOL_REQUEST]{"name": "sleep", "arguments": {"ms": 2}}[END_TOOL_REQUEST]',
      ],
      ["fenced json", 'I will wait.\n```json\n{"name": "sleep", "arguments": {"ms": 3}}\n```'],
      ["bare json", '{"name": "sleep", "arguments": "{\\"ms\\": 4}"}'],
    ];
    for (const [label, text] of formats) {
      await t.step(label, async () => {
        const before = h.fake.requestsTo(CHAT).length;
        h.fake.script(CHAT, { body: chatReply({ content: text }) }, answer("ok"));
        const result = await h.run({});
        assertEquals(result.stopped_because, "answer");
        assertEquals(result.tool_calls.length, 1);
        assertEquals(result.tool_calls[0]!.recovered_from_text, true);
        const next = h.fake.requestsTo(CHAT)[before + 1]!;
        assertMatch(String(toolMessages(next)[0]!.content), /^slept \d ms$/);
      });
    }
    await t.step("JSON naming no real tool stays the answer", async () => {
      const text = 'Result: {"name": "Bob", "arguments": {"age": 3}}';
      h.fake.script(CHAT, answer(text));
      const result = await h.run({});
      assertEquals(result.answer, text);
      assertEquals(result.tool_calls.length, 0);
    });
    await t.step("a call envelope naming no real tool goes back to the model", async () => {
      const before = h.fake.requestsTo(CHAT).length;
      h.fake.script(
        CHAT,
        answer('<tool_call>{"name": "made_up", "arguments": {}}</tool_call>'),
        answer("done"),
      );
      const result = await h.run({});
      assertEquals(result.stopped_because, "answer");
      assertEquals(result.answer, "done");
      assertEquals(result.rounds, 2);
      assertEquals(result.tool_calls.map((c) => [c.name, c.ok]), [["made_up", false]]);
      const next = h.fake.requestsTo(CHAT)[before + 1]!;
      const told = String(toolMessages(next)[0]!.content);
      assertStringIncludes(told, 'no tool named "made_up"');
      assertStringIncludes(told, "sleep");
    });
    await t.step("a made-up tool called again and again trips the repeat guard", async () => {
      const made = answer('{"name": "made_up", "arguments": {"x": 1}}');
      h.fake.script(CHAT, made, made, made);
      const result = await h.run({});
      assertEquals(result.stopped_because, "repeated_call");
      assertEquals(result.rounds, 3);
      assertStringIncludes(result.answer, "made_up");
    });
    await t.step("thinking and reasoning stay out of the answer", async () => {
      h.fake.script(CHAT, {
        body: chatReply({
          content: "<think>let me see</think>The answer is 7.",
          reasoning_content: "hidden chain",
        }),
      });
      const result = await h.run({});
      assertEquals(result.answer, "The answer is 7.");
    });
  });
});

Deno.test("the oldest tool results are condensed first to stay inside the context window", async () => {
  await withHarness(async (h) => {
    let last: ChatMessage[] = [];
    h.fake.script(
      CHAT,
      calls({ name: "huge", arguments: { chars: 12_000 } }),
      calls({ name: "huge", arguments: { chars: 12_001 } }),
      calls({ name: "huge", arguments: { chars: 12_002 } }),
      (req) => {
        last = messagesOf(req);
        return answer("ok");
      },
    );
    const result = await h.run({ task: "Read three huge things" });
    assertEquals(result.stopped_because, "answer");
    const tools = last.filter((m) => m.role === "tool").map((m) => String(m.content));
    assertEquals(tools.length, 3);
    assertStringIncludes(tools[0]!, "[condensed: this earlier result of huge");
    assert(tools[2]!.endsWith("END"), "the last round is kept");
    assertEquals(last[1], { role: "user", content: "Read three huge things" });
    const total = last.reduce((n, m) => n + String(m.content ?? "").length, 0);
    assert(total / 4 < 8192, `conversation of ~${Math.round(total / 4)} tokens`);
  });
});

Deno.test("tool definitions that overflow the context stop before any model request when tools on demand is off", async () => {
  const models: FakeModel[] = [{
    id: "tiny",
    type: "llm",
    state: "loaded",
    maxContextLength: 600,
    loadedContextLength: 600,
  }];
  await withHarness(async (h) => {
    // A share of 1: never on demand (tests/tool_demand_test.ts has the default).
    const result = await h.run({ toolShare: 1 });
    assertEquals(result.stopped_because, "context_overflow");
    assertStringIncludes(result.answer, "allowed_tools");
    assertStringIncludes(result.answer, "600 tokens");
    assertEquals(h.fake.requestsTo(CHAT).length, 0);
    // allowed_tools makes it fit.
    h.fake.script(CHAT, answer("fits"));
    const narrow = await h.run({ allowedTools: ["sleep"], toolShare: 1 });
    assertEquals(narrow.stopped_because, "answer");
    assertEquals(toolNamesOf(h.fake.requestsTo(CHAT)[0]!), ["sleep"]);
  }, { models });
});

Deno.test("stop reasons", async (t) => {
  await withHarness(async (h) => {
    await t.step("max_rounds says the task is unfinished and lists the calls", async () => {
      h.fake.script(
        CHAT,
        calls({ name: "sleep", arguments: { ms: 1 } }),
        calls({ name: "sleep", arguments: { ms: 2 } }),
      );
      const result = await h.run({ maxRounds: 2 });
      assertEquals(result.stopped_because, "max_rounds");
      assertEquals(result.rounds, 2);
      assertStringIncludes(result.answer, "unfinished");
      assertStringIncludes(result.answer, 'sleep {"ms":1} -> ok');
      assertStringIncludes(result.answer, 'sleep {"ms":2} -> ok');
    });

    await t.step("repeated_call after the same call three times in a row", async () => {
      const same = () => calls({ name: "sleep", arguments: { ms: 5 } });
      h.fake.script(CHAT, same(), same(), same());
      const result = await h.run({});
      assertEquals(result.stopped_because, "repeated_call");
      assertEquals(result.rounds, 3);
      assertEquals(result.tool_calls.length, 2, "the third identical call is not run");
      assertStringIncludes(result.answer, "same arguments 3 times");
      assertEquals(h.fake.pending(CHAT), 0);
    });

    await t.step("time_budget stops a slow model", async () => {
      // A reply that never comes: only the time budget ends the task.
      const held = heldReply();
      h.fake.script(CHAT, held.reply);
      const result = await settlesWithin(h.run({ timeBudgetMs: 300 }), "the time budget");
      assertEquals(result.stopped_because, "time_budget");
      assertStringIncludes(result.answer, "time budget of 0.3 s");
      // The model request was given up, not left to run.
      await settlesWithin(held.abandoned, "the model request to be given up");
    });

    await t.step("error when LM Studio fails mid-task, with what was done", async () => {
      h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 1 } }), {
        status: 500,
        body: { error: { message: "model crashed" } },
      });
      const result = await h.run({});
      assertEquals(result.stopped_because, "error");
      assertStringIncludes(result.answer, "model crashed");
      assertStringIncludes(result.answer, "sleep");
      assertEquals(result.rounds, 2);
    });

    await t.step(
      "error, with what was done, when something fails unexpectedly in a round",
      async () => {
        const before = h.fake.requestsTo(CHAT).length;
        h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 1 } }));
        // A trace that breaks (a full disk) in the second round's request.
        const trace = memoryTrace();
        const broken = {
          write: (event: Record<string, unknown>) => {
            if (event.type === "request" && event.round === 2) throw new Error("disk full");
            trace.write(event);
          },
          close: () => trace.close(),
        };
        const result = await h.run({ trace: broken });
        assertEquals(result.stopped_because, "error");
        assertEquals(result.error, "disk full");
        assertEquals(result.rounds, 2);
        assertStringIncludes(result.answer, "The task failed in round 2: disk full");
        assertStringIncludes(result.answer, 'sleep {"ms":1} -> ok');
        assertEquals(trace.events.at(-1)?.type, "stop");
        // The second request was never sent.
        assertEquals(h.fake.requestsTo(CHAT).length - before, 1);
      },
    );

    await t.step("an empty reply gets one nudge", async () => {
      h.fake.script(CHAT, answer(""), answer("now answered"));
      const result = await h.run({});
      assertEquals(result.answer, "now answered");
      const nudge = messagesOf(h.fake.requests.at(-1)!).at(-1)!;
      assertStringIncludes(String(nudge.content), "Your last reply was empty");
    });
  });
});

Deno.test("cancellation aborts the model request", async () => {
  await withHarness(async (h) => {
    // A reply that never comes: only the cancellation ends the task.
    const held = heldReply();
    h.fake.script(CHAT, held.reply);
    const controller = new AbortController();
    const running = h.run({ signal: controller.signal });
    await held.arrived;
    const t0 = performance.now();
    controller.abort();
    const result = await settlesWithin(running, "the cancelled task to end");
    const latency = performance.now() - t0;
    assertEquals(result.stopped_because, "cancelled");
    // The model request was given up, not left to run.
    await settlesWithin(held.abandoned, "the model request to be given up");
    figures.info(`cancel during generation: ${latency.toFixed(1)} ms`);
  });
});

Deno.test("the recursion guard refuses at depth 2 before doing anything", async () => {
  await withHarness(async (h) => {
    const error = await assertRejects(() => h.run({ depth: 2 }), Error, "nesting depth 2");
    assertEquals(error.name, "AgentError");
    assertEquals(h.fake.requests.length, 0);
  });
});

Deno.test("traces record requests, replies, tool calls, results and the stop as JSONL", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 1 } }), answer("traced"));
    const path = join(h.dir, "trace.jsonl");
    const trace = await openTraceFile(path);
    await h.run({ trace });
    await trace.close();
    const events = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(events.map((e) => e.type), [
      "start",
      "request",
      "response",
      "tool_call",
      "approval",
      "tool_result",
      "request",
      "response",
      "stop",
    ]);
    assert(events.every((e) => typeof e.t === "number"));
    assertEquals(events[3].arguments, { ms: 1 });
    const { t: _t, ...approval } = events[4];
    assertEquals(approval, {
      type: "approval",
      round: 1,
      server: "fixture",
      tool: "sleep",
      rule: "default: read-only",
      asked: false,
      answer: "allow",
    });
    assertEquals(events[8].answer, "traced");
    const mem = memoryTrace();
    h.fake.script(CHAT, answer("x"));
    await h.run({ trace: mem });
    assertEquals(mem.events.at(-1)!.type, "stop");
    const denied = await assertRejects(
      () => openTraceFile(path, { queryPermission: () => Promise.resolve("denied") }),
      TraceError,
    );
    assertStringIncludes(denied.message, `--allow-write=${path}`);
  });
});

Deno.test("empty replies cut off by max_tokens say so and how to allow more", async (t) => {
  await withHarness(async (h) => {
    const cut = {
      body: chatReply({
        content: "",
        reasoning_content: "Let me think about this. ".repeat(10),
        finishReason: "length",
      }),
    };
    await t.step("with max_tokens given", async () => {
      h.fake.script(CHAT, cut, cut);
      const result = await h.run({ maxTokens: 64 });
      assertEquals(result.stopped_because, "error");
      assertEquals(result.error, "reply cut off by max_tokens");
      assertStringIncludes(result.answer, "hit max_tokens (64) twice before it gave any answer");
      assertStringIncludes(result.answer, "The replies held only reasoning");
      assertStringIncludes(result.answer, "Raise max_tokens above 64");
      assertStringIncludes(result.answer, "`run --max-tokens N`");
      assert(!result.answer.includes("no answer text twice"), result.answer);
      const nudge = messagesOf(h.fake.requestsTo(CHAT).at(-1)!).at(-1)!;
      assertStringIncludes(String(nudge.content), "ran out of tokens");
    });
    await t.step("with the server's default", async () => {
      h.fake.script(CHAT, cut, cut);
      const result = await h.run({});
      assertStringIncludes(result.answer, "hit the server's default max_tokens");
      assertStringIncludes(result.answer, "Raise max_tokens (the autonomous tools' max_tokens");
    });
    await t.step("an empty reply that was not cut off stays an empty answer", async () => {
      h.fake.script(CHAT, answer(""), answer(""));
      const result = await h.run({});
      assertEquals(result.error, "empty answer");
      assertStringIncludes(result.answer, "The model returned no answer text twice.");
    });
  });
});

// ---------------------------------------------------------------------------------------------
// The MCP tools through a real SDK client

async function connectTools(
  h: Harness,
  o: {
    depth?: number;
    client?: AgentLmClient;
    heartbeatMs?: number;
    queryWritePermission?: WritePermissionQuery;
  } = {},
): Promise<{ client: Client; close: () => Promise<void> }> {
  const server = new McpServer({ name: "bridge-under-test", version: "0" });
  registerAutonomousTools(server, {
    client: o.client ?? h.client,
    pool: () => Promise.resolve(h.pool),
    config: h.config,
    settings: {
      defaultModel: undefined,
      modelTtlSeconds: 600,
      defaultContextLength: 8192,
      depth: o.depth ?? 0,
    },
    log: quiet,
  }, {
    heartbeatMs: o.heartbeatMs ?? 50,
    queryWritePermission: o.queryWritePermission,
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: "test", version: "0" });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  return {
    client,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

function resultText(result: unknown): string {
  const content = (result as { content: { type: string; text?: string }[] }).content;
  return content.map((c) => c.text ?? "").join("\n");
}

Deno.test("autonomous_with_mcp sends progress notifications to a real client and returns the answer", async () => {
  await withHarness(async (h) => {
    // The model generates until a heartbeat has reached the client.
    const generating = replyAfterHeartbeat(calls({ name: "sleep", arguments: { ms: 1 } }));
    h.fake.script(CHAT, generating.reply, answer("all done"));
    const { client, close } = await connectTools(h);
    try {
      const progress: { progress: number; total?: number; message?: string }[] = [];
      const result = await client.callTool(
        {
          name: "autonomous_with_mcp",
          arguments: { mcp_name: "fixture", task: "t", max_rounds: 4 },
        },
        undefined,
        {
          onprogress: (p) => {
            progress.push(p);
            generating.seen(p.message);
          },
        },
      );
      assertStringIncludes(resultText(result), "all done");
      assertStringIncludes(resultText(result), "stopped_because: answer");
      const structured = result.structuredContent as Record<string, unknown>;
      assertEquals(structured.stopped_because, "answer");
      assertEquals(structured.rounds, 2);
      assert(progress.length >= 4, `${progress.length} progress notifications`);
      for (let i = 1; i < progress.length; i++) {
        assert(progress[i]!.progress > progress[i - 1]!.progress);
      }
      assert(progress.every((p) => p.total === 4));
      assert(progress.some((p) => p.message?.includes("calling sleep")));
      assert(progress.some((p) => p.message?.includes("still generating")));
    } finally {
      await close();
    }
  });
});

Deno.test("a client that resets its timeout on progress waits for a long tool call", async (t) => {
  await withHarness(async (h) => {
    // The fixture server is started before the clock runs: only the task's own silences count.
    await h.pool.listTools("fixture");
    // Each task takes well over the timeout, and each silence between messages a tenth of it.
    const timeout = 1000;
    const callWithTimeout = async (client: Client) => {
      const messages: string[] = [];
      const result = await client.callTool(
        { name: "autonomous_with_mcp", arguments: { mcp_name: "fixture", task: "t" } },
        undefined,
        {
          timeout,
          resetTimeoutOnProgress: true,
          onprogress: (p) => messages.push(p.message ?? ""),
        },
      );
      return { result, messages };
    };
    await t.step("the tool reports progress: it is relayed", async () => {
      h.fake.script(
        CHAT,
        calls({ name: "progress", arguments: { steps: 15, ms: 100 } }),
        answer("ok"),
      );
      // No heartbeat within the test: only the relayed progress keeps the client waiting.
      const { client, close } = await connectTools(h, { heartbeatMs: 60_000 });
      try {
        const { result, messages } = await callWithTimeout(client);
        assertStringIncludes(resultText(result), "stopped_because: answer");
        assert(messages.includes("round 1/100: progress: 15/15 step 15"), JSON.stringify(messages));
      } finally {
        await close();
      }
    });
    await t.step("the tool is silent: heartbeats keep the client waiting", async () => {
      h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 2 * timeout } }), answer("ok"));
      const { client, close } = await connectTools(h, { heartbeatMs: 100 });
      try {
        const { result, messages } = await callWithTimeout(client);
        assertStringIncludes(resultText(result), "stopped_because: answer");
        assert(messages.some((m) => m.includes("still running sleep")), JSON.stringify(messages));
      } finally {
        await close();
      }
    });
  });
});

Deno.test("cancelling an autonomous tool call aborts the model request", async () => {
  await withHarness(async (h) => {
    // A reply that never comes: only the cancellation ends the request.
    const held = heldReply();
    h.fake.script(CHAT, held.reply);
    // The real client, watched: when does the in-flight model request end?
    const chatEnded = Promise.withResolvers<number>();
    const watched = {
      baseUrl: h.client.baseUrl,
      chat: (...args: Parameters<LmStudioClient["chat"]>) =>
        h.client.chat(...args).finally(() => chatEnded.resolve(performance.now())),
      resolveModel: h.client.resolveModel.bind(h.client),
      listModels: h.client.listModels.bind(h.client),
    };
    const { client, close } = await connectTools(h, { client: watched });
    try {
      const controller = new AbortController();
      const call = client.callTool(
        { name: "autonomous_with_multiple_mcps", arguments: { mcp_names: ["fixture"], task: "t" } },
        undefined,
        { signal: controller.signal },
      );
      call.catch(() => {});
      await held.arrived;
      const t0 = performance.now();
      controller.abort();
      await assertRejects(() => call);
      const latency = await settlesWithin(chatEnded.promise, "the model request to end") - t0;
      // The fake saw the request given up.
      await settlesWithin(held.abandoned, "the model request to be given up");
      figures.info(`MCP cancel -> model request aborted: ${latency.toFixed(1)} ms`);
      // The server is not stuck in the cancelled task.
      h.fake.script(CHAT, answer("next"));
      const next = await client.callTool({
        name: "autonomous_with_mcp",
        arguments: { mcp_name: "fixture", task: "t2" },
      });
      assertStringIncludes(resultText(next), "next");
    } finally {
      await close();
    }
  });
});

Deno.test("autonomous tools explain failures as isError results", async (t) => {
  await withHarness(async (h) => {
    await t.step("an unknown server lists the valid names", async () => {
      const { client, close } = await connectTools(h);
      try {
        const result = await client.callTool({
          name: "autonomous_with_mcp",
          arguments: { mcp_name: "nope", task: "t" },
        });
        assertEquals(result.isError, true);
        assertStringIncludes(resultText(result), "fixture");
      } finally {
        await close();
      }
    });
    await t.step("the recursion guard at depth 2", async () => {
      const { client, close } = await connectTools(h, { depth: 2 });
      try {
        const result = await client.callTool({
          name: "autonomous_discover_and_execute",
          arguments: { task: "t" },
        });
        assertEquals(result.isError, true);
        assertStringIncludes(resultText(result), "Refusing to run an autonomous task");
      } finally {
        await close();
      }
    });
    await t.step("a trace path without write permission names the flag", async () => {
      const { client, close } = await connectTools(h, {
        queryWritePermission: () => Promise.resolve("denied"),
      });
      try {
        const result = await client.callTool({
          name: "autonomous_with_mcp",
          arguments: { mcp_name: "fixture", task: "t", trace_path: "/tmp/x.jsonl" },
        });
        assertEquals(result.isError, true);
        assertStringIncludes(resultText(result), "--allow-write=/tmp/x.jsonl");
        assertEquals(h.fake.requestsTo(CHAT).length, 0);
      } finally {
        await close();
      }
    });
  });
});
