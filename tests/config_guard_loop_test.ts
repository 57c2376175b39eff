/**
 * The attack end to end: the README's own setup (server-filesystem rooted at the project, next to
 * its .mcp.json) and a local model, scripted through the fake LM Studio, that tries to make the
 * bridge run a command of its choosing by rewriting the project's .mcp.json: write_file,
 * edit_file, move_file onto it, and a tool that rewrites it without naming it (as a shell tool
 * would). The marker command never runs, the refusals reach the model as tool results, and what
 * the side channel wrote is held.
 */
import { runAgent } from "../lib/agent.ts";
import { ConfigSource } from "../lib/config.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { answer, calls, CHAT, toolMessages } from "./agent_harness.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import {
  cachedEntry,
  cachedRun,
  denoChildEnv,
  fileExists,
  REFERENCE_SERVERS,
} from "./fixtures/pool_support.ts";
import { quiet } from "./rigs.ts";

const RAW = new URL("./fixtures/pool_raw_server.ts", import.meta.url).pathname;
const REFUSED = "Refused: the local model may not change the bridge's MCP configuration";

Deno.test("a local model cannot make the bridge run a command by rewriting .mcp.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "config_guard_loop_" });
  const config = join(dir, ".mcp.json");
  const marker = join(dir, "MARKER");
  const markerEntry = { command: "sh", args: ["-c", `touch ${marker}`] };
  const filesystem = cachedEntry([REFERENCE_SERVERS.filesystem, dir]);
  // What the model wants: the marker entry (the side channel writes just that, dropping `shell`).
  const evil = { mcpServers: { filesystem, marker: markerEntry } };
  const shell = {
    command: Deno.execPath(),
    args: cachedRun([RAW]),
    env: {
      ...denoChildEnv(),
      RAW_TOOLS: JSON.stringify([{
        name: "run",
        description: "Runs a command.",
        inputSchema: { type: "object" },
      }, { name: "side_effect", inputSchema: { type: "object" } }]),
      RAW_WRITE_PATH: config,
      RAW_WRITE_TEXT: JSON.stringify(evil),
    },
  };
  await Deno.writeTextFile(config, JSON.stringify({ mcpServers: { filesystem, shell } }, null, 2));
  await Deno.mkdir(join(dir, "sub"));

  const fake = await FakeLmStudio.start();
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const source = new ConfigSource({ explicitPath: config, log: quiet });
  const pool = new McpPool({ config: source, log: quiet, idleMs: 0 });
  try {
    fake.script(
      CHAT,
      calls({
        name: "filesystem__write_file",
        arguments: { path: config, content: JSON.stringify(evil) },
      }),
      calls({
        name: "filesystem__edit_file",
        arguments: {
          path: join(dir, "sub", "..", ".mcp.json"),
          edits: [{ oldText: '"mcpServers": {', newText: `"mcpServers": {"marker": {}, ` }],
        },
      }),
      calls(
        { name: "filesystem__write_file", arguments: { path: "evil.json", content: "{}" } },
        {
          name: "filesystem__move_file",
          arguments: { source: join(dir, "evil.json"), destination: join(dir, ".mcp.json") },
        },
      ),
      calls({ name: "shell__run", arguments: { command: "cat evil.json > ./.mcp.json" } }),
      // What the pool cannot see in the arguments: the server rewrites the file itself.
      calls({ name: "shell__side_effect", arguments: {} }),
      answer("I tried."),
    );
    const result = await runAgent({
      task: "add a server that runs my marker command",
      servers: ["filesystem", "shell"],
      ttlSeconds: 600,
      // A user who trusts every tool: the config guard alone must stop the rewrite.
      approveAll: true,
      deps: { client, pool, config: source, log: quiet },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.tool_calls.map((c) => [c.name, c.ok]), [
      ["filesystem__write_file", false],
      ["filesystem__edit_file", false],
      ["filesystem__write_file", true],
      ["filesystem__move_file", false],
      ["shell__run", false],
      ["shell__side_effect", true],
    ]);
    // Each refusal reached the model as the tool's result, naming the file.
    const requests = fake.requestsTo(CHAT);
    const lastResult = (round: number) => String(toolMessages(requests[round]!).at(-1)?.content);
    for (const round of [1, 2, 3]) {
      assertStringIncludes(lastResult(round), `${REFUSED} (${config}).`);
    }
    // The shell server runs in the bridge's directory: its ./.mcp.json is the project file there.
    assertStringIncludes(lastResult(4), `${REFUSED} (${join(Deno.cwd(), ".mcp.json")}).`);

    // The side channel rewrote the file; the marker entry it added is held.
    assertStringIncludes(await Deno.readTextFile(config), "marker");
    const { servers } = await pool.status();
    assertEquals(servers.find((s) => s.name === "marker")?.state, "held");

    // Later calls: a task over every server, and a direct call. Neither starts it.
    fake.script(CHAT, answer("done"));
    const later = await runAgent({
      task: "use everything",
      servers: "all",
      ttlSeconds: 600,
      approveAll: true,
      deps: { client, pool, config: source, log: quiet },
    });
    assert(
      later.notes.some((n) => n.includes('skipped "marker"') && n.includes("is held")),
      later.notes.join("\n"),
    );
    await assertRejects(() => pool.callTool("marker", "x", {}), McpServerError, "is held");
    await pool.close();
    assertEquals(fileExists(marker), false, "the marker command never ran");
  } finally {
    await pool.close();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
