/**
 * The summary of `deno task bench` (this file sorts last, so it prints at the end): every goal
 * of the bridge's performance as a ratio measured in this run against what it is compared with
 * (the hand-written floor, with whole and with streamed replies, a minimal server on the same
 * SDK, a plain re-read of the config), with PASS or MISS, and the peer loops and the original
 * spawn-per-call architecture as comparison rows. Medians of at least 5 runs; see goals.ts for
 * the table, loops.ts for the loop rows.
 *
 * Run alone: `deno bench -A --no-prompt tests/bench/versus_bench.ts`; shorter:
 * `BENCH_QUICK=1` (fewer rounds, tasks and servers). `BENCH_PEERS=off` skips the peers, whose
 * one-time install is the only step that needs the network. `BENCH_SUMMARY_JSON=FILE` also
 * writes the rows as JSON.
 */
import { ConfigSource } from "../../lib/config.ts";
import { LmStudioClient } from "../../lib/lmstudio.ts";
import { join } from "../../lib/path.ts";
import { defaultFakeModels, FakeLmStudio } from "../fakes/lmstudio.ts";
import { processTree } from "../fixtures/pool_support.ts";
import { limitRow, mib, ms, ratioRow, type Row, table } from "./goals.ts";
import {
  bridgeRunner,
  floorRunner,
  loopRows,
  measureLoops,
  peerRows,
  spawnPerCallRows,
} from "./loops.ts";
import { ScriptedModel, taskText } from "./model.ts";
import {
  benchInstalledLaunch,
  benchServerLaunch,
  bridgeRunLaunch,
  bridgeTaskLaunch,
  type Launch,
  sampleStarts,
  serve,
  type Served,
  throughTask,
} from "./serve_rig.ts";
import {
  benchChildrenCached,
  check,
  commandLine,
  median,
  memoryEntry,
  QUICK,
  quiet,
  type StdioEntry,
  treeMemory,
} from "./support.ts";

/** How much each part measures (the quick run: fewer rounds, tasks, servers, repetitions). */
interface Scale {
  /** Tool rounds of the long task (cost per round). */
  rounds: number;
  /** Repetitions of the long tasks of the peers and of the spawn-per-call rows. */
  reps: number;
  /**
   * Repetitions of the long tasks of the goal loops (the bridge and the floor): cheap, and the
   * cost per round is a difference of two medians, which a few slow tasks on a shared machine
   * move less when there are more of them.
   */
  loopReps: number;
  /** Repetitions of the short tasks (fixed cost). */
  shortReps: number;
  /** Tasks of the memory row, and the time they may take at most. */
  soak: number;
  soakSeconds: number;
  /** Configured servers of the discover-all rows. */
  servers: number;
  /** Start-ups of each launch. */
  starts: number;
  /** Chats of the MCP-layer rows. */
  chats: number;
  /** Batches of the config rows. */
  batches: number;
}

const SCALE: Scale = QUICK
  ? {
    rounds: 20,
    reps: 5,
    loopReps: 9,
    shortReps: 9,
    soak: 300,
    soakSeconds: 20,
    servers: 10,
    starts: 5,
    chats: 30,
    batches: 5,
  }
  : {
    rounds: 100,
    reps: 5,
    loopReps: 15,
    shortReps: 15,
    soak: 3000,
    soakSeconds: 75,
    servers: 50,
    starts: 7,
    chats: 100,
    batches: 7,
  };
const MODEL = "qwen2.5-7b-instruct";
/** Downstream servers are left out of the bridge's own memory. */
const DOWNSTREAM = /server-memory/;

const encoder = new TextEncoder();
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(`${text}\n`));
const progress = (text: string) => Deno.stderr.writeSync(encoder.encode(`summary: ${text}\n`));

/** A temp directory holding `.mcp.json` with `servers` server-memory entries (memory, memory-2...). */
async function projectDir(servers: number): Promise<{ dir: string; entry: StdioEntry }> {
  const dir = await Deno.makeTempDir({ prefix: "bench_versus_" });
  const mcpServers: Record<string, StdioEntry> = {};
  for (let i = 1; i <= servers; i++) {
    mcpServers[i === 1 ? "memory" : `memory-${i}`] = memoryEntry(join(dir, `memory-${i}.jsonl`));
  }
  await Deno.writeTextFile(join(dir, ".mcp.json"), JSON.stringify({ mcpServers }, null, 2));
  return { dir, entry: mcpServers.memory! };
}

const f = (n: number) => ({ text: ms(n), n });
const m = (n: number) => ({ text: mib(n), n });

// -- config --------------------------------------------------------------------------------------

/** A 50-server config as Claude Code writes it (plain JSON). */
function configText(servers: number, edit = 0): string {
  const entries: Record<string, unknown> = {};
  for (let i = 0; i < servers; i++) {
    entries[`server-${String(i).padStart(2, "0")}`] = {
      command: i % 2 === 0 ? "npx" : "uvx",
      args: ["-y", `@example/mcp-server-${i}@1.2.${i}`, "--root", `/srv/work/p${i}`],
      env: { LOG_LEVEL: "info", INDEX: String(i) },
    };
  }
  return JSON.stringify({ mcpServers: entries }, null, 2) + " ".repeat(edit) + "\n";
}

/** Per-call time of `work`, median of `batches` batches of `calls`. */
async function perCall(work: () => Promise<unknown>, calls: number): Promise<number> {
  const batches: number[] = [];
  for (let b = 0; b < SCALE.batches; b++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) await work();
    batches.push((performance.now() - t0) / calls);
  }
  return median(batches);
}

async function configRows(): Promise<Row[]> {
  progress("config checks");
  const base = await Deno.makeTempDir({ prefix: "bench_config_" });
  try {
    const project = join(base, "project");
    const home = join(base, "home");
    const elsewhere = join(base, "elsewhere");
    for (const d of [project, home, elsewhere]) await Deno.mkdir(d);
    const past = new Date(Date.now() - 60_000);
    for (const d of [project, home]) {
      await Deno.writeTextFile(join(d, ".mcp.json"), configText(50));
      await Deno.utime(join(d, ".mcp.json"), past, past);
    }
    // Watching, as the bridge runs: an unchanged check costs no stat.
    using inProject = new ConfigSource({ env: {}, cwd: project, home, log: quiet, watch: true });
    using inHome = new ConfigSource({ env: {}, cwd: elsewhere, home, log: quiet, watch: true });
    for (const [source, where] of [[inProject, "project"], [inHome, "home"]] as const) {
      const config = await source.current();
      check(
        config.servers.length === 50 && config.path?.startsWith(join(base, where)) === true,
        `50 servers found in ${where}`,
      );
    }
    const path = join(project, ".mcp.json");
    const plain = await perCall(async () => JSON.parse(await Deno.readTextFile(path)), 500);
    const project1 = await perCall(() => inProject.current(), 2000);
    const home1 = await perCall(() => inHome.current(), 2000);

    // The seconds after an edit: the first call re-reads and parses (`verify`: it does not wait
    // for the watcher's event); the next ones stat for 2 s after the event and, while the file is
    // younger than the filesystem's timestamp resolution, re-read it to compare.
    const firsts: number[] = [];
    const racy: number[] = [];
    for (let edit = 1; edit <= SCALE.batches; edit++) {
      await Deno.writeTextFile(path, configText(50, edit));
      const edited = Date.now();
      let t0 = performance.now();
      check(
        (await inProject.current({ verify: true })).servers.length === 50,
        "edited config read",
      );
      firsts.push(performance.now() - t0);
      let calls = 0;
      t0 = performance.now();
      while (Date.now() - edited < 1000) {
        await inProject.current();
        calls++;
      }
      racy.push((performance.now() - t0) / calls);
    }
    const us1 = { text: "1 us", n: 0.001 };
    const reread = { label: "plain re-read + JSON.parse", ...f(plain) };
    return [
      limitRow("config check per call, unchanged 50-server ./.mcp.json", f(project1), us1, reread),
      limitRow("config check per call, unchanged, found as ~/.mcp.json", f(home1), us1, reread),
      limitRow(
        "config check per call, in the 2 s after an edit (read)",
        f(median(racy)),
        us1,
        reread,
      ),
      ratioRow("config: first call after an edit (re-read + parse)", f(median(firsts)), reread),
    ];
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

// -- start-up and idle memory ----------------------------------------------------------------------

async function startRows(baseUrl: string): Promise<Row[]> {
  const { dir } = await projectDir(1);
  const minimal = benchServerLaunch("minimal server", "minimal_server.ts");
  try {
    const minimalTask = await throughTask(minimal, join(dir, "minimal-task"));
    const installed = await benchInstalledLaunch(join(dir, "installed"));
    const launches: Launch[] = [
      bridgeTaskLaunch(),
      minimalTask,
      installed,
      minimal,
      bridgeRunLaunch(),
    ];
    progress(`start-up and idle memory (${SCALE.starts} x ${launches.length} launches)`);
    const { start, rss } = await sampleStarts(launches, SCALE.starts, {
      cwd: dir,
      env: { LMSTUDIO_BASE_URL: baseUrl },
    });
    const against = (label: string) => ({
      start: { label, ...f(median(start[label]!)) },
      rss: { label, ...m(median(rss[label]!)) },
    });
    const row = (label: string, base: ReturnType<typeof against>, goal?: number): Row[] => [
      ratioRow(
        `spawn to initialize answered: ${label}`,
        f(median(start[label]!)),
        base.start,
        goal,
      ),
      ratioRow(
        `idle memory after initialize + tools/list: ${label}`,
        m(median(rss[label]!)),
        base.rss,
        goal,
      ),
    ];
    const plain = against(minimal.label);
    return [
      // Each launch against the minimal server started the same way: the wrapper's own cost
      // (a second deno process) is then on both sides, and shown on its own below.
      ...row(bridgeTaskLaunch().label, against(minimalTask.label), 1.2),
      ...row(installed.label, plain, 1.2),
      ...row(bridgeRunLaunch().label, plain),
      ...row(minimalTask.label, plain),
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// -- the loops, the MCP layer, the context, memory over many tasks ----------------------------------

function toolTokens(tools: unknown[]): Row {
  // What a client puts in its model's context of each tool: name, description, input schema (the
  // title and annotations of tools/list are for the client's UI and its permission prompts).
  const seen = tools.map((t) => {
    const { name, description, inputSchema } = (t ?? {}) as Record<string, unknown>;
    return { name, description, inputSchema };
  });
  const chars = JSON.stringify(seen).length;
  // About 4 characters per token for English text and JSON (no tokenizer here).
  const tokens = Math.round(chars / 4);
  return limitRow(
    `tool definitions in the caller's context (${tools.length} tools, ${
      (chars / 1000).toFixed(1)
    } kB; the whole tools/list ${(JSON.stringify(tools).length / 1000).toFixed(1)} kB)`,
    { text: `${tokens} tokens`, n: tokens },
    { text: "2500 tokens", n: 2500 },
    { note: "about chars / 4" },
  );
}

/** chat_completion through serve, the floor's chat tool through serve, and the chat direct. */
async function chatRows(bridge: Served, floor: Served, client: LmStudioClient): Promise<Row[]> {
  const times: Record<"direct" | "bridge" | "floor", number[]> = {
    direct: [],
    bridge: [],
    floor: [],
  };
  const timed = async (key: keyof typeof times, work: () => Promise<string>, warm: boolean) => {
    const t0 = performance.now();
    const text = await work();
    const elapsed = performance.now() - t0;
    check(text === "Echo: ping", `${key} chat answered: ${text}`);
    if (!warm) times[key].push(elapsed);
  };
  for (let i = -3; i < SCALE.chats; i++) {
    const warm = i < 0;
    await timed("direct", async () =>
      (await client.chat({
        model: MODEL,
        messages: [{ role: "user", content: "ping" }],
        temperature: 0.7,
        max_tokens: 1024,
      })).content, warm);
    await timed(
      "bridge",
      () => bridge.call("chat_completion", { prompt: "ping", model: MODEL }),
      warm,
    );
    await timed("floor", () => floor.call("chat", { prompt: "ping", model: MODEL }), warm);
  }
  const direct = { label: "the same chat direct", ...f(median(times.direct)) };
  return [
    ratioRow("tools/call chat_completion through serve", f(median(times.bridge)), direct),
    ratioRow("  hand-written chat tool through its serve", f(median(times.floor)), direct),
  ];
}

async function loopSection(fake: FakeLmStudio): Promise<Row[]> {
  const model = new ScriptedModel(fake);
  const { dir, entry } = await projectDir(1);
  const env = { LMSTUDIO_BASE_URL: fake.baseUrl };
  const bridge = await serve(bridgeTaskLaunch(), { cwd: dir, env });
  const floorEnv = { ...env, FLOOR_MODEL: MODEL, FLOOR_SERVER: JSON.stringify(entry) };
  const floor = await serve(benchServerLaunch("floor", "floor_server.ts"), {
    cwd: dir,
    env: floorEnv,
  });
  // The bridge streams replies by default: it is compared with the floor that streams them too,
  // and the bridge asking for whole replies with the floor that does.
  const streamFloor = await serve(benchServerLaunch("streaming floor", "floor_server.ts"), {
    cwd: dir,
    env: { ...floorEnv, FLOOR_STREAM: "1" },
  });
  const whole = await serve(bridgeTaskLaunch(), {
    cwd: dir,
    env: { ...env, LMSTUDIO_STREAM: "off" },
  });
  try {
    const { tools } = await bridge.client.listTools();
    const idle = treeMemory(bridge.pid, DOWNSTREAM);
    const rows: Row[] = [toolTokens(tools)];

    progress(
      `loops: ${SCALE.rounds} rounds ${SCALE.loopReps} times, 0 and 2 rounds ${SCALE.shortReps} ` +
        "times, the bridge and the floor, each streamed and with whole replies",
    );
    const plan = { rounds: SCALE.rounds, reps: SCALE.loopReps, shortReps: SCALE.shortReps };
    const loops = await measureLoops(model, {
      bridge: bridgeRunner(bridge, "memory"),
      streamFloor: floorRunner(streamFloor),
      whole: bridgeRunner(whole, "memory"),
      wholeFloor: floorRunner(floor),
    }, plan);
    rows.push(...loopRows({
      bridge: loops.bridge!,
      streamFloor: loops.streamFloor!,
      whole: loops.whole!,
      wholeFloor: loops.wholeFloor!,
    }, plan));

    progress("peers");
    rows.push(
      ...await peerRows({
        server: entry,
        plan: { ...plan, reps: SCALE.reps },
        floor: loops.wholeFloor!,
        log: progress,
      }),
    );

    progress("spawn-per-call architecture");
    rows.push(
      ...await spawnPerCallRows({
        model,
        baseUrl: fake.baseUrl,
        configPath: join(dir, ".mcp.json"),
        reps: SCALE.reps,
      }),
    );

    progress(`tools/call chat_completion against a direct chat (${SCALE.chats} each)`);
    const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
    rows.push(...await chatRows(bridge, floor, client));

    const before = bridge.calls;
    progress(
      `memory: up to ${SCALE.soak} 3-turn tasks through serve (${SCALE.soakSeconds} s at most)`,
    );
    const run = bridgeRunner(bridge, "memory");
    const t0 = performance.now();
    let tasks = 0;
    while (tasks < SCALE.soak && performance.now() - t0 < SCALE.soakSeconds * 1000) {
      model.expect(2);
      await run(2);
      tasks++;
    }
    const soakMs = performance.now() - t0;
    model.drained("memory soak");
    const after = treeMemory(bridge.pid, DOWNSTREAM);
    const capped = tasks < SCALE.soak ? `, stopped at the ${SCALE.soakSeconds} s cap` : "";
    rows.push(
      ratioRow(
        `bridge RSS after ${tasks} tasks (${ms(soakMs)}${capped}; ${before} calls before them)`,
        m(after),
        { label: "idle after initialize + tools/list", ...m(idle) },
        1.5,
      ),
    );
    return rows;
  } finally {
    await bridge.close();
    await floor.close();
    await streamFloor.close();
    await whole.close();
    await Deno.remove(dir, { recursive: true });
  }
}

// -- discover-all ---------------------------------------------------------------------------------

async function discover(served: Served, model: ScriptedModel): Promise<number> {
  model.expect(0);
  const t0 = performance.now();
  const text = await served.call("autonomous_discover_and_execute", {
    task: taskText(0),
    max_rounds: 1,
  });
  const elapsed = performance.now() - t0;
  check(text.includes("stopped_because: answer"), `discover-all answered: ${text.slice(0, 300)}`);
  model.drained("discover-all");
  return elapsed;
}

async function discoverRows(): Promise<Row[]> {
  // A model whose window holds the tools of every server (9 each).
  const models = defaultFakeModels().map((x) =>
    x.id === MODEL ? { ...x, maxContextLength: 131072, loadedContextLength: 131072 } : x
  );
  await using fake = await FakeLmStudio.start({ models });
  const model = new ScriptedModel(fake);
  const env = { LMSTUDIO_BASE_URL: fake.baseUrl };

  progress(`discover-all: first call with 1 server (${SCALE.reps} fresh bridges)`);
  const one = await projectDir(1);
  const firstOne: number[] = [];
  try {
    for (let rep = 0; rep < SCALE.reps; rep++) {
      const served = await serve(bridgeTaskLaunch(), { cwd: one.dir, env });
      try {
        firstOne.push(await discover(served, model));
      } finally {
        await served.close();
      }
    }
  } finally {
    await Deno.remove(one.dir, { recursive: true });
  }

  progress(`discover-all: ${SCALE.servers} servers`);
  const many = await projectDir(SCALE.servers);
  const served = await serve(bridgeTaskLaunch(), { cwd: many.dir, env });
  try {
    const first = await discover(served, model);
    const rss = treeMemory(served.pid);
    const later: number[] = [];
    for (let rep = 0; rep < SCALE.reps; rep++) later.push(await discover(served, model));
    const n = SCALE.servers;
    const idle = await afterIdleRows(many.dir, env, model);
    return [
      ratioRow(`first autonomous_discover_and_execute, ${n} servers`, f(first), {
        label: "1 server",
        ...f(median(firstOne)),
      }),
      {
        measure: `  memory of the bridge and its ${n} servers after it`,
        value: mib(rss),
        against: "",
      },
      limitRow(`later discover-all calls, ${n} servers`, f(median(later)), {
        text: "1 s",
        n: 1000,
      }, { label: "first call", ...f(first) }),
      ...idle,
    ];
  } finally {
    await served.close();
    await Deno.remove(many.dir, { recursive: true });
  }
}

/** The downstream servers running under `pid`. */
function downstream(pid: number): number {
  return processTree(pid).filter((p) => p !== pid && DOWNSTREAM.test(commandLine(p))).length;
}

/**
 * Later discover-all calls once every server closed idle (MCP_IDLE_MS=1000): the tools the
 * bridge kept are offered without starting them.
 */
async function afterIdleRows(
  dir: string,
  env: Record<string, string>,
  model: ScriptedModel,
): Promise<Row[]> {
  const n = SCALE.servers;
  progress(`discover-all: ${n} servers, later calls after idle closes`);
  const served = await serve(bridgeTaskLaunch(), {
    cwd: dir,
    env: { ...env, MCP_IDLE_MS: "1000" },
  });
  try {
    const first = await discover(served, model);
    const started = downstream(served.pid);
    const later: number[] = [];
    let running = 0;
    for (let rep = 0; rep < SCALE.reps; rep++) {
      const deadline = Date.now() + 30_000;
      while (downstream(served.pid) > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      check(downstream(served.pid) === 0, "every server closed idle");
      later.push(await discover(served, model));
      running = Math.max(running, downstream(served.pid));
    }
    return [
      limitRow(`later discover-all calls after idle closes, ${n} servers`, f(median(later)), {
        text: "1 s",
        n: 1000,
      }, { label: "first call", ...f(first) }),
      {
        measure:
          `  servers started by them (${started} of ${n} still ran when the first call ended)`,
        value: String(running),
        against: "",
      },
    ];
  } finally {
    await served.close();
  }
}

// -- the summary ----------------------------------------------------------------------------------

async function summary(): Promise<Row[]> {
  await benchChildrenCached();
  // BENCH_ONLY=config or =discover measures that section alone.
  const only = Deno.env.get("BENCH_ONLY");
  if (only === "config") return await configRows();
  if (only === "discover") return await discoverRows();
  const rows = await configRows();
  {
    await using fake = await FakeLmStudio.start();
    rows.push(...await startRows(fake.baseUrl));
    rows.push(...await loopSection(fake));
  }
  rows.push(...await discoverRows());
  return rows;
}

/** The 1-minute load average (Linux), NaN when unknown. */
function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** Measures and prints the summary; once per process, however often deno bench calls the bench. */
async function report(): Promise<void> {
  const t0 = performance.now();
  const before = loadAverage();
  const rows = await summary();
  const after = loadAverage();
  const cores = navigator.hardwareConcurrency;
  const scale = Object.entries(SCALE).map(([k, v]) => `${k} ${v}`).join(", ");
  print(`\nSummary${QUICK ? " (quick)" : ""}: ${scale}.`);
  print(
    `Measured in ${ms(performance.now() - t0)} on ${cores} cores, load ${before} at the start ` +
      `and ${after} at the end${
        Math.max(before, after) > cores
          ? " (busy: other work shared the cores, figures scatter)"
          : ""
      }.`,
  );
  print(table(rows));
  const missed = rows.filter((r) => r.verdict === "MISS").length;
  const passed = rows.filter((r) => r.verdict === "PASS").length;
  print(`${passed} goal(s) met, ${missed} missed.\n`);
  const json = Deno.env.get("BENCH_SUMMARY_JSON");
  if (json) await Deno.writeTextFile(json, JSON.stringify({ scale: SCALE, rows }, null, 2));
}

let reported: Promise<void> | undefined;

Deno.bench({
  name: "summary of the goals (measured once, printed above)",
  n: 1,
  warmup: 0,
  async fn() {
    // Deno runs a bench at least twice even with n: 1; the summary is measured once.
    await (reported ??= report());
  },
});
