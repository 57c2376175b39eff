/**
 * The autonomous loop as an MCP client pays for it: `autonomous_with_mcp` called over stdio on
 * the bridge started as users start it (`deno task start`: the model manager resolves and checks
 * the model, the pool keeps the connection to the real server-memory), against the hand-written
 * floor (floor_server.ts: the same SDK, the same process boundary, nothing but the loop). The
 * model and the tool take no time (model.ts), so the difference is the bridge's own cost.
 * The summary (versus_bench.ts) turns these into ratios against the goals.
 */
import { benchServerLaunch, bridgeTaskLaunch, serve } from "./serve_rig.ts";
import { bridgeRunner, floorRunner, type TaskRunner } from "./loops.ts";
import { ScriptedModel } from "./model.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { benchChildrenCached, memoryEntry, QUICK, Shared } from "./support.ts";
import { join } from "../../lib/path.ts";

const ROUNDS = 10;

const rig = new Shared(async () => {
  await benchChildrenCached();
  const dir = await Deno.makeTempDir({ prefix: "agent_bench_" });
  const memory = memoryEntry(join(dir, "memory.jsonl"));
  await Deno.writeTextFile(join(dir, ".mcp.json"), JSON.stringify({ mcpServers: { memory } }));
  const fake = await FakeLmStudio.start();
  const env = { LMSTUDIO_BASE_URL: fake.baseUrl };
  const bridge = await serve(bridgeTaskLaunch(), { cwd: dir, env });
  const floor = await serve(benchServerLaunch("floor", "floor_server.ts"), {
    cwd: dir,
    env: { ...env, FLOOR_MODEL: "qwen2.5-7b-instruct", FLOOR_SERVER: JSON.stringify(memory) },
  });
  const model = new ScriptedModel(fake);
  const runners: Record<"bridge" | "floor", TaskRunner> = {
    bridge: bridgeRunner(bridge, "memory"),
    floor: floorRunner(floor),
  };
  // Connect both to server-memory now: the benches measure tasks, not the spawn.
  for (const run of Object.values(runners)) {
    model.expect(1);
    await run(1);
  }
  return {
    value: { model, runners },
    async close() {
      await bridge.close();
      await floor.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
    abandon: () => Deno.removeSync(dir, { recursive: true }),
  };
});

const n = QUICK ? 10 : 30;

for (const rounds of [0, ROUNDS]) {
  const group = rounds === 0
    ? "loop through serve: answer at once"
    : `loop through serve: ${rounds} tool rounds + answer`;
  for (const who of ["floor", "bridge"] as const) {
    Deno.bench({
      name: who === "floor" ? "hand-written floor (run_task)" : "bridge (autonomous_with_mcp)",
      group,
      baseline: who === "floor",
      n,
      warmup: 3,
      async fn(b) {
        const { model, runners } = await rig.get();
        model.expect(rounds);
        b.start();
        await runners[who](rounds);
        b.end();
        model.drained(`${who}, ${rounds} rounds`);
      },
    });
  }
}
