/**
 * MCP servers as separate processes, the way an MCP client (Claude Code) runs them: spawned with
 * a stdio pipe and driven by the real SDK Client. Used for the bridge itself (`deno task start`,
 * `deno run ... main.ts serve`, or the installed command), the hand-written floor and the minimal
 * server, so every row crosses the same process boundary and pays the same JSON-RPC costs.
 */
import { join } from "../../lib/path.ts";
import type { CallToolResult } from "../../lib/sdk.ts";
import { Client, StdioClientTransport } from "../../lib/sdk_client.ts";
import { baseEnv, bridgeCommand, MAIN } from "../helpers.ts";
import { processGone, processTree } from "../fixtures/pool_support.ts";
import { shellWord } from "../../lib/text.ts";
import { check, denoChildEnv, killTree, ROOT, textOf, treeCpuMs, treeMemory } from "./support.ts";

/** A program to spawn: argv and how to name it in the rows. */
export interface Launch {
  label: string;
  command: string;
  args: string[];
}

/** The bridge as users run it from a checkout: `deno task --quiet --cwd <repo> start`. */
export function bridgeTaskLaunch(): Launch {
  return {
    label: "deno task start",
    command: Deno.execPath(),
    args: ["task", "--quiet", "--cwd", ROOT, "start"],
  };
}

/** The bridge started by `deno run` directly, with the same permission set as the task. */
export function bridgeRunLaunch(): Launch {
  const { command, args } = bridgeCommand(["serve"]);
  return { label: "deno run main.ts serve", command, args };
}

/**
 * The installed command: `lmstudio-bridge` on PATH, else the binary `deno task compile` leaves in
 * dist/; undefined when there is neither.
 */
export function installedLaunch(): Launch | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  for (
    const [dir, label] of [
      ...dirs.map((d) => [d, "installed lmstudio-bridge"] as const),
      [join(ROOT, "dist"), "compiled dist/lmstudio-bridge"] as const,
    ]
  ) {
    const path = join(dir, "lmstudio-bridge");
    try {
      if (Deno.statSync(path).isFile) return { label, command: path, args: ["serve"] };
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * The installed command as a user gets it: {@linkcode installedLaunch} when there is one, else
 * `deno task install --root <root>` run now (offline: the cache has every dependency), and the
 * launcher it writes.
 */
export async function benchInstalledLaunch(root: string): Promise<Launch> {
  const found = installedLaunch();
  if (found) return found;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--cwd", ROOT, "install", "--root", root],
    env: { ...baseEnv({ HOME: root }), ...denoChildEnv() },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  check(out.success, `deno task install --root ${root} failed:\n${text}`);
  return {
    label: "installed lmstudio-bridge",
    command: join(root, "bin", "lmstudio-bridge"),
    args: ["serve"],
  };
}

/**
 * `launch` started the way `deno task start` starts the bridge: a deno.json written in `dir` whose
 * `start` task is the launch's command line (with the same DENO_NO_UPDATE_CHECK=1), run by
 * `deno task --quiet --cwd <dir> start`. What the wrapper costs is then the same on both sides.
 */
export async function throughTask(launch: Launch, dir: string): Promise<Launch> {
  await Deno.mkdir(dir, { recursive: true });
  const line = [launch.command, ...launch.args].map(shellWord).join(" ");
  await Deno.writeTextFile(
    join(dir, "deno.json"),
    JSON.stringify({ tasks: { start: `DENO_NO_UPDATE_CHECK=1 ${line}` } }),
  );
  return {
    label: `${launch.label} through deno task`,
    command: Deno.execPath(),
    args: ["task", "--quiet", "--cwd", dir, "start"],
  };
}

/** A bench server beside this file (floor_server.ts, minimal_server.ts), run like the bridge. */
export function benchServerLaunch(label: string, file: string): Launch {
  const { command, args } = bridgeCommand([]);
  const path = join(ROOT, "tests", "bench", file);
  return { label, command, args: args.map((a) => a === MAIN ? path : a) };
}

/** A running server and the client connected to it. */
export interface Served {
  client: Client;
  /** The spawned process (the `deno task` wrapper when launched through it). */
  pid: number;
  /** Wall time from spawn until the `initialize` answer arrived, ms. */
  startMs: number;
  /** CPU time the process tree had used when the `initialize` answer arrived, ms. */
  startCpuMs: number;
  /** Calls `tool` and returns its text; throws on an error result. */
  call(tool: string, args: Record<string, unknown>): Promise<string>;
  /** Tool calls made so far. */
  readonly calls: number;
  close(): Promise<void>;
}

/** Spawns `launch` in `cwd` with a clean environment plus `env`, and completes the handshake. */
export async function serve(
  launch: Launch,
  o: { cwd: string; env: Record<string, string> },
): Promise<Served> {
  const transport = new StdioClientTransport({
    command: launch.command,
    args: launch.args,
    cwd: o.cwd,
    env: { ...baseEnv({ HOME: o.cwd, LOG_LEVEL: "error" }), ...denoChildEnv(), ...o.env },
    stderr: "inherit",
  });
  const client = new Client({ name: "bench", version: "1" });
  const t0 = performance.now();
  await client.connect(transport);
  const startMs = performance.now() - t0;
  const pid = transport.pid;
  check(pid !== null, `${launch.label} has a pid`);
  const startCpuMs = treeCpuMs(pid);
  let calls = 0;
  return {
    client,
    pid,
    startMs,
    startCpuMs,
    get calls() {
      return calls;
    },
    async call(tool, args) {
      calls++;
      const result = await client.callTool({ name: tool, arguments: args }, undefined, {
        timeout: 600_000,
      }) as CallToolResult;
      check(!result.isError, `${launch.label} ${tool} failed: ${textOf(result)}`);
      return textOf(result);
    },
    async close() {
      const tree = processTree(pid);
      await client.close();
      // The SDK ends stdin and signals the process it spawned; a wrapper's children (deno task,
      // downstream servers) must be gone too before the next measurement starts.
      const deadline = Date.now() + 10_000;
      while (!tree.every(processGone) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      for (const p of tree) if (!processGone(p)) killTree(p);
    },
  };
}

/** Per launch label: the start-up times (spawn to `initialize` answered, ms) and idle RSS. */
export interface StartSamples {
  start: Record<string, number[]>;
  /** CPU time of the process tree when the `initialize` answer arrived, ms. */
  cpu: Record<string, number[]>;
  rss: Record<string, number[]>;
}

/**
 * A DENO_DIR for one launch: every entry of `denoDir` linked in, except V8's code cache, which the
 * launch gets of its own. Deno keeps one code cache per DENO_DIR and drops an entry compiled with
 * other V8 flags, so launches that differ in flags (`deno task start` runs with
 * V8 heap flags) and share modules (the SDK) would recompile them at each turn when
 * interleaved; a user runs one of them, from a warm cache.
 */
export async function ownCodeCache(denoDir: string, dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for await (const entry of Deno.readDir(denoDir)) {
    if (entry.name.startsWith("v8_code_cache")) continue;
    await Deno.symlink(join(denoDir, entry.name), join(dir, entry.name));
  }
  return dir;
}

/**
 * Starts each of `launches` `reps` times, interleaved so a busy moment hits every launch alike:
 * the time to the `initialize` answer, and the memory of the whole process tree (a `deno task`
 * wrapper included, {@linkcode treeMemory}) after `tools/list`. Each launch has its own V8 code
 * cache ({@linkcode ownCodeCache}) and starts once unmeasured first, so every measured start is
 * a warm one, as a user's are.
 */
export async function sampleStarts(
  launches: readonly Launch[],
  reps: number,
  o: { cwd: string; env: Record<string, string> },
): Promise<StartSamples> {
  const start: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  const rss: Record<string, number[]> = {};
  const caches = await Deno.makeTempDir({ prefix: "bench_code_caches_" });
  try {
    const denoDir = baseEnv().DENO_DIR!;
    const envs = await Promise.all(launches.map(async (_, i) => ({
      ...o.env,
      DENO_DIR: await ownCodeCache(denoDir, join(caches, String(i))),
    })));
    for (let rep = -1; rep < reps; rep++) {
      for (const [i, launch] of launches.entries()) {
        const served = await serve(launch, { cwd: o.cwd, env: envs[i]! });
        try {
          await served.client.listTools();
          if (rep < 0) continue;
          (start[launch.label] ??= []).push(served.startMs);
          (cpu[launch.label] ??= []).push(served.startCpuMs);
          (rss[launch.label] ??= []).push(treeMemory(served.pid));
        } finally {
          await served.close();
        }
      }
    }
  } finally {
    await Deno.remove(caches, { recursive: true });
  }
  return { start, cpu, rss };
}
