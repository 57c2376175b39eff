/**
 * The bridge settings file (`lmstudio-bridge.json`): where it is looked for, what it may say, and
 * how ConfigSource reloads it (stat-based, last good kept, errors and unknown keys with line and
 * column), and where the listings show it.
 */
import { assert, assertEquals, assertStrictEquals, assertStringIncludes } from "./assert.ts";
import { createApp } from "../lib/app.ts";
import { mcpsCommand } from "../lib/cli_mcp.ts";
import { parseBridgeSettings } from "../lib/config_bridge.ts";
import { type ConfigFs, ConfigSource } from "../lib/config.ts";
import { locateJsonPath } from "../lib/jsonc.ts";
import { createLogger } from "../lib/log.ts";
import { captureOutput } from "../lib/output.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { formatPoolReport } from "../lib/server_mcp.ts";
import { resolveSettings } from "../lib/settings.ts";
import { poolContext } from "./rigs.ts";

const silent = createLogger({ level: "silent" });
/** A clock well past any file's mtime, so timestamps are trusted. */
const later = () => Date.now() + 60_000;

/** A project dir with .mcp.json; `settings` writes lmstudio-bridge.json (text as is). */
function project(): { dir: string; settings: string; write(text: string): void } & Disposable {
  const dir = Deno.makeTempDirSync({ prefix: "config_bridge_test_" });
  Deno.writeTextFileSync(join(dir, ".mcp.json"), '{"mcpServers": {"a": {"command": "a"}}}');
  const settings = join(dir, "lmstudio-bridge.json");
  let version = 0;
  return {
    dir,
    settings,
    write(text: string) {
      // Atomic, and a different size each time, so the stat always changes.
      const tmp = `${settings}.${++version}.tmp`;
      Deno.writeTextFileSync(tmp, text + " ".repeat(version));
      Deno.renameSync(tmp, settings);
    },
    [Symbol.dispose]() {
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

function source(
  dir: string,
  extra: Partial<ConstructorParameters<typeof ConfigSource>[0]> = {},
): ConfigSource {
  return new ConfigSource({ cwd: dir, home: dir, env: {}, log: silent, now: later, ...extra });
}

const FULL = `{
  // JSONC: comments and trailing commas, as VS Code writes them.
  "$schema": "https://example.invalid/lmstudio-bridge.schema.json",
  "servers": {
    "filesystem": {
      "sandbox": "auto",
      "tools": { "write_*": "ask" },
    },
    "shell": { "sandbox": { "read": ["./src"], "write": false, "run": ["git"] } },
  },
  "tools": { "*/*": "allow" },
  "sampling": { "max_tokens": 1024, "per_task": 10 },
}`;

Deno.test("bridge settings: every section of the map's schema is read", () => {
  const parsed = parseBridgeSettings(FULL, "/p/lmstudio-bridge.json");
  assert(parsed.ok);
  assertEquals(parsed.settings, {
    servers: {
      filesystem: { sandbox: "auto", tools: { "write_*": "ask" } },
      shell: { sandbox: { read: ["./src"], write: [], run: ["git"] } },
    },
    tools: { "*/*": "allow" },
    sampling: { max_tokens: 1024, per_task: 10 },
  });
  assertEquals(parsed.warnings, []);
});

Deno.test("bridge settings: a wrong value is an error with line and column", () => {
  const cases: [string, string][] = [
    [
      '{\n  "servers": {"fs": {"sandbox": "bogus"}}\n}',
      '/p/s.json:2:22: servers.fs.sandbox must be "auto", "deno", "os", "none" or an object',
    ],
    [
      '{\n  "servers": {"fs": {"sandbox": {"read": true, "write": 3}}}\n}',
      "/p/s.json:2:48: servers.fs.sandbox.write must be true, false or a list of strings",
    ],
    ['{"tools": {"a/b": "yes"}}', '/p/s.json:1:12: tools.a/b must be "allow", "ask" or "deny"'],
    ['{"sampling": {"max_tokens": 0}}', "sampling.max_tokens must be a whole number of 1 or more"],
    ['{"servers": []}', "/p/s.json:1:2: servers must be an object of server name -> settings"],
    ["[]", "/p/s.json: the bridge settings must be an object"],
    ['{"tools": {"a": "allow" "b": 1}}', "/p/s.json:1:25: invalid JSON: expected ','"],
  ];
  for (const [text, says] of cases) {
    const parsed = parseBridgeSettings(text, "/p/s.json");
    assert(!parsed.ok, text);
    assertStringIncludes(parsed.error, says);
  }
});

Deno.test("bridge settings: unknown keys are warnings with line and column, never fatal", () => {
  const text =
    '{\n  "servers": {"fs": {"sandbox": {"wirte": ["x"]}, "tool": {}}},\n  "tool": {}\n}';
  const parsed = parseBridgeSettings(text, "/p/s.json");
  assert(parsed.ok);
  assertEquals(parsed.settings, { servers: { fs: { sandbox: {} } } });
  assertEquals(parsed.warnings, [
    '/p/s.json:2:34: unknown key "servers.fs.sandbox.wirte" is ignored (check its spelling; ' +
    "known keys there: read, write, net, env, run).",
    '/p/s.json:2:51: unknown key "servers.fs.tool" is ignored (check its spelling; known keys ' +
    "there: sandbox, tools).",
    '/p/s.json:3:3: unknown key "tool" is ignored (check its spelling; known keys there: ' +
    "servers, tools, sampling, tools_on_demand).",
  ]);
});

Deno.test("bridge settings: tools_on_demand.share is a number from 0 to 1", () => {
  const ok = parseBridgeSettings('{"tools_on_demand": {"share": 0.25}}', "/p/s.json");
  assert(ok.ok);
  assertEquals(ok.settings, { tools_on_demand: { share: 0.25 } });
  const wrong = parseBridgeSettings('{"tools_on_demand": {"share": 40}}', "/p/s.json");
  assert(!wrong.ok);
  assertEquals(
    wrong.error,
    "/p/s.json:1:22: tools_on_demand.share must be a number from 0 to 1. Fix the file; it is " +
      "re-read on the next use.",
  );
});

Deno.test("locateJsonPath points at a member's key, through comments, arrays and nesting", () => {
  const text = '{\n  // c\n  "a": {"b": [1, {"c": 2}]},\n  "d": 1,\n}';
  assertEquals(locateJsonPath(text, ["a", "b", 1, "c"]), { line: 3, column: 19 });
  assertEquals(locateJsonPath(text, ["d"]), { line: 4, column: 3 });
  assertEquals(locateJsonPath(text, []), { line: 1, column: 1 });
  assertEquals(locateJsonPath(text, ["x"]), undefined);
  assertEquals(locateJsonPath("{", ["a"]), undefined);
});

Deno.test("ConfigSource reads lmstudio-bridge.json next to the MCP config, hot-reloaded with last good", async (t) => {
  using p = project();
  const s = source(p.dir);
  await t.step("no file: the defaults, no error", async () => {
    const { bridge } = await s.current();
    assertEquals(bridge, { path: undefined, searched: p.settings, settings: {}, warnings: [] });
  });
  await t.step("a file next to .mcp.json is read", async () => {
    p.write(FULL);
    const { bridge } = await s.current();
    assertEquals([bridge.path, bridge.error], [p.settings, undefined]);
    assertEquals(bridge.settings.tools, { "*/*": "allow" });
  });
  await t.step("a broken edit keeps the last good settings, with line and column", async () => {
    p.write('{"tools": {"*/*": "deny",, }}');
    const c = await s.current();
    assertEquals(c.bridge.settings.tools, { "*/*": "allow" });
    assertEquals(c.bridge.errorPath, p.settings);
    assertStringIncludes(c.bridge.error ?? "", `${p.settings}:1:28: invalid JSON`);
    assertStringIncludes(c.bridge.error ?? "", "Still using the last good bridge settings from");
    assertEquals(c.error, undefined, "the MCP config itself is fine");
    assertEquals(c.servers.map((e) => e.name), ["a"]);
  });
  await t.step("a wrong value too", async () => {
    p.write('{\n  "tools": {"*/*": "sometimes"}\n}');
    const { bridge } = await s.current();
    assertEquals(bridge.settings.tools, { "*/*": "allow" });
    assertStringIncludes(bridge.error ?? "", `${p.settings}:2:13: tools.*/* must be`);
  });
  await t.step("fixing it clears the error; unknown keys are warnings", async () => {
    p.write('{"tools": {"*/*": "deny"}, "tolls": {}}');
    const { bridge } = await s.current();
    assertEquals([bridge.error, bridge.settings.tools], [undefined, { "*/*": "deny" }]);
    assertEquals(bridge.warnings.length, 1);
    assertStringIncludes(bridge.warnings[0]!, `${p.settings}:1:28: unknown key "tolls"`);
  });
  await t.step("deleting the file brings the defaults back", async () => {
    Deno.removeSync(p.settings);
    const { bridge } = await s.current();
    assertEquals([bridge.path, bridge.settings, bridge.error], [undefined, {}, undefined]);
  });
});

Deno.test("an unchanged settings file costs one stat per call and keeps the same object", async () => {
  using p = project();
  p.write('{"tools": {"*/*": "ask"}}');
  let reads = 0;
  let stats = 0;
  const fs: ConfigFs = {
    stat: (path) => {
      if (path === p.settings) stats++;
      return Deno.stat(path);
    },
    readTextFile: (path) => {
      if (path === p.settings) reads++;
      return Deno.readTextFile(path);
    },
  };
  const s = source(p.dir, { fs });
  const first = await s.current();
  for (let i = 0; i < 9; i++) assertStrictEquals(await s.current(), first);
  assertEquals([reads, stats], [1, 10]);
  p.write('{"tools": {"*/*": "deny"}}');
  const changed = await s.current();
  assertEquals(changed.bridge.settings.tools, { "*/*": "deny" });
  assertStrictEquals(changed.servers, first.servers, "the MCP config was not re-read");
  assertEquals(reads, 2);
});

Deno.test("LMSTUDIO_BRIDGE_CONFIG names the settings file; a missing one is an error", async () => {
  using p = project();
  const elsewhere = join(p.dir, "elsewhere.jsonc");
  Deno.writeTextFileSync(elsewhere, '{"sampling": {"per_task": 3}}');
  p.write('{"sampling": {"per_task": 1}}');
  const app = createApp(
    resolveSettings({ LMSTUDIO_BRIDGE_CONFIG: elsewhere, MCP_JSON_PATH: join(p.dir, ".mcp.json") }),
    { log: silent },
  );
  const { bridge } = await app.config.current();
  assertEquals([bridge.path, bridge.settings.sampling], [elsewhere, { per_task: 3 }]);
  const missing = await source(p.dir, { bridgeConfigPath: join(p.dir, "nope.json") }).current();
  assertStringIncludes(
    missing.bridge.error ?? "",
    `Bridge settings file ${
      join(p.dir, "nope.json")
    } (given by LMSTUDIO_BRIDGE_CONFIG) does not exist`,
  );
  assertStringIncludes(missing.bridge.error ?? "", "The default settings apply until it is fixed");
});

Deno.test("mcps and list_available_mcps show which settings file is in force and its problems", async () => {
  using p = project();
  const s = source(p.dir);
  const pool = new McpPool({ config: s, log: silent });
  try {
    const none = captureOutput();
    assertEquals(await mcpsCommand([], poolContext(pool, none)), 0);
    assertStringIncludes(none.out, `Bridge settings: none, the defaults apply (no ${p.settings})`);

    p.write('{"tools": {"*/*": "ask"}, "extra": 1}');
    const report = await pool.status();
    const text = formatPoolReport(report);
    assertStringIncludes(text, `Bridge settings: ${p.settings}\n`);
    assertStringIncludes(text, `Bridge settings warning: ${p.settings}:1:27: unknown key "extra"`);

    p.write('{"tools": {"*/*": ask}}');
    const json = captureOutput();
    assertEquals(
      await mcpsCommand(["--json"], poolContext(pool, json)),
      1,
      "a broken file exits 1",
    );
    const doc: unknown = JSON.parse(json.out);
    assert(typeof doc === "object" && doc !== null);
    const bridge: unknown = Reflect.get(doc, "bridge");
    assert(typeof bridge === "object" && bridge !== null);
    assertEquals(Reflect.get(bridge, "path"), p.settings, "the last good file stays in force");
    assertStringIncludes(String(Reflect.get(bridge, "error")), `${p.settings}:1:19: invalid JSON`);
    assertEquals(Reflect.get(bridge, "errorPath"), p.settings);
  } finally {
    await pool.close();
  }
});
