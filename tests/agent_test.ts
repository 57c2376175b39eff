/**
 * The autonomous loop against a scripted fake LM Studio and REAL MCP servers: the reference
 * server-memory and server-filesystem, and the fixture tests/fixtures/agent_server.ts. The MCP
 * tools are exercised through a real SDK Client over an in-memory transport.
 */
import { runAgent } from "../lib/agent.ts";
import { ProgressReporter } from "../lib/agent_calls.ts";
import {
  memoryTrace,
  openTraceFile,
  TraceError,
  type WritePermissionQuery,
} from "../lib/agent_trace.ts";
import {
  AgentError,
  type AgentLmClient,
  type AgentOptions,
  type AgentProgress,
  type AgentResult,
} from "../lib/agent_types.ts";
import { ConfigSource } from "../lib/config.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { Lms } from "../lib/lms.ts";
import { ModelManager } from "../lib/models.ts";
import { McpPool } from "../lib/pool.ts";
import { Client, InMemoryTransport, McpServer } from "../lib/sdk.ts";
import { registerAutonomousTools } from "../lib/tools_agent.ts";
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
  type FakeModel,
  type RecordedRequest,
} from "./fakes/lmstudio.ts";
import { REPO } from "./helpers.ts";
import { cachedEntry, REFERENCE_SERVERS, waitFor } from "./fixtures/pool_support.ts";

const CHAT = "/v1/chat/completions";
const FIXTURE = new URL("./fixtures/agent_server.ts", import.meta.url).pathname;
const quiet = createLogger({ level: "silent" });
/** Measured figures go to stderr (visible in the test output). */
const figures = createLogger({ level: "info", scope: "figure", color: false });

interface Harness {
  dir: string;
  fake: FakeLmStudio;
  client: LmStudioClient;
  config: ConfigSource;
  pool: McpPool;
  run(options: Partial<AgentOptions> & { task?: string }): Promise<AgentResult>;
}

/** A temp dir with .mcp.json (memory, filesystem, fixture, a disabled entry, the bridge itself). */
async function withHarness(
  fn: (h: Harness) => Promise<void>,
  o: {
    models?: FakeModel[];
    flavor?: FakeLmStudioOptions["flavor"];
    /** More entries for the .mcp.json. */
    servers?: Record<string, unknown>;
  } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const deno = Deno.execPath();
  await Deno.writeTextFile(
    join(dir, ".mcp.json"),
    JSON.stringify({
      mcpServers: {
        memory: cachedEntry([REFERENCE_SERVERS.memory], {
          MEMORY_FILE_PATH: join(dir, "memory.jsonl"),
        }),
        filesystem: cachedEntry([REFERENCE_SERVERS.filesystem, dir]),
        fixture: cachedEntry([FIXTURE]),
        off: { command: deno, args: ["run", FIXTURE], disabled: true },
        bridge: { command: "lmstudio-bridge", args: ["serve"] },
        // As the README configures the bridge in Claude Code: discover-all must skip it too.
        lmstudio: { command: "deno", args: ["task", "--cwd", REPO, "start"] },
        ...o.servers,
      },
    }),
  );
  const fake = await FakeLmStudio.start({
    ...(o.models ? { models: o.models } : {}),
    ...(o.flavor ? { flavor: o.flavor } : {}),
  });
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const config = new ConfigSource({ explicitPath: join(dir, ".mcp.json"), log: quiet });
  const pool = new McpPool({ config, log: quiet, idleMs: 0 });
  const h: Harness = {
    dir,
    fake,
    client,
    config,
    pool,
    run: (options) =>
      runAgent({
        task: "the task",
        servers: ["fixture"],
        ttlSeconds: 600,
        ...options,
        deps: { client, pool, config, log: quiet, ...options.deps },
      }),
  };
  try {
    await fn(h);
  } finally {
    await pool.close();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * `promise`, or a failure naming `what` when it has not settled after 10 s: what it waits for
 * takes milliseconds, so only a hang trips it.
 */
async function settlesWithin<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}

function messagesOf(req: RecordedRequest): ChatMessage[] {
  return (req.body as { messages: ChatMessage[] }).messages;
}

function toolNamesOf(req: RecordedRequest): string[] {
  const tools = (req.body as { tools?: { function: { name: string } }[] }).tools ?? [];
  return tools.map((t) => t.function.name);
}

function toolMessages(req: RecordedRequest): ChatMessage[] {
  return messagesOf(req).filter((m) => m.role === "tool");
}

function answer(content: string) {
  return { body: chatReply({ content }) };
}

function calls(
  ...list: { name: string; arguments: string | Record<string, unknown>; id?: string | null }[]
) {
  return { body: chatReply({ content: "", toolCalls: list }) };
}

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
      task: "Store Ada, read notes",
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.answer, "Stored Ada; The launch code is 4711.");
    assertEquals(result.rounds, 3);
    assertEquals(result.tool_calls.map((c) => [c.server, c.tool, c.ok]), [
      ["memory", "create_entities", true],
      ["filesystem", "read_text_file", true],
      ["memory", "read_graph", true],
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

Deno.test("one server's tools keep their raw names and schemas are cleaned", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("nothing to do"));
    const result = await h.run({});
    assertEquals(result.stopped_because, "answer");
    const req = h.fake.requestsTo(CHAT)[0]!;
    assertEquals(toolNamesOf(req), [
      "sleep",
      "progress",
      "cancellations",
      "huge",
      "mixed",
      "structured",
      "fail",
      "typed",
    ]);
    const typed = (req.body as { tools: { function: { name: string; parameters: unknown } }[] })
      .tools.find((t) => t.function.name === "typed")!;
    assertEquals(typed.function.parameters, {
      type: "object",
      properties: {
        path: { type: "string", description: "(format: uri-reference)" },
        count: { type: "integer", minimum: 1 },
      },
      required: ["path", "count"],
      additionalProperties: false,
    });
  });
});

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
    // Start the server first so the measurement is the calls, not the spawn.
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
    // Sequential would be >= 1200 ms; parallel is about the slowest call.
    assert(wall < 1100, `wall time ${Math.round(wall)} ms`);
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

Deno.test("tool definitions that overflow the context stop before any model request", async () => {
  const models: FakeModel[] = [{
    id: "tiny",
    type: "llm",
    state: "loaded",
    maxContextLength: 600,
    loadedContextLength: 600,
  }];
  await withHarness(async (h) => {
    const result = await h.run({});
    assertEquals(result.stopped_because, "context_overflow");
    assertStringIncludes(result.answer, "allowed_tools");
    assertStringIncludes(result.answer, "600 tokens");
    assertEquals(h.fake.requestsTo(CHAT).length, 0);
    // allowed_tools makes it fit.
    h.fake.script(CHAT, answer("fits"));
    const narrow = await h.run({ allowedTools: ["sleep"] });
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
      h.fake.script(CHAT, { body: chatReply({ content: "late" }), delayMs: 5000 });
      const started = performance.now();
      const result = await h.run({ timeBudgetMs: 300 });
      const ms = performance.now() - started;
      assertEquals(result.stopped_because, "time_budget");
      assertStringIncludes(result.answer, "time budget of 0.3 s");
      assert(ms < 1500, `took ${Math.round(ms)} ms`);
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

    await t.step("an empty reply gets one nudge", async () => {
      h.fake.script(CHAT, answer(""), answer("now answered"));
      const result = await h.run({});
      assertEquals(result.answer, "now answered");
      const nudge = messagesOf(h.fake.requests.at(-1)!).at(-1)!;
      assertStringIncludes(String(nudge.content), "Your last reply was empty");
    });
  });
});

Deno.test("cancellation aborts the model request within 200 ms", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, { body: chatReply({ content: "late" }), delayMs: 10_000 });
    const controller = new AbortController();
    const running = h.run({ signal: controller.signal });
    // Wait until the model request is in flight.
    while (h.fake.requestsTo(CHAT).length === 0) await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    controller.abort();
    const result = await settlesWithin(running, "the cancelled task to end");
    const latency = performance.now() - t0;
    assertEquals(result.stopped_because, "cancelled");
    assert(latency < 200, `cancellation took ${latency.toFixed(1)} ms`);
    figures.info(`cancel during generation: ${latency.toFixed(1)} ms`);
  });
});

Deno.test("cancellation aborts in-flight tool calls within 200 ms and the server sees it", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 10_000 } }));
    const controller = new AbortController();
    const running = h.run({
      signal: controller.signal,
      onProgress: (p) => {
        if (p.tool === "sleep") setTimeout(() => controller.abort(), 100);
      },
    });
    const t0 = await new Promise<number>((resolve) =>
      controller.signal.addEventListener("abort", () => resolve(performance.now()))
    );
    const result = await running;
    const latency = performance.now() - t0;
    assertEquals(result.stopped_because, "cancelled");
    assertEquals(result.tool_calls[0]!.error, "cancelled");
    assert(latency < 200, `cancellation took ${latency.toFixed(1)} ms`);
    figures.info(`cancel during a tool call: ${latency.toFixed(1)} ms`);
    let count = "0";
    for (let i = 0; i < 50 && count === "0"; i++) {
      const r = await h.pool.callTool("fixture", "cancellations", {});
      count = (r.content as { text: string }[])[0]!.text;
      if (count === "0") await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(count, "1");
  });
});

Deno.test("unknown or disabled servers fail before any model call, listing the valid names", async () => {
  await withHarness(async (h) => {
    const unknown = await assertRejects(() => h.run({ servers: ["fixture", "nope"] }));
    assertStringIncludes(unknown.message, "nope");
    assertStringIncludes(unknown.message, "fixture");
    assertStringIncludes(unknown.message, "memory");
    const disabled = await assertRejects(() => h.run({ servers: ["off"] }));
    assertStringIncludes(disabled.message, "disabled");
    assertEquals(h.fake.requestsTo(CHAT).length, 0);
  });
});

Deno.test("discover-all uses every enabled server except disabled ones and the bridge itself", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("ok"));
    const result = await h.run({ servers: "all" });
    assertEquals(result.servers, ["memory", "filesystem", "fixture"]);
    assert(result.notes.some((n) => n.includes('"bridge"') && n.includes("recursion")));
    assert(result.notes.some((n) => n.includes('"lmstudio"') && n.includes("recursion")));
    const status = await h.pool.status();
    assertEquals(status.servers.find((s) => s.name === "lmstudio")?.state, "not-started");
    const names = toolNamesOf(h.fake.requestsTo(CHAT)[0]!);
    assert(names.includes("fixture__sleep"));
    assert(names.includes("memory__read_graph"));
    assert(!names.some((n) => n.startsWith("off__")));
  });
});

Deno.test("allowed_tools limits what the model sees and may call", async () => {
  await withHarness(async (h) => {
    let seen = "";
    h.fake.script(CHAT, calls({ name: "fail", arguments: {} }), (req) => {
      seen = String(toolMessages(req)[0]!.content);
      return answer("ok");
    });
    await h.run({ allowedTools: ["sl*", "fixture__?yped"] });
    assertEquals(toolNamesOf(h.fake.requestsTo(CHAT)[0]!), ["sleep", "typed"]);
    assertStringIncludes(seen, 'there is no tool named "fail"');
    const none = await assertRejects(() => h.run({ allowedTools: ["zzz*"] }));
    assertStringIncludes(none.message, "matches none of the tools");
    assertStringIncludes(none.message, "sleep");
  });
});

Deno.test("the recursion guard refuses at depth 2 before doing anything", async () => {
  await withHarness(async (h) => {
    const error = await assertRejects(() => h.run({ depth: 2 }), Error, "nesting depth 2");
    assertEquals(error.name, "AgentError");
    assertEquals(h.fake.requests.length, 0);
  });
});

Deno.test("progress increases strictly, covers rounds and tool calls, and beats during long generations", async () => {
  await withHarness(async (h) => {
    h.fake.script(
      CHAT,
      {
        body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }),
        delayMs: 250,
      },
      answer("done"),
    );
    const events: AgentProgress[] = [];
    const ensured: string[] = [];
    const result = await h.run({
      maxRounds: 5,
      heartbeatMs: 50,
      onProgress: (p) => events.push(p),
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
    await h.run({ maxRounds: 5, heartbeatMs: 50, onProgress: (p) => events.push(p) });
    const beats = events.filter((e) => e.message.includes("still running"));
    assert(beats.length >= 3, `${beats.length} heartbeats in 400 ms at 50 ms`);
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
      "tool_result",
      "request",
      "response",
      "stop",
    ]);
    assert(events.every((e) => typeof e.t === "number"));
    assertEquals(events[3].arguments, { ms: 1 });
    assertEquals(events[7].answer, "traced");
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
    pool: h.pool,
    config: h.config,
    settings: {
      defaultModel: undefined,
      modelTtlSeconds: 600,
      defaultContextLength: 8192,
      depth: o.depth ?? 0,
    },
    log: quiet,
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
    h.fake.script(
      CHAT,
      {
        body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }),
        delayMs: 200,
      },
      answer("all done"),
    );
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
          onprogress: (p) => progress.push(p),
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
    // Each task takes well over the timeout, and each silence between messages well under it.
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
        calls({ name: "progress", arguments: { steps: 8, ms: 250 } }),
        answer("ok"),
      );
      // No heartbeat within the test: only the relayed progress keeps the client waiting.
      const { client, close } = await connectTools(h, { heartbeatMs: 60_000 });
      try {
        const { result, messages } = await callWithTimeout(client);
        assertStringIncludes(resultText(result), "stopped_because: answer");
        assert(messages.includes("round 1/100: progress: 8/8 step 8"), JSON.stringify(messages));
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

Deno.test("cancelling an autonomous tool call aborts the model request within 200 ms", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, { body: chatReply({ content: "late" }), delayMs: 10_000 });
    // The real client, watched: when does the in-flight model request end?
    let chatEnded = 0;
    const watched = {
      baseUrl: h.client.baseUrl,
      chat: (...args: Parameters<LmStudioClient["chat"]>) =>
        h.client.chat(...args).finally(() => (chatEnded = performance.now())),
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
      while (h.fake.requestsTo(CHAT).length === 0) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 20));
      const t0 = performance.now();
      controller.abort();
      await assertRejects(() => call);
      while (chatEnded === 0 && performance.now() - t0 < 2000) {
        await new Promise((r) => setTimeout(r, 5));
      }
      const latency = chatEnded - t0;
      assert(chatEnded > 0 && latency < 200, `model request ended ${latency.toFixed(1)} ms later`);
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

Deno.test("a broken, missing or empty MCP config stops the task with what is wrong and what to do", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "agent_config_test_" });
  const fake = await FakeLmStudio.start();
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const run = async (
    path: string,
    prepare?: (config: ConfigSource) => Promise<void>,
    servers: AgentOptions["servers"] = "all",
  ) => {
    const config = new ConfigSource({ explicitPath: path, log: quiet });
    const pool = new McpPool({ config, log: quiet, idleMs: 0 });
    try {
      await prepare?.(config);
      return await runAgent({
        task: "the task",
        servers,
        deps: { client, pool, config, log: quiet },
      });
    } finally {
      await pool.close();
    }
  };
  const broken = '{\n "mcpServers": {\n  "a": {"command":"npx"}\n  "b": {}\n }\n}';
  try {
    await t.step("a syntax error without a last good config is the whole message", async () => {
      const path = join(dir, "broken.json");
      await Deno.writeTextFile(path, broken);
      const error = await assertRejects(() => run(path));
      assertMatch(error.message, /broken\.json:4:\d+: invalid JSON/);
      assertStringIncludes(error.message, "No MCP servers are available until it is fixed.");
      assert(!error.message.includes("last good"), error.message);
      assert(!error.message.includes("Add servers"), error.message);
      assert(!/\.\.(\s|$)/.test(error.message), error.message);
      const named = await assertRejects(() => run(path, undefined, ["a"]));
      assertEquals(named.message, error.message);
    });
    await t.step("a missing file says so", async () => {
      const error = await assertRejects(() => run(join(dir, "nonexist.json")));
      assertMatch(error.message, /nonexist\.json .*does not exist/);
      assert(!error.message.includes("Add servers"), error.message);
      assert(!/\.\.(\s|$)/.test(error.message), error.message);
    });
    await t.step("a file without servers asks for servers", async () => {
      const path = join(dir, "empty.json");
      await Deno.writeTextFile(path, '{"mcpServers": {}}');
      const error = await assertRejects(() => run(path));
      assertStringIncludes(error.message, `No MCP servers in ${path}`);
      assertStringIncludes(error.message, "Add servers under mcpServers");
    });
    await t.step("unusable entries are listed with the fixes that apply", async () => {
      const path = join(dir, "unusable.json");
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          mcpServers: {
            off: { command: "npx", disabled: true },
            env: { command: "npx", env: { X: "${AGENT_TEST_SURELY_UNSET}" } },
          },
        }),
      );
      const error = await assertRejects(() => run(path));
      assertStringIncludes(error.message, '"off" is disabled');
      assertStringIncludes(error.message, '"env": environment variable AGENT_TEST_SURELY_UNSET');
      assertStringIncludes(
        error.message,
        'Fix these entries, enable one (remove "disabled": true)',
      );
      assert(!/\.\.(\s|$)/.test(error.message), error.message);
    });
    await t.step(
      "a broken edit of a good file keeps its servers and says so in a note",
      async () => {
        const path = join(dir, "edited.json");
        await Deno.writeTextFile(
          path,
          JSON.stringify({
            mcpServers: {
              fixture: cachedEntry([FIXTURE]),
            },
          }),
        );
        fake.script(CHAT, answer("ok"));
        const result = await run(path, async (config) => {
          await config.current();
          await Deno.writeTextFile(path, broken);
        });
        assertEquals(result.answer, "ok");
        const note = result.notes.find((n) => n.startsWith("MCP config problem: "));
        assert(note, JSON.stringify(result.notes));
        assertStringIncludes(note, "Still using the last good configuration");
        assert(!note.includes("(using the last good config)"), note);
      },
    );
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a model the server does not list fails before any chat request, naming its models", async (t) => {
  for (const flavor of ["lmstudio", "openai-only"] as const) {
    await t.step(flavor, async () => {
      await withHarness(async (h) => {
        const error = await assertRejects(() => h.run({ model: "nope" }), AgentError);
        assertEquals(error.kind, "model");
        assertStringIncludes(
          error.message,
          `Model "nope" is not among the models of ${h.fake.baseUrl}`,
        );
        assertStringIncludes(error.message, "qwen2.5-7b-instruct");
        assert(!error.message.includes("text-embedding"), "embedding models are no chat models");
        const fromDefault = await assertRejects(() => h.run({ defaultModel: "nope" }), AgentError);
        assertStringIncludes(fromDefault.message, "DEFAULT_MODEL");
        assertEquals(h.fake.requestsTo(CHAT).length, 0);
      }, { flavor });
    });
  }
});

Deno.test("a model named loosely is found and sent by its listed id, with its real context window", async () => {
  const models: FakeModel[] = [{
    id: "qwen/qwen3-8b",
    type: "llm",
    state: "loaded",
    maxContextLength: 32768,
    loadedContextLength: 16384,
  }];
  await withHarness(async (h) => {
    for (const name of ["qwen3-8b", "Qwen/Qwen3-8B", "qwen/qwen3-8b:2"]) {
      h.fake.script(CHAT, answer("ok"));
      const result = await h.run({ model: name });
      assertEquals([result.answer, result.model, result.context_tokens], [
        "ok",
        "qwen/qwen3-8b",
        16384,
      ]);
      assertEquals(
        (h.fake.requestsTo(CHAT).at(-1)!.body as { model: string }).model,
        "qwen/qwen3-8b",
      );
      assertEquals(result.notes.filter((n) => n.includes("context window")), []);
    }
  }, { models });
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("ok"));
    const result = await h.run({ model: "QWEN2.5-7B-Instruct" });
    assertEquals(result.model, "qwen2.5-7b-instruct");
    assertEquals(
      (h.fake.requestsTo(CHAT)[0]!.body as { model: string }).model,
      "qwen2.5-7b-instruct",
    );
    // The name the model manager answers with (a loaded instance) wins.
    h.fake.script(CHAT, answer("ok"));
    const ensured = await h.run({
      model: "QWEN2.5-7B-Instruct",
      deps: {
        client: h.client,
        pool: h.pool,
        config: h.config,
        models: {
          ensureLoaded: () =>
            Promise.resolve({ model: "qwen2.5-7b-instruct:2", via: "already-loaded" }),
        },
      },
    });
    assertEquals(ensured.model, "qwen2.5-7b-instruct:2");
    assertEquals(
      (h.fake.requestsTo(CHAT).at(-1)!.body as { model: string }).model,
      "qwen2.5-7b-instruct:2",
    );
  });
});

Deno.test("a model the bridge loads gets the context window the budget assumes", async (t) => {
  const models: FakeModel[] = [
    { id: "qwen2.5-7b-instruct", type: "llm", state: "not-loaded", maxContextLength: 32768 },
    { id: "small-model", type: "llm", state: "not-loaded", maxContextLength: 6000 },
    {
      id: "loaded-small",
      type: "llm",
      state: "loaded",
      maxContextLength: 32768,
      loadedContextLength: 4096,
    },
  ];
  // About 5000 tokens: more than a window of 4096 (the server's default load) can hold.
  const task = `Summarise this: ${"word ".repeat(4000)}`;
  await withHarness(async (h) => {
    const home = await Deno.makeTempDir({ prefix: "agent_models_" });
    // No `lms` on this machine as far as the manager knows: it loads over the REST API.
    const lms = new Lms({ env: { PATH: "/nonexistent", HOME: home }, log: quiet });
    const manager = new ModelManager({ client: h.client, lms, log: quiet });
    const run = (o: Partial<AgentOptions>) =>
      h.run({
        task,
        ...o,
        deps: { client: h.client, pool: h.pool, config: h.config, models: manager },
      });
    const loads = () => h.fake.requestsTo("/api/v1/models/load").map((r) => r.body);
    try {
      await t.step("LMSTUDIO_CONTEXT_LENGTH's default, 8192", async () => {
        h.fake.script(CHAT, answer("summarised"));
        const result = await run({ model: "qwen2.5-7b-instruct" });
        assertEquals(result.stopped_because, "answer");
        assertEquals(result.context_tokens, 8192);
        assertEquals(loads(), [{ model: "qwen2.5-7b-instruct", context_length: 8192 }]);
        assert(
          result.notes.includes(
            "loaded qwen2.5-7b-instruct with a context length of 8192 tokens " +
              "(LMSTUDIO_CONTEXT_LENGTH)",
          ),
          JSON.stringify(result.notes),
        );
        assertEquals(result.notes.filter((n) => n.includes("assumed")), []);
      });
      await t.step("no more than the model's maximum", async () => {
        h.fake.script(CHAT, answer("ok"));
        const result = await run({ model: "small-model", defaultContextLength: 16384 });
        assertEquals(result.context_tokens, 6000);
        assertEquals(loads().at(-1), { model: "small-model", context_length: 6000 });
      });
      await t.step(
        "a model already loaded keeps its own window, and the notes say so",
        async () => {
          const result = await run({ model: "loaded-small" });
          assertEquals(result.stopped_because, "context_overflow");
          assertEquals(result.context_tokens, 4096);
          assertEquals(loads().length, 2, "no load for a loaded model");
          assert(
            result.notes.some((n) => n.includes("context of 4096 tokens, less than the 8192")),
            JSON.stringify(result.notes),
          );
        },
      );
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  }, { models });
});

Deno.test("the loop reads the model list once before the first chat, again only after a load", async (t) => {
  await withHarness(async (h) => {
    // Every read of the list asks /api/v1/models once; naming the model spares resolveModel's.
    const reads = () => h.fake.requestsTo("/api/v1/models").length;
    const withManager = (via: string) => ({
      client: h.client,
      pool: h.pool,
      config: h.config,
      models: { ensureLoaded: () => Promise.resolve({ via }) },
    });
    const cases: [string, Partial<AgentOptions>, number][] = [
      ["without a model manager", {}, 1],
      ["with a model manager that found it loaded", { deps: withManager("already-loaded") }, 1],
      ["with a model manager that loaded it", { deps: withManager("rest") }, 2],
    ];
    for (const [label, options, expected] of cases) {
      await t.step(label, async () => {
        const before = reads();
        h.fake.script(CHAT, answer("ok"));
        const result = await h.run({ model: "qwen2.5-7b-instruct", ...options });
        assertEquals(result.answer, "ok");
        assertEquals(result.context_tokens, 8192);
        assertEquals(reads() - before, expected);
      });
    }
  });
});

Deno.test("cancelling before the first round stops the task at once, before any chat", async (t) => {
  // A server that does not answer the MCP handshake until the gate file exists.
  const gateDir = await Deno.makeTempDir({ prefix: "agent_gate_" });
  const gate = join(gateDir, "open");
  const silent = { command: "sh", args: ["-c", `until [ -e '${gate}' ]; do sleep 0.05; done`] };
  await withHarness(async (h) => {
    const cancelledRun = async (options: Partial<AgentOptions>, started: () => Promise<void>) => {
      const controller = new AbortController();
      const running = h.run({
        model: "qwen2.5-7b-instruct",
        ...options,
        signal: controller.signal,
      });
      await started();
      controller.abort();
      const result = await settlesWithin(running, "the cancelled task to end");
      assertEquals(result.stopped_because, "cancelled");
      assertEquals(result.rounds, 0);
      assertStringIncludes(result.answer, "Cancelled after 0 round(s)");
      assertEquals(h.fake.requestsTo(CHAT).length, 0);
    };
    await t.step("while the model list is read", async () => {
      await h.pool.listTools("fixture");
      const listRequested = Promise.withResolvers<void>();
      const listCancelled = Promise.withResolvers<void>();
      // A model list that never arrives.
      h.fake.script("/v1/models", () => {
        listRequested.resolve();
        return new Response(new ReadableStream({ cancel: () => listCancelled.resolve() }));
      });
      await cancelledRun({}, () => listRequested.promise);
      // The request was given up, not left to run.
      await settlesWithin(listCancelled.promise, "the model list request to be given up");
    });
    await t.step("while a server starts", async () => {
      await cancelledRun(
        { servers: ["silent"] },
        () =>
          waitFor("the silent server to be starting", async () => {
            const { servers } = await h.pool.status();
            return servers.find((s) => s.name === "silent")?.state === "connecting";
          }),
      );
      // The server exits, so that closing the pool need not wait for its connect timeout.
      await Deno.writeTextFile(gate, "");
    });
  }, { servers: { silent } });
  await Deno.remove(gateDir, { recursive: true });
});

Deno.test("a model that will load on its first request gets a truthful context note", async () => {
  const models: FakeModel[] = [
    { id: "qwen2.5-7b-instruct", type: "llm", state: "not-loaded", maxContextLength: 32768 },
  ];
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("ok"));
    const result = await h.run({ model: "qwen2.5-7b-instruct" });
    assertEquals(result.context_tokens, 8192);
    const note = result.notes.find((n) => n.includes("context window")) ?? "";
    assertStringIncludes(note, "loads on its first request with the server's default context");
    assertStringIncludes(note, "lms load qwen2.5-7b-instruct --context-length 8192");
  }, { models, flavor: "lmstudio-v0" });
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

Deno.test("the context note says why the window was assumed", async (t) => {
  await t.step(
    "a server without LM Studio's REST API does not report context lengths",
    async () => {
      await withHarness(async (h) => {
        h.fake.script(CHAT, answer("ok"));
        const result = await h.run({ model: "qwen2.5-7b-instruct", defaultContextLength: 6000 });
        assertEquals(result.context_tokens, 6000);
        const note = result.notes.find((n) => n.includes("context window"));
        assertStringIncludes(note ?? "", "does not report context lengths");
      }, { flavor: "openai-only" });
    },
  );
  await t.step("an unreadable model list proceeds to the model and says so", async () => {
    await withHarness(async (h) => {
      h.fake.script("/v1/models", { status: 500, body: { error: { message: "boom" } } });
      h.fake.script(CHAT, answer("ok"));
      const result = await h.run({ model: "anything" });
      assertEquals(result.answer, "ok");
      const note = result.notes.find((n) => n.includes("context window"));
      assertStringIncludes(note ?? "", "could not read the model list");
      assert(!note?.includes("does not report"), note);
    });
  });
});
