/**
 * `run` in-process (runCommand with captured output) and end to end (main.ts under the "bridge"
 * permission set), against the fake LM Studio and the fixture MCP server.
 */
import { UsageError } from "../lib/args.ts";
import type { CommandContext } from "../lib/app.ts";
import { runCommand } from "../lib/cli_run.ts";
import { ConfigSource } from "../lib/config.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { createLogger } from "../lib/log.ts";
import { captureOutput, type Output } from "../lib/output.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedRun, denoChildEnv } from "./fixtures/pool_support.ts";
import { runCli } from "./helpers.ts";
import { commandContext } from "./rigs.ts";
import type { AgentApp } from "../lib/server_agent.ts";

const CHAT = "/v1/chat/completions";
const FIXTURE = new URL("./fixtures/agent_server.ts", import.meta.url).pathname;
const quiet = createLogger({ level: "silent" });

interface Env {
  dir: string;
  configPath: string;
  fake: FakeLmStudio;
  /** The context `run` gets from main.ts; `signal` stands for Ctrl-C. */
  ctx(out: Output, signal?: AbortSignal): CommandContext<AgentApp>;
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cli_run_test_" });
  const configPath = join(dir, ".mcp.json");
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({
      mcpServers: {
        // "deno" by name, as users write it: the bridge permission set allows running it from PATH.
        fixture: { command: "deno", args: cachedRun([FIXTURE]), env: denoChildEnv() },
        off: { command: "deno", args: ["run", FIXTURE], disabled: true },
      },
    }),
  );
  const fake = await FakeLmStudio.start();
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const config = new ConfigSource({ explicitPath: configPath, log: quiet });
  const pool = new McpPool({ config, log: quiet, idleMs: 0 });
  const settings = {
    defaultModel: undefined,
    modelTtlSeconds: 600,
    defaultContextLength: 8192,
    depth: 0,
  };
  try {
    await fn({
      dir,
      configPath,
      fake,
      ctx: (out, signal) =>
        commandContext(
          { client, pool: () => Promise.resolve(pool), config, settings, log: quiet },
          out,
          signal,
        ),
    });
  } finally {
    await pool.close();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function toolRound() {
  return {
    body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }),
  };
}

/** Output whose stderr is a terminal, so `run` shows status lines; they are collected. */
function terminalOutput(): { out: Output; statuses: string[] } {
  const cap = captureOutput();
  const statuses: string[] = [];
  const out: Output = {
    stdout: cap.stdout,
    stderr: cap.stderr,
    status: (line) => statuses.push(line),
    stdoutIsTerminal: false,
    stderrIsTerminal: true,
  };
  return { out, statuses };
}

Deno.test("run prints the answer on stdout and a summary on stderr", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, toolRound(), { body: chatReply({ content: "The answer." }) });
    const out = captureOutput();
    const code = await runCommand(["--mcp", "fixture", "wait", "a", "moment"], env.ctx(out));
    assertEquals(code, 0);
    assertEquals(out.out, "The answer.\n");
    assertStringIncludes(out.err, "answer after 2 round(s), 1 tool call(s)");
    const first = env.fake.requestsTo(CHAT)[0]!.body as { messages: { content: string }[] };
    assertEquals(first.messages[1]!.content, "wait a moment");
  });
});

Deno.test("run --json prints one document with the result", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, toolRound(), { body: chatReply({ content: "Done." }) });
    const out = captureOutput();
    const code = await runCommand(
      ["--mcp=fixture", "--json", "--max-rounds", "5", "task"],
      env.ctx(out),
    );
    assertEquals(code, 0);
    const doc = JSON.parse(out.out);
    assertEquals(doc.answer, "Done.");
    assertEquals(doc.rounds, 2);
    assertEquals(doc.stopped_because, "answer");
    assertEquals(doc.tool_calls.length, 1);
    assertEquals(doc.tool_calls[0].name, "sleep");
    assertEquals(doc.usage.total_tokens, 30);
    assertEquals(out.err, "");
  });
});

Deno.test("run reads the task from stdin with -", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, { body: chatReply({ content: "ok" }) });
    const out = captureOutput();
    const code = await runCommand(
      ["--all", "-"],
      env.ctx(out),
      { readStdin: () => Promise.resolve("  task from stdin\n") },
    );
    assertEquals(code, 0);
    const first = env.fake.requestsTo(CHAT)[0]!.body as { messages: { content: string }[] };
    assertEquals(first.messages[1]!.content, "task from stdin");
  });
});

Deno.test("run rejects misuse with a usage error before doing anything", async () => {
  await withEnv(async (env) => {
    const out = captureOutput();
    const cases: [string[], string][] = [
      [["task"], "--mcp NAME"],
      [["--mcp", "fixture", "--all", "task"], "not both"],
      [["--mcp", "fixture"], "Give the TASK"],
      [["--mcp", "fixture", "--time-budget", "soon", "task"], "--time-budget"],
      [["--mcp", "fixture", "--max-rounds", "0", "task"], "--max-rounds"],
      [["--mcp", "fixture", "--bogus", "task"], "bogus"],
    ];
    for (const [argv, message] of cases) {
      await assertRejects(() => runCommand(argv, env.ctx(out)), UsageError, message);
    }
    assertEquals(env.fake.requests.length, 0);
  });
});

Deno.test("run --system adds the user's instructions and --temperature is sent", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, { body: chatReply({ content: "Bonjour." }) });
    const out = captureOutput();
    const argv = ["--mcp", "fixture", "--system", "Answer in French.", "-t", "0.2", "say hi"];
    assertEquals(await runCommand(argv, env.ctx(out)), 0);
    const body = env.fake.requestsTo(CHAT)[0]?.body as {
      messages: { role: string; content: string }[];
      temperature?: number;
    };
    assertEquals(body.messages[0]?.role, "system");
    assert(body.messages[0]?.content.endsWith("\n\nAnswer in French."), body.messages[0]?.content);
    assertEquals(body.temperature, 0.2);
    await assertRejects(
      () => runCommand(["--mcp", "fixture", "--temperature", "hot", "t"], env.ctx(out)),
      UsageError,
      "--temperature must be a number from 0 to 2",
    );
  });
});

Deno.test("run exits 1 with what was done when the task is unfinished", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, toolRound());
    const out = captureOutput();
    const code = await runCommand(["--mcp", "fixture", "--max-rounds", "1", "t"], env.ctx(out));
    assertEquals(code, 1);
    assertStringIncludes(out.out, "unfinished");
    assertStringIncludes(out.out, 'sleep {"ms":1} -> ok');
    assertStringIncludes(out.err, "max_rounds after 1 round(s)");
  });
});

Deno.test("run fails before any model call for unknown or disabled servers", async () => {
  await withEnv(async (env) => {
    const out = captureOutput();
    const error = await assertRejects(() => runCommand(["--mcp", "nope", "t"], env.ctx(out)));
    assertStringIncludes(error.message, "fixture");
    await assertRejects(() => runCommand(["--mcp", "off", "t"], env.ctx(out)), Error, "disabled");
    assertEquals(env.fake.requestsTo(CHAT).length, 0);
  });
});

Deno.test("run shows a live status line on a terminal and clears it at the end", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, toolRound(), { body: chatReply({ content: "ok" }) });
    const { out, statuses } = terminalOutput();
    assertEquals(await runCommand(["--mcp", "fixture", "t"], env.ctx(out)), 0);
    assert(statuses.some((s) => /^round 1\/100 · calling sleep · \d+\.\d s · \d+ tokens$/.test(s)));
    assert(statuses.some((s) => s.startsWith("round 2/100 · asking")));
    assertEquals(statuses.at(-1), "");
  });
});

Deno.test("run's status line shows what a running tool reports", async () => {
  await withEnv(async (env) => {
    env.fake.script(
      CHAT,
      {
        body: chatReply({
          content: "",
          toolCalls: [{ name: "progress", arguments: { steps: 2, ms: 20 } }],
        }),
      },
      { body: chatReply({ content: "ok" }) },
    );
    const { out, statuses } = terminalOutput();
    assertEquals(await runCommand(["--mcp", "fixture", "t"], env.ctx(out)), 0);
    assert(
      statuses.some((s) =>
        /^round 1\/100 · progress: 2\/2 step 2 · \d+\.\d s · \d+ tokens$/.test(s)
      ),
      JSON.stringify(statuses),
    );
  });
});

Deno.test("run --trace writes a JSONL trace", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, { body: chatReply({ content: "ok" }) });
    const path = join(env.dir, "t.jsonl");
    const out = captureOutput();
    assertEquals(await runCommand(["--mcp", "fixture", "--trace", path, "t"], env.ctx(out)), 0);
    const types = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l).type);
    assertEquals(types, ["start", "request", "response", "stop"]);
    assertStringIncludes(out.err, `trace written to ${path}`);
  });
});

Deno.test("Ctrl-C stops run with stopped_because cancelled", async () => {
  await withEnv(async (env) => {
    env.fake.script(CHAT, { body: chatReply({ content: "late" }), delayMs: 10_000 });
    const controller = new AbortController();
    const out = captureOutput();
    const running = runCommand(
      ["--mcp", "fixture", "--json", "t"],
      env.ctx(out, controller.signal),
    );
    while (env.fake.requestsTo(CHAT).length === 0) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    assertEquals(await running, 1);
    assertEquals(JSON.parse(out.out).stopped_because, "cancelled");
  });
});

Deno.test("main.ts run works end to end under the bridge permission set", async (t) => {
  await withEnv(async (env) => {
    const cliEnv = { LMSTUDIO_BASE_URL: env.fake.baseUrl, MCP_JSON_PATH: env.configPath };
    await t.step("human mode", async () => {
      env.fake.script(CHAT, toolRound(), { body: chatReply({ content: "Hello from the model." }) });
      const run = await runCli(["run", "--mcp", "fixture", "say", "hello"], { env: cliEnv });
      assertEquals(run.code, 0, run.stderr);
      assertEquals(run.stdout, "Hello from the model.\n");
      assertStringIncludes(run.stderr, "answer after 2 round(s), 1 tool call(s)");
    });
    await t.step("JSON mode with the task on stdin", async () => {
      env.fake.script(CHAT, { body: chatReply({ content: "JSON answer" }) });
      const run = await runCli(["run", "--all", "--json", "-"], { env: cliEnv, stdin: "do it" });
      assertEquals(run.code, 0, run.stderr);
      const doc = JSON.parse(run.stdout);
      assertEquals([doc.answer, doc.stopped_because, doc.rounds], ["JSON answer", "answer", 1]);
    });
    await t.step("a trace without write permission fails fast naming the flag", async () => {
      const path = join(env.dir, "denied.jsonl");
      const run = await runCli(["run", "--mcp", "fixture", "--trace", path, "t"], { env: cliEnv });
      assertEquals(run.code, 1);
      assertStringIncludes(run.stderr, `--allow-write=${path}`);
      assertEquals(run.stdout, "");
    });
    await t.step(
      "an unknown model fails before any chat request, without false notes",
      async () => {
        const before = env.fake.requestsTo(CHAT).length;
        const run = await runCli(["run", "--mcp", "fixture", "--model", "nope", "t"], {
          env: cliEnv,
        });
        assertEquals(run.code, 1);
        assertEquals(run.stdout, "");
        assertStringIncludes(run.stderr, 'Model "nope" is not among the models of');
        assertStringIncludes(run.stderr, "qwen2.5-7b-instruct");
        assert(!run.stderr.includes("note:"), run.stderr);
        assertEquals(env.fake.requestsTo(CHAT).length, before);
      },
    );
    await t.step("no --mcp or --all is a usage error (exit 2)", async () => {
      const run = await runCli(["run", "task"], { env: cliEnv });
      assertEquals(run.code, 2);
      assertStringIncludes(run.stderr, "--mcp NAME");
    });
  });
});

// ---- session files

/** The chat messages of request `i` the fake got, as [role, content]. */
function said(env: Env, i: number): [string, unknown][] {
  const body = env.fake.requestsTo(CHAT)[i]!.body as {
    messages: { role: string; content: unknown }[];
  };
  return body.messages.slice(1).map((m) => [m.role, m.content]);
}

Deno.test("run --session FILE keeps the conversation, --continue FILE remembers it", async () => {
  await withEnv(async (env) => {
    env.fake.script(
      CHAT,
      { body: chatReply({ content: "Noted: the key is 42." }) },
      { body: chatReply({ content: "The key is 42." }) },
    );
    const file = join(env.dir, "notes.json");
    const first = captureOutput();
    assertEquals(
      await runCommand(
        ["--mcp", "fixture", "--session", file, "remember the key 42"],
        env.ctx(first),
      ),
      0,
    );
    assertEquals(first.out, "Noted: the key is 42.\n");
    assertStringIncludes(
      first.err,
      `session kept in ${file} (1 task); continue it with: run --continue`,
    );
    const kept = JSON.parse(await Deno.readTextFile(file));
    assertEquals([kept.version, kept.tasks, kept.servers], [1, 1, ["fixture"]]);
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);

    // No --mcp: the session brings its servers.
    const second = captureOutput();
    assertEquals(
      await runCommand(["--continue", file, "--json", "what is the key?"], env.ctx(second)),
      0,
    );
    const doc = JSON.parse(second.out);
    assertEquals([doc.answer, doc.session_file], ["The key is 42.", file]);
    assertEquals(said(env, 1), [
      ["user", "remember the key 42"],
      ["assistant", "Noted: the key is 42."],
      ["user", "what is the key?"],
    ]);
    assertEquals(JSON.parse(await Deno.readTextFile(file)).tasks, 2);
  });
});

Deno.test("run --continue needs a session there; a file that holds none is left alone", async () => {
  await withEnv(async (env) => {
    const out = captureOutput();
    const missing = join(env.dir, "missing.json");
    const error = await assertRejects(() => runCommand(["--continue", missing, "t"], env.ctx(out)));
    assertStringIncludes(error.message, `No session in ${missing}`);
    assertStringIncludes(error.message, "use --session");
    const other = join(env.dir, "other.json");
    await Deno.writeTextFile(other, '{"not": "a session"}');
    const invalid = await assertRejects(() =>
      runCommand(["--mcp", "fixture", "--session", other, "t"], env.ctx(out))
    );
    assertStringIncludes(invalid.message, `${other} holds no session this bridge can continue`);
    assertEquals(await Deno.readTextFile(other), '{"not": "a session"}');
    await assertRejects(
      () => runCommand(["--session", other, "--continue", other, "t"], env.ctx(out)),
      UsageError,
      "not both",
    );
    // A new session file still needs servers.
    await assertRejects(
      () => runCommand(["--session", join(env.dir, "new.json"), "t"], env.ctx(out)),
      UsageError,
      "--continue FILE",
    );
    assertEquals(env.fake.requestsTo(CHAT).length, 0);
  });
});

Deno.test("main.ts run --session works under the bridge permission set, which writes nothing itself", async () => {
  await withEnv(async (env) => {
    const cliEnv = { LMSTUDIO_BASE_URL: env.fake.baseUrl, MCP_JSON_PATH: env.configPath };
    env.fake.script(
      CHAT,
      { body: chatReply({ content: "First." }) },
      { body: chatReply({ content: "Second." }) },
    );
    const file = join(env.dir, "cli-session.json");
    const first = await runCli(["run", "--mcp", "fixture", "--session", file, "one"], {
      env: cliEnv,
    });
    assertEquals(first.code, 0, first.stderr);
    assertEquals(first.stdout, "First.\n");
    // Written by a deno allowed to write only that file, readable by its owner only.
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const second = await runCli(["run", "--continue", file, "two"], { env: cliEnv });
    assertEquals(second.code, 0, second.stderr);
    assertEquals(said(env, 1), [["user", "one"], ["assistant", "First."], ["user", "two"]]);
    assertEquals(JSON.parse(await Deno.readTextFile(file)).tasks, 2);
  });
});

Deno.test("run --session where nothing may write the file fails first with the command that allows it", async () => {
  await withEnv(async (env) => {
    const file = join(env.dir, "denied.json");
    // The bridge's permissions without running deno: no helper can write the file for it.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-net=127.0.0.1",
        "--no-prompt",
        "--quiet",
        "--cached-only",
        `--config=${new URL("../deno.json", import.meta.url).pathname}`,
        new URL("../main.ts", import.meta.url).pathname,
        "run",
        "--mcp",
        "fixture",
        "--session",
        file,
        "t",
      ],
      env: {
        ...denoChildEnv(),
        LMSTUDIO_BASE_URL: env.fake.baseUrl,
        MCP_JSON_PATH: env.configPath,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 1, stderr);
    assertStringIncludes(
      stderr,
      `Cannot write ${file}: the bridge's sandbox allows no writes there`,
    );
    assertStringIncludes(stderr, `--allow-write=${file}`);
    assertStringIncludes(stderr, "Then run it again, or leave out --session.");
    assertEquals(env.fake.requestsTo(CHAT).length, 0);
  });
});
