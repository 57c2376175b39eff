/**
 * A server's start-up as its callers see it: progress about once a second while it starts (so a
 * client whose timeout restarts on progress waits for a long `npx` download), and the entry's own
 * `timeout` bounding the start and its calls instead of the pool's defaults.
 */
import type { ToolProgress } from "../lib/agent_types.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { startHint } from "../lib/pool_progress.ts";
import { join } from "../lib/path.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { fixtureEntry, TempConfig } from "./fixtures/pool_config.ts";
import { textOf, waitFor } from "./fixtures/pool_support.ts";

Deno.test("callers waiting for a server to start hear how long it has been starting", async () => {
  const cfg = new TempConfig({});
  const gate = join(cfg.dir, "gate");
  cfg.write({ slowstart: fixtureEntry(["--wait-start", gate]) });
  const pool = cfg.pool();
  try {
    const listing: ToolProgress[] = [];
    const calling: ToolProgress[] = [];
    const tools = pool.listTools("slowstart", { onProgress: (p) => listing.push(p) });
    const call = pool.callTool("slowstart", "echo", { text: "up" }, {
      onProgress: (p) => calling.push(p),
    });
    await waitFor("two reports to the first caller", () => listing.length >= 2);
    await waitFor("a report to the caller that joined", () => calling.length >= 1);
    Deno.writeTextFileSync(gate, "");
    assertEquals((await tools).length, 10);
    assertEquals(textOf(await call), "up");
    for (const p of listing) assertMatch(p.message ?? "", /^starting slowstart: \d+ s$/);
    const values = listing.map((p) => p.progress);
    assert(values.every((v, i) => i === 0 || v > values[i - 1]!), `increasing: ${values}`);
    // Once started, nothing more is reported for the start.
    const reported = listing.length;
    await pool.listTools("slowstart", { onProgress: (p) => listing.push(p) });
    assertEquals(listing.length, reported);
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("the start-up report says why a start may take long", () => {
  const hint = (command: string, args: string[] = []) => startHint({ command, args });
  assertEquals(
    hint("npx", ["-y", "@modelcontextprotocol/server-memory"]),
    " (npx may be downloading it)",
  );
  assertEquals(hint("/usr/local/bin/uvx", ["mcp-server-fetch"]), " (uvx may be downloading it)");
  assertEquals(hint("docker", ["run", "-i", "mcp/fetch"]), " (docker may be pulling its image)");
  assertEquals(
    hint("deno", ["run", "npm:@modelcontextprotocol/server-everything"]),
    " (deno may be downloading it)",
  );
  assertEquals(hint("node", ["server.js"]), "");
});

Deno.test("an entry's timeout bounds its start-up instead of the pool's", async () => {
  const cfg = new TempConfig({});
  // Never let go: the start can only end by the entry's timeout (the pool's is 20 s).
  cfg.write({
    stuck: { ...fixtureEntry(["--wait-start", join(cfg.dir, "never")]), timeout: 1500 },
  });
  const pool = cfg.pool();
  try {
    const error = await assertRejects(() => pool.listTools("stuck"), McpServerError);
    assertEquals(error.kind, "connect_timeout");
    assertStringIncludes(
      error.message,
      'MCP server "stuck" did not complete the MCP handshake within 1500 ms',
    );
    assertStringIncludes(error.message, '"timeout" in its config entry');
  } finally {
    await pool.close();
    cfg.remove();
  }
});

Deno.test("an entry's timeout bounds its calls; a call's own timeout wins", async () => {
  const cfg = new TempConfig({ fx: { ...fixtureEntry(), timeout: 1200 } });
  const pool = cfg.pool({ callTimeoutMs: 60_000 });
  try {
    const error = await assertRejects(
      () => pool.callTool("fx", "slow", { ms: 30_000 }),
      McpServerError,
    );
    assertEquals(error.kind, "timeout");
    assertStringIncludes(error.message, 'did not answer tool "slow" within 1200 ms');
    const slower = await assertRejects(
      () => pool.callTool("fx", "slow", { ms: 30_000 }, { timeoutMs: 1800 }),
      McpServerError,
    );
    assertStringIncludes(slower.message, "within 1800 ms");
  } finally {
    await pool.close();
    cfg.remove();
  }
});
