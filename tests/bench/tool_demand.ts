/**
 * Tools on demand, measured (lib/tool_demand.ts): one task over the real server-everything,
 * server-filesystem and server-memory with a model loaded with an 8192-token window, the fake LM
 * Studio scripted to pick its tools. Prints, with and without tools on demand, the tokens of tool
 * definitions each round's request carried (estimated as the loop estimates them, from the
 * request bodies the fake received) and the rounds to the answer; then the same task asking for
 * 4096 reply tokens, which does not fit without it.
 *
 * A script, not a `deno bench` file (it measures tokens and rounds, not time):
 *   deno run -A --no-prompt tests/bench/tool_demand.ts
 */
import { runAgent } from "../../lib/agent.ts";
import { toolsTokens } from "../../lib/agent_budget.ts";
import type { AgentResult } from "../../lib/agent_types.ts";
import { ConfigSource } from "../../lib/config.ts";
import { LmStudioClient } from "../../lib/lmstudio.ts";
import type { OpenAiTool } from "../../lib/lmstudio_types.ts";
import { join } from "../../lib/path.ts";
import { McpPool } from "../../lib/pool.ts";
import { FakeLmStudio, type ScriptedReplyValue } from "../fakes/lmstudio.ts";
import { answer, calls, CHAT } from "../agent_harness.ts";
import { trustAllTools } from "../fixtures/pool_support.ts";
import { benchChildrenCached, cachedEntry, quiet, REFERENCE_SERVERS } from "./support.ts";

const SERVERS = ["everything", "filesystem", "memory"];
const encoder = new TextEncoder();
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(`${text}\n`));

await benchChildrenCached();
const dir = await Deno.makeTempDir({ prefix: "tool_demand_bench_" });
const notes = join(dir, "notes.txt");
await Deno.writeTextFile(notes, "The launch code is 4711.");
await Deno.writeTextFile(
  join(dir, ".mcp.json"),
  JSON.stringify({
    mcpServers: {
      everything: cachedEntry([REFERENCE_SERVERS.everything]),
      filesystem: cachedEntry([REFERENCE_SERVERS.filesystem, dir]),
      memory: cachedEntry([REFERENCE_SERVERS.memory], { MEMORY_FILE_PATH: join(dir, "m.jsonl") }),
    },
  }),
);
await trustAllTools(dir);
const fake = await FakeLmStudio.start({
  models: [{
    id: "small-8k",
    type: "llm",
    state: "loaded",
    maxContextLength: 8192,
    loadedContextLength: 8192,
  }],
});
const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
const config = new ConfigSource({ explicitPath: join(dir, ".mcp.json"), log: quiet });
const pool = new McpPool({ config, log: quiet, idleMs: 0 });

/** The picks of the task: read the file and the graph, then answer. */
const work = [
  { name: "filesystem__read_text_file", arguments: { path: notes } },
  { name: "memory__read_graph", arguments: {} },
];

async function task(
  label: string,
  o: { toolShare?: number; maxTokens?: number; script: ScriptedReplyValue[] },
): Promise<void> {
  const before = fake.requestsTo(CHAT).length;
  fake.script(CHAT, ...o.script);
  const result: AgentResult = await runAgent({
    task: "What is the launch code in notes.txt, and what does the memory graph hold?",
    servers: SERVERS,
    ...(o.toolShare !== undefined ? { toolShare: o.toolShare } : {}),
    ...(o.maxTokens !== undefined ? { maxTokens: o.maxTokens } : {}),
    deps: { client, pool, config, log: quiet },
  });
  const sent = fake.requestsTo(CHAT).slice(before).map((r) =>
    toolsTokens((r.body as { tools?: OpenAiTool[] }).tools ?? [])
  );
  const total = sent.reduce((a, b) => a + b, 0);
  print(`${label}`);
  print(
    `  stopped: ${result.stopped_because}; rounds to the answer: ${result.rounds}; ` +
      `tool-definition tokens per round: [${sent.join(", ")}] (total ${total})`,
  );
  if (result.tools_on_demand !== undefined) {
    const d = result.tools_on_demand;
    const loads = d.loads.map((l) => `${l.tool} (round ${l.round}, ${l.via})`).join(", ");
    print(`  on demand: catalogue of ${d.catalog} tools (all ~${d.all_tokens}); ${loads}`);
  }
}

try {
  print(
    "Tools on demand: server-everything + server-filesystem + server-memory, 8192 window",
  );
  await task("without tools on demand (tools_on_demand.share = 1)", {
    toolShare: 1,
    script: [calls(...work), answer("4711; the graph is empty")],
  });
  await task("with tools on demand (default share 0.4)", {
    script: [
      calls({ name: "load_tools", arguments: { names: work.map((w) => w.name) } }),
      calls(...work),
      answer("4711; the graph is empty"),
    ],
  });
  await task("with tools on demand, the model calling from the catalogue without loading", {
    script: [calls(...work), answer("4711; the graph is empty")],
  });
  await task("without, max_tokens 4096", {
    toolShare: 1,
    maxTokens: 4096,
    script: [],
  });
  await task("with, max_tokens 4096", {
    maxTokens: 4096,
    script: [
      calls({ name: "load_tools", arguments: { names: work.map((w) => w.name) } }),
      calls(...work),
      answer("4711; the graph is empty"),
    ],
  });
} finally {
  await pool.close();
  await fake.close();
  await Deno.remove(dir, { recursive: true });
}
