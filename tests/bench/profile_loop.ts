/**
 * Where the time of a round goes: runs tasks of R tool rounds through a served bridge (or the
 * hand-written floor) against the instant scripted model and the real server-memory, and prints,
 * per round, the wall time and the CPU time of each process involved: the served process itself,
 * the `deno task` wrapper when there is one, the downstream server, and this process (the fake
 * LM Studio and the MCP client). CPU time comes from /proc (each thread's schedstat, in ns), so it
 * holds steady on a busy machine where wall time scatters.
 *
 * Not a bench file (`deno bench` runs only `*_bench.ts`). Run it alone:
 *
 *   deno run -A tests/bench/profile_loop.ts [--target=run|task|floor|floor-stream] [--rounds=100]
 *     [--tasks=5] [--progress] [--threads] [--cpu-prof=DIR] [--v8-flags=...]
 *     [--env=NAME=VALUE ...] [--flag=DENO_FLAG ...] [--json]
 *
 * `--cpu-prof=DIR` starts the served process with `deno run --cpu-prof --cpu-prof-dir=DIR` (not
 * with `task`); the profile is written when it exits. `profile_summary.ts` reads it.
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { join } from "../../lib/path.ts";
import { ScriptedModel, taskText } from "./model.ts";
import { bridgeRunner, floorRunner, type TaskRunner } from "./loops.ts";
import {
  benchServerLaunch,
  bridgeRunLaunch,
  bridgeTaskLaunch,
  type Launch,
  serve,
} from "./serve_rig.ts";
import { benchChildrenCached, commandLine, cpuMs, median, memoryEntry } from "./support.ts";
import { processTree } from "../fixtures/pool_support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

const MODEL = "qwen2.5-7b-instruct";
/** `--name=value` options (and `--json`). */
const flags: Record<string, string | undefined> = { target: "run", rounds: "100", tasks: "5" };
for (const arg of Deno.args) {
  const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
  if (m) flags[m[1]!] = m[2] ?? "true";
}
const rounds = Number(flags.rounds);
const tasks = Number(flags.tasks);
/** Inserts deno flags after `run` in a launch's argv. */
function withFlags(launch: Launch, extra: string[]): Launch {
  const i = launch.args.indexOf("run");
  if (i < 0 || extra.length === 0) return launch;
  return {
    ...launch,
    args: [...launch.args.slice(0, i + 1), ...extra, ...launch.args.slice(i + 1)],
  };
}

const extra: string[] = [];
if (flags["cpu-prof"]) extra.push("--cpu-prof", `--cpu-prof-dir=${flags["cpu-prof"]}`);
if (flags["v8-flags"]) extra.push(`--v8-flags=${flags["v8-flags"]}`);
// `--flag=X` (repeatable): any other flag of `deno run` for the served process.
for (const arg of Deno.args) if (arg.startsWith("--flag=")) extra.push(arg.slice("--flag=".length));

await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const model = new ScriptedModel(fake);
const dir = await Deno.makeTempDir({ prefix: "profile_loop_" });
const entry = memoryEntry(join(dir, "memory.jsonl"));
await Deno.writeTextFile(join(dir, ".mcp.json"), JSON.stringify({ mcpServers: { memory: entry } }));
const env: Record<string, string> = { LMSTUDIO_BASE_URL: fake.baseUrl };
let launch: Launch;
/** `floor`: the hand-written floor asking for whole replies; `floor-stream`: for streamed ones. */
const floor = flags.target === "floor" || flags.target === "floor-stream";
if (floor) {
  launch = benchServerLaunch(flags.target!, "floor_server.ts");
  env.FLOOR_MODEL = MODEL;
  env.FLOOR_SERVER = JSON.stringify(entry);
  if (flags.target === "floor-stream") env.FLOOR_STREAM = "1";
} else if (flags.target === "task") launch = bridgeTaskLaunch();
else launch = bridgeRunLaunch();
launch = withFlags(launch, extra);
// `--env=NAME=VALUE` (repeatable): extra variables for the served process.
for (const arg of Deno.args) {
  const m = /^--env=([^=]+)=(.*)$/.exec(arg);
  if (m) env[m[1]!] = m[2]!;
}

const served = await serve(launch, { cwd: dir, env });
let notifications = 0;
/** `--progress`: the bridge called with a progress token, as Claude Code calls it. */
const withProgress: TaskRunner = async (rounds) => {
  await served.client.callTool(
    {
      name: "autonomous_with_mcp",
      arguments: { mcp_name: "memory", task: taskText(rounds), max_rounds: rounds + 1 },
    },
    undefined,
    { timeout: 600_000, onprogress: () => void notifications++ },
  );
};
const run: TaskRunner = floor
  ? floorRunner(served)
  : flags.progress
  ? withProgress
  : bridgeRunner(served, "memory");

/** CPU time (ms) of each thread of `pid` by thread name (`/proc/PID/task/TID/comm`), summed. */
function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const dir = `/proc/${pid}/task/${t.name}`;
        const name = Deno.readTextFileSync(`${dir}/comm`).trim();
        const ns = Number(Deno.readTextFileSync(`${dir}/schedstat`).split(" ")[0]);
        out[name] = (out[name] ?? 0) + ns / 1e6;
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    // The process ended meanwhile.
  }
  return out;
}

/** The served process (below the deno task wrapper) and the downstream server. */
function roles(): { wrapper?: number; server: number; downstream: number[] } {
  const tree = processTree(served.pid);
  const downstream = tree.filter((p) => /server-memory/.test(commandLine(p)));
  const own = tree.filter((p) =>
    !downstream.includes(p) && /main\.ts|floor_server/.test(commandLine(p))
  );
  const server = own.at(-1) ?? served.pid;
  return { ...(server !== served.pid ? { wrapper: served.pid } : {}), server, downstream };
}

try {
  // Warm-up: connects the pooled server, compiles the hot paths.
  for (const r of [0, 2, rounds]) {
    model.expect(r);
    await run(r);
  }
  const who = roles();
  const sample = () => ({
    server: cpuMs(who.server),
    wrapper: who.wrapper ? cpuMs(who.wrapper) : 0,
    downstream: who.downstream.reduce((s, p) => s + cpuMs(p), 0),
    self: cpuMs("self"),
    wall: performance.now(),
  });
  const per: Record<string, number[]> = {};
  const measure = async (size: number) => {
    const a = sample();
    model.expect(size);
    await run(size);
    const b = sample();
    for (const k of Object.keys(a) as (keyof typeof a)[]) {
      (per[`${size}:${k}`] ??= []).push(b[k] - a[k]);
    }
  };
  const threadsBefore = threadCpuMs(who.server);
  for (let t = 0; t < tasks; t++) {
    await measure(0);
    await measure(rounds);
  }
  const threadsAfter = threadCpuMs(who.server);
  const keys = ["wall", "server", "wrapper", "downstream", "self"] as const;
  const perRound = Object.fromEntries(
    keys.map((k) => [k, (median(per[`${rounds}:${k}`]!) - median(per[`0:${k}`]!)) / rounds]),
  );
  const fixed = Object.fromEntries(keys.map((k) => [k, median(per[`0:${k}`]!)]));
  // The least of each: what a task costs when nothing else on the machine got in its way (on a
  // shared machine, the steadier figure to compare two builds by).
  const least = (k: string) => Math.min(...per[k]!);
  const leastPerRound = Object.fromEntries(
    keys.map((k) => [k, (least(`${rounds}:${k}`) - least(`0:${k}`)) / rounds]),
  );
  const report = {
    target: flags.target,
    rounds,
    tasks,
    perRoundMs: perRound,
    leastPerRoundMs: leastPerRound,
    answerAtOnceMs: fixed,
  };
  if (flags.json) print(JSON.stringify(report));
  else {
    print(`${launch.label} (${flags.target}), ${tasks} x ${rounds} rounds`);
    print("ms            wall  served  wrapper  downstream  bench(fake+client)");
    const row = (name: string, o: Record<string, number>) =>
      print(
        `${name.padEnd(12)}${
          keys.map((k) => o[k]!.toFixed(2).padStart(k === "wall" ? 6 : 8)).join("")
        }`,
      );
    row("per round", perRound);
    row("least/round", leastPerRound);
    row("0-round task", fixed);
    if (flags.progress) print(`${notifications} progress notifications`);
    if (flags.threads) {
      // Per round of all the tasks measured, by thread: where the served CPU time goes.
      const total = tasks * rounds;
      print(`served CPU by thread, ms per round (all ${tasks * 2} tasks over ${total} rounds):`);
      for (const [name, ms] of Object.entries(threadsAfter)) {
        const used = ms - (threadsBefore[name] ?? 0);
        if (used > 0.005 * total) {
          print(`  ${name.padEnd(16)}${(used / total).toFixed(3).padStart(8)}`);
        }
      }
    }
  }
} finally {
  await served.close();
  await Deno.remove(dir, { recursive: true });
}
