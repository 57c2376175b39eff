/**
 * Memory of a served bridge over many tasks, and after it: runs TASKS 3-turn tasks through
 * `deno run ... main.ts serve` (as the goal summary's memory row does), printing the bridge's RSS
 * (downstream servers left out) after 1, 10 and 100 tasks and every 1000, then again after 5, 10, 15 and 30 s idle. A
 * leak stays high when the bridge idles; a heap V8 grew under load and keeps while busy shrinks
 * once V8's memory reducer runs (it starts after a few seconds without work).
 *
 * Not a bench file. Run it alone:
 *
 *   deno run -A tests/bench/memory_soak.ts [TASKS] [DENO_FLAG...] [--env=NAME=VALUE ...]
 *
 * The bridge runs as `deno run` without V8 flags unless given some: pass
 * `--v8-flags=--max-semi-space-size=2,--heap-growing-percent=20` to run it as the installed command
 * and `deno task start` do (lib/cli_install.ts V8_FLAGS).
 * e.g. `... memory_soak.ts 3000 --v8-flags=--max-semi-space-size=1` to try a V8 flag, or
 * `--env=MALLOC_ARENA_MAX=2` to run the bridge with that variable. `--long=5x100` first runs 5
 * tasks of 100 rounds (the goal summary's memory row comes after its long tasks).
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { join } from "../../lib/path.ts";
import { ScriptedModel } from "./model.ts";
import { bridgeRunner } from "./loops.ts";
import { bridgeRunLaunch, type Launch, serve } from "./serve_rig.ts";
import { benchChildrenCached, memoryEntry, treeMemory } from "./support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

const [tasksArg = "3000", ...rest] = Deno.args;
const flags = rest.filter((a) => !a.startsWith("--env=") && !a.startsWith("--long="));
const long = /^--long=(\d+)x(\d+)$/.exec(rest.find((a) => a.startsWith("--long=")) ?? "");
const extra: Record<string, string> = {};
for (const arg of rest.filter((a) => a.startsWith("--env="))) {
  const pair = arg.slice("--env=".length);
  const at = pair.indexOf("=");
  extra[pair.slice(0, at)] = pair.slice(at + 1);
}
const tasks = Number(tasksArg);
await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const model = new ScriptedModel(fake);
const dir = await Deno.makeTempDir({ prefix: "memory_soak_" });
const entry = memoryEntry(join(dir, "memory.jsonl"));
await Deno.writeTextFile(join(dir, ".mcp.json"), JSON.stringify({ mcpServers: { memory: entry } }));
const base = bridgeRunLaunch();
const at = base.args.indexOf("run") + 1;
const launch: Launch = {
  ...base,
  args: [...base.args.slice(0, at), ...flags, ...base.args.slice(at)],
};
const served = await serve(launch, {
  cwd: dir,
  env: { LMSTUDIO_BASE_URL: fake.baseUrl, ...extra },
});
const mib = () => `${(treeMemory(served.pid, /server-memory/) / 2 ** 20).toFixed(1)} MiB`;
try {
  await served.client.listTools();
  const options = [...flags, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)];
  print(`options: ${options.join(" ") || "(none)"}; idle after tools/list: ${mib()}`);
  const run = bridgeRunner(served, "memory");
  if (long) {
    for (let t = 0; t < Number(long[1]); t++) {
      model.expect(Number(long[2]));
      await run(Number(long[2]));
    }
    fake.requests.length = 0;
    model.arrivals.length = 0;
    print(`after ${long[1]} tasks of ${long[2]} rounds: ${mib()}`);
  }
  const t0 = performance.now();
  for (let t = 1; t <= tasks; t++) {
    model.expect(2);
    await run(2);
    // The fake keeps every request it gets: this process must not grow instead.
    fake.requests.length = 0;
    model.arrivals.length = 0;
    if (t % 1000 === 0 || t === tasks || t === 1 || t === 10 || t === 100) {
      print(`${t} tasks, ${((performance.now() - t0) / 1000).toFixed(1)} s: ${mib()}`);
    }
  }
  let idle = 0;
  for (const wait of [5, 5, 5, 15]) {
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    idle += wait;
    print(`idle ${idle} s: ${mib()}`);
  }
} finally {
  await served.close();
  await Deno.remove(dir, { recursive: true });
}
