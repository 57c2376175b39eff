/**
 * The autonomous loop's own cost per round: a scripted fake model that answers at once (the
 * floor: server and model resolution, tool listing, one chat) against one that first asks for
 * the fixture's `typed` tool for 10 rounds. The model and the tool take no time, so
 * (10 rounds - floor) / 10 is the loop's overhead per round: a chat request over HTTP, argument
 * parsing and validation, a tool call over stdio to a live server, bookkeeping.
 */
import { runAgent } from "../../lib/agent.ts";
import { ConfigSource } from "../../lib/config.ts";
import { LmStudioClient } from "../../lib/lmstudio.ts";
import { join } from "../../lib/path.ts";
import { McpPool } from "../../lib/pool.ts";
import { chatReply, FakeLmStudio } from "../fakes/lmstudio.ts";
import { check, DENO_JSON, killTree, quiet, ROOT, Shared } from "./support.ts";

const CHAT = "/v1/chat/completions";
const FIXTURE = join(ROOT, "tests", "fixtures", "agent_server.ts");
const ROUNDS = 10;

const harness = new Shared(async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_bench_" });
  const path = join(dir, ".mcp.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      mcpServers: {
        fixture: {
          command: Deno.execPath(),
          args: ["run", "-A", "--frozen", "--config", DENO_JSON, FIXTURE],
        },
      },
    }),
  );
  const fake = await FakeLmStudio.start();
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const config = new ConfigSource({ explicitPath: path, log: quiet });
  const pool = new McpPool({ config, log: quiet, idleMs: 0 });
  // Start the server now: the benches measure rounds, not the spawn (see pool_bench.ts).
  await pool.listTools("fixture");
  const pid = (await pool.status()).servers[0]?.pid;
  return {
    value: { fake, client, config, pool },
    async close() {
      await pool.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
    abandon() {
      if (pid !== undefined) killTree(pid);
      Deno.removeSync(dir, { recursive: true });
    },
  };
});

/** Queues `rounds` tool-call replies (distinct arguments, so no repeat guard) and an answer. */
function script(fake: FakeLmStudio, rounds: number): void {
  fake.requests.length = 0;
  for (let i = 1; i <= rounds; i++) {
    fake.script(CHAT, {
      body: chatReply({
        toolCalls: [{ name: "typed", arguments: JSON.stringify({ path: `f${i}.txt`, count: i }) }],
      }),
    });
  }
  fake.script(CHAT, { body: chatReply({ content: "done" }) });
}

async function run(rounds: number, b: Deno.BenchContext): Promise<void> {
  const { fake, client, config, pool } = await harness.get();
  script(fake, rounds);
  b.start();
  const result = await runAgent({
    task: "Call typed with each file in turn.",
    servers: ["fixture"],
    model: "qwen2.5-7b-instruct",
    deps: { client, pool, config, log: quiet },
  });
  b.end();
  check(result.stopped_because === "answer", `answer, got ${result.stopped_because}`);
  check(result.rounds === rounds + 1, `${rounds + 1} rounds, got ${result.rounds}`);
  check(result.tool_calls.every((c) => c.ok), "every tool call succeeded");
  check(fake.pending(CHAT) === 0, "every scripted reply used");
}

const group = "agent loop (zero-time model and tool)";

Deno.bench({
  name: "answer at once (1 round, tools listed)",
  group,
  baseline: true,
  async fn(b) {
    await run(0, b);
  },
});

Deno.bench({
  name: `${ROUNDS} tool rounds + answer`,
  group,
  async fn(b) {
    await run(ROUNDS, b);
  },
});
