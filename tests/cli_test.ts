/**
 * The CLI end to end: main.ts spawned under the "bridge" permission set; stdout, stderr and the
 * exit code checked separately.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, REPO, runCli } from "./helpers.ts";
import { VERSION } from "../lib/version.ts";

async function tempHome(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "bridge-home-" });
}

Deno.test("--version prints the version on stdout and exits 0", async () => {
  const r = await runCli(["--version"]);
  assertEquals(r.code, 0);
  assertEquals(r.stdout, `lmstudio-bridge ${VERSION}\n`);
  assertEquals(r.stderr, "");
});

Deno.test("--help prints help on stdout and exits 0; each command has its own help", async () => {
  const r = await runCli(["--help"]);
  assertEquals(r.code, 0);
  for (const cmd of ["serve", "run", "chat", "models", "mcps", "tools", "call", "lms", "doctor"]) {
    assertStringIncludes(r.stdout, `lmstudio-bridge ${cmd}`);
  }
  assertEquals(r.stderr, "");
  for (const cmd of ["chat", "run", "mcps", "lms", "call"]) {
    const c = await runCli([cmd, "--help"]);
    assertEquals(c.code, 0, cmd);
    assertMatch(c.stdout, /Usage:/);
  }
});

Deno.test("misuse exits 2 with the error and help on stderr, nothing on stdout", async (t) => {
  await t.step("no command", async () => {
    const r = await runCli([]);
    assertEquals(r.code, 2);
    assertEquals(r.stdout, "");
    assertStringIncludes(r.stderr, "a command is required");
    assertStringIncludes(r.stderr, "Usage:");
  });
  await t.step("unknown command", async () => {
    const r = await runCli(["frobnicate"]);
    assertEquals(r.code, 2);
    assertEquals(r.stdout, "");
    assertStringIncludes(r.stderr, 'Unknown command "frobnicate"');
    assertStringIncludes(r.stderr, "Usage:");
  });
  await t.step("unknown option", async () => {
    const r = await runCli(["models", "--fancy"]);
    assertEquals(r.code, 2);
    assertEquals(r.stdout, "");
    assertStringIncludes(r.stderr, "--fancy");
    assertStringIncludes(r.stderr, "models [--json]");
  });
  await t.step("chat without a prompt", async () => {
    const r = await runCli(["chat"]);
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "prompt is required");
  });
  await t.step("invalid environment", async () => {
    const r = await runCli(["models"], { env: { LMSTUDIO_PORT: "99999" } });
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "LMSTUDIO_PORT");
  });
});

Deno.test("chat prints the answer on stdout and the reasoning on stderr", async () => {
  await using fake = await FakeLmStudio.start();
  fake.script("/v1/chat/completions", {
    body: chatReply({ content: "Four.", reasoning_content: "2+2=4" }),
  });
  const home = await tempHome();
  const r = await runCli(["chat", "--system", "Be terse.", "What", "is", "2+2?"], {
    env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home },
  });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout, "Four.\n");
  assertStringIncludes(r.stderr, "2+2=4");
  const body = fake.requests.find((q) => q.path === "/v1/chat/completions")?.body as {
    messages: unknown;
  };
  assertEquals(body.messages, [
    { role: "system", content: "Be terse." },
    { role: "user", content: "What is 2+2?" },
  ]);
  await Deno.remove(home, { recursive: true });
});

Deno.test("chat reads the prompt from stdin with - and prints JSON with --json", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await tempHome();
  const r = await runCli(["chat", "--json", "-"], {
    env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home },
    stdin: "hello from stdin\n",
  });
  assertEquals(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  assertEquals(json.answer, "Echo: hello from stdin");
  assertEquals(json.model, "qwen2.5-7b-instruct");
  await Deno.remove(home, { recursive: true });
});

Deno.test("models lists a table, or JSON, with state and context", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await tempHome();
  const env = { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home };
  const table = await runCli(["models"], { env });
  assertEquals(table.code, 0, table.stderr);
  assertMatch(table.stdout, /^MODEL\s+TYPE\s+STATE\s+CONTEXT/);
  assertMatch(table.stdout, /qwen2\.5-7b-instruct\s+llm\s+loaded\s+8192/);
  const json = await runCli(["models", "--json"], { env });
  assertEquals(json.code, 0);
  assertEquals(JSON.parse(json.stdout).models.length, 2);
  await Deno.remove(home, { recursive: true });
});

Deno.test("models on a server without models says how to get one", async () => {
  await using fake = await FakeLmStudio.start({ models: [] });
  const home = await tempHome();
  const r = await runCli(["models"], { env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home } });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout, "");
  assertStringIncludes(r.stderr, "offers no models");
  await Deno.remove(home, { recursive: true });
});

Deno.test("models against an Ollama-like server says what could not be known", async () => {
  await using fake = await FakeLmStudio.start({ flavor: "openai-only" });
  const home = await tempHome();
  const r = await runCli(["models"], { env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home } });
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, "qwen2.5-7b-instruct");
  assertStringIncludes(r.stderr, "note:");
  await Deno.remove(home, { recursive: true });
});

Deno.test("LM Studio down: exit 1 and a message that says how to start it", async () => {
  const dead = await FakeLmStudio.start();
  await dead.close();
  const home = await tempHome();
  const r = await runCli(["chat", "hi"], {
    env: { LMSTUDIO_BASE_URL: dead.baseUrl, LMSTUDIO_RETRIES: "0", HOME: home },
  });
  assertEquals(r.code, 1);
  assertEquals(r.stdout, "");
  assertStringIncludes(r.stderr, "Cannot reach LM Studio");
  assertStringIncludes(r.stderr, "lms server start");
  await Deno.remove(home, { recursive: true });
});

Deno.test("a non-loopback LM Studio host is refused by the sandbox with the flag to allow it", async () => {
  const home = await tempHome();
  const r = await runCli(["models"], {
    env: { LMSTUDIO_BASE_URL: "http://192.0.2.10:1234", LMSTUDIO_RETRIES: "0", HOME: home },
  });
  assertEquals(r.code, 1);
  assertStringIncludes(r.stderr, "--allow-net");
  assert(!r.stderr.includes("    at "), "no stack trace for the user");
  await Deno.remove(home, { recursive: true });
});

Deno.test("doctor reports each check and fails when LM Studio is down", async () => {
  const home = await tempHome();
  await Deno.writeTextFile(`${home}/.mcp.json`, JSON.stringify({ mcpServers: {} }));
  await using fake = await FakeLmStudio.start();
  const ok = await runCli(["doctor"], { env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home } });
  assertEquals(ok.code, 0, ok.stdout + ok.stderr);
  assertMatch(ok.stdout, /ok\s+LM Studio/);
  assertMatch(ok.stdout, /MCP config\s+.*\.mcp\.json: 0 servers/);
  assertMatch(ok.stdout, /warn\s+lms\s+not installed/);
  const dead = await FakeLmStudio.start();
  await dead.close();
  const bad = await runCli(["doctor", "--json"], {
    env: { LMSTUDIO_BASE_URL: dead.baseUrl, LMSTUDIO_RETRIES: "0", HOME: home },
  });
  assertEquals(bad.code, 1);
  const report = JSON.parse(bad.stdout);
  assertEquals(report.ok, false);
  assertEquals(report.checks[0].status, "fail");
  await Deno.remove(home, { recursive: true });
});

Deno.test("doctor blames the sandbox only for launchers that exist but are not allowed", async () => {
  const home = await tempHome();
  await Deno.writeTextFile(
    `${home}/.mcp.json`,
    JSON.stringify({
      mcpServers: {
        shell: { command: "sh", args: ["-c", "exit 0"] },
        missing: { command: "nonexistent-launcher-xyz" },
      },
    }),
  );
  await using fake = await FakeLmStudio.start();
  const r = await runCli(["doctor", "--json"], {
    env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home },
    cwd: home,
  });
  assertEquals(r.code, 1, r.stderr);
  const checks = JSON.parse(r.stdout).checks as { name: string; status: string; detail: string }[];
  const byName = new Map(checks.map((c) => [c.name, c]));
  assertEquals(byName.get("sandbox: sh")?.status, "fail");
  assertStringIncludes(byName.get("sandbox: sh")?.detail ?? "", "--allow-run=sh");
  assertEquals(byName.has("sandbox: nonexistent-launcher-xyz"), false);
  assertStringIncludes(byName.get("server missing")?.detail ?? "", "not found");
  const human = await runCli(["doctor"], {
    env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home },
    cwd: home,
  });
  for (const line of human.stdout.trimEnd().split("\n")) {
    assertMatch(
      line,
      /^(ok {2}|warn|FAIL) {2}\S|^ {6,}\S/,
      "every line is a check or its continuation",
    );
  }
  await Deno.remove(home, { recursive: true });
});

Deno.test("through `deno task --cwd REPO`, the user's project .mcp.json is found (INIT_CWD)", async () => {
  const project = await tempHome();
  const home = await tempHome();
  await Deno.writeTextFile(
    `${project}/.mcp.json`,
    JSON.stringify({ mcpServers: { "project-server": { command: "npx", args: ["-y", "x"] } } }),
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--cwd", REPO, "cli", "mcps", "--json"],
    cwd: project,
    env: baseEnv({ HOME: home }),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const report = JSON.parse(stdout);
  assertEquals(report.config.path, `${await Deno.realPath(project)}/.mcp.json`);
  assertEquals(report.servers[0].name, "project-server");
  await Deno.remove(project, { recursive: true });
  await Deno.remove(home, { recursive: true });
});
