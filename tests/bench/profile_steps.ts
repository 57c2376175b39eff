/**
 * Where a task's time goes inside the bridge's process: runs the loop in this process (runTask, as
 * the autonomous tools and `run` do) against the instant scripted model and the real server-memory,
 * with every service the loop calls wrapped in a timer: the config check, the pool (listTools,
 * callTool), the LM Studio client (chat, listModels, resolveModel) and the model manager. What is
 * left of the task's time is the loop's own code (catalog, budget, validation, messages,
 * progress). Also counts the HTTP requests the fake LM Studio received per task. The fake runs in
 * this process, on the same event loop: the chat and callTool figures include some of its work
 * (served figures: profile_loop.ts).
 *
 * Not a bench file. Run it alone:
 *
 *   deno run -A tests/bench/profile_steps.ts [--rounds=100] [--tasks=20] [--progress]
 *
 * `--progress` passes a progress sink, as a caller that sends a progressToken gets.
 */
import { createApp } from "../../lib/app.ts";
import { join } from "../../lib/path.ts";
import { resolveSettings } from "../../lib/settings.ts";
import { type AgentApp, runTask } from "../../lib/server_agent.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { ScriptedModel, taskText } from "./model.ts";
import { benchChildrenCached, check, median, memoryEntry, quiet } from "./support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

const flags: Record<string, string | undefined> = { rounds: "100", tasks: "20" };
for (const arg of Deno.args) {
  const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
  if (m) flags[m[1]!] = m[2] ?? "true";
}
const ROUNDS = Number(flags.rounds);
const TASKS = Number(flags.tasks);

/** Time spent in each wrapped call during the current task, and how often it was called. */
let spent: Record<string, { ms: number; n: number }> = {};

/** `obj` with `methods` timed under `prefix.method`. */
function timed<T extends object>(obj: T, prefix: string, methods: string[]): T {
  return new Proxy(obj, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function" || !methods.includes(String(prop))) {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await value.apply(target, args);
        } finally {
          const s = spent[`${prefix}.${String(prop)}`] ??= { ms: 0, n: 0 };
          s.ms += performance.now() - t0;
          s.n++;
        }
      };
    },
  });
}

await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const model = new ScriptedModel(fake);
const dir = await Deno.makeTempDir({ prefix: "profile_steps_" });
await Deno.writeTextFile(
  join(dir, ".mcp.json"),
  JSON.stringify({ mcpServers: { memory: memoryEntry(join(dir, "memory.jsonl")) } }),
);
const settings = resolveSettings({
  LMSTUDIO_BASE_URL: fake.baseUrl,
  LMSTUDIO_RETRIES: "0",
  INIT_CWD: dir,
});
const base = createApp(settings, { configPath: join(dir, ".mcp.json"), log: quiet });
const pool = timed(await base.pool(), "pool", ["listTools", "callTool"]);
const app: AgentApp = {
  settings: base.settings,
  log: base.log,
  config: timed(base.config, "config", ["current"]),
  client: timed(base.client, "client", ["chat", "listModels", "resolveModel"]),
  models: timed(base.models, "models", ["ensureLoaded"]),
  pool: () => Promise.resolve(pool),
};

const onProgress = flags.progress ? () => {} : undefined;
async function task(rounds: number): Promise<{ ms: number; requests: number }> {
  spent = {};
  model.expect(rounds);
  const before = fake.requests.length;
  const t0 = performance.now();
  const { result } = await runTask(app, {
    task: taskText(rounds),
    servers: ["memory"],
    maxRounds: rounds + 1,
    ...(onProgress ? { onProgress } : {}),
  });
  const ms = performance.now() - t0;
  check(result.stopped_because === "answer", `answer, got ${result.stopped_because}`);
  model.drained(`${rounds} rounds`);
  return { ms, requests: fake.requests.length - before };
}

try {
  for (const r of [0, 2, ROUNDS]) await task(r); // warm-up, connects the server
  const rows: Record<string, Record<string, number[]>> = {};
  for (let i = 0; i < TASKS; i++) {
    for (const r of [0, ROUNDS]) {
      const { ms, requests } = await task(r);
      const row = rows[r] ??= {};
      (row.total ??= []).push(ms);
      (row["HTTP requests"] ??= []).push(requests);
      let inside = 0;
      for (const [k, v] of Object.entries(spent)) {
        (row[k] ??= []).push(v.ms);
        (row[`${k} calls`] ??= []).push(v.n);
        inside += v.ms;
      }
      (row["loop's own code (total - wrapped calls)"] ??= []).push(ms - inside);
    }
  }
  print(`in-process runTask, ${TASKS} tasks each; medians in ms (counts per task)`);
  const keys = [...new Set(Object.values(rows).flatMap((r) => Object.keys(r)))].sort();
  print(
    `${"".padEnd(44)}${"0 rounds".padStart(10)}${`${ROUNDS} rounds`.padStart(12)}` +
      `${"per round".padStart(11)}`,
  );
  for (const k of keys) {
    const a = median(rows[0]![k] ?? [0]);
    const b = median(rows[ROUNDS]![k] ?? [0]);
    print(
      `${k.padEnd(44)}${a.toFixed(2).padStart(10)}${b.toFixed(2).padStart(12)}${
        ((b - a) / ROUNDS).toFixed(3).padStart(11)
      }`,
    );
  }
} finally {
  await base.close();
  await Deno.remove(dir, { recursive: true });
}
