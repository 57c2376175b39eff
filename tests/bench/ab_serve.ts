/**
 * Served variants side by side: each spec starts one process (the bridge with `deno run ...
 * main.ts serve` and extra environment variables, or the hand-written floor), and the loop rows
 * of the goal summary (cost per round, 3-turn task, time until the first model request) are
 * measured for all of them interleaved (loops.ts), so a busy moment of the machine hits every
 * variant alike. Use it to measure a prototype switched by an environment variable against the
 * code as it is, in one run.
 *
 * Not a bench file. Run it alone:
 *
 *   deno run -A tests/bench/ab_serve.ts ROUNDS REPS SPEC...
 *
 * SPEC is `label:NAME=VALUE,NAME=VALUE` (variables for that bridge), `floor` (the floor asking
 * for whole replies), `floor-stream` (the floor asking for streamed replies, FLOOR_STREAM=1), or a
 * label that starts with `progress` (the bridge called with a progress token, as Claude Code
 * calls it; the notifications it sent are counted). Example:
 * `deno run -A tests/bench/ab_serve.ts 100 5 floor floor-stream base: off:LMSTUDIO_STREAM=off`.
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { join } from "../../lib/path.ts";
import { ScriptedModel, taskText } from "./model.ts";
import { bridgeRunner, floorRunner, measureLoops, type TaskRunner } from "./loops.ts";
import { benchServerLaunch, bridgeRunLaunch, serve, type Served } from "./serve_rig.ts";
import { benchChildrenCached, check, memoryEntry } from "./support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

const [roundsArg, repsArg, ...specs] = Deno.args;
const rounds = Number(roundsArg);
const reps = Number(repsArg);
check(rounds > 0 && reps > 0 && specs.length > 0, "usage: ab_serve.ts ROUNDS REPS SPEC...");
await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const model = new ScriptedModel(fake);
const dir = await Deno.makeTempDir({ prefix: "ab_serve_" });
const entry = memoryEntry(join(dir, "memory.jsonl"));
await Deno.writeTextFile(join(dir, ".mcp.json"), JSON.stringify({ mcpServers: { memory: entry } }));
const served: Served[] = [];
const runners: Record<string, TaskRunner> = {};
const notifications: Record<string, number> = {};
try {
  for (const spec of specs) {
    const [label = spec, vars = ""] = spec.split(":");
    const env: Record<string, string> = { LMSTUDIO_BASE_URL: fake.baseUrl };
    for (const pair of vars.split(",").filter((p) => p !== "")) {
      const at = pair.indexOf("=");
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
    if (label === "floor" || label === "floor-stream") {
      const s = await serve(benchServerLaunch(label, "floor_server.ts"), {
        cwd: dir,
        env: {
          ...env,
          FLOOR_MODEL: "qwen2.5-7b-instruct",
          FLOOR_SERVER: JSON.stringify(entry),
          ...(label === "floor-stream" ? { FLOOR_STREAM: "1" } : {}),
        },
      });
      served.push(s);
      runners[label] = floorRunner(s);
      continue;
    }
    const s = await serve(bridgeRunLaunch(), { cwd: dir, env });
    served.push(s);
    if (!label.startsWith("progress")) {
      runners[label] = bridgeRunner(s, "memory");
      continue;
    }
    notifications[label] = 0;
    runners[label] = async (n) => {
      await s.client.callTool(
        {
          name: "autonomous_with_mcp",
          arguments: { mcp_name: "memory", task: taskText(n), max_rounds: n + 1 },
        },
        undefined,
        {
          timeout: 600_000,
          onprogress: () => {
            notifications[label]!++;
          },
        },
      );
    };
  }
  const figures = await measureLoops(model, runners, { rounds, reps, shortReps: reps * 3 });
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  print(
    `${rounds}-round tasks x ${reps}, short tasks x ${reps * 3}, interleaved; load ${load}`,
  );
  for (const [label, f] of Object.entries(figures)) {
    const sent = notifications[label];
    print(
      `${label.padEnd(12)} per round ${f.perRoundMs.toFixed(2)} ms, 3-turn task ` +
        `${f.taskMs.toFixed(2)} ms, until the first model request ${
          f.firstRequestMs.toFixed(2)
        } ms` +
        (sent !== undefined ? `, ${sent} progress notifications` : ""),
    );
  }
} finally {
  for (const s of served) await s.close();
  await Deno.remove(dir, { recursive: true });
}
