/**
 * One `serve --http` for every client against one stdio bridge per client: 8 clients, each
 * running 10 autonomous tasks one after the other (the 8 at once), every task one tool call on
 * the pool fixture server and two model turns against the fake LM Studio. Measured from the
 * bridges' spawn to the last answer (start-up included: that is what each new editor window
 * pays), with the downstream spawns counted and the peak resident memory of the bridges and
 * everything below them sampled every 50 ms. The figures and the ratios are printed at the end.
 */
import type { CallToolResult } from "../../lib/sdk.ts";
import { Client, StdioClientTransport } from "../../lib/sdk_client.ts";
import { pidsIn, rssKb, serveEnv } from "../fixtures/attack_support.ts";
import {
  answer,
  ProgrammableModel,
  taskOf,
  toolCalls,
  toolMessages,
} from "../fixtures/attack_model.ts";
import { processTree, trustAllTools } from "../fixtures/pool_support.ts";
import { connectHttp, fixtureEntry, spawnHttpServe } from "../fixtures/serve_http_support.ts";
import { bridgeCommand } from "../helpers.ts";
import { check, killTree, textOf } from "./support.ts";

const CLIENTS = 8;
const TASKS = 10;

type Call = (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;

/** One run's figures. */
interface Figures {
  wallMs: number;
  spawns: number;
  peakRssKb: number;
}

const runs: Record<"http" | "stdio", Figures[]> = { http: [], stdio: [] };

/** A project dir with the fixture as the one downstream server, counting its starts. */
async function project(): Promise<{ dir: string; starts: string }> {
  const dir = await Deno.makeTempDir({ prefix: "http_bench_" });
  const starts = `${dir}/starts.txt`;
  await Deno.writeTextFile(
    `${dir}/.mcp.json`,
    JSON.stringify({ mcpServers: { fixture: fixtureEntry(["--starts", starts]) } }),
  );
  // The fixture's echo is not marked read-only and the bench's clients cannot be asked.
  await trustAllTools(dir);
  return { dir, starts };
}

/** The fake model: call echo once, then answer with what it returned. */
async function model(): Promise<ProgrammableModel> {
  const fake = await ProgrammableModel.start();
  fake.play((req) => {
    const results = toolMessages(req);
    return results.length === 0
      ? toolCalls({ name: "echo", arguments: { text: taskOf(req) } })
      : answer(`done: ${results.at(-1)}`);
  });
  return fake;
}

/** Samples the summed RSS of the trees below `roots` until stopped; answers the peak. */
function sampleMemory(roots: () => number[]): { stop(): number } {
  let peak = 0;
  const sample = () => {
    const total = roots().flatMap((pid) => processTree(pid)).reduce((n, p) => n + rssKb(p), 0);
    peak = Math.max(peak, total);
  };
  const timer = setInterval(sample, 50);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** Runs the client's tasks one after the other, checking each answer. */
async function work(call: Call, client: number): Promise<void> {
  for (let t = 0; t < TASKS; t++) {
    const task = `client ${client} task ${t}`;
    const result = await call("autonomous_with_mcp", { mcp_name: "fixture", task });
    check(textOf(result).includes(`done: ${task}`), `answer to ${task}: ${textOf(result)}`);
  }
}

function callOf(client: Client): Call {
  return async (name, args) =>
    await client.callTool({ name, arguments: args }, undefined, {
      timeout: 600_000,
    }) as CallToolResult;
}

async function viaHttp(b: Deno.BenchContext): Promise<void> {
  await using fake = await model();
  const { dir, starts } = await project();
  try {
    b.start();
    const started = performance.now();
    const serve = await spawnHttpServe({ dir, baseUrl: fake.baseUrl });
    const memory = sampleMemory(() => [serve.pid]);
    try {
      const clients = await Promise.all(
        Array.from({ length: CLIENTS }, (_, i) => connectHttp(serve.url, { name: `bench-${i}` })),
      );
      await Promise.all(clients.map((c, i) => work(c.call, i)));
      const wallMs = performance.now() - started;
      b.end();
      runs.http.push({ wallMs, spawns: (await pidsIn(starts)).length, peakRssKb: memory.stop() });
      await Promise.all(clients.map((c) => c.close()));
    } finally {
      memory.stop();
      await serve.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function viaStdio(b: Deno.BenchContext): Promise<void> {
  await using fake = await model();
  const { dir, starts } = await project();
  const { command, args } = bridgeCommand(["serve"]);
  const transports: StdioClientTransport[] = [];
  try {
    b.start();
    const started = performance.now();
    const memory = sampleMemory(() => transports.flatMap((t) => t.pid === null ? [] : [t.pid]));
    const clients = await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
      const transport = new StdioClientTransport({
        command,
        args,
        cwd: dir,
        env: serveEnv(dir, fake.baseUrl),
        stderr: "ignore",
      });
      transports.push(transport);
      const client = new Client({ name: `bench-${i}`, version: "1" });
      await client.connect(transport);
      return client;
    }));
    await Promise.all(clients.map((c, i) => work(callOf(c), i)));
    const wallMs = performance.now() - started;
    b.end();
    runs.stdio.push({ wallMs, spawns: (await pidsIn(starts)).length, peakRssKb: memory.stop() });
    await Promise.all(clients.map((c) => c.close()));
  } catch (error: unknown) {
    for (const t of transports) if (t.pid !== null) killTree(t.pid);
    throw error;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const group = `${CLIENTS} clients x ${TASKS} autonomous tasks`;

Deno.bench({
  name: `one serve --http for ${CLIENTS} clients`,
  group,
  baseline: true,
  n: 3,
  warmup: 1,
  fn: viaHttp,
});

Deno.bench({
  name: `${CLIENTS} stdio bridges, one per client`,
  group,
  n: 3,
  warmup: 1,
  fn: viaStdio,
});

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

globalThis.addEventListener("unload", () => {
  if (runs.http.length < 2 || runs.stdio.length < 2) return;
  // The first run of each is Deno.bench's warm-up.
  const of = (mode: "http" | "stdio", key: keyof Figures) =>
    median(runs[mode].slice(1).map((r) => r[key]));
  const line = (what: string, key: keyof Figures, unit: (v: number) => string) => {
    const http = of("http", key);
    const stdio = of("stdio", key);
    return `  ${what}: HTTP ${unit(http)}, stdio ${unit(stdio)}, stdio/HTTP ${
      (stdio / http).toFixed(1)
    }x`;
  };
  // deno-lint-ignore no-console
  console.log([
    `\n${group} (median of ${runs.http.length - 1} / ${
      runs.stdio.length - 1
    } runs, warm-up excluded):`,
    line("downstream spawns", "spawns", (v) => String(v)),
    line("wall time", "wallMs", (v) => `${(v / 1000).toFixed(2)} s`),
    line("peak memory (bridges + children)", "peakRssKb", (v) => `${(v / 1024).toFixed(0)} MiB`),
  ].join("\n"));
});
