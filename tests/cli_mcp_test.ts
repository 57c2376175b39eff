/**
 * The `mcps`, `tools` and `call` commands and the `list_available_mcps` tool, in process, against
 * a real pool and our stdio fixture server.
 */
import { UsageError } from "../lib/args.ts";
import { callCommand, mcpsCommand, paramsSummary, toolsCommand } from "../lib/cli_mcp.ts";
import { ConfigSource } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { captureOutput } from "../lib/output.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { registerListAvailableMcpsTool } from "../lib/server_mcp.ts";
import { cachedRun, fileExists, waitFor } from "./fixtures/pool_support.ts";
import { poolApp, poolContext } from "./rigs.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
const FIXTURE = join(ROOT, "tests", "fixtures", "pool_fixture_server.ts");
const silent = createLogger({ level: "silent" });

function fixtureEntry(flags: string[] = []) {
  const env: Record<string, string> = { SECRET_TOKEN: "value-that-must-not-be-shown" };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir !== undefined) env.DENO_DIR = denoDir;
  return {
    command: Deno.execPath(),
    args: cachedRun([FIXTURE, ...flags]),
    env,
  };
}

/** A temp project with .mcp.json, its ConfigSource and a pool over it. */
async function withPool(
  servers: Record<string, unknown> | string | undefined,
  body: (ctx: { pool: McpPool; dir: string; path: string }) => Promise<void>,
): Promise<void> {
  const home = Deno.makeTempDirSync({ prefix: "cli_mcp_test_" });
  const dir = join(home, "project");
  Deno.mkdirSync(dir);
  const path = join(dir, ".mcp.json");
  if (typeof servers === "string") Deno.writeTextFileSync(path, servers);
  else if (servers !== undefined) {
    Deno.writeTextFileSync(path, JSON.stringify({ mcpServers: servers }));
  }
  const config = new ConfigSource({ env: {}, cwd: dir, home, log: silent });
  const pool = new McpPool({ config, log: silent, connectTimeoutMs: 20_000 });
  try {
    await body({ pool, dir, path });
  } finally {
    await pool.close();
    Deno.removeSync(home, { recursive: true });
  }
}

Deno.test("mcps lists each server with its state, target and env names, never env values", async () => {
  await withPool({
    fx: fixtureEntry(),
    remote: { type: "http", url: "http://127.0.0.1:9/mcp" },
    off: { command: "npx", args: ["-y", "some-server"], disabled: true },
    broken: { command: "${CLI_MCP_TEST_UNSET}" },
  }, async ({ pool, path }) => {
    assertEquals((await pool.listTools("fx")).length, 10);
    const out = captureOutput();
    assertEquals(await mcpsCommand([], poolContext(pool, out)), 0);
    assertStringIncludes(out.out, `Config: ${path}`);
    assertMatch(out.out, /fx {2}\[stdio, connected, pid \d+, 10 tools\]/);
    assertStringIncludes(out.out, "env: SECRET_TOKEN");
    assertStringIncludes(out.out, "remote  [http, not started]\n  http://127.0.0.1:9/mcp");
    assertStringIncludes(out.out, "off  [stdio, disabled]\n  npx -y some-server");
    assertMatch(out.out, /broken {2}\[stdio, invalid\][^]*problem: .*CLI_MCP_TEST_UNSET/);
    assert(!out.out.includes("value-that-must-not-be-shown"));
    assertEquals(out.err, "");

    const json = captureOutput();
    assertEquals(await mcpsCommand(["--json"], poolContext(pool, json)), 0);
    const doc: unknown = JSON.parse(json.out);
    assert(typeof doc === "object" && doc !== null);
    assert(!json.out.includes("value-that-must-not-be-shown"));
    const servers: unknown = Reflect.get(doc, "servers");
    assert(Array.isArray(servers));
    assertEquals(servers.map((s) => [s.name, s.state]), [
      ["fx", "connected"],
      ["remote", "not-started"],
      ["off", "disabled"],
      ["broken", "invalid"],
    ]);
    assertEquals(servers[0].envNames, [
      "SECRET_TOKEN",
      ...(Deno.env.get("DENO_DIR") ? ["DENO_DIR"] : []),
    ]);
    assertEquals(Reflect.get(Reflect.get(doc, "config"), "path"), path);
  });
});

Deno.test("mcps shows a server whose config changed as restarting while its old process finishes a call", async () => {
  await withPool({ fx: fixtureEntry(["--tag", "one"]) }, async ({ pool, dir, path }) => {
    assertEquals(await callCommand(["fx", "pid"], poolContext(pool, captureOutput())), 0);
    const oldPid = (await pool.status()).servers[0]?.pid;
    assert(oldPid !== undefined);
    const started = join(dir, "started");
    const release = join(dir, "release");
    const running = pool.callTool("fx", "slow", { ms: 400, started, release });
    await waitFor("the call to reach the server", () => fileExists(started));
    // A longer tag: the size changes even if the mtime does not.
    Deno.writeTextFileSync(
      path,
      JSON.stringify({ mcpServers: { fx: fixtureEntry(["--tag", "second"]) } }),
    );
    const out = captureOutput();
    assertEquals(await mcpsCommand([], poolContext(pool, out)), 0);
    assertStringIncludes(out.out, `fx  [stdio, restarting, pid ${oldPid}]`);
    assertStringIncludes(
      out.out,
      `note: its config changed; finishing 1 call on the old process (pid ${oldPid}), then it ` +
        "closes. The next call starts it with the new settings.",
    );
    Deno.writeTextFileSync(release, "");
    await running;
    const after = captureOutput();
    await mcpsCommand([], poolContext(pool, after));
    assertStringIncludes(after.out, "fx  [stdio, not started]");
  });
});

Deno.test("mcps explains a missing config file and a broken one", async (t) => {
  await t.step("no file", async () => {
    await withPool(undefined, async ({ pool, dir }) => {
      const out = captureOutput();
      assertEquals(await mcpsCommand([], poolContext(pool, out)), 0);
      assertStringIncludes(out.out, "No MCP config file found");
      assertStringIncludes(out.out, join(dir, ".mcp.json"));
    });
  });
  await t.step("a broken edit keeps the last good config and shows the error", async () => {
    await withPool({ fx: fixtureEntry() }, async ({ pool, path }) => {
      await mcpsCommand([], poolContext(pool, captureOutput()));
      Deno.writeTextFileSync(path, '{"mcpServers": {"fx": {"command": "deno",,}}}');
      const out = captureOutput();
      assertEquals(await mcpsCommand([], poolContext(pool, out)), 1, "a config error exits 1");
      assertStringIncludes(out.out, `Config error: ${path}:1:43: invalid JSON`);
      assertStringIncludes(out.out, "last good configuration");
      assertStringIncludes(out.out, "fx  [stdio, not started]");
    });
  });
  await t.step("an explicit config file that is missing or broken exits 1", async () => {
    const home = Deno.makeTempDirSync({ prefix: "cli_mcp_test_" });
    try {
      const broken = join(home, "broken.json");
      Deno.writeTextFileSync(broken, '{"mcpServers": {');
      const cases = [
        { path: join(home, "nonexist.json"), says: "does not exist" },
        { path: broken, says: "invalid JSON" },
      ];
      for (const { path, says } of cases) {
        const config = new ConfigSource({
          explicitPath: path,
          env: {},
          cwd: home,
          home,
          log: silent,
        });
        const pool = new McpPool({ config, log: silent });
        try {
          const out = captureOutput();
          assertEquals(await mcpsCommand([], poolContext(pool, out)), 1);
          assertStringIncludes(out.out, `Config error: `);
          assertStringIncludes(out.out, path);
          assertStringIncludes(out.out, says);
          assert(!out.out.includes("No servers are configured in it"), out.out);
          const json = captureOutput();
          assertEquals(await mcpsCommand(["--json"], poolContext(pool, json)), 1);
          const doc: unknown = JSON.parse(json.out);
          assert(typeof doc === "object" && doc !== null);
          assertStringIncludes(String(Reflect.get(Reflect.get(doc, "config"), "error")), says);
        } finally {
          await pool.close();
        }
      }
    } finally {
      Deno.removeSync(home, { recursive: true });
    }
  });
  await t.step("mcps takes no arguments", async () => {
    await withPool({}, async ({ pool }) => {
      await assertRejects(
        () => mcpsCommand(["extra"], poolContext(pool, captureOutput())),
        UsageError,
      );
    });
  });
});

Deno.test("tools shows what was wrong with badly declared tools", async () => {
  const raw = {
    command: Deno.execPath(),
    args: cachedRun([join(ROOT, "tests", "fixtures", "pool_raw_server.ts")]),
    env: {
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      RAW_TOOLS: JSON.stringify([{ name: "ok", inputSchema: { type: "object" } }, {
        name: "noschema",
      }]),
    },
  };
  await withPool({ raw }, async ({ pool }) => {
    const out = captureOutput();
    assertEquals(await toolsCommand(["raw"], poolContext(pool, out)), 0);
    assertStringIncludes(out.out, "raw: 2 tools\n");
    assertStringIncludes(
      out.out,
      '\nnote: Tool "noschema" of MCP server "raw" declares no inputSchema; it is offered as ' +
        "taking any arguments.",
    );
    const json = captureOutput();
    assertEquals(await toolsCommand(["raw", "--json"], poolContext(pool, json)), 0);
    const doc: unknown = JSON.parse(json.out);
    assert(typeof doc === "object" && doc !== null);
    const notes: unknown = Reflect.get(doc, "notes");
    assert(Array.isArray(notes) && notes.length === 1);
    assertStringIncludes(String(notes[0]), '"noschema"');
  });
});

Deno.test("tools lists a server's tools with parameters and descriptions", async () => {
  await withPool({ fx: fixtureEntry(["--page-size", "4", "--task-tool"]) }, async ({ pool }) => {
    const out = captureOutput();
    assertEquals(await toolsCommand(["fx"], poolContext(pool, out)), 0);
    assertStringIncludes(out.out, "fx: 10 tools (and 1 that needs MCP tasks)\n");
    assertStringIncludes(
      out.out,
      "\nresearch(topic: string, rpcError?: boolean)  " +
        "(needs MCP tasks; not callable through the bridge)\n",
    );
    assert(out.out.trimEnd().endsWith("Researches a topic as a long-running MCP task."));
    assertStringIncludes(out.out, "echo(text: string)\n  Returns its text.");
    assertStringIncludes(out.out, "slow(ms: number, steps?: number)");
    assertStringIncludes(out.out, "pid()");

    const json = captureOutput();
    assertEquals(await toolsCommand(["fx", "--json"], poolContext(pool, json)), 0);
    const doc: unknown = JSON.parse(json.out);
    assert(typeof doc === "object" && doc !== null);
    const tools: unknown = Reflect.get(doc, "tools");
    assert(Array.isArray(tools));
    assertEquals(tools.length, 10);
    assertEquals(tools[0].inputSchema.required, ["text"]);
    const taskTools: unknown = Reflect.get(doc, "taskRequiredTools");
    assert(Array.isArray(taskTools));
    assertEquals(taskTools.map((t) => [t.name, t.execution.taskSupport]), [[
      "research",
      "required",
    ]]);

    await assertRejects(
      () =>
        callCommand(
          ["fx", "research", "--args", '{"topic":"x"}'],
          poolContext(pool, captureOutput()),
        ),
      McpServerError,
      'Tool "research" of MCP server "fx" can only run as an MCP task',
    );

    await assertRejects(() => toolsCommand([], poolContext(pool, captureOutput())), UsageError);
    await assertRejects(
      () => toolsCommand(["nope"], poolContext(pool, captureOutput())),
      McpServerError,
      'No MCP server named "nope"',
    );
  });
});

Deno.test("paramsSummary shows enums, arrays and optional parameters", () => {
  assertEquals(
    paramsSummary({
      inputSchema: {
        type: "object",
        properties: {
          mode: { enum: ["a", "b"] },
          paths: { type: "array", items: { type: "string" } },
          n: { type: ["number", "null"] },
          any: {},
        },
        required: ["mode"],
      },
    }),
    'mode: "a"|"b", paths?: string[], n?: number|null, any?: any',
  );
});

Deno.test("call prints text, summarises other content and fails on isError", async (t) => {
  await withPool({ fx: fixtureEntry() }, async ({ pool }) => {
    await t.step("text result", async () => {
      const out = captureOutput();
      const code = await callCommand(
        ["fx", "echo", "--args", '{"text":"hello"}'],
        poolContext(pool, out),
      );
      assertEquals(code, 0);
      assertEquals(out.out, "hello\n");
    });
    await t.step("image parts are summarised", async () => {
      const out = captureOutput();
      assertEquals(await callCommand(["fx", "image"], poolContext(pool, out)), 0);
      assertEquals(out.out, "a red pixel\n[image: image/png, 70 B]\n");
    });
    await t.step("isError exits 1 with the tool's message on stderr", async () => {
      const out = captureOutput();
      assertEquals(await callCommand(["fx", "fail"], poolContext(pool, out)), 1);
      assertEquals(out.out, "");
      assertStringIncludes(out.err, 'Tool "fail" on MCP server "fx" returned an error');
      assertStringIncludes(out.err, "deliberate failure");
    });
    await t.step(
      "a tool the server does not have fails with its tools and where to look",
      async () => {
        const error = await assertRejects(
          () => callCommand(["fx", "nosuchtool"], poolContext(pool, captureOutput())),
          McpServerError,
          'MCP server "fx" has no tool "nosuchtool"',
        );
        assertStringIncludes(error.message, "Its 10 tools are: echo, pid, env, tag, slow,");
        assertStringIncludes(error.message, "Run `lmstudio-bridge tools fx` to see them");
      },
    );
    await t.step("--json prints the whole result", async () => {
      const out = captureOutput();
      assertEquals(await callCommand(["fx", "fail", "--json"], poolContext(pool, out)), 1);
      const doc: unknown = JSON.parse(out.out);
      assert(typeof doc === "object" && doc !== null);
      assertEquals(Reflect.get(doc, "isError"), true);
    });
    await t.step("--timeout bounds a silent tool", async () => {
      await assertRejects(
        () =>
          callCommand(
            ["fx", "slow", "--args", '{"ms": 5000}', "--timeout", "1"],
            poolContext(pool, captureOutput()),
          ),
        McpServerError,
        "within 1000 ms",
      );
    });
    await t.step("bad --args and missing names are usage errors", async () => {
      const out = captureOutput();
      await assertRejects(
        () => callCommand(["fx", "echo", "--args", "{text: hi}"], poolContext(pool, out)),
        UsageError,
        "--args is not valid JSON",
      );
      await assertRejects(
        () => callCommand(["fx", "echo", "--args", "[1]"], poolContext(pool, out)),
        UsageError,
        "must be a JSON object",
      );
      await assertRejects(() => callCommand(["fx"], poolContext(pool, out)), UsageError);
    });
  });
});

Deno.test("tools shows what a server offers beyond tools: resources, templates, prompts", async () => {
  await withPool({ fx: fixtureEntry(["--extras", "--resources", "2"]) }, async ({ pool }) => {
    const out = captureOutput();
    assertEquals(await toolsCommand(["fx"], poolContext(pool, out)), 0);
    assertStringIncludes(
      out.out,
      "fx: 14 tools, 3 resources, 2 resource templates, 2 prompts\n",
    );
    assertStringIncludes(
      out.out,
      "\nResources (read them with their URI):\n" +
        "  fx://item/1  (text/plain)  item 1: Text item 1.\n" +
        "  fx://item/2  (text/plain)  item 2: Text item 2.\n" +
        "  fx://pixel.png  (image/png)  pixel\n",
    );
    assertStringIncludes(
      out.out,
      "\nResource templates (fill in the {parts} to get a URI):\n" +
        "  fx://item/{n}  (text/plain)  item\n  fx://echo/{text}  echo\n",
    );
    assertStringIncludes(
      out.out,
      "\nPrompts (their arguments are strings):\n  plain()\n    A prompt without arguments.\n" +
        "  greet(name, style?)\n    Greets someone.\n",
    );
    const json = captureOutput();
    assertEquals(await toolsCommand(["fx", "--json"], poolContext(pool, json)), 0);
    const doc = JSON.parse(json.out);
    assertEquals(doc.resources.map((r: { uri: string }) => r.uri), [
      "fx://item/1",
      "fx://item/2",
      "fx://pixel.png",
    ]);
    assertEquals(doc.resourceTemplates.length, 2);
    assertEquals(doc.prompts[1].arguments[0], {
      name: "name",
      description: "Who to greet.",
      required: true,
    });
    // Once listed, mcps and list_available_mcps count them, and what the server asked for.
    // A direct call cannot sample: the server's request is refused, and its tool fails.
    await assertRejects(() => pool.callTool("fx", "sample", { text: "hi" }), McpServerError);
    const mcps = captureOutput();
    assertEquals(await mcpsCommand([], poolContext(pool, mcps)), 0);
    assertMatch(
      mcps.out,
      /fx {2}\[stdio, connected, pid \d+, 14 tools, 3 resources, 2 resource templates, 2 prompts\]/,
    );
    assertStringIncludes(
      mcps.out,
      "  asked the bridge for sampling once (1 refused: no call running could answer)\n",
    );
  });
});

Deno.test("mcps shows an entry's own timeout, and the one it ignores", async () => {
  await withPool({
    fx: { ...fixtureEntry(), timeout: 90000 },
    cline: { command: "npx", args: ["-y", "x"], timeout: 60 },
  }, async ({ pool }) => {
    const out = captureOutput();
    await mcpsCommand([], poolContext(pool, out));
    assertStringIncludes(out.out, "  timeout: 90000 ms (its config entry)\n");
    assertStringIncludes(out.out, 'note: "timeout": 60 is ignored: it is in milliseconds');
    const json = captureOutput();
    await mcpsCommand(["--json"], poolContext(pool, json));
    const servers = JSON.parse(json.out).servers;
    assertEquals(servers[0].timeoutMs, 90000);
    assertEquals(servers[1].timeoutMs, null);
    assertEquals(servers[1].notes.length, 1);
  });
});

Deno.test("list_available_mcps answers a real MCP client with text and structured content", async () => {
  await withPool({
    fx: fixtureEntry(),
    off: { command: "npx", args: ["x"], disabled: true },
  }, async ({ pool, path }) => {
    const server = new McpServer({ name: "test", version: "1.0.0" });
    registerListAvailableMcpsTool(server, poolApp(pool));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const client = new Client({ name: "test-client", version: "1.0.0" });
    await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
    try {
      const { tools } = await client.listTools();
      const tool = tools.find((t) => t.name === "list_available_mcps");
      assertEquals(tool?.annotations?.readOnlyHint, true);
      const result = await client.callTool({ name: "list_available_mcps", arguments: {} });
      assertEquals(result.isError, undefined);
      const content = result.content;
      assert(Array.isArray(content));
      const text = String(content[0]?.text);
      assertStringIncludes(text, `Config: ${path}`);
      assertStringIncludes(text, "fx  [stdio, not started]");
      assertStringIncludes(text, "off  [stdio, disabled]");
      assert(!text.includes("value-that-must-not-be-shown"));
      const structured = result.structuredContent;
      assert(typeof structured === "object" && structured !== null);
      const servers: unknown = Reflect.get(structured, "servers");
      assert(Array.isArray(servers));
      assertEquals(servers.map((s) => s.state), ["not-started", "disabled"]);
      assertEquals(servers[0].envNames.includes("SECRET_TOKEN"), true);
    } finally {
      await client.close();
      await server.close();
    }
  });
});
