/**
 * Processes that escape a server's process group, and servers that outlive a killed bridge:
 * descendants in sessions of their own are ended when the pool closes, and a bridge killed with
 * SIGKILL leaves nothing behind (its watchdog ends the servers). Linux (/proc).
 */
import { ConfigSource } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { OWNER_VARIABLE, ProcessTracker } from "../lib/pool_reaper.ts";
import { assert, assertEquals } from "./assert.ts";
import {
  assertGone,
  cachedRun,
  denoChildEnv,
  fileExists,
  processGone,
  textOf,
  waitFor,
} from "./fixtures/pool_support.ts";
import { baseEnv, bridgeCommand } from "./helpers.ts";

const FIXTURE = new URL("./fixtures/pool_fixture_server.ts", import.meta.url).pathname;
const silent = createLogger({ level: "silent" });

function pidIn(path: string): number {
  return Number(Deno.readTextFileSync(path).trim());
}

Deno.test({
  name: "closing the pool ends a server's descendants that left its process group",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pool_reaper_test_" });
    const escaped = join(dir, "escaped.pid");
    const orphan = join(dir, "orphan.pid");
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        mcpServers: {
          fx: {
            command: Deno.execPath(),
            args: cachedRun([FIXTURE, "--escape", escaped, "--escape-orphan", orphan]),
            env: denoChildEnv(),
          },
        },
      }),
    );
    const source = new ConfigSource({ explicitPath: config, env: {}, log: silent });
    const pool = new McpPool({ config: source, log: silent, connectTimeoutMs: 20_000 });
    let pids: number[] = [];
    try {
      const env: unknown = JSON.parse(textOf(await pool.callTool("fx", "env", {})));
      assert(typeof env === "object" && env !== null);
      assert(typeof Reflect.get(env, OWNER_VARIABLE) === "string", "the server's env is marked");
      await waitFor("the escaped processes", () => fileExists(escaped) && fileExists(orphan));
      pids = [pidIn(escaped), pidIn(orphan)];
      for (const pid of pids) assert(!processGone(pid), `${pid} runs`);
      await pool.close();
      for (const pid of pids) await assertGone(pid);
    } finally {
      await pool.close();
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone, as it should be.
        }
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a bridge killed with SIGKILL leaves no server behind, even one that ignores SIGTERM and EOF",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pool_reaper_test_" });
    const starts = join(dir, "starts.txt");
    const started = join(dir, "started");
    const escaped = join(dir, "escaped.pid");
    const config = join(dir, ".mcp.json");
    const flags = ["--ignore-eof", "--ignore-term", "--starts", starts, "--escape", escaped];
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        mcpServers: {
          // By name: the bridge permission set allows `deno`.
          stubborn: { command: "deno", args: cachedRun([FIXTURE, ...flags]), env: denoChildEnv() },
        },
      }),
    );
    const { command, args } = bridgeCommand([
      "call",
      "stubborn",
      "slow",
      "--args",
      JSON.stringify({ ms: 600_000, started }),
    ]);
    const bridge = new Deno.Command(command, {
      args,
      env: baseEnv({ MCP_JSON_PATH: config }),
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let pids: number[] = [];
    try {
      await waitFor("the call to reach the server", () => fileExists(started), 30_000);
      await waitFor("the escaped process", () => fileExists(escaped));
      pids = [pidIn(starts), pidIn(escaped)];
      for (const pid of pids) assert(!processGone(pid), `${pid} runs`);
      bridge.kill("SIGKILL");
      assertEquals((await bridge.status).signal, "SIGKILL");
      for (const pid of pids) {
        await waitFor(`process ${pid} to be ended by the watchdog`, () => processGone(pid), 20_000);
      }
    } finally {
      try {
        bridge.kill("SIGKILL");
      } catch {
        // It is gone.
      }
      await bridge.status;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone, as it should be.
        }
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("ProcessTracker gives each server its own marker; with nothing started it starts nothing", async () => {
  const tracker = new ProcessTracker({ log: silent });
  const a = tracker.newMarker();
  const b = tracker.newMarker();
  assert(a !== b && a.startsWith(`${Deno.pid}.`));
  // No server started: no keeper, so reaping and closing do nothing.
  await tracker.reap(1);
  await tracker.close();
});
