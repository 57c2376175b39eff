/**
 * The MCP pool: the first call to a stdio server (spawn + MCP handshake + call) against a call on
 * the connection the pool keeps. The Python bridge paid the first cost on every call.
 *
 * Servers: the reference server-memory (the pinned package run by `deno` from the cache: `npx -y`
 * asks the npm registry on every start, and a bench must not need the network), and the small
 * Deno fixture server of the pool tests (`deno run`). The summary (versus_bench.ts) compares
 * the whole loop with one spawn per call against the pooled one.
 */
import { ConfigSource } from "../../lib/config.ts";
import { join } from "../../lib/path.ts";
import { McpPool } from "../../lib/pool.ts";
import {
  check,
  DENO_JSON,
  denoChildEnv,
  killTree,
  memoryEntry,
  quiet,
  releaseShared,
  ROOT,
  Shared,
  textOf,
} from "./support.ts";

const FIXTURE = join(ROOT, "tests", "fixtures", "pool_fixture_server.ts");

/** A temp dir holding an .mcp.json with both servers. */
function writeConfig(): { dir: string; source: ConfigSource } {
  const dir = Deno.makeTempDirSync({ prefix: "pool_bench_" });
  const servers = {
    memory: memoryEntry(join(dir, "memory.jsonl")),
    fixture: {
      command: Deno.execPath(),
      args: ["run", "-A", "--frozen", "--config", DENO_JSON, FIXTURE],
      env: denoChildEnv(),
    },
  };
  const path = join(dir, ".mcp.json");
  Deno.writeTextFileSync(path, JSON.stringify({ mcpServers: servers }));
  const source = new ConfigSource({ explicitPath: path, env: {}, cwd: dir, home: dir, log: quiet });
  return { dir, source };
}

const config = writeConfig();
globalThis.addEventListener("unload", () => Deno.removeSync(config.dir, { recursive: true }));

function newPool(): McpPool {
  return new McpPool({ config: config.source, log: quiet, connectTimeoutMs: 60_000, idleMs: 0 });
}

const CALLS = {
  memory: { tool: "read_graph", args: {} },
  fixture: { tool: "echo", args: { text: "hi" } },
} as const;

/** One call; checks the answer so a failing server cannot pass for a fast one. */
async function callOnce(pool: McpPool, server: keyof typeof CALLS): Promise<void> {
  const { tool, args } = CALLS[server];
  const result = await pool.callTool(server, tool, args);
  check(!result.isError, `${server} ${tool} failed: ${textOf(result)}`);
}

/** A pool with `server` already connected. */
function warmPool(server: keyof typeof CALLS): Shared<McpPool> {
  return new Shared(async () => {
    const pool = newPool();
    await callOnce(pool, server);
    const pid = (await pool.status()).servers.find((s) => s.name === server)?.pid;
    return {
      value: pool,
      close: () => pool.close(),
      abandon: () => pid !== undefined && killTree(pid),
    };
  });
}

for (
  const [server, label, n] of [
    ["memory", "server-memory via deno run", 4],
    ["fixture", "fixture server via deno run", 6],
  ] as const
) {
  const group = `pool: ${label}`;
  const warm = warmPool(server);
  Deno.bench({
    name: "warm call on the pooled connection",
    group,
    baseline: true,
    async fn(b) {
      const pool = await warm.get();
      b.start();
      await callOnce(pool, server);
      b.end();
    },
  });
  Deno.bench({
    name: "first call: spawn + initialize + call",
    group,
    n,
    warmup: 1,
    async fn(b) {
      await releaseShared();
      const pool = newPool();
      try {
        b.start();
        await callOnce(pool, server);
        b.end();
      } finally {
        await pool.close();
      }
    },
  });
}
