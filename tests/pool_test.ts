/**
 * The pool against real MCP servers: our fixtures (tests/fixtures/pool_*.ts) and the reference
 * servers from npm. Every test closes its pool and checks that no child process is left.
 */
import { ConfigSource } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { needsMcpTasks } from "../lib/pool_connection.ts";
import type { ToolProgress } from "../lib/agent_types.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { settlesWithin } from "./agent_harness.ts";
import { countedController } from "./fixtures/signals.ts";
import { startSseFixture, startStreamableFixture } from "./fixtures/pool_http_fixture.ts";
import { fixtureEntry, silent, TempConfig } from "./fixtures/pool_config.ts";
import {
  assertGone,
  cachedEntry,
  cachedRun,
  denoChildEnv,
  fileExists,
  processGone,
  processTree,
  REFERENCE_SERVERS,
  REFERENCE_VERSION,
  textOf,
  waitFor,
} from "./fixtures/pool_support.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
const DENO_JSON = join(ROOT, "deno.json");
const PROBE = join(ROOT, "tests", "fixtures", "pool_permission_probe.ts");
const DENO = Deno.execPath();
async function call(pool: McpPool, server: string, tool: string, args = {}): Promise<string> {
  return textOf(await pool.callTool(server, tool, args));
}

function startsIn(file: string): number {
  try {
    return Deno.readTextFileSync(file).split("\n").filter((l) => l !== "").length;
  } catch {
    return 0;
  }
}

Deno.test("pool starts a server once and reuses it for concurrent and later calls", async () => {
  const cfg = new TempConfig({});
  const starts = join(cfg.dir, "starts.txt");
  cfg.write({ fx: fixtureEntry(["--starts", starts]) });
  const pool = cfg.pool();
  try {
    const first = await Promise.all([
      pool.listTools("fx"),
      call(pool, "fx", "pid"),
      call(pool, "fx", "echo", { text: "a" }),
      call(pool, "fx", "pid"),
      pool.listTools("fx"),
    ]);
    assertEquals(startsIn(starts), 1, "concurrent first uses share one spawn");
    assertEquals(first[1], first[3]);
    assertEquals(first[2], "a");
    const pid = Number(first[1]);
    for (let i = 0; i < 10; i++) assertEquals(await call(pool, "fx", "pid"), String(pid));
    assertEquals(startsIn(starts), 1, "later calls spawn nothing");
    const { servers } = await pool.status();
    assertEquals(servers[0]?.state, "connected");
    assertEquals(servers[0]?.pid, pid);
    assertEquals(servers[0]?.toolCount, 10);
    const started = join(cfg.dir, "started");
    const inFlight = pool.callTool("fx", "slow", { ms: 5000, started });
    await waitFor("the call to reach the server", () => fileExists(started));
    await pool.close();
    await assertRejects(() => inFlight, McpServerError, "closed by the bridge");
    await assertGone(pid);
    await assertRejects(() => call(pool, "fx", "pid"), McpServerError, "pool is closed");
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool checks the config with one stat per call (and one of the settings file)", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry() });
  let stats = 0;
  const config = new ConfigSource({
    explicitPath: cfg.path,
    env: {},
    log: silent,
    now: () => Date.now() + 60_000,
    fs: {
      stat: (path) => {
        stats++;
        return Deno.stat(path);
      },
      readTextFile: (path) => Deno.readTextFile(path),
    },
  });
  const pool = new McpPool({ config, log: silent, connectTimeoutMs: 20_000 });
  try {
    await call(pool, "fx", "pid");
    const before = stats;
    for (let i = 0; i < 5; i++) await call(pool, "fx", "pid");
    assertEquals(stats - before, 10, "the .mcp.json and the lmstudio-bridge.json next to it");
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool gives children only the SDK default environment, extraEnv and the entry's env", async () => {
  Deno.env.set("POOL_TEST_SECRET", "must-not-leak");
  const cfg = new TempConfig({ fx: fixtureEntry([], { FROM_ENTRY: "entry-value" }) });
  const pool = cfg.pool({ extraEnv: { LMSTUDIO_BRIDGE_DEPTH: "1" } });
  try {
    const env: unknown = JSON.parse(await call(pool, "fx", "env"));
    assert(typeof env === "object" && env !== null);
    const keys = Object.keys(env);
    assertEquals(Reflect.get(env, "POOL_TEST_SECRET"), undefined);
    assertEquals(Reflect.get(env, "FROM_ENTRY"), "entry-value");
    assertEquals(Reflect.get(env, "LMSTUDIO_BRIDGE_DEPTH"), "1");
    assertEquals(Reflect.get(env, "PATH"), Deno.env.get("PATH"));
    const allowed = new Set([
      ...["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"],
      ...Object.keys(denoChildEnv()),
      "FROM_ENTRY",
      "LMSTUDIO_BRIDGE_DEPTH",
      // The mark of what this server starts (pool_reaper.ts).
      "LMSTUDIO_BRIDGE_OWNER",
    ]);
    const extra = keys.filter((k) => !allowed.has(k));
    assertEquals(extra, [], `unexpected variables reached the child: ${extra.join(", ")}`);
  } finally {
    Deno.env.delete("POOL_TEST_SECRET");
    await pool.close();
    cfg.remove();
  }
});

Deno.test("an entry's env cannot reset the bridge's recursion depth marker", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry([], { LMSTUDIO_BRIDGE_DEPTH: "0" }) });
  const lines: string[] = [];
  const log = createLogger({ level: "warn", write: (line) => lines.push(line) });
  const pool = cfg.pool({ extraEnv: { LMSTUDIO_BRIDGE_DEPTH: "3" }, log });
  try {
    const env: unknown = JSON.parse(await call(pool, "fx", "env"));
    assert(typeof env === "object" && env !== null);
    assertEquals(Reflect.get(env, "LMSTUDIO_BRIDGE_DEPTH"), "3");
    assertStringIncludes(lines.join("\n"), 'MCP server "fx" sets LMSTUDIO_BRIDGE_DEPTH');
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool reports a server that dies mid-call and starts it again on the next call", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry() });
  const pool = cfg.pool();
  try {
    const pid = Number(await call(pool, "fx", "pid"));
    const error = await assertRejects(
      () => pool.callTool("fx", "crash", { code: 7 }),
      McpServerError,
      'MCP server "fx" exited with code 7 while running tool "crash"',
    );
    assertEquals(error.kind, "exited");
    assertEquals(error.exitCode, 7);
    assertEquals(error.server, "fx");
    assert(error.stderrTail.some((l) => l.includes("fixture crashing on purpose with code 7")));
    assertStringIncludes(error.message, "fixture crashing on purpose with code 7");
    await assertGone(pid);
    const { servers } = await pool.status();
    assertEquals(servers[0]?.state, "failed");
    assertStringIncludes(servers[0]?.reason ?? "", "exited with code 7");
    const next = Number(await call(pool, "fx", "pid"));
    assertNotEquals(next, pid);
    assertEquals((await pool.status()).servers[0]?.state, "connected");
  } finally {
    await pool.close();
    cfg.remove();
  }
});

/** Kills `pid` if it still runs (cleanup after a failed assertion). */
function killQuietly(pid: number | undefined): void {
  if (pid === undefined || processGone(pid)) return;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // It exited in the meantime.
  }
}

Deno.test("pool starts a fresh process when a launcher dies mid-call, and stops what it left behind", async () => {
  // Like `npx`: a launcher (sh) runs the server as its child and waits. Killing the launcher
  // leaves the server holding the pipes; it ignores end of input once orphaned.
  const fx = fixtureEntry(["--linger-orphaned"]);
  const cfg = new TempConfig({
    fx: { command: "sh", args: ["-c", '"$0" "$@"; exit $?', fx.command, ...fx.args], env: fx.env },
  });
  const pool = cfg.pool();
  let server: number | undefined;
  try {
    server = Number(await call(pool, "fx", "pid"));
    const launcher = (await pool.status()).servers[0]?.pid;
    assert(launcher !== undefined && launcher !== server, "the pool shows the launcher's pid");
    const started = join(cfg.dir, "started");
    const release = join(cfg.dir, "release");
    const running = pool.callTool("fx", "slow", { ms: 900, steps: 3, started, release });
    await waitFor("the call to reach the server", () => fileExists(started));
    Deno.kill(launcher, "SIGKILL");
    await waitFor("the pool to notice the exit", async () => {
      const status = (await pool.status()).servers[0];
      return status?.state === "failed";
    });
    const status = (await pool.status()).servers[0];
    assertStringIncludes(status?.reason ?? "", "was killed by SIGKILL");
    assertStringIncludes(status?.reason ?? "", "1 call still running");
    const fresh = Number(await call(pool, "fx", "pid"));
    assertNotEquals(fresh, server, "the next call runs on a new process");
    assertEquals((await pool.status()).servers[0]?.state, "connected");
    Deno.writeTextFileSync(release, "");
    assertEquals(
      textOf(await running),
      "done after 3 steps",
      "the call already running finishes on the launcher's surviving child",
    );
    await assertGone(server);
  } finally {
    await pool.close();
    killQuietly(server);
    cfg.remove();
  }
});

Deno.test("pool explains a call of a tool the server does not have, listing its tools", async (t) => {
  const cfg = new TempConfig({ fx: fixtureEntry(["--tools", "20"]) });
  const pool = cfg.pool();
  try {
    await t.step("an isError answer, before the tool list is cached", async () => {
      const error = await assertRejects(
        () => pool.callTool("fx", "nosuchtool", {}),
        McpServerError,
        'MCP server "fx" has no tool "nosuchtool" (it answered: unknown tool nosuchtool).',
      );
      assertEquals(error.kind, "unknown_tool");
      assertEquals(error.tool, "nosuchtool");
      assertStringIncludes(error.message, "Its 30 tools are: echo, pid, env, tag, slow,");
      assertStringIncludes(error.message, "filler_005, and 15 more.");
      assertStringIncludes(error.message, "Run `lmstudio-bridge tools fx` to see them");
    });
    await t.step("a JSON-RPC error, with the cached list and a near name", async () => {
      const error = await assertRejects(
        () => pool.callTool("fx", "Echo", { rpcError: true }),
        McpServerError,
        'has no tool "Echo" (it answered: MCP error -32602: Tool Echo not found). ' +
          'Did you mean "echo"?',
      );
      assertEquals(error.kind, "unknown_tool");
    });
    await t.step("a listed tool's isError result is passed on as it is", async () => {
      const result = await pool.callTool("fx", "fail", {});
      assertEquals(result.isError, true);
      assertEquals(textOf(result), "deliberate failure");
    });
  } finally {
    await pool.close();
    cfg.remove();
  }
});

const HTTP_SERVE = join(ROOT, "tests", "fixtures", "pool_http_serve.ts");

/** Runs tests/fixtures/pool_http_serve.ts; resolves with its MCP URL and the child. */
async function serveHttpFixture(flags: string[] = []) {
  const child = new Deno.Command(DENO, {
    args: cachedRun([HTTP_SERVE, ...flags]),
    stdout: "piped",
    stderr: "null",
    env: denoChildEnv(),
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  return {
    url: text.trim(),
    pid: child.pid,
    async stop(): Promise<void> {
      try {
        child.kill("SIGKILL");
      } catch {
        // It already exited (the crash tool).
      }
      await child.status;
      await lines.cancel();
    },
  };
}

/**
 * After a first call of `server` answered, its `crash` tool takes the server or its connection
 * away; the call must fail as a lost connection with `expected` (kind "closed"), not by its 30 s
 * timeout (kind "timeout").
 */
async function crashMidCall(
  pool: McpPool,
  server: string,
  expected: string,
): Promise<McpServerError> {
  assertEquals(await call(pool, server, "echo", { text: "up" }), "up");
  const error = await assertRejects(
    () => pool.callTool(server, "crash", {}),
    McpServerError,
    expected,
  );
  assertEquals(error.kind, "closed");
  return error;
}

Deno.test("pool fails in-flight calls at once when a remote server goes away mid-call", async (t) => {
  await t.step("an HTTP server process that exits", async () => {
    const served = await serveHttpFixture();
    const cfg = new TempConfig({ web: { type: "http", url: served.url } });
    const pool = cfg.pool({ callTimeoutMs: 30_000 });
    try {
      const error = await crashMidCall(
        pool,
        "web",
        `Lost the connection to MCP server "web" (${served.url}) while running tool "crash"`,
      );
      assertStringIncludes(error.message, "The next call reconnects");
      assert(!error.message.includes("stderr"), error.message);
      await assertGone(served.pid);
      const { servers } = await pool.status();
      assertEquals(servers[0]?.state, "failed");
      assertStringIncludes(servers[0]?.reason ?? "", "lost its connection");
    } finally {
      await pool.close();
      await served.stop();
      cfg.remove();
    }
  });
  await t.step("an SSE server process that exits", async () => {
    const served = await serveHttpFixture(["--sse"]);
    const cfg = new TempConfig({ legacy: { type: "sse", url: served.url } });
    const pool = cfg.pool({ callTimeoutMs: 30_000 });
    try {
      await crashMidCall(pool, "legacy", "its event stream dropped");
    } finally {
      await pool.close();
      await served.stop();
      cfg.remove();
    }
  });
  for (
    const [crash, reason] of [
      ["end", "the server ended its response stream without answering"],
      ["break", "its response stream broke"],
    ] as const
  ) {
    await t.step(
      `an HTTP server that ${crash}s the response stream; the next call reconnects`,
      async () => {
        const http = await startStreamableFixture({ crash });
        const cfg = new TempConfig({ web: { type: "http", url: `${http.origin}/mcp` } });
        const pool = cfg.pool({ callTimeoutMs: 30_000 });
        try {
          await crashMidCall(pool, "web", reason);
          assertEquals(await call(pool, "web", "echo", { text: "again" }), "again");
          assertEquals(http.sessions(), 2);
        } finally {
          await pool.close();
          await http.close();
          cfg.remove();
        }
      },
    );
  }
  await t.step("an SSE server that closes its sockets; the next call reconnects", async () => {
    const sse = await startSseFixture({ crash: "drop" });
    const cfg = new TempConfig({ legacy: { type: "sse", url: `${sse.origin}/sse` } });
    const pool = cfg.pool({ callTimeoutMs: 30_000 });
    try {
      await crashMidCall(pool, "legacy", "its event stream dropped");
      assertEquals(await call(pool, "legacy", "echo", { text: "again" }), "again");
      assertEquals(sse.sessions(), 2);
    } finally {
      await pool.close();
      await sse.close();
      cfg.remove();
    }
  });
  await t.step(
    "a remote call that times out keeps its connection and names no stderr",
    async () => {
      const http = await startStreamableFixture({ closeCancelled: true });
      const cfg = new TempConfig({ web: { type: "http", url: `${http.origin}/mcp` } });
      const pool = cfg.pool();
      try {
        const error = await assertRejects(
          () => pool.callTool("web", "slow", { ms: 5000, steps: 1 }, { timeoutMs: 200 }),
          McpServerError,
          'did not answer tool "slow" within 200 ms',
        );
        assertEquals(error.kind, "timeout");
        assert(!error.message.includes("stderr"), error.message);
        // The server ends the cancelled call's stream without an answer: not a lost connection.
        await waitFor("the server to end the cancelled stream", () => http.cancelledStreams() > 0);
        assertEquals(await call(pool, "web", "echo", { text: "still here" }), "still here");
        assertEquals(http.sessions(), 1);
        assertEquals((await pool.status()).servers[0]?.state, "connected");
      } finally {
        await pool.close();
        await http.close();
        cfg.remove();
      }
    },
  );
});

Deno.test("pool hides tools that need MCP tasks and refuses to call them with a clear message", async () => {
  const http = await startStreamableFixture({ taskTool: true });
  const url = `${http.origin}/mcp`;
  const cfg = new TempConfig({
    listed: { type: "http", url },
    cold: { type: "http", url },
    coldRpc: { type: "http", url },
  });
  const pool = cfg.pool();
  try {
    const tools = await pool.listTools("listed");
    assertEquals(tools.length, 10);
    assert(!tools.some((tool) => tool.name === "research"));
    const all = await pool.listTools("listed", { includeTaskRequired: true });
    assertEquals(all.find((tool) => tool.name === "research")?.execution?.taskSupport, "required");
    assert(needsMcpTasks(all.find((tool) => tool.name === "research")!));
    assertEquals((await pool.status()).servers[0]?.toolCount, 10);
    // Known from the listing: refused before anything is sent; unknown yet: explained after the
    // server's isError result or JSON-RPC error.
    for (
      const [server, args] of [
        ["listed", { topic: "x" }],
        ["cold", { topic: "x" }],
        ["coldRpc", { topic: "x", rpcError: true }],
      ] as const
    ) {
      const error = await assertRejects(
        () => pool.callTool(server, "research", args),
        McpServerError,
        `Tool "research" of MCP server "${server}" can only run as an MCP task`,
      );
      assertEquals(error.kind, "unsupported");
      assertStringIncludes(error.message, "the bridge does not support MCP tasks");
    }
    const failed = await pool.callTool("cold", "fail", {});
    assertEquals(failed.isError, true, "other isError results pass through");
  } finally {
    await pool.close();
    await http.close();
    cfg.remove();
  }
});

Deno.test("pool fails start-up problems within the connect timeout with a useful message", async (t) => {
  const cfg = new TempConfig({});
  const script = join(cfg.dir, "server.sh");
  Deno.writeTextFileSync(script, "#!/bin/sh\n", { mode: 0o644 });
  cfg.write({
    silent: {
      command: "sh",
      args: ["-c", 'echo "pid $$ waiting for a licence key" >&2; exec sleep 30'],
    },
    exits: { command: "sh", args: ["-c", "echo 'fatal: API_KEY is not set' >&2; exit 3"] },
    missing: { command: "pool-test-no-such-command", args: [] },
    badcwd: { command: "sh", args: ["-c", "exit 0"], cwd: "/nonexistent/pool-test" },
    junk: fixtureEntry(["--junk"]),
    noexec: { command: script },
  });
  const pool = cfg.pool({ connectTimeoutMs: 700 });
  let silentPid: number | undefined;
  try {
    await t.step("a server that never answers initialize", async () => {
      // It sleeps 30 s: failing by the 700 ms bound is what the message and the kind show.
      const error = await assertRejects(
        () => pool.listTools("silent"),
        McpServerError,
        'MCP server "silent" did not complete the MCP handshake within 700 ms',
      );
      assertEquals(error.kind, "connect_timeout");
      assertStringIncludes(error.message, "waiting for a licence key");
      silentPid = Number(/pid (\d+)/.exec(error.stderrTail.join("\n"))?.[1]);
      assertStringIncludes(error.message, "sh -c");
      const { servers } = await pool.status();
      assertEquals(servers.find((s) => s.name === "silent")?.state, "failed");
    });
    await t.step("a server that exits during start-up", async () => {
      const error = await assertRejects(
        () => call(pool, "exits", "x"),
        McpServerError,
        'MCP server "exits" exited with code 3 before completing the MCP handshake',
      );
      assertEquals(error.kind, "exited");
      assertEquals(error.exitCode, 3);
      assertStringIncludes(error.message, "fatal: API_KEY is not set");
    });
    await t.step("a command that is not installed", async () => {
      const error = await assertRejects(
        () => call(pool, "missing", "x"),
        McpServerError,
        'command "pool-test-no-such-command" was not found',
      );
      assertEquals(error.kind, "not_found");
      assertStringIncludes(error.message, "PATH");
    });
    await t.step("a working directory that does not exist", async () => {
      const error = await assertRejects(() => call(pool, "badcwd", "x"), McpServerError);
      assertStringIncludes(error.message, '"/nonexistent/pool-test" does not exist');
    });
    await t.step("a command file that is not executable (not a sandbox denial)", async () => {
      const error = await assertRejects(
        () => call(pool, "noexec", "x"),
        McpServerError,
        `Cannot start MCP server "noexec": the system refused to run "${script}"`,
      );
      assertEquals(error.kind, "spawn");
      assertStringIncludes(error.message, "chmod +x");
    });
    await t.step("a server that prints junk to stdout still works", async () => {
      const junkPool = cfg.pool();
      try {
        assertEquals(await call(junkPool, "junk", "echo", { text: "still fine" }), "still fine");
      } finally {
        await junkPool.close();
      }
    });
  } finally {
    await pool.close();
    cfg.remove();
  }
  assert(silentPid !== undefined && silentPid > 0);
  await assertGone(silentPid);
});

Deno.test("pool validates server names through the config", async () => {
  const cfg = new TempConfig({
    fx: fixtureEntry(),
    off: { ...fixtureEntry(), disabled: true },
    broken: { command: "${POOL_TEST_UNSET_VARIABLE}", args: [] },
  });
  const pool = cfg.pool();
  try {
    const unknown = await assertRejects(() => call(pool, "nope", "x"), McpServerError);
    assertEquals(unknown.kind, "config");
    assertStringIncludes(unknown.message, "fx");
    await assertRejects(() => pool.listTools("off"), McpServerError, "disabled");
    await assertRejects(() => pool.listTools("broken"), McpServerError, "POOL_TEST_UNSET_VARIABLE");
    const { servers, config } = await pool.status();
    assertEquals(config.path, cfg.path);
    assertEquals(servers.map((s) => [s.name, s.state]), [
      ["fx", "not-started"],
      ["off", "disabled"],
      ["broken", "invalid"],
    ]);
    assertStringIncludes(servers[2]?.reason ?? "", "POOL_TEST_UNSET_VARIABLE");
    assertEquals(servers[0]?.envNames.includes("NO_COLOR"), true);
    assertMatch(servers[0]?.target ?? "", /pool_fixture_server\.ts$/);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool reads every page of a tool list and refreshes it on list_changed", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry(["--page-size", "3", "--tools", "12"]) });
  const pool = cfg.pool();
  try {
    const tools = await pool.listTools("fx");
    assertEquals(tools.length, 22);
    assertEquals(tools.at(-1)?.name, "filler_012");
    assertEquals(new Set(tools.map((t) => t.name)).size, 22);
    assertEquals(await call(pool, "fx", "add_tool", { name: "late_tool" }), "added late_tool");
    await waitFor("the new tool to be listed", async () => {
      const names = (await pool.listTools("fx")).map((t) => t.name);
      return names.includes("late_tool");
    }, 3000);
    assertEquals((await pool.listTools("fx")).length, 23);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool passes progress, timeouts and cancellation through to the server", async (t) => {
  const cfg = new TempConfig({ fx: fixtureEntry() });
  const pool = cfg.pool();
  try {
    await t.step("progress notifications reach onProgress", async () => {
      const seen: ToolProgress[] = [];
      const result = await pool.callTool("fx", "slow", { ms: 60, steps: 3 }, {
        onProgress: (p) => seen.push(p),
      });
      assertEquals(textOf(result), "done after 3 steps");
      // The first call starts the server: its start-up comes first, then the tool's own steps.
      assertMatch(seen[0]?.message ?? "", /^starting fx: \d+ s$/);
      const steps = seen.filter((p) => !p.message?.startsWith("starting "));
      // The SDK drops a progress notification that arrives together with the result, so the
      // last step may be missing; the earlier ones must be there, in order.
      assertEquals(steps.map((p) => p.progress).slice(0, 2), [1, 2]);
      assertEquals(steps[0]?.total, 3);
      assertEquals(steps[0]?.message, "step 1");
    });
    await t.step("progress resets the call timeout", async () => {
      const result = await pool.callTool("fx", "slow", { ms: 900, steps: 6 }, { timeoutMs: 450 });
      assertEquals(textOf(result), "done after 6 steps");
    });
    await t.step("a call without progress times out", async () => {
      const error = await assertRejects(
        () => pool.callTool("fx", "slow", { ms: 5000, steps: 1 }, { timeoutMs: 200 }),
        McpServerError,
        'did not answer tool "slow" within 200 ms',
      );
      assertEquals(error.kind, "timeout");
    });
    await t.step("a caller's signal is let go of when each call ends", async () => {
      const { controller, listening } = countedController();
      for (const text of ["a", "b", "c"]) {
        const result = await pool.callTool("fx", "echo", { text }, { signal: controller.signal });
        assertEquals(textOf(result), text);
        assertEquals(listening(), 0, `after call ${text}`);
      }
      const started = join(cfg.dir, "signal-started");
      const release = join(cfg.dir, "signal-release");
      const slow = pool.callTool("fx", "slow", { ms: 10, steps: 1, started, release }, {
        signal: controller.signal,
      });
      await waitFor("the call to reach the server", () => fileExists(started));
      assertEquals(listening(), 1, "followed while the call is under way");
      Deno.writeTextFileSync(release, "");
      assertEquals(textOf(await slow), "done after 1 steps");
      assertEquals(listening(), 0, "after the slow call");
    });
    await t.step("aborting cancels the call on the server", async () => {
      const before = Number(await call(pool, "fx", "cancelled"));
      const controller = new AbortController();
      const pending = pool.callTool("fx", "slow", { ms: 10_000, steps: 100 }, {
        signal: controller.signal,
        onProgress: () => controller.abort(),
      });
      const error = await assertRejects(() => pending, McpServerError, "was cancelled");
      assertEquals(error.kind, "cancelled");
      await waitFor("the server to see the cancellation", async () => {
        return Number(await call(pool, "fx", "cancelled")) > before;
      }, 3000);
    });
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool follows config changes: changed entries restart after in-flight calls, removed ones close", async () => {
  const cfg = new TempConfig({});
  const keep = fixtureEntry(["--tag", "keep"]);
  cfg.write({ a: fixtureEntry(["--tag", "a1"]), keep });
  const pool = cfg.pool();
  try {
    const pidA = Number(await call(pool, "a", "pid"));
    const pidKeep = Number(await call(pool, "keep", "pid"));
    const started = join(cfg.dir, "started");
    const release = join(cfg.dir, "release");
    const inFlight = pool.callTool("a", "slow", { ms: 600, steps: 2, started, release });
    await waitFor("the call to reach the server", () => fileExists(started));
    cfg.write({ a: fixtureEntry(["--tag", "a2"]), keep });
    const restarting = (await pool.status()).servers.find((s) => s.name === "a");
    assertEquals(restarting?.state, "restarting", "not 'not started': the old one still works");
    assertEquals(restarting?.pid, pidA);
    assertStringIncludes(
      restarting?.reason ?? "",
      `its config changed; finishing 1 call on the old process (pid ${pidA}), then it closes.`,
    );
    assertEquals(await call(pool, "a", "tag"), "a2");
    assertEquals((await pool.status()).servers.find((s) => s.name === "a")?.state, "connected");
    const pidA2 = Number(await call(pool, "a", "pid"));
    assertNotEquals(pidA2, pidA);
    assert(!processGone(pidA), "the old server keeps running while a call is in flight");
    Deno.writeTextFileSync(release, "");
    assertEquals(textOf(await inFlight), "done after 2 steps");
    await assertGone(pidA);
    assertEquals(Number(await call(pool, "keep", "pid")), pidKeep, "unchanged entry untouched");
    cfg.write({ a: fixtureEntry(["--tag", "a2"]) });
    const { servers } = await pool.status();
    assertEquals(servers.map((s) => s.name), ["a"]);
    await assertGone(pidKeep);
    assertEquals(Number(await call(pool, "a", "pid")), pidA2);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool never lets a slow connect for an old entry replace the current one", async () => {
  const cfg = new TempConfig({});
  const starts = join(cfg.dir, "starts.txt");
  cfg.write({ fx: fixtureEntry(["--tag", "old", "--delay-start", "600", "--starts", starts]) });
  const pool = cfg.pool();
  try {
    const slow = call(pool, "fx", "tag");
    await waitFor("the old server to be starting", () => startsIn(starts) === 1);
    cfg.write({ fx: fixtureEntry(["--tag", "new"]) });
    assertEquals(await call(pool, "fx", "tag"), "new");
    assertEquals(await slow, "new", "the waiting caller retries with the current entry");
    const pid = (await pool.status()).servers[0]?.pid;
    assertEquals(await call(pool, "fx", "pid"), String(pid));
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("closing the pool gives up connects still under way and stops their servers", async () => {
  const cfg = new TempConfig({});
  const starts = join(cfg.dir, "starts.txt");
  // The server never answers initialize (it waits an hour before connecting its transport).
  cfg.write({ mute: fixtureEntry(["--starts", starts, "--delay-start", "3600000"]) });
  // The default connect timeout: what close() waited for before it gave connects up.
  const pool = cfg.pool({ connectTimeoutMs: 30_000 });
  try {
    const listing = pool.listTools("mute");
    listing.catch(() => undefined);
    await waitFor("the server to start", () => fileExists(starts) && startsIn(starts) === 1);
    const pid = Number(Deno.readTextFileSync(starts).trim());
    await settlesWithin(pool.close(), "close() while a server is still connecting");
    const error = await assertRejects(() => listing, McpServerError, "shutting down");
    assertEquals(error.kind, "closed");
    await assertGone(pid);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("a server that failed to start is skipped for a while, saying when it is tried again", async () => {
  const cfg = new TempConfig({});
  const starts = join(cfg.dir, "starts.txt");
  // Starts at once, notes it, and never answers initialize.
  const mute = {
    command: "sh",
    args: ["-c", 'echo started >> "$STARTS"; exec sleep 3600'],
    env: { STARTS: starts },
  };
  cfg.write({ mute });
  let clock = Date.parse("2030-01-01T12:00:00");
  const pool = cfg.pool({ connectTimeoutMs: 1000, now: () => clock });
  try {
    const first = await assertRejects(() => pool.listTools("mute"), McpServerError);
    assertEquals(first.kind, "connect_timeout");
    assertEquals(startsIn(starts), 1);

    clock += 20_000;
    const again = await assertRejects(() => pool.listTools("mute"), McpServerError);
    assertEquals(again.kind, "connect_timeout");
    assertStringIncludes(
      again.message,
      'MCP server "mute" failed to start 20 s ago and is not tried again for 40 s (at ',
    );
    assertStringIncludes(again.message, "unless its config entry changes: ");
    assertStringIncludes(again.message, "did not complete the MCP handshake");
    assertEquals(startsIn(starts), 1, "no second start within the minute");
    const { servers } = await pool.status();
    assertEquals(servers[0]?.state, "failed");
    assertStringIncludes(servers[0]?.reason ?? "", "not tried again for 40 s");

    clock += 41_000;
    await assertRejects(() => pool.listTools("mute"), McpServerError, "did not complete");
    assertEquals(startsIn(starts), 2, "tried again after the minute");

    // A changed entry is tried at once.
    cfg.write({ mute: { ...mute, env: { ...mute.env, CHANGED: "1" } } });
    await assertRejects(() => pool.listTools("mute"), McpServerError, "did not complete");
    assertEquals(startsIn(starts), 3);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

/** Tools as a careless server declares them: two good ones around four bad ones. */
const BADLY_DECLARED_TOOLS = [
  { name: "good", description: "Fine.", inputSchema: { type: "object", properties: {} } },
  { name: "noschema", description: "No inputSchema at all." },
  { name: "stringschema", inputSchema: { type: "string" } },
  { description: "No name." },
  { name: "badnotes", inputSchema: { type: "object" }, annotations: "read-only" },
  { name: "also_good", inputSchema: { type: "object" } },
];

Deno.test("a badly declared tool is repaired or skipped with a note; the server's other tools work", async () => {
  const cfg = new TempConfig({
    raw: {
      command: DENO,
      args: cachedRun([join(ROOT, "tests", "fixtures", "pool_raw_server.ts")]),
      env: { ...denoChildEnv(), RAW_TOOLS: JSON.stringify(BADLY_DECLARED_TOOLS) },
    },
  });
  const lines: string[] = [];
  const pool = cfg.pool({ log: createLogger({ level: "warn", write: (l) => lines.push(l) }) });
  try {
    const notes: string[] = [];
    const tools = await pool.listTools("raw", { onNote: (n) => notes.push(n) });
    assertEquals(tools.map((t) => t.name), [
      "good",
      "noschema",
      "stringschema",
      "badnotes",
      "also_good",
    ]);
    assertEquals(tools[1]!.inputSchema, { type: "object" });
    assertEquals(tools[3]!.annotations, undefined);
    assertEquals(notes, [
      'Tool "noschema" of MCP server "raw" declares no inputSchema; it is offered as taking any ' +
      "arguments. Report it to the server's authors.",
      'Tool "stringschema" of MCP server "raw" has an inputSchema of type "string", not an ' +
      "object schema; it is offered as taking any arguments. Report it to the server's authors.",
      'MCP server "raw" listed a tool without a name (entry 4 of its list); skipped. Report it ' +
      "to the server's authors.",
      'Tool "badnotes" of MCP server "raw" has an invalid annotations (ignored); it is offered ' +
      "as it is. Report it to the server's authors.",
    ]);
    // Logged once, however often the list is asked for.
    await pool.listTools("raw");
    assertEquals(lines.filter((l) => l.includes("noschema")).length, 1);
    assertEquals(textOf(await pool.callTool("raw", "noschema", { any: 1 })), 'noschema {"any":1}');
    assertEquals(textOf(await pool.callTool("raw", "also_good", {})), "also_good {}");
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("pool closes idle connections and reopens them on demand", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry() });
  const pool = cfg.pool({ idleMs: 150 });
  try {
    const pid = Number(await call(pool, "fx", "pid"));
    await assertGone(pid);
    const { servers } = await pool.status();
    assertEquals(servers[0]?.state, "not-started");
    assertStringIncludes(servers[0]?.reason ?? "", "idle");
    const again = Number(await call(pool, "fx", "pid"));
    assertNotEquals(again, pid);
    // Its idle time runs out during a call longer than it, and across calls that follow each
    // other: still open. Idle for that long after them, it closes.
    await pool.callTool("fx", "slow", { ms: 400, steps: 1 });
    for (let i = 0; i < 3; i++) await pool.callTool("fx", "slow", { ms: 80, steps: 1 });
    assertEquals(Number(await call(pool, "fx", "pid")), again);
    await assertGone(again);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("an idle connection closes by the pool's clock: its timer firing early only arms it again", async () => {
  const cfg = new TempConfig({ fx: fixtureEntry() });
  let now = 1_000_000;
  const pool = cfg.pool({ idleMs: 100, now: () => now });
  try {
    const pid = Number(await call(pool, "fx", "pid"));
    // The clock stands still: however often the timer fires, the connection has not been idle.
    await new Promise((resolve) => setTimeout(resolve, 450));
    assertEquals(Number(await call(pool, "fx", "pid")), pid);
    now += 1_000;
    await assertGone(pid);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("a remote result over the size limit fails its call saying what to do; the next call works", async (t) => {
  const events = await startStreamableFixture();
  const json = await startStreamableFixture({ jsonResponse: true });
  const legacy = await startSseFixture();
  const cfg = new TempConfig({
    events: { type: "http", url: `${events.origin}/mcp` },
    json: { type: "http", url: `${json.origin}/mcp` },
    legacy: { type: "sse", url: `${legacy.origin}/sse` },
  });
  const pool = cfg.pool({ connectTimeoutMs: 5000, maxMessageBytes: 1024 * 1024 });
  const big = "x".repeat(2 * 1024 * 1024);
  try {
    for (const name of ["events", "json", "legacy"]) {
      await t.step(name, async () => {
        assertEquals(await call(pool, name, "echo", { text: "small" }), "small");
        const error = await assertRejects(
          () => call(pool, name, "echo", { text: big }),
          McpServerError,
        );
        assertEquals(error.kind, "too_large");
        assertStringIncludes(
          error.message,
          `MCP server "${name}" (http://127.0.0.1:`,
        );
        assertStringIncludes(error.message, 'answer to tool "echo" larger than 1.0 MiB');
        assertStringIncludes(error.message, "Ask the tool for less data");
        assertEquals(await call(pool, name, "echo", { text: "after" }), "after");
      });
    }
  } finally {
    await pool.close();
    await Promise.all([events.close(), json.close(), legacy.close()]);
    cfg.remove();
  }
});

Deno.test("pool talks streamable HTTP and SSE, with headers, and falls back to SSE", async (t) => {
  let http = await startStreamableFixture({ pageSize: 4 });
  const sse = await startSseFixture();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = closed.addr.port;
  closed.close();
  const headers = { "x-fixture-token": "secret-token" };
  const cfg = new TempConfig({
    web: { type: "http", url: `${http.origin}/mcp`, headers },
    legacy: { type: "sse", url: `${sse.origin}/sse`, headers },
    fallback: { type: "http", url: `${sse.origin}/sse`, headers },
    dead: { type: "http", url: `http://127.0.0.1:${deadPort}/mcp` },
    deadSse: { type: "sse", url: `http://127.0.0.1:${deadPort}/sse` },
  });
  const pool = cfg.pool({ connectTimeoutMs: 5000 });
  try {
    await t.step("streamable HTTP", async () => {
      assertEquals(await call(pool, "web", "echo", { text: "over http" }), "over http");
      assertEquals((await pool.listTools("web")).length, 10);
      assertEquals(await call(pool, "web", "echo", { text: "again" }), "again");
      assertEquals(http.sessions(), 1);
      assert(http.tokens.length > 0 && http.tokens.every((v) => v === "secret-token"));
    });
    await t.step("a restarted HTTP server gets a new session on the next call", async () => {
      const port = Number(new URL(http.origin).port);
      await http.close();
      const error = await assertRejects(
        () => call(pool, "web", "echo", { text: "lost" }),
        McpServerError,
        "The next call reconnects",
      );
      assertEquals(error.kind, "closed");
      http = await startStreamableFixture({ port });
      assertEquals(await call(pool, "web", "echo", { text: "back" }), "back");
      assertEquals(http.sessions(), 1);
    });
    await t.step("SSE", async () => {
      assertEquals(await call(pool, "legacy", "echo", { text: "over sse" }), "over sse");
      assertEquals(sse.sessions(), 1);
    });
    await t.step("an HTTP entry on an SSE-only server falls back to SSE", async () => {
      assertEquals(await call(pool, "fallback", "echo", { text: "fell back" }), "fell back");
      assertEquals(sse.sessions(), 2);
      assert(sse.tokens.every((v) => v === "secret-token"));
    });
    await t.step("an unreachable server, over HTTP and over SSE", async () => {
      for (const [name, path] of [["dead", "mcp"], ["deadSse", "sse"]]) {
        const error = await assertRejects(() => call(pool, name!, "x"), McpServerError);
        assertEquals(error.kind, "unreachable");
        assertEquals(
          error.message,
          `Cannot connect to MCP server "${name}" at http://127.0.0.1:${deadPort}/${path}: ` +
            "connection refused. Start the server or fix the URL in the config.",
        );
      }
    });
    const { servers } = await pool.status();
    assertEquals(servers.map((s) => s.state), [
      "connected",
      "connected",
      "connected",
      "failed",
      "failed",
    ]);
    assertEquals(servers[0]?.target, `${http.origin}/mcp`);
  } finally {
    await pool.close();
    await http.close();
    await sse.close();
    cfg.remove();
  }
});

Deno.test("pool explains a Deno permission denial with the flag that would allow it", async () => {
  const cfg = new TempConfig({
    shell: { command: "sh", args: ["-c", "exit 0"] },
    remote: { type: "http", url: "http://mcp.example.invalid:8080/mcp" },
  });
  try {
    for (const [server, flag] of [["shell", "--allow-run=sh"], ["remote", "--allow-net="]]) {
      const output = await new Deno.Command(DENO, {
        args: [
          "run",
          "-P=bridge",
          "--no-prompt",
          "--cached-only",
          "--frozen",
          "--config",
          DENO_JSON,
          PROBE,
          cfg.path,
          server!,
        ],
        stdout: "piped",
        stderr: "piped",
        env: denoChildEnv(),
      }).output();
      const text = new TextDecoder().decode(output.stdout);
      assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
      const outcome: unknown = JSON.parse(text);
      assert(typeof outcome === "object" && outcome !== null);
      assertEquals(Reflect.get(outcome, "kind"), "permission", text);
      const message = String(Reflect.get(outcome, "message"));
      assertStringIncludes(message, `MCP server "${server}"`);
      assertStringIncludes(message, flag!);
      assertStringIncludes(message, '"bridge" permission set');
    }
  } finally {
    cfg.remove();
  }
});

const MEMORY = `@modelcontextprotocol/server-memory@${REFERENCE_VERSION}`;

Deno.test("pool works with the reference MCP servers from npm", async (t) => {
  // The deno-run servers come from the cache, filled by childrenCached() with our full
  // environment (proxies, CA certificates); npx downloads as users see it.
  const cfg = new TempConfig({});
  const files = join(cfg.dir, "files");
  Deno.mkdirSync(files);
  Deno.writeTextFileSync(join(files, "hello.txt"), "hello from the pool test");
  cfg.write({
    // As users write it: npx downloads on first use (about 5 s cold, under 1 s warm).
    memory: {
      command: "npx",
      args: ["-y", MEMORY],
      env: { MEMORY_FILE_PATH: join(cfg.dir, "memory.jsonl") },
    },
    filesystem: cachedEntry([REFERENCE_SERVERS.filesystem, files]),
    everything: cachedEntry([REFERENCE_SERVERS.everything, "stdio"]),
  });
  Deno.env.set("POOL_TEST_SECRET", "must-not-leak");
  const pool = cfg.pool({ connectTimeoutMs: 90_000 });
  const pids: number[] = [];
  try {
    await t.step("server-memory through npx: first call spawns, later calls reuse", async () => {
      const created = await pool.callTool("memory", "create_entities", {
        entities: [{ name: "pool", entityType: "module", observations: ["keeps connections"] }],
      });
      assert(!created.isError, textOf(created));
      const memory = async () => (await pool.status()).servers.find((s) => s.name === "memory");
      const spawned = (await memory())?.pid;
      assert(spawned !== undefined, "the first call started the server");
      const graph = await call(pool, "memory", "read_graph");
      assertStringIncludes(graph, "keeps connections");
      const status = await memory();
      assertEquals(status?.pid, spawned, "the second call reused the running server");
      assertEquals(status?.state, "connected");
      pids.push(...processTree(status?.pid ?? -1));
      assertStringIncludes(
        Deno.readTextFileSync(join(cfg.dir, "memory.jsonl")),
        "keeps connections",
      );
    });
    await t.step("server-filesystem through deno run npm:", async () => {
      const tools = await pool.listTools("filesystem");
      assert(tools.some((tool) => tool.name === "read_text_file"));
      const text = await call(pool, "filesystem", "read_text_file", {
        path: join(files, "hello.txt"),
      });
      assertEquals(text, "hello from the pool test");
      const denied = await pool.callTool("filesystem", "read_text_file", { path: cfg.path });
      assertEquals(denied.isError, true, "outside the allowed directory is an isError result");
      const status = (await pool.status()).servers.find((s) => s.name === "filesystem");
      pids.push(...processTree(status?.pid ?? -1));
    });
    await t.step("server-everything: environment isolation and progress", async () => {
      const env: unknown = JSON.parse(await call(pool, "everything", "get-env"));
      assert(typeof env === "object" && env !== null);
      assertEquals(Reflect.get(env, "POOL_TEST_SECRET"), undefined);
      assertEquals(Reflect.get(env, "HOME"), Deno.env.get("HOME"));
      const seen: ToolProgress[] = [];
      const result = await pool.callTool("everything", "trigger-long-running-operation", {
        duration: 0.3,
        steps: 3,
      }, { onProgress: (p) => seen.push(p) });
      assertStringIncludes(textOf(result), "completed");
      assert(seen.length >= 2, `progress: ${JSON.stringify(seen)}`);
      const status = (await pool.status()).servers.find((s) => s.name === "everything");
      pids.push(...processTree(status?.pid ?? -1));
    });
  } finally {
    Deno.env.delete("POOL_TEST_SECRET");
    await pool.close();
    cfg.remove();
  }
  for (const pid of pids) await assertGone(pid);
});
