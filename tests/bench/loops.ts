/**
 * The loop rows of the summary: the cost of one round and the fixed cost of one short task, for
 * the bridge through `serve` (spawned as users run it, the model manager in the path, the real
 * server-memory on a pooled connection), for the hand-written floor (floor_server.ts, spawned
 * the same way; two of them: one asking for whole replies, one for streamed replies), for the
 * peer SDKs, and for the original spawn-per-call architecture.
 *
 * Every task runs against the instant scripted model (model.ts) and an instant tool
 * (server-memory's search on an empty graph), so what is measured is the loop alone.
 * - Cost per round = (median of an R-round task - median of an answer-at-once task) / R.
 * - Fixed cost of a task = median of a 3-turn task (2 tool rounds, then the answer), with the
 *   time from the request to the first model request beside it.
 * Runs of different loops are interleaved, so a busy moment of the machine hits them alike.
 */
import { runAgent } from "../../lib/agent.ts";
import type { ToolHost } from "../../lib/agent_types.ts";
import { createApp } from "../../lib/app.ts";
import { resolveSettings } from "../../lib/settings.ts";
import { ms, notMeasured, ratioRow, type Row } from "./goals.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { ScriptedModel, taskText } from "./model.ts";
import { installPeers, PEERS, runPeerProcess } from "./peers.ts";
import type { Served } from "./serve_rig.ts";
import { SpawnPerCall } from "./spawn_per_call.ts";
import { check, median, quiet, type StdioEntry } from "./support.ts";
import { baseEnv } from "../helpers.ts";

/** Tool rounds of the short task (3 model turns). */
const SHORT = 2;

/** Runs one task of `rounds` tool rounds to its answer; throws when it ends otherwise. */
export type TaskRunner = (rounds: number) => Promise<void>;

/** Medians of one loop. */
export interface LoopFigures {
  perRoundMs: number;
  /** The 3-turn task. */
  taskMs: number;
  /** From sending the task to the first model request, in the 3-turn task (NaN if unknown). */
  firstRequestMs: number;
}

/**
 * How many rounds and repetitions: every figure is a median, of `reps` long tasks and of
 * `shortReps` short ones (cheap, so more of them steady the fixed-cost figures); see
 * {@linkcode allPasses} for their order.
 */
export interface LoopPlan {
  rounds: number;
  reps: number;
  shortReps: number;
}

/** One pass over every loop: the task sizes it runs, and whether their times count. */
interface Pass {
  sizes: number[];
  measured: boolean;
}

/**
 * The passes of a plan: a warm-up with every size, the long tasks (`reps` passes of 0 and
 * `rounds` rounds), then the short ones (`shortReps` passes of 0 and 2 rounds) after a pass that
 * is not counted. A short task right after a long one would also measure what the long one left
 * (its garbage collected, a larger heap given back): about 1.5x the task on both loops.
 */
function allPasses(plan: LoopPlan): Pass[] {
  const pass = (sizes: number[], measured: boolean): Pass => ({
    sizes: [...new Set(sizes)],
    measured,
  });
  return [
    pass([0, SHORT, plan.rounds], false),
    ...Array.from({ length: plan.reps }, () => pass([0, plan.rounds], true)),
    ...(plan.reps > 0 ? [pass([0, SHORT], false)] : []),
    ...Array.from({ length: plan.shortReps }, () => pass([0, SHORT], true)),
  ];
}

/** The bridge's autonomous_with_mcp through `serve`, checked for the rounds it reports. */
export function bridgeRunner(served: Served, server: string): TaskRunner {
  return async (rounds) => {
    const text = await served.call("autonomous_with_mcp", {
      mcp_name: server,
      task: taskText(rounds),
      max_rounds: rounds + 1,
    });
    check(
      text.includes("stopped_because: answer") && text.includes(`${rounds + 1} round(s)`),
      `bridge answered after ${rounds + 1} rounds: ${text.slice(0, 200)}`,
    );
  };
}

/** The hand-written floor's run_task through its own `serve`. */
export function floorRunner(served: Served): TaskRunner {
  return async (rounds) => {
    const text = await served.call("run_task", { task: taskText(rounds), max_rounds: rounds + 1 });
    check(text.includes(`"rounds":${rounds + 1}`), `floor answered after ${rounds + 1}: ${text}`);
  };
}

/**
 * Measures each runner at 0, 2 and `rounds` rounds as `plan` says, interleaved, after one
 * warm-up pass (which also connects the pooled servers).
 */
export async function measureLoops(
  model: ScriptedModel,
  runners: Record<string, TaskRunner>,
  plan: LoopPlan,
): Promise<Record<string, LoopFigures>> {
  const times: Record<string, Record<number, number[]>> = {};
  const firsts: Record<string, number[]> = {};
  for (const { sizes, measured } of allPasses(plan)) {
    const warm = !measured;
    for (const [name, run] of Object.entries(runners)) {
      for (const rounds of sizes) {
        model.expect(rounds);
        const t0 = performance.now();
        await run(rounds);
        const elapsed = performance.now() - t0;
        model.drained(`${name}, ${rounds} rounds`);
        if (warm) continue;
        ((times[name] ??= {})[rounds] ??= []).push(elapsed);
        if (rounds === SHORT) (firsts[name] ??= []).push(model.firstArrivalAfter(t0) - t0);
      }
    }
  }
  return Object.fromEntries(
    Object.keys(runners).map((name) => [name, figures(times[name]!, plan.rounds, firsts[name])]),
  );
}

function figures(t: Record<number, number[]>, rounds: number, first?: number[]): LoopFigures {
  return {
    perRoundMs: (median(t[rounds]!) - median(t[0]!)) / rounds,
    taskMs: median(t[SHORT]!),
    firstRequestMs: first === undefined ? NaN : median(first),
  };
}

/** The four loops of the goal rows, measured in one interleaved run. */
export interface LoopSet {
  /** The bridge as users run it: streamed replies. */
  bridge: LoopFigures;
  /** The floor reading streamed replies (FLOOR_STREAM=1). */
  streamFloor: LoopFigures;
  /** The bridge asking for whole replies (LMSTUDIO_STREAM=off). */
  whole: LoopFigures;
  /** The floor asking for whole replies. */
  wholeFloor: LoopFigures;
}

/**
 * Rows of the bridge against the floor, each against the floor that asks for replies the same
 * way: the streamed bridge against the streaming floor (per round, per task, before the first
 * request), the bridge with LMSTUDIO_STREAM=off against the whole-reply floor (per round, per
 * task), both under the same goals; and, with no goal, the streamed bridge against the
 * whole-reply floor, which adds what reading a stream costs on both sides of the fake.
 */
export function loopRows(loops: LoopSet, plan: LoopPlan): Row[] {
  const f = (n: number) => ({ text: ms(n), n });
  const streaming = (n: number) => ({ label: "streaming floor", ...f(n) });
  const whole = (n: number) => ({ label: "whole-reply floor", ...f(n) });
  const { bridge, streamFloor, wholeFloor } = loops;
  return [
    ratioRow(
      `cost per round, through serve (${plan.rounds} rounds, instant model + tool), streamed ` +
        "replies, against the streaming floor",
      f(bridge.perRoundMs),
      streaming(streamFloor.perRoundMs),
      1.2,
    ),
    ratioRow(
      "fixed cost of one pooled 3-turn task, streamed replies, against the streaming floor",
      f(bridge.taskMs),
      streaming(streamFloor.taskMs),
      1.5,
    ),
    ratioRow(
      "  of which: until the first model request",
      f(bridge.firstRequestMs),
      streaming(streamFloor.firstRequestMs),
    ),
    ratioRow(
      "  LMSTUDIO_STREAM=off: cost per round, against the whole-reply floor",
      f(loops.whole.perRoundMs),
      whole(wholeFloor.perRoundMs),
      1.2,
    ),
    ratioRow(
      "  LMSTUDIO_STREAM=off: 3-turn task, against the whole-reply floor",
      f(loops.whole.taskMs),
      whole(wholeFloor.taskMs),
      1.5,
    ),
    ratioRow(
      "  streamed replies: cost per round, against the whole-reply floor",
      f(bridge.perRoundMs),
      whole(wholeFloor.perRoundMs),
    ),
  ];
}

/**
 * The peers' rows (per round and per task against the whole-reply floor: the peers ask for whole
 * replies too), or why they are not measured. Each peer gets a fake LM Studio of its own, so a
 * peer that fails leaves nothing queued behind.
 */
export async function peerRows(
  o: { server: StdioEntry; plan: LoopPlan; floor: LoopFigures; log: (line: string) => void },
): Promise<Row[]> {
  const installed = await installPeers(o.log);
  const rows: Row[] = [];
  const f = (n: number) => ({ text: ms(n), n });
  for (const peer of PEERS) {
    const perRound = `  ${peer.label}: cost per round`;
    if ("unavailable" in installed) {
      rows.push(notMeasured(perRound, installed.unavailable));
      continue;
    }
    const passes = allPasses(o.plan);
    const tasks = passes.flatMap((p) =>
      p.sizes.map((rounds) => ({ text: taskText(rounds), rounds, measured: p.measured }))
    );
    await using fake = await FakeLmStudio.start();
    const model = new ScriptedModel(fake);
    for (const t of tasks) model.expect(t.rounds);
    const report = await runPeerProcess(installed.dir, peer.script, {
      baseUrl: fake.baseUrl,
      model: "qwen2.5-7b-instruct",
      server: o.server,
      tasks: tasks.map(({ text, rounds }) => ({ text, rounds })),
    }, baseEnv());
    if ("failed" in report) {
      rows.push(notMeasured(perRound, `${peer.label} failed: ${report.failed}`));
      continue;
    }
    model.drained(peer.label);
    const t: Record<number, number[]> = {};
    report.tasks.forEach((task, i) => {
      if (tasks[i]?.measured) (t[task.rounds] ??= []).push(task.ms);
    });
    const fig = figures(t, o.plan.rounds);
    rows.push(
      ratioRow(perRound, f(fig.perRoundMs), {
        label: "whole-reply floor",
        ...f(o.floor.perRoundMs),
      }),
      ratioRow(`  ${peer.label}: 3-turn task (in its process)`, f(fig.taskMs), {
        label: "whole-reply floor (through serve)",
        ...f(o.floor.taskMs),
      }),
    );
  }
  return rows;
}

/**
 * The spawn-per-call architecture against the pooled one, both in this process with the
 * bridge's own loop and model manager: per round and per 3-turn task.
 */
export async function spawnPerCallRows(
  o: { model: ScriptedModel; baseUrl: string; configPath: string; reps: number },
): Promise<Row[]> {
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: o.baseUrl, LMSTUDIO_RETRIES: "0" });
  const app = createApp(settings, { configPath: o.configPath, log: quiet });
  const spawning = new SpawnPerCall(app.config);
  const runner = (pool: ToolHost): TaskRunner => {
    return async (rounds) => {
      const result = await runAgent({
        task: taskText(rounds),
        servers: ["memory"],
        maxRounds: rounds + 1,
        defaultModel: settings.defaultModel,
        ttlSeconds: settings.modelTtlSeconds,
        defaultContextLength: settings.defaultContextLength,
        depth: settings.depth,
        deps: { client: app.client, pool, config: app.config, models: app.models, log: quiet },
      });
      check(
        result.stopped_because === "answer" && result.rounds === rounds + 1,
        `in-process loop: answer after ${rounds + 1} rounds, got ${result.stopped_because}`,
      );
    };
  };
  try {
    const measured = await measureLoops(o.model, {
      pooled: runner(await app.pool()),
      spawning: runner(spawning),
    }, { rounds: SHORT, reps: o.reps, shortReps: o.reps });
    const pooled = measured.pooled!;
    const spawn = measured.spawning!;
    const f = (n: number) => ({ text: ms(n), n });
    return [
      ratioRow(
        "spawn-per-call architecture (original bridge): cost per round",
        f(spawn.perRoundMs),
        { label: "pooled, same loop", ...f(pooled.perRoundMs) },
      ),
      ratioRow("  spawn-per-call: 3-turn task", f(spawn.taskMs), {
        label: "pooled, same loop",
        ...f(pooled.taskMs),
      }),
    ];
  } finally {
    await app.close();
  }
}
