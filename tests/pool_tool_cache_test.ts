/**
 * The pool keeps each server's tool list after its connection closes, so listing again starts
 * nothing and only a call starts the server; a changed entry or tools/list_changed drops it. At
 * most `maxConcurrentStarts` servers start at once. Real fixture servers, counted through the
 * lines they append to a --starts file.
 */
import { ConfigSource } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpPool, type McpPoolOptions } from "../lib/pool.ts";
import { assert, assertEquals } from "./assert.ts";
import { cachedEntry, textOf, waitFor } from "./fixtures/pool_support.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
const FIXTURE = join(ROOT, "tests", "fixtures", "pool_fixture_server.ts");
const silent = createLogger({ level: "silent" });

function lines(file: string): string[] {
  try {
    return Deno.readTextFileSync(file).split("\n").filter((l) => l !== "");
  } catch {
    return [];
  }
}

/** Process starts logged in `file` (not the "passed" lines of a gate). */
function starts(file: string): number {
  return lines(file).filter((l) => !l.startsWith("passed")).length;
}

interface Setup {
  dir: string;
  write(servers: Record<string, unknown>): void;
  pool(o?: Omit<McpPoolOptions, "config">): McpPool;
  [Symbol.asyncDispose](): Promise<void>;
}

function setup(): Setup {
  const dir = Deno.makeTempDirSync({ prefix: "pool_tool_cache_" });
  const path = join(dir, ".mcp.json");
  let version = 0;
  const write = (servers: Record<string, unknown>) => {
    const tmp = `${path}.${++version}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify({ mcpServers: servers }));
    Deno.renameSync(tmp, path);
  };
  write({});
  const source = new ConfigSource({
    explicitPath: path,
    env: {},
    cwd: dir,
    home: dir,
    log: silent,
  });
  const pools: McpPool[] = [];
  return {
    dir,
    write,
    pool: (o = {}) => {
      const pool = new McpPool({ config: source, log: silent, connectTimeoutMs: 20_000, ...o });
      pools.push(pool);
      return pool;
    },
    async [Symbol.asyncDispose]() {
      for (const pool of pools) await pool.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function fixture(flags: string[]) {
  return cachedEntry([FIXTURE, ...flags]);
}

async function allIdle(pool: McpPool): Promise<void> {
  await waitFor("the idle connections to close", async () => {
    const { servers } = await pool.status();
    return servers.every((s) => s.state === "not-started");
  });
}

Deno.test("tool lists are kept after an idle close: listing again starts nothing, a call starts only its server", async () => {
  await using s = setup();
  const log = (i: number) => join(s.dir, `starts${i}.txt`);
  const servers = Object.fromEntries(
    [0, 1, 2].map((i) => [`fx${i}`, fixture(["--starts", log(i)])]),
  );
  s.write(servers);
  const pool = s.pool({ idleMs: 50 });
  const names = Object.keys(servers);
  const first = await Promise.all(names.map((n) => pool.listTools(n)));
  assertEquals([0, 1, 2].map((i) => starts(log(i))), [1, 1, 1]);
  await allIdle(pool);

  const second = await Promise.all(names.map((n) => pool.listTools(n)));
  assertEquals(second, first, "the same tools");
  // The same array each time while the list stays: a task's tool catalog is reused from it.
  const third = await Promise.all(names.map((n) => pool.listTools(n)));
  assert(third.every((tools, i) => tools === second[i]), "the same arrays");
  assertEquals([0, 1, 2].map((i) => starts(log(i))), [1, 1, 1], "no server started");
  // What each offers beyond tools (discover-all asks, for the resource tools) is kept too.
  const offers = await Promise.all(names.map((n) => pool.offers(n)));
  assert(offers.every((o) => o.tools), JSON.stringify(offers));
  assertEquals([0, 1, 2].map((i) => starts(log(i))), [1, 1, 1], "offers started nothing");
  assert((await pool.status()).servers.every((x) => x.state === "not-started"));

  const pid = textOf(await pool.callTool("fx1", "pid", {}));
  assert(/^\d+$/.test(pid), pid);
  assertEquals([0, 1, 2].map((i) => starts(log(i))), [1, 2, 1], "the call started fx1 alone");

  // A changed entry drops its kept list: listing it starts the new version.
  s.write({ ...servers, fx0: fixture(["--starts", log(0), "--tag", "new"]) });
  await pool.listTools("fx0");
  assertEquals(starts(log(0)), 2);
  assertEquals([starts(log(1)), starts(log(2))], [2, 1]);
});

Deno.test("tools/list_changed drops the kept tool list", async () => {
  await using s = setup();
  const log = join(s.dir, "starts.txt");
  s.write({ fx: fixture(["--starts", log]) });
  const pool = s.pool({ idleMs: 50 });
  await pool.listTools("fx");
  const before = await pool.listTools("fx");
  assert(before === await pool.listTools("fx"), "the kept list: the same array");
  // The server notifies tools/list_changed before it answers the call.
  await pool.callTool("fx", "add_tool", { name: "extra" });
  await allIdle(pool);
  const after = await pool.listTools("fx");
  assertEquals(starts(log), 2, "listed again from a new start");
  assertEquals(after.map((t) => t.name), before.map((t) => t.name));
  const kept = await pool.listTools("fx");
  assert(kept !== before && kept === await pool.listTools("fx"), "a new list, kept as one array");
});

Deno.test("at most maxConcurrentStarts servers start at once; the others wait their turn", async () => {
  await using s = setup();
  const log = join(s.dir, "starts.txt");
  const gate = join(s.dir, "gate");
  const names = ["a", "b", "c", "d", "e"];
  s.write(Object.fromEntries(names.map((n) => [n, fixture(["--starts", log, "--gate", gate])])));
  const pool = s.pool({ maxConcurrentStarts: 2 });
  const listing = Promise.all(names.map((n) => pool.listTools(n)));
  await waitFor("two servers to start", () => starts(log) >= 2);
  const { servers } = await pool.status();
  const waiting = servers.filter((x) => x.reason?.startsWith("waiting to start") === true);
  assertEquals(servers.map((x) => x.state), names.map(() => "connecting"));
  assertEquals(waiting.length, 3, JSON.stringify(servers));
  Deno.writeTextFileSync(gate, "");
  const listed = await listing;
  assertEquals(listed.length, 5);
  // Each start comes after the one before it got past the gate once two are under way.
  let running = 0;
  let most = 0;
  for (const line of lines(log)) {
    running += line.startsWith("passed") ? -1 : 1;
    most = Math.max(most, running);
  }
  assertEquals([starts(log), most], [5, 2]);
});
