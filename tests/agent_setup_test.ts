/**
 * What the autonomous loop does before its first round (lib/agent_setup.ts), through runAgent: the
 * servers and tools offered, the MCP config's problems, the model picked and checked against the
 * server's list, its context window, how often the list is read, and cancellation while setting up.
 */
import { runAgent } from "../lib/agent.ts";
import { AgentError, type AgentOptions } from "../lib/agent_types.ts";
import { ConfigSource } from "../lib/config.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { Lms } from "../lib/lms.ts";
import { ModelManager } from "../lib/models.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import {
  answer,
  calls,
  CHAT,
  FIXTURE,
  heldReply,
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
import { FakeLmStudio, type FakeModel } from "./fakes/lmstudio.ts";
import { cachedEntry, waitFor } from "./fixtures/pool_support.ts";
import { quiet } from "./rigs.ts";

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
      "note",
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
    // Every definition in the first request (tools on demand: tests/tool_demand_test.ts).
    const result = await h.run({ servers: "all", toolShare: 1 });
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
    const lms = new Lms({ searchPath: "/nonexistent", home, log: quiet });
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
      ["without a model named", { model: undefined }, 1],
      ["with a model manager that found it loaded", { deps: withManager("already-loaded") }, 1],
      ["with a model manager that loaded it", { deps: withManager("rest") }, 2],
    ];
    for (const [label, options, expected] of cases) {
      await t.step(label, async () => {
        // Not the list of the step before (see the next test).
        h.client.forgetModelList();
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

Deno.test("a task right after another reuses its model list, unless the models may have changed", async (t) => {
  await withHarness(async (h) => {
    const reads = () => h.fake.requestsTo("/api/v1/models").length;
    // A reuse time no slow machine outlasts; the default is 2 s.
    const client = new LmStudioClient({
      baseUrl: h.fake.baseUrl,
      listReuseMs: 600_000,
      log: quiet,
    });
    const deps = { client, pool: h.pool, config: h.config };
    const run = async (options: Partial<AgentOptions> = {}) => {
      const before = reads();
      h.fake.script(CHAT, answer("ok"));
      const result = await h.run({ model: "qwen2.5-7b-instruct", deps, ...options });
      assertEquals(result.answer, "ok");
      assertEquals(result.context_tokens, 8192);
      return reads() - before;
    };
    await t.step("the first reads it, the next use it", async () => {
      assertEquals(await run(), 1);
      assertEquals(await run(), 0);
      assertEquals(await run({ model: undefined }), 0);
    });
    await t.step(
      "after a load by the manager the loop reads it again, not the kept one",
      async () => {
        const models = { ensureLoaded: () => Promise.resolve({ via: "rest" }) };
        assertEquals(await run({ deps: { ...deps, models } }), 1);
      },
    );
    await t.step("after the client loaded a model, the next task reads it", async () => {
      await client.loadModel("text-embedding-nomic-embed-text-v1.5");
      assertEquals(await run(), 1);
      assertEquals(await run(), 0);
    });
    await t.step(
      "with listReuseMs 0 (LMSTUDIO_MODEL_LIST_REUSE_MS=0) each task reads its own",
      async () => {
        const never = new LmStudioClient({ baseUrl: h.fake.baseUrl, listReuseMs: 0, log: quiet });
        const own = { deps: { ...deps, client: never } };
        assertEquals(await run(own), 1);
        assertEquals(await run(own), 1);
      },
    );
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
      // A model list that never arrives.
      const held = heldReply();
      h.fake.script("/v1/models", held.reply);
      await cancelledRun({}, () => held.arrived);
      // The request was given up, not left to run.
      await settlesWithin(held.abandoned, "the model list request to be given up");
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
