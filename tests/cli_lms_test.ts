import { UsageError } from "../lib/args.ts";
import { lmsCommand } from "../lib/cli_lms.ts";
import { LMS_HELP } from "../lib/help.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { Lms } from "../lib/lms.ts";
import { LmsError } from "../lib/lms_errors.ts";
import { createLogger } from "../lib/log.ts";
import { ModelManager } from "../lib/models.ts";
import { captureOutput } from "../lib/output.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { FakeLms, type FakeLmsScenario } from "./fakes/lms.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";

const quiet = createLogger({ level: "silent" });

async function withCli(
  scenario: FakeLmsScenario | false,
  fn: (
    run: (...argv: string[]) => Promise<{ code: number; out: string; err: string }>,
    fake: FakeLms,
  ) => Promise<void>,
): Promise<void> {
  await using server = await FakeLmStudio.start();
  await using fake = await FakeLms.create({
    port: Number(new URL(server.baseUrl).port),
    ...scenario,
  });
  const client = new LmStudioClient({ baseUrl: server.baseUrl, retries: 0, log: quiet });
  const lms = new Lms({
    env: scenario === false ? { PATH: "/nonexistent" } : fake.env,
    log: quiet,
  });
  const models = new ModelManager({ client, lms, log: quiet });
  await fn(async (...argv) => {
    const out = captureOutput();
    const code = await lmsCommand(argv, { lms, models, client, out });
    return { code, out: out.out, err: out.err };
  }, fake);
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
      source: "lms ps",
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
    assertStringIncludes(load.out, "Loaded qwen/qwen3-8b (lms");
    assert(
      (await fake.invocations()).some((a) =>
        a.join(" ") === "load qwen/qwen3-8b -y --ttl 60 --context-length 4096"
      ),
    );
    const unload = await run("unload", "qwen/qwen3-8b", "--json");
    assertEquals(JSON.parse(unload.out), { unloaded: ["qwen/qwen3-8b"], via: "lms" });
  });
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
    assertStringIncludes(status.out, "models via: rest");
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
});

Deno.test("`main.ts lms ps --json` works in the bridge sandbox with lms on PATH", async () => {
  await using server = await FakeLmStudio.start();
  await using fake = await FakeLms.create({
    port: Number(new URL(server.baseUrl).port),
    ...LOADED,
  });
  const root = new URL("..", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=bridge", "--no-prompt", "--no-lock", "main.ts", "lms", "ps", "--json"],
    cwd: root,
    env: {
      PATH: `${fake.binDir}:${Deno.env.get("PATH") ?? ""}`,
      LMSTUDIO_BASE_URL: server.baseUrl,
      LOG_LEVEL: "error",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, 0, stderr);
  const doc = JSON.parse(new TextDecoder().decode(output.stdout)) as { source: string };
  assertEquals(doc.source, "lms ps");
});
