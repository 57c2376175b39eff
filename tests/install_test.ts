/**
 * The README's quick start as a new user runs it: `deno task --quiet install` puts a
 * `lmstudio-bridge` command on PATH (here under a temporary DENO_INSTALL_ROOT), and from a
 * separate project folder with its own `.mcp.json` that command answers `--version`, `doctor`
 * and `run` under the sandbox. Widening the sandbox (a launcher, a trace directory) is the install
 * again with `--allow-*` options, the exact command doctor and the error messages print.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedRun, denoChildEnv } from "./fixtures/pool_support.ts";
import { baseEnv, type CliRun, REPO } from "./helpers.ts";
import { launcherScript, V8_FLAGS } from "../lib/cli_install.ts";
import { join } from "../lib/path.ts";
import { NAME, VERSION } from "../lib/version.ts";

const FIXTURE = `${REPO}/tests/fixtures/agent_server.ts`;
const CHAT = "/v1/chat/completions";

interface Sandbox {
  /** The install root (DENO_INSTALL_ROOT); the command is in its bin/. */
  root: string;
  /** The user's project folder, with its own .mcp.json. */
  project: string;
  /** The environment of the user's shell: PATH with the install's bin first. */
  env: Record<string, string>;
}

async function withSandbox(fn: (s: Sandbox) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "install_test_root_" });
  const project = await Deno.makeTempDir({ prefix: "install_test_project_" });
  const env = baseEnv({
    PATH: `${root}/bin:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    DENO_INSTALL_ROOT: root,
    HOME: project,
  });
  try {
    await fn({ root, project, env });
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(project, { recursive: true });
  }
}

async function run(
  command: string,
  args: string[],
  options: { env: Record<string, string>; cwd: string },
): Promise<CliRun> {
  const out = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** `deno task --quiet install ARGS` in the repository, as the README says. */
async function install(s: Sandbox, args: string[] = []): Promise<CliRun> {
  const r = await run("deno", ["task", "--quiet", "install", ...args], {
    env: { ...s.env, DENO_NO_UPDATE_CHECK: "1" },
    cwd: REPO,
  });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "", "the quiet task prints nothing on stderr");
  return r;
}

/** Runs `cmd` as a shell command line in the user's project (words split by the shell). */
function shell(s: Sandbox, cmd: string): Promise<CliRun> {
  return run("sh", ["-c", cmd], { env: s.env, cwd: s.project });
}

function bridge(s: Sandbox, args: string[]): Promise<CliRun> {
  return run(NAME, args, { env: s.env, cwd: s.project });
}

async function writeConfig(s: Sandbox, servers: Record<string, unknown>): Promise<void> {
  await Deno.writeTextFile(join(s.project, ".mcp.json"), JSON.stringify({ mcpServers: servers }));
}

const fixtureEntry = () => ({
  command: "deno",
  args: cachedRun([FIXTURE]),
  env: { ...denoChildEnv(), DENO_DIR: baseEnv().DENO_DIR ?? "" },
});

Deno.test("the installed command runs --version, doctor and run from a user's project under the sandbox", async () => {
  await using fake = await FakeLmStudio.start();
  await withSandbox(async (s) => {
    const installed = await install(s);
    const launcher = join(s.root, "bin", NAME);
    assertStringIncludes(installed.stdout, `Installed ${launcher}`);
    const script = await Deno.readTextFile(launcher);
    assertStringIncludes(script, "export DENO_NO_UPDATE_CHECK=1");
    assertStringIncludes(script, V8_FLAGS, "the heap that grows less under load");

    const version = await bridge(s, ["--version"]);
    assertEquals(version, { code: 0, stdout: `${NAME} ${VERSION}\n`, stderr: "" });

    await writeConfig(s, { fixture: fixtureEntry() });
    s.env.LMSTUDIO_BASE_URL = fake.baseUrl;
    const doctor = await bridge(s, ["doctor"]);
    assertEquals(doctor.code, 0, doctor.stdout + doctor.stderr);
    assertMatch(doctor.stdout, /ok\s+MCP config\s+.*install_test_project_.*\.mcp\.json: 1 servers/);
    assertMatch(doctor.stdout, /(ok|warn)\s+server fixture\s+\d+ tools/);
    assertMatch(doctor.stdout, /ok\s+update check\s+off/);
    assertMatch(doctor.stdout, /ok\s+launch\s+installed command/);

    fake.script(
      CHAT,
      { body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }) },
      { body: chatReply({ content: "Hello from the model." }) },
    );
    const answer = await bridge(s, ["run", "--mcp", "fixture", "say", "hello"]);
    assertEquals(answer.code, 0, answer.stderr);
    assertEquals(answer.stdout, "Hello from the model.\n");
    assertMatch(answer.stderr, /answer after 2 round\(s\), 1 tool call\(s\)/);
  });
});

Deno.test("a refused launcher: doctor prints the exact install command, and that command allows it", async () => {
  await using fake = await FakeLmStudio.start();
  await withSandbox(async (s) => {
    await install(s);
    await writeConfig(s, { shell: { command: "sh", args: ["-c", "exit 0"] } });
    s.env.LMSTUDIO_BASE_URL = fake.baseUrl;
    const before = await bridge(s, ["doctor", "--json"]);
    assertEquals(before.code, 1);
    const checks = JSON.parse(before.stdout).checks as { name: string; detail: string }[];
    const refusal = checks.find((c) => c.name === "sandbox: sh")?.detail ?? "";
    const command = /allow it with: (.*)$/.exec(refusal)?.[1];
    assertEquals(command, `deno task --quiet --cwd ${REPO} install --allow-run=sh`);

    const again = await shell(s, `DENO_NO_UPDATE_CHECK=1 ${command}`);
    assertEquals(again.code, 0, again.stderr);
    const after = await bridge(s, ["doctor", "--json"]);
    const names = (JSON.parse(after.stdout).checks as { name: string }[]).map((c) => c.name);
    assert(!names.includes("sandbox: sh"), `sh is allowed now: ${after.stdout}`);
    assertStringIncludes(after.stdout, "deno task install --allow-run=sh");
  });
});

Deno.test("run --trace without write access prints the exact install command, which makes it work", async () => {
  await using fake = await FakeLmStudio.start();
  await withSandbox(async (s) => {
    await install(s);
    await writeConfig(s, { fixture: fixtureEntry() });
    s.env.LMSTUDIO_BASE_URL = fake.baseUrl;
    const trace = join(s.project, "trace.jsonl");
    const refused = await bridge(s, ["run", "--mcp", "fixture", "--trace", trace, "t"]);
    assertEquals(refused.code, 1);
    const command = /Allow it with: (.*?) \(or name its directory/.exec(refused.stderr)?.[1];
    assertEquals(command, `deno task --quiet --cwd ${REPO} install --allow-write=${trace}`);

    const again = await shell(s, `DENO_NO_UPDATE_CHECK=1 ${command}`);
    assertEquals(again.code, 0, again.stderr);
    fake.script(CHAT, { body: chatReply({ content: "traced" }) });
    const traced = await bridge(s, ["run", "--mcp", "fixture", "--trace", trace, "t"]);
    assertEquals(traced.code, 0, traced.stderr);
    assertStringIncludes(traced.stderr, `trace written to ${trace}`);
    assertStringIncludes(await Deno.readTextFile(trace), '"type":"stop"');
  });
});

Deno.test("every documented way of running turns Deno's update check off", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  for (const task of ["start", "cli", "install", "compile"]) {
    assertMatch(config.tasks[task], /^DENO_NO_UPDATE_CHECK=1 deno /, `task ${task}`);
  }
  for (const task of ["start", "cli"]) assertStringIncludes(config.tasks[task], ` ${V8_FLAGS} `);
  const launcher = launcherScript(
    "#!/bin/sh\n# generated by deno install\nexec deno run --allow-read 'file:///x/main.ts' \"$@\"\n",
    { via: "install", repo: "/x", allow: { run: [], net: [], write: [] } },
    "/opt/deno",
  );
  assertMatch(launcher, /\nexport DENO_NO_UPDATE_CHECK=1\n/);
  assertMatch(launcher, /\nexec \/opt\/deno run --allow-read /);
});

Deno.test("deno task compile explains a runtime it cannot download instead of Deno's raw error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "install_test_compile_" });
  try {
    const output = join(dir, NAME);
    const env = baseEnv({ DENO_NO_UPDATE_CHECK: "1" });
    const bad = await run("deno", ["task", "--quiet", "compile", "--output", output], {
      env: { ...env, DENORT_BIN: join(dir, "missing-denort") },
      cwd: REPO,
    });
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "DENORT_BIN=");
    assertStringIncludes(bad.stderr, "is unusable: there is no such file");
    const r = await run("deno", ["task", "--quiet", "compile", "--output", output], {
      env,
      cwd: REPO,
    });
    if (r.code === 0) {
      // Deno's download host was reachable: the build is the real thing.
      const version = await run(output, ["--version"], { env, cwd: dir });
      assertEquals(version.stdout, `${NAME} ${VERSION}\n`);
    } else {
      assertStringIncludes(r.stderr, "deno compile needs Deno's runtime binary (denort");
      assertStringIncludes(r.stderr, "Set DENORT_BIN to a local denort");
      assert(!/^\s+\d+: |Stack backtrace/m.test(r.stderr), `no raw error chain:\n${r.stderr}`);
      assert(!r.stderr.includes("<unknown>"), r.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the documented deno task forms print nothing of their own on stderr", async () => {
  const home = await Deno.makeTempDir({ prefix: "install_test_home_" });
  try {
    const env = baseEnv({ HOME: home, DENO_NO_UPDATE_CHECK: "1" });
    const cli = await run("deno", ["task", "--quiet", "--cwd", REPO, "cli", "--version"], {
      env,
      cwd: home,
    });
    assertEquals(cli, { code: 0, stdout: `${NAME} ${VERSION}\n`, stderr: "" });
    // `start` serves until stdin ends; with no input it ends at once, logging only its banner.
    const start = await run("deno", ["task", "--quiet", "--cwd", REPO, "start"], {
      env: { ...env, LMSTUDIO_BASE_URL: "http://127.0.0.1:9", LOG_LEVEL: "warn" },
      cwd: home,
    });
    assertEquals(start.code, 0, start.stderr);
    assertEquals(start.stderr, "", "Claude Code logs every stderr line of a start as an error");
    assertEquals(start.stdout, "");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
