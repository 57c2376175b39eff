import { UsageError } from "../lib/args.ts";
import { lmsCommand } from "../lib/cli_lms.ts";
import { LMS_HELP } from "../lib/help.ts";
import { LmsError } from "../lib/lms_errors.ts";
import { ModelError } from "../lib/model_types.ts";
import { captureOutput } from "../lib/output.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { FakeLms, type FakeLmsScenario } from "./fakes/lms.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { runCli } from "./helpers.ts";
import { commandContext, DOWNLOADED_KEYS, modelStack, type ModelStackOptions } from "./rigs.ts";

async function withCli(
  scenario: FakeLmsScenario | false,
  fn: (
    run: (...argv: string[]) => Promise<{ code: number; out: string; err: string }>,
    fake: FakeLms,
  ) => Promise<void>,
  o: Omit<ModelStackOptions, "lms"> = {},
): Promise<void> {
  await using stack = await modelStack({ ...o, lms: scenario });
  await fn(async (...argv) => {
    const out = captureOutput();
    const code = await lmsCommand(argv, commandContext(stack, out));
    return { code, out: out.out, err: out.err };
  }, stack.fake);
}

const LOADED: FakeLmsScenario = {
  loaded: [{
    identifier: "qwen2.5-7b-instruct",
    modelKey: "qwen2.5-7b-instruct",
    status: "idle",
    contextLength: 8192,
  }],
};

Deno.test("lms ps prints a table, or one JSON document with --json", async () => {
  await withCli(LOADED, async (run) => {
    const table = await run("ps");
    assertEquals(table.code, 0);
    assertStringIncludes(table.out, "ID                   TYPE  STATUS  CONTEXT");
    assertStringIncludes(table.out, "qwen2.5-7b-instruct  llm   idle    8192");
    const json = await run("ps", "--json");
    assertEquals(JSON.parse(json.out), {
      models: [{ id: "qwen2.5-7b-instruct", type: "llm", status: "idle", contextLength: 8192 }],
      source: "lms",
      note: null,
    });
  });
});

Deno.test("lms ls filters by kind; both filters at once is misuse", async () => {
  await withCli({}, async (run) => {
    const llms = await run("ls", "--llm", "--json");
    assertEquals(
      (JSON.parse(llms.out) as { models: { id: string }[] }).models.map((m) => m.id),
      ["qwen2.5-7b-instruct", "qwen/qwen3-8b"],
    );
    await assertRejects(() => run("ls", "--llm", "--embedding"), UsageError, "exclude");
  });
});

Deno.test("lms load and unload change the state and report it", async () => {
  await withCli({}, async (run, fake) => {
    const load = await run("load", "qwen/qwen3-8b", "--ttl", "60", "-c", "4096");
    assertEquals(load.code, 0);
    assertStringIncludes(load.out, "Loaded qwen/qwen3-8b (lms, ");
    assertStringIncludes(load.out, "s, context 4096).");
    assert(
      (await fake.invocations()).some((a) =>
        a.join(" ") === "load qwen/qwen3-8b -y --ttl 60 --context-length 4096"
      ),
    );
    const unload = await run("unload", "qwen/qwen3-8b", "--json");
    assertEquals(JSON.parse(unload.out), {
      model: "qwen/qwen3-8b",
      unloaded: ["qwen/qwen3-8b"],
      source: "lms",
    });
  });
});

Deno.test("lms ensure returns at once for a loaded model and loads one that is not", async () => {
  await withCli(LOADED, async (run, fake) => {
    const ready = await run("ensure", "qwen2.5-7b-instruct");
    assertEquals(ready.code, 0, ready.err);
    assertStringIncludes(ready.out, "qwen2.5-7b-instruct is already loaded");
    assert(!(await fake.invocations()).some((a) => a[0] === "load"), "nothing was loaded");
    const loaded = await run("ensure", "qwen/qwen3-8b", "-c", "4096", "--json");
    assertEquals(loaded.code, 0, loaded.err);
    assertEquals(JSON.parse(loaded.out).via, "lms");
    assert((await fake.invocations()).some((a) => a[0] === "load" && a[1] === "qwen/qwen3-8b"));
  });
});

Deno.test("lms load without -c asks for the default context length", async () => {
  await withCli({}, async (run, fake) => {
    const load = await run("load", "qwen/qwen3-8b", "--json");
    assertEquals(JSON.parse(load.out), {
      model: "qwen/qwen3-8b",
      via: "lms",
      source: "lms",
      contextLength: 8192,
      waitedMs: (JSON.parse(load.out) as { waitedMs: number }).waitedMs,
      note: null,
    });
    assert(
      (await fake.invocations()).some((a) =>
        a.join(" ") === "load qwen/qwen3-8b -y --ttl 600 --context-length 8192"
      ),
    );
  }, { manager: { defaultContextLength: 8192 } });
});

Deno.test("load and unload over REST are reported alike, without naming MCP tools", async () => {
  await withCli(false, async (run) => {
    const load = await run("load", "text-embedding-nomic-embed-text-v1.5", "-c", "2048");
    assertStringIncludes(load.out, "Loaded text-embedding-nomic-embed-text-v1.5 (REST API, ");
    const unload = await run("unload", "text-embedding-nomic-embed-text-v1.5");
    assertEquals(unload.out, "Unloaded text-embedding-nomic-embed-text-v1.5 (REST API).\n");
    const status = await run("status");
    for (const printed of [load, unload, status]) {
      const all = printed.out + printed.err;
      assert(!/lms_[a-z]/.test(all), `names an MCP tool: ${all}`);
      assert(!all.includes("restart the bridge"), `tells a CLI user to restart: ${all}`);
    }
    assertStringIncludes(status.err, "open a new terminal");
  });
});

Deno.test("lms load of a model an OpenAI-only server does not list fails, listing its models", async () => {
  await withCli(false, async (run) => {
    const error = await assertRejects(() => run("load", "llama3:8b"), ModelError);
    assertEquals(error.kind, "not_found");
    assertStringIncludes(error.message, "qwen2.5-7b-instruct");
    assert(!error.message.includes("JIT"), error.message);
    const listed = await run("load", "qwen2.5-7b-instruct");
    assertEquals(listed.out, "qwen2.5-7b-instruct will load on its first request (JIT).\n");
  }, { server: { flavor: "openai-only" } });
});

Deno.test("lms ls --json has the same keys from lms, REST and an OpenAI-only server", async (t) => {
  for (
    const [name, scenario, server] of [
      ["lms", {}, {}],
      ["REST", false, {}],
      ["openai-only", false, { flavor: "openai-only" }],
    ] as const
  ) {
    await t.step(name, async () => {
      await withCli(scenario, async (run) => {
        const doc = JSON.parse((await run("ls", "--json")).out) as Record<string, unknown>;
        assertEquals(Object.keys(doc), ["models", "source", "note"]);
        const models = doc.models as Record<string, unknown>[];
        assert(models.length > 0);
        for (const m of models) assertEquals(Object.keys(m), DOWNLOADED_KEYS);
      }, { server });
    });
  }
});

Deno.test("lms status --json keeps its keys when the server does not answer", async () => {
  const keysOf = (text: string) => {
    const doc = JSON.parse(text) as Record<string, unknown>;
    return [Object.keys(doc), Object.keys(doc.lms as object)];
  };
  let up: string[][] = [];
  await withCli({}, async (run) => {
    const status = await run("status", "--json");
    assertEquals(status.code, 0);
    up = keysOf(status.out);
  });
  await withCli(false, async (run) => {
    const status = await run("status", "--json");
    assertEquals(status.code, 1);
    assertEquals(keysOf(status.out), up);
    const doc = JSON.parse(status.out) as Record<string, unknown>;
    assertEquals([doc.modelCount, doc.management, doc.source], [null, "none", null]);
    assertStringIncludes(String(doc.error), "Cannot reach");
  }, { closed: true });
});

Deno.test("lms status counts one model in the singular", async () => {
  await withCli({}, async (run) => {
    const status = await run("status");
    assertStringIncludes(status.out, "1 model)");
  }, { server: { models: [{ id: "qwen2.5-7b-instruct", type: "llm", state: "loaded" }] } });
});

Deno.test("lms load of a model that does not fit fails with the memory figure", async () => {
  await withCli({ load: { "qwen/qwen3-8b": { error: "memory" } } }, async (run) => {
    const error = await assertRejects(() => run("load", "qwen/qwen3-8b"), LmsError, "15.89 GB");
    assertEquals(error.kind, "out_of_memory");
  });
});

Deno.test("lms status says when lms is missing and how to install it", async () => {
  await withCli(false, async (run) => {
    const status = await run("status");
    assertEquals(status.code, 0);
    assertStringIncludes(status.out, "lms:        not installed");
    assertStringIncludes(status.out, "models via: LM Studio's REST API");
    assertStringIncludes(status.err, "npx lmstudio install-cli");
  });
});

Deno.test("lms misuse is a usage error naming the command", async () => {
  await withCli({}, async (run) => {
    const none = await assertRejects(() => run(), UsageError, "subcommand is required");
    assertEquals(none.command, "lms");
    await assertRejects(() => run("frobnicate"), UsageError, "unknown subcommand");
    await assertRejects(() => run("load"), UsageError, "model name is required");
    await assertRejects(() => run("load", "a", "b"), UsageError, "takes one");
    await assertRejects(() => run("load", "a", "--ttl", "soon"), UsageError, "--ttl");
    await assertRejects(() => run("ps", "extra"), UsageError, "takes no arguments");
  });
  for (const word of ["ps", "ls", "load", "unload", "status", "--json", "install-cli"]) {
    assertStringIncludes(LMS_HELP, word);
  }
  assertStringIncludes(LMS_HELP, "If `lms` is not installed");
  assertStringIncludes(LMS_HELP, "LMSTUDIO_CONTEXT_LENGTH");
  assert(!LMS_HELP.includes("restart the bridge"));
});

Deno.test("`main.ts lms ps --json` works in the bridge sandbox with lms on PATH", async () => {
  await using stack = await modelStack({ lms: LOADED });
  const output = await runCli(["lms", "ps", "--json"], {
    env: {
      PATH: `${stack.fake.binDir}:${Deno.env.get("PATH") ?? ""}`,
      LMSTUDIO_BASE_URL: stack.server.baseUrl,
      LOG_LEVEL: "error",
    },
  });
  assertEquals(output.code, 0, output.stderr);
  const doc = JSON.parse(output.stdout) as { source: string };
  assertEquals(doc.source, "lms");
});

Deno.test("`main.ts lms load` of a model an OpenAI-only server lacks exits 1 naming its models", async () => {
  await using server = await FakeLmStudio.start({ flavor: "openai-only" });
  const output = await runCli(["lms", "load", "llama3:8b"], {
    env: { PATH: "/nonexistent", LMSTUDIO_BASE_URL: server.baseUrl, LOG_LEVEL: "error" },
  });
  const stderr = output.stderr;
  assertEquals(output.code, 1, stderr);
  assertEquals(output.stdout, "");
  assertStringIncludes(stderr, 'has no model "llama3:8b"');
  assertStringIncludes(stderr, "qwen2.5-7b-instruct");
});
