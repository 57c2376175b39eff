/**
 * The local model and the bridge's own configuration: calls for the model that name a config
 * file are refused (every way a path can name it), and config versions first seen while a model
 * works hold their new or changed entries (and new bridge settings) until the bridge restarts or
 * the user accepts them. The whole chain with a real server-filesystem and the loop is in
 * tests/config_guard_loop_test.ts.
 */
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./assert.ts";
import { canonicalPath, configPathNamed } from "../lib/config_guard.ts";
import { ConfigError, ConfigSource, usableEntry } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { formatPoolReport } from "../lib/server_mcp.ts";
import { cachedRun, denoChildEnv, fileExists, textOf } from "./fixtures/pool_support.ts";

const silent = createLogger({ level: "silent" });
const RAW = new URL("./fixtures/pool_raw_server.ts", import.meta.url).pathname;

/** A project: <root>/project with .mcp.json, <root>/home as home, a `data` dir. */
function project(): { root: string; dir: string; home: string; config: string } & Disposable {
  const root = Deno.makeTempDirSync({ prefix: "config_guard_test_" });
  const dir = join(root, "project");
  const home = join(root, "home");
  Deno.mkdirSync(join(dir, "data"), { recursive: true });
  Deno.mkdirSync(join(home, ".lmstudio"), { recursive: true });
  const config = join(dir, ".mcp.json");
  Deno.writeTextFileSync(config, '{"mcpServers": {"a": {"command": "a"}}}');
  return {
    root,
    dir,
    home,
    config,
    [Symbol.dispose]() {
      Deno.removeSync(root, { recursive: true });
    },
  };
}

Deno.test("the protected files: every .mcp.json candidate, lmstudio-bridge.json beside each, those in use", async () => {
  using p = project();
  const s = new ConfigSource({
    cwd: p.dir,
    home: p.home,
    env: {},
    log: silent,
    explicitPath: join(p.root, "elsewhere", "mine.json"),
    bridgeConfigPath: join(p.root, "settings.jsonc"),
  });
  const paths = s.protectedPaths(await s.current());
  for (
    const path of [
      join(p.dir, ".mcp.json"),
      join(p.home, ".lmstudio", "mcp.json"),
      join(p.home, ".mcp.json"),
      join(p.root, ".mcp.json"),
      join(p.root, "elsewhere", "mine.json"),
      join(p.dir, "lmstudio-bridge.json"),
      join(p.home, ".lmstudio", "lmstudio-bridge.json"),
      join(p.root, "elsewhere", "lmstudio-bridge.json"),
      join(p.root, "settings.jsonc"),
    ]
  ) {
    assert(paths.includes(path), `${path} is not protected: ${paths.join(", ")}`);
  }
});

Deno.test("a string argument naming a config file is found however the path is written", () => {
  using p = project();
  const settings = join(p.dir, "lmstudio-bridge.json");
  const guard = (args: unknown, extra: { caseInsensitive?: boolean; cwd?: string } = {}) =>
    configPathNamed(args, {
      protected: [p.config, settings],
      cwd: extra.cwd ?? p.dir,
      args: ["-y", "@modelcontextprotocol/server-filesystem", p.dir],
      home: p.home,
      caseInsensitive: extra.caseInsensitive,
    });
  Deno.symlinkSync(p.config, join(p.dir, "data", "link.json"));
  Deno.symlinkSync(join(p.dir, "lmstudio-bridge.json"), join(p.dir, "dangling.json"));
  Deno.symlinkSync(p.dir, join(p.root, "alias"));
  const named: [string, unknown][] = [
    ["absolute", { path: p.config }],
    ["relative to the server's cwd", { path: "./.mcp.json" }],
    ["relative to a directory argument", { path: ".mcp.json" }],
    ["through ..", { path: join(p.dir, "data", "..", ".mcp.json") }],
    ["~", { path: "~/../project/.mcp.json" }],
    ["a file:// URL", { uri: `file://${p.config}` }],
    ["a symbolic link to it", { path: join(p.dir, "data", "link.json") }],
    ["a dangling link that would create it", { path: join(p.dir, "dangling.json") }],
    ["a linked directory", { path: join(p.root, "alias", ".mcp.json") }],
    ["nested in objects and lists", { edits: [{ file: { path: p.config } }] }],
    ["a move's destination", { source: join(p.dir, "data", "x.json"), destination: p.config }],
    ["the settings file", { path: settings }],
    ["a word of a shell command", { command: "cp /tmp/evil.json ./.mcp.json && echo ok" }],
  ];
  for (const [how, args] of named) {
    const cwd = how === "relative to a directory argument" ? p.root : p.dir;
    assert(guard(args, { cwd }) !== undefined, `not found: ${how}`);
  }
  assertEquals(guard({ path: join(p.dir, "data", "link.json") }), p.config);
  // Case: only where the file system ignores it.
  assertEquals(guard({ path: join(p.dir, ".MCP.JSON") }), undefined);
  assertEquals(guard({ path: join(p.dir, ".MCP.JSON") }, { caseInsensitive: true }), p.config);
  // Not the config files.
  for (
    const args of [
      { path: join(p.dir, "data", "notes.txt") },
      { path: join(p.dir, ".mcp.json.bak") },
      { path: join(p.dir, "data", ".mcp.json") },
      { content: "Edit .mcp.json to add a server.\nThen restart the bridge.", path: "README.md" },
      { n: 3, flag: true },
    ]
  ) {
    assertEquals(guard(args), undefined, JSON.stringify(args));
  }
  assertEquals(canonicalPath(join(p.root, "alias", "new", "x")), join(p.dir, "new", "x"));
});

Deno.test("with the lists kept from call to call, a link made since is seen at once, and a protected link's target is protected", () => {
  using p = project();
  // As the pool passes them: the same arrays for every call while the config is unchanged.
  const dotfiles = join(p.root, "dotfiles");
  Deno.mkdirSync(dotfiles);
  const homeConfig = join(p.home, ".mcp.json");
  // ~/.mcp.json kept in a dotfiles repository, whose file is not written yet.
  Deno.symlinkSync(join(dotfiles, "mcp-config.json"), homeConfig);
  const context = {
    protected: [p.config, homeConfig],
    cwd: p.dir,
    args: ["-y", "@modelcontextprotocol/server-filesystem", p.dir],
    home: p.home,
  };
  const link = join(p.dir, "data", "notes.json");
  assertEquals(configPathNamed({ path: link }, context), undefined);
  assertEquals(configPathNamed({ query: "item 1" }, context), undefined);
  Deno.symlinkSync(p.config, link);
  assertEquals(configPathNamed({ path: link }, context), p.config);
  // The file the protected link would create, named as it is, or through a link of its own.
  assertEquals(configPathNamed({ path: join(dotfiles, "mcp-config.json") }, context), homeConfig);
  Deno.symlinkSync(join(dotfiles, "mcp-config.json"), join(p.dir, "data", "other.txt"));
  assertEquals(configPathNamed({ path: "data/other.txt" }, context), homeConfig);
  assertEquals(configPathNamed({ path: "data/missing.txt" }, context), undefined);
});

Deno.test("a word checked against a settled directory's kept listing still sees a link made since", () => {
  using p = project();
  const settings = join(p.dir, "lmstudio-bridge.json");
  const context = { protected: [p.config, settings], cwd: p.dir, args: [p.dir], home: p.home };
  // Last changed an hour ago: its listing is kept from call to call.
  const settle = () => {
    const past = new Date(Date.now() - 3_600_000);
    Deno.utimeSync(p.dir, past, past);
  };
  settle();
  assertEquals(configPathNamed({ query: "notes.json" }, context), undefined);
  assertEquals(configPathNamed({ query: "item 1" }, context), undefined);
  // A link that would create the settings file, made after the listing was kept.
  Deno.symlinkSync(settings, join(p.dir, "notes.json"));
  assertEquals(configPathNamed({ query: "notes.json" }, context), settings);
  settle();
  assertEquals(configPathNamed({ query: "notes.json" }, context), settings, "listed again");
  assertEquals(configPathNamed({ query: "NOTES.JSON" }, context), undefined);
  // An entry removed and made again under the same name, and a renamed one.
  Deno.removeSync(join(p.dir, "notes.json"));
  settle();
  assertEquals(configPathNamed({ query: "notes.json" }, context), undefined);
  Deno.symlinkSync(p.config, join(p.dir, "draft"));
  Deno.renameSync(join(p.dir, "draft"), join(p.dir, "notes.json"));
  assertEquals(configPathNamed({ query: "notes.json" }, context), p.config);
  assertEquals(configPathNamed({ query: ".mcp.json" }, context), p.config);
});

Deno.test("a directory changed a moment ago keeps its listing when its file times are finer than a second", () => {
  if (Deno.build.os !== "linux") return; // Listings are kept on Linux only.
  using p = project();
  const context = { protected: [p.config], cwd: p.dir, args: [], home: p.home };
  /**
   * Sets the directory's modification time to `mtime` (its status change time becomes the real
   * time, an hour later), then counts the lstat calls of a second check of a word at a clock
   * 500 ms after `mtime`: none when the first check kept the listing, one otherwise.
   */
  const lstatsAfter = (mtime: number): number => {
    Deno.utimeSync(p.dir, new Date(mtime), new Date(mtime));
    const o = { ...context, now: () => mtime + 500 };
    assertEquals(configPathNamed({ query: "item 1" }, o), undefined);
    const real = Deno.lstatSync;
    let calls = 0;
    Deno.lstatSync = (path) => {
      calls++;
      return real(path);
    };
    try {
      assertEquals(configPathNamed({ query: "item 1" }, o), undefined);
    } finally {
      Deno.lstatSync = real;
    }
    return calls;
  };
  const second = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
  assertEquals(lstatsAfter(second + 250), 0, "fine times: settled after 100 ms");
  // Whole seconds (a file system that counts seconds): not settled for 2 s.
  assertEquals(lstatsAfter(second), 1, "coarse times: looked up");
  // Still the same rule for a link made meanwhile: its change is seen.
  lstatsAfter(second + 250);
  Deno.symlinkSync(p.config, join(p.dir, "item 1"));
  assertEquals(
    configPathNamed({ query: "item 1" }, { ...context, now: () => second + 750 }),
    p.config,
  );
});

/** Writes `servers` to the project's .mcp.json atomically (the stat always changes). */
function writeServers(path: string, servers: Record<string, unknown>): void {
  const text = JSON.stringify({ mcpServers: servers });
  Deno.writeTextFileSync(`${path}.tmp`, text + " ".repeat(Math.floor(Math.random() * 50)));
  Deno.renameSync(`${path}.tmp`, path);
}

Deno.test("entries that appear or change while a local model works are held until accepted or a restart", async (t) => {
  using p = project();
  const later = () => Date.now() + 60_000;
  const s = new ConfigSource({ cwd: p.dir, home: p.home, env: {}, log: silent, now: later });
  writeServers(p.config, { a: { command: "a" }, b: { command: "b" }, c: { command: "c" } });
  await s.current();
  await t.step("a change seen outside a model's work applies at once", async () => {
    writeServers(p.config, { a: { command: "a2" }, b: { command: "b" }, c: { command: "c" } });
    const c = await s.current();
    assertEquals(c.servers.map((e) => e.held), [undefined, undefined, undefined]);
  });
  await t.step("new and changed entries seen while a model works are held", async () => {
    const end = s.beginModelWork();
    writeServers(p.config, {
      a: { command: "a2" },
      b: { command: "evil" },
      c: { command: "c", disabled: true },
      marker: { command: "touch", args: ["/tmp/marker"] },
    });
    const c = await s.current();
    end();
    assertEquals(c.servers.map((e) => [e.name, e.held !== undefined]), [
      ["a", false],
      ["b", true],
      ["c", false],
      ["marker", true],
    ]);
    assertEquals(
      c.servers[1]!.held,
      "changed while a local model was working; restart the bridge (or accept it) to use it",
    );
    const e = assertThrows(() => usableEntry(c, "marker"), ConfigError);
    assertEquals(
      e.message,
      'MCP server "marker" is held: changed while a local model was working; restart the ' +
        "bridge (or accept it) to use it.",
    );
    assertEquals(c.servers[2]!.disabled, true, "disabling applies at once");
  });
  await t.step("they stay held through later versions", async () => {
    writeServers(p.config, {
      a: { command: "a3" },
      b: { command: "evil" },
      marker: { command: "touch", args: ["/tmp/marker"] },
    });
    const c = await s.current();
    assertEquals(c.servers.map((e) => [e.name, e.held !== undefined]), [
      ["a", false],
      ["b", true],
      ["marker", true],
    ]);
  });
  await t.step(
    "accepting one makes it usable; back to what was accepted clears a hold",
    async () => {
      assertEquals(s.acceptServer("marker"), true);
      assertEquals(s.acceptServer("marker"), false);
      writeServers(p.config, {
        a: { command: "a3" },
        b: { command: "b" },
        marker: { command: "touch", args: ["/tmp/marker"] },
      });
      const c = await s.current();
      assertEquals(c.servers.map((e) => e.held), [undefined, undefined, undefined]);
    },
  );
  await t.step("a restart reads the file fresh and accepts what it says", async () => {
    const end = s.beginModelWork();
    writeServers(p.config, { a: { command: "a3" }, b: { command: "evil" } });
    assert((await s.current()).servers[1]!.held !== undefined);
    end();
    const fresh = new ConfigSource({ cwd: p.dir, home: p.home, env: {}, log: silent, now: later });
    assertEquals((await fresh.current()).servers.map((e) => e.held), [undefined, undefined]);
  });
});

Deno.test("bridge settings that change while a local model works are held; the accepted ones stay", async () => {
  using p = project();
  const settings = join(p.dir, "lmstudio-bridge.json");
  const write = (text: string) => {
    Deno.writeTextFileSync(`${settings}.tmp`, text + " ".repeat(Math.floor(Math.random() * 50)));
    Deno.renameSync(`${settings}.tmp`, settings);
  };
  write('{"tools": {"*/*": "ask"}}');
  const later = () => Date.now() + 60_000;
  const s = new ConfigSource({ cwd: p.dir, home: p.home, env: {}, log: silent, now: later });
  await s.current();
  const end = s.beginModelWork();
  write('{"tools": {"*/*": "allow"}}');
  const c = await s.current();
  end();
  assertEquals(c.bridge.settings.tools, { "*/*": "ask" });
  assertStringIncludes(c.bridge.held ?? "", `the newer settings in ${settings} are held:`);
  assertStringIncludes(formatPoolReport({ config: c, servers: [] }), "Bridge settings held: ");
  assertEquals(s.acceptBridgeSettings(), true);
  assertEquals((await s.current()).bridge.settings.tools, { "*/*": "allow" });
});

Deno.test("the pool: a model's call naming .mcp.json is refused; what a model's call changes is held", async () => {
  using p = project();
  const marker = join(p.root, "MARKER");
  const evil = JSON.stringify({
    mcpServers: {
      raw: rawEntry(p),
      marker: { command: "sh", args: ["-c", `touch ${marker}`] },
    },
  });
  writeServers(p.config, { raw: rawEntry(p, { RAW_WRITE_PATH: p.config, RAW_WRITE_TEXT: evil }) });
  const config = new ConfigSource({ cwd: p.dir, home: p.home, env: {}, log: silent });
  const pool = new McpPool({ config, log: silent, cwd: p.dir, home: p.home });
  try {
    const refused = await pool.callTool("raw", "write_file", { path: "./.mcp.json" }, {
      origin: "model",
    });
    assertEquals(refused.isError, true);
    assertStringIncludes(
      textOf(refused),
      `Refused: the local model may not change the bridge's MCP configuration (${p.config}).`,
    );
    // The user's own call is not the model's: it is passed on.
    assertEquals(
      textOf(await pool.callTool("raw", "write_file", { path: "./.mcp.json" })),
      'write_file {"path":"./.mcp.json"}',
    );

    // A call that names nothing, but whose server rewrites .mcp.json (as a shell tool could).
    await pool.callTool("raw", "side_effect", {}, { origin: "model" });
    const { servers } = await pool.status();
    const held = servers.find((s) => s.name === "marker");
    assertEquals(held?.state, "held");
    assertStringIncludes(formatPoolReport(await pool.status()), "held: changed while a local");
    const error = await assertRejects(
      () => pool.callTool("marker", "x", {}),
      McpServerError,
      'MCP server "marker" is held',
    );
    assertEquals(error.kind, "config");
    await assertRejects(() => pool.listTools("marker"), McpServerError, "is held");
  } finally {
    await pool.close();
  }
  assertEquals(fileExists(marker), false, "the marker command never ran");
});

function rawEntry(
  p: { dir: string },
  env: Record<string, string> = {},
): { command: string; args: string[]; env: Record<string, string>; cwd: string } {
  return {
    command: Deno.execPath(),
    args: cachedRun([RAW, p.dir]),
    env: {
      ...denoChildEnv(),
      RAW_TOOLS: JSON.stringify([
        { name: "write_file", inputSchema: { type: "object" } },
        { name: "side_effect", inputSchema: { type: "object" } },
      ]),
      ...env,
    },
    cwd: p.dir,
  };
}
