/**
 * The compiled binary (`deno task compile`), with its permissions baked in: built once, at load,
 * into a temp dir, then run as a user runs it.
 *
 * `deno compile` needs Deno's runtime binary (denort). It downloads it unless `DENORT_BIN` names
 * a local one. Without `DENORT_BIN`, where the download fails (no route to Deno's download host),
 * the binary tests are registered as ignored and one line on stderr says why. A `DENORT_BIN` that
 * cannot be used (no such file, not executable, the build fails with it, the binary built with it
 * is not ours) fails every binary test with a message that says so and why; so does a compile
 * failure for any other reason.
 *
 * The binary is built by `deno task compile --output FILE` (lib/cli_install.ts). The sandbox checks
 * run through `deno run -P=bridge` too (same permission set), except the
 * non-loopback LM Studio one, which tests/cli_test.ts already covers for `deno run`.
 */
import { errorMessage } from "../lib/errors.ts";
import { denortProblem } from "../lib/cli_install.ts";
import { join } from "../lib/path.ts";
import { firstLine } from "../lib/text.ts";
import type { CallToolResult } from "../lib/sdk.ts";
import { Client, StdioClientTransport } from "../lib/sdk_client.ts";
import { NAME, VERSION } from "../lib/version.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, type CliRun, REPO, runCli } from "./helpers.ts";

const COMPILE_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 30_000;

type Build =
  | { kind: "built"; binary: string }
  | { kind: "unavailable"; reason: string }
  /** `reason` is one paragraph for every binary test; `detail` is the compiler's whole stderr. */
  | { kind: "failed"; reason: string; detail?: string };

/** The compiler's most telling line: the failed download URL, else the deepest cause, else the error. */
function tellingLine(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const line = lines.find((l) => l.includes("error sending request")) ??
    lines.findLast((l) => /^\d+: /.test(l)) ??
    lines.find((l) => l.startsWith("error:")) ??
    lines.at(-1) ??
    "no output";
  const text = line.replace(/^\d+: /, "");
  return text.length > 240 ? `${text.slice(0, 240)}...` : text;
}

/** The failure for a `DENORT_BIN` that cannot be used, saying why and what to do. */
function unusableDenort(denort: string, why: string, detail?: string): Build {
  return {
    kind: "failed",
    reason: `DENORT_BIN=${denort} is unusable: ${why}. Point DENORT_BIN at the denort binary of ` +
      `this Deno version (${Deno.version.deno}), or unset it to let deno compile download one.`,
    ...(detail === undefined ? {} : { detail }),
  };
}

/**
 * Runs `deno task compile`'s command with the output in `dir` and `denort` (default: the
 * `DENORT_BIN` of this process) as the runtime; says what came of it.
 */
async function buildBinary(
  dir: string,
  denort: string | undefined = Deno.env.get("DENORT_BIN"),
): Promise<Build> {
  const binary = join(dir, NAME);
  if (denort !== undefined) {
    const problem = await denortProblem(denort);
    if (problem !== undefined) return unusableDenort(denort, problem);
  }
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      // `deno task compile`, as the README says.
      args: ["task", "--quiet", "compile", "--output", binary],
      cwd: REPO,
      env: {
        NO_COLOR: "1",
        DENO_NO_UPDATE_CHECK: "1",
        ...(denort === undefined ? {} : { DENORT_BIN: denort }),
      },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(COMPILE_TIMEOUT_MS),
    }).output();
  } catch (error) {
    if (error instanceof DOMException && error.name === "TimeoutError") {
      const why = `deno compile did not finish within ${COMPILE_TIMEOUT_MS / 1000} s`;
      return denort === undefined
        ? { kind: "unavailable", reason: why }
        : unusableDenort(denort, `with it, ${why}`);
    }
    throw error;
  }
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code !== 0) {
    if (denort !== undefined) {
      return unusableDenort(
        denort,
        `deno compile failed with it (exit ${out.code}: ${tellingLine(stderr)})`,
        stderr,
      );
    }
    if (/error sending request|dl\.deno\.land|download/i.test(stderr)) {
      return {
        kind: "unavailable",
        reason: `deno compile could not download denort (${tellingLine(stderr)}); ` +
          "set DENORT_BIN to a local denort to run them",
      };
    }
    return {
      kind: "failed",
      reason: `deno compile failed (exit ${out.code}): ${tellingLine(stderr)}`,
      detail: stderr,
    };
  }
  if (denort !== undefined) {
    // A runtime that is not denort (the deno CLI, any other program) still builds a file; it
    // does not run as the bridge.
    let version: CliRun;
    try {
      version = await runBinary(binary, ["--version"]);
    } catch (error) {
      return unusableDenort(
        denort,
        `the binary built with it does not run (${errorMessage(error)})`,
      );
    }
    if (version.stdout !== `${NAME} ${VERSION}\n`) {
      const answer = JSON.stringify(firstLine(version.stdout) || firstLine(version.stderr));
      const what = version.stdout.startsWith("deno ") ? " (it is the deno CLI, not denort)" : "";
      return unusableDenort(
        denort,
        `the binary built with it answers --version with ${answer}, not "${NAME} ${VERSION}"${what}`,
      );
    }
  }
  return { kind: "built", binary };
}

/** Runs a program to completion with a clean environment plus `env`, bounded in time. */
async function runBinary(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliRun> {
  const out = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? REPO,
    env: baseEnv(options.env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs the program under test (the binary, or main.ts under the permission set). */
type Runner = (
  args: string[],
  options: { env?: Record<string, string>; cwd?: string },
) => Promise<CliRun>;

/**
 * A config whose stdio server is a program outside the allowed launchers (a copy of echo under
 * another name): the call fails without running it, naming the server and the flag to allow it.
 */
async function checkForeignCommandRefused(run: Runner): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "compile_test_" });
  try {
    const program = join(dir, "not-a-launcher");
    await Deno.copyFile("/bin/echo", program);
    await Deno.chmod(program, 0o755);
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({ mcpServers: { rogue: { command: program, args: ["hi"] } } }),
    );
    const r = await run(["--config", config, "call", "rogue", "anything"], {
      env: { HOME: dir },
      cwd: dir,
    });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stdout, "");
    assertStringIncludes(r.stderr, 'Cannot start MCP server "rogue"');
    assertStringIncludes(r.stderr, `--allow-run=${program}`);
    assert(!r.stderr.includes("    at "), `no stack trace for the user:\n${r.stderr}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Build at load

const buildDir = await Deno.makeTempDir({ prefix: "compile_test_bin_" });
const build = await buildBinary(buildDir);
if (build.kind !== "built") await Deno.remove(buildDir, { recursive: true });
else globalThis.addEventListener("unload", () => Deno.removeSync(buildDir, { recursive: true }));
if (build.kind === "unavailable") {
  // deno-lint-ignore no-console
  console.error(`compiled-binary tests skipped: ${build.reason}`);
}
/** Only a runtime that cannot be had skips the binary tests; every other failure fails them. */
const ignore = build.kind === "unavailable";

/** The built binary; throws why there is none. */
function builtBinary(): string {
  if (build.kind === "built") return build.binary;
  throw new Error(`The compiled binary was not built: ${build.reason}`);
}

const runCompiled: Runner = (args, options) => runBinary(builtBinary(), args, options);

Deno.test({
  name: "deno task compile builds the binary",
  ignore,
  fn() {
    if (build.kind === "failed") {
      throw new Error(
        build.detail === undefined ? build.reason : `${build.reason}\n${build.detail}`,
      );
    }
  },
});

Deno.test({
  name: "the compiled binary prints its name and version",
  ignore,
  async fn() {
    const r = await runCompiled(["--version"], {});
    assertEquals(r, { code: 0, stdout: `${NAME} ${VERSION}\n`, stderr: "" });
  },
});

Deno.test({
  name: "the compiled binary serves MCP over stdio: tools and a chat_completion",
  ignore,
  async fn() {
    await using fake = await FakeLmStudio.start();
    const home = await Deno.makeTempDir({ prefix: "compile_test_home_" });
    const transport = new StdioClientTransport({
      command: builtBinary(),
      args: ["serve"],
      cwd: home,
      env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home }),
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    const client = new Client({ name: "compile-test", version: "1" });
    try {
      await client.connect(transport);
      assertEquals(client.getServerVersion()?.version, VERSION);
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const name of ["chat_completion", "autonomous_with_mcp", "lms_load_model"]) {
        assert(names.includes(name), `${name} is listed; got ${names.join(", ")}`);
      }
      const r = await client.callTool({
        name: "chat_completion",
        arguments: { prompt: "ping" },
      }) as CallToolResult;
      assertEquals(r.isError, undefined, stderr);
      assertEquals(r.content[0], { type: "text", text: "Echo: ping" });
      assertEquals(fake.requestsTo("/v1/chat/completions").length, 1);
    } finally {
      await client.close();
      await Deno.remove(home, { recursive: true });
    }
  },
});

Deno.test({
  name: "the compiled binary refuses a server command outside the allowed launchers, naming " +
    "the server and --allow-run",
  ignore,
  fn: () => checkForeignCommandRefused(runCompiled),
});

Deno.test({
  name:
    "the compiled binary refuses an LM Studio outside loopback's allow list, naming --allow-net",
  ignore,
  async fn() {
    const home = await Deno.makeTempDir({ prefix: "compile_test_home_" });
    try {
      // 127.0.0.2 is on this machine (nothing leaves it even if the sandbox failed) but not in
      // the permission set's net list (127.0.0.1, localhost, [::1]).
      const r = await runCompiled(["models"], {
        env: { LMSTUDIO_BASE_URL: "http://127.0.0.2:1234", LMSTUDIO_RETRIES: "0", HOME: home },
        cwd: home,
      });
      assertEquals(r.code, 1, r.stderr);
      assertEquals(r.stdout, "");
      assertStringIncludes(r.stderr, "The sandbox blocked the connection to LM Studio");
      assertStringIncludes(r.stderr, "--allow-net=127.0.0.2:1234");
      assert(!r.stderr.includes("    at "), `no stack trace for the user:\n${r.stderr}`);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
});

Deno.test(
  "deno run -P=bridge refuses a server command outside the allowed launchers, naming the server and --allow-run",
  () => checkForeignCommandRefused((args, options) => runCli(args, options)),
);

Deno.test("a DENORT_BIN that cannot be used fails the build, saying so and why", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "compile_test_denort_" });
  try {
    const plain = join(dir, "denort");
    await Deno.writeTextFile(plain, "not a program");
    await Deno.chmod(plain, 0o644);
    const cases = [
      { denort: "/nonexistent", why: "there is no such file" },
      { denort: dir, why: "it is a directory" },
      { denort: plain, why: "it is not executable" },
    ];
    for (const { denort, why } of cases) {
      await t.step(why, async () => {
        const result = await buildBinary(join(dir, "out"), denort);
        assertEquals(result.kind, "failed");
        assert(result.kind === "failed");
        assertStringIncludes(result.reason, `DENORT_BIN=${denort} is unusable: ${why}.`);
        assertMatch(result.reason, /Point DENORT_BIN at the denort binary of this Deno version/);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
