import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "./assert.ts";
import {
  candidatePaths,
  ConfigError,
  type ConfigFs,
  ConfigSource,
  parseConfigText,
  usableEntry,
} from "../lib/config.ts";
import {
  entryTarget,
  fingerprintOf,
  isBridgeEntry,
  resolveEntry,
  type ServerEntry,
} from "../lib/config_entry.ts";
import { jsonErrorPosition, lineColumn, locateJsonError, stripJsonc } from "../lib/jsonc.ts";
import { createApp } from "../lib/app.ts";
import { createLogger } from "../lib/log.ts";
import { resolveSettings } from "../lib/settings.ts";
import { dirname, homeDir, join } from "../lib/path.ts";

const silent = createLogger({ level: "silent" });

/** A temp layout: <root>/home is $HOME, <root>/work/project is the cwd, <root>/work is its parent. */
interface Tree {
  root: string;
  home: string;
  cwd: string;
  parent: string;
  write(path: string, data: unknown): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function tree(): Promise<Tree> {
  const root = await Deno.makeTempDir({ prefix: "config_test_" });
  const home = join(root, "home");
  const parent = join(root, "work");
  const cwd = join(parent, "project");
  await Deno.mkdir(join(home, ".lmstudio"), { recursive: true });
  await Deno.mkdir(cwd, { recursive: true });
  return {
    root,
    home,
    cwd,
    parent,
    async write(path: string, data: unknown) {
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.writeTextFile(path, typeof data === "string" ? data : JSON.stringify(data));
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** The real file system, counting calls. */
function countingFs(): ConfigFs & { reads: number; stats: number } {
  const fs = {
    reads: 0,
    stats: 0,
    stat(path: string) {
      fs.stats++;
      return Deno.stat(path);
    },
    readTextFile(path: string) {
      fs.reads++;
      return Deno.readTextFile(path);
    },
  };
  return fs;
}

/** A clock well past any file's mtime, so timestamps are trusted (no "modified just now" re-reads). */
const later = () => Date.now() + 60_000;

function source(
  t: Tree,
  extra: Partial<ConstructorParameters<typeof ConfigSource>[0]> = {},
): ConfigSource {
  return new ConfigSource({
    cwd: t.cwd,
    home: t.home,
    env: { HOME: t.home },
    log: silent,
    now: later,
    ...extra,
  });
}

function parse(data: unknown, env: Record<string, string | undefined> = {}): ServerEntry[] {
  return parseConfigText(typeof data === "string" ? data : JSON.stringify(data), {
    path: "/cfg/.mcp.json",
    env,
    home: "/home/u",
  });
}

function only(data: unknown, env: Record<string, string | undefined> = {}): ServerEntry {
  const servers = parse({ mcpServers: { s: data } }, env);
  assertEquals(servers.length, 1);
  return servers[0]!;
}

function names(servers: ServerEntry[]): string[] {
  return servers.map((s) => s.name);
}

// ---------------------------------------------------------------------------------------------
// Formats

Deno.test("config reads the Claude Code layout: stdio, http and sse entries with their fields", () => {
  const servers = parse({
    mcpServers: {
      filesystem: {
        type: "stdio",
        command: "npx",
        args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
        env: { DEBUG: "1" },
      },
      api: { type: "http", url: "http://127.0.0.1:3000/mcp", headers: { "X-Key": "k" } },
      events: { type: "sse", url: "https://example.com/sse" },
    },
  });
  assertEquals(names(servers), ["filesystem", "api", "events"]);
  const [fs, api, events] = servers as [ServerEntry, ServerEntry, ServerEntry];
  assertEquals(fs.transport, "stdio");
  assertEquals(fs.command, "npx");
  assertEquals(fs.args, ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]);
  assertEquals(fs.env, { DEBUG: "1" });
  assertEquals(fs.envNames, ["DEBUG"]);
  assertEquals(fs.problem, undefined);
  assertEquals(fs.disabled, false);
  assertEquals(api.transport, "http");
  assertEquals(api.url, "http://127.0.0.1:3000/mcp");
  assertEquals(api.headers, { "X-Key": "k" });
  assertEquals(api.problem, undefined);
  assertEquals(events.transport, "sse");
  assertEquals(events.url, "https://example.com/sse");
});

Deno.test("config reads Claude Desktop, Cursor and LM Studio files (no type field)", () => {
  const servers = parse({
    mcpServers: {
      memory: { command: "npx", args: ["-y", "@modelcontextprotocol/server-memory"] },
      remote: { url: "https://mcp.example.com/mcp", headers: { Authorization: "Bearer x" } },
      bare: { command: "uvx" },
    },
  });
  assertEquals(servers.map((s) => [s.name, s.transport, s.problem]), [
    ["memory", "stdio", undefined],
    ["remote", "http", undefined],
    ["bare", "stdio", undefined],
  ]);
  assertEquals(servers[2]!.args, []);
  assertEquals(servers[2]!.env, {});
});

Deno.test("config reads VS Code's servers layout and ignores its inputs", () => {
  const servers = parse(`{
    "inputs": [{ "type": "promptString", "id": "key", "description": "API key", "password": true }],
    "servers": {
      "fetch": { "type": "stdio", "command": "uvx", "args": ["mcp-server-fetch"] },
      "gh": { "type": "http", "url": "https://api.githubcopilot.com/mcp/" }
    }
  }`);
  assertEquals(servers.map((s) => [s.name, s.transport, s.problem]), [
    ["fetch", "stdio", undefined],
    ["gh", "http", undefined],
  ]);
});

Deno.test("config accepts streamable-http spellings and Cline's transportType as http", () => {
  for (const type of ["streamable-http", "streamableHttp", "HTTP", "streamable_http"]) {
    const e = only({ type, url: "http://127.0.0.1:1/mcp" });
    assertEquals([e.transport, e.problem], ["http", undefined], type);
  }
  assertEquals(only({ transportType: "sse", url: "http://127.0.0.1:1/sse" }).transport, "sse");
});

Deno.test("config ignores unknown fields and null optional fields", () => {
  const e = only({
    command: "node",
    args: ["s.js"],
    env: null,
    autoApprove: ["x"],
    alwaysAllow: [],
    timeout: 60,
    description: "hi",
  });
  assertEquals(e.problem, undefined);
  assertEquals(e.env, {});
});

Deno.test("config reads an entry's timeout in milliseconds, and says when it ignores one", () => {
  assertEquals(only({ command: "npx", timeout: 60000 }).timeoutMs, 60000);
  assertEquals(only({ url: "http://127.0.0.1:1/mcp", timeout: 2500.4 }).timeoutMs, 2500);
  assertEquals(only({ command: "npx" }).timeoutMs, undefined);
  // Cline writes seconds: as milliseconds that would start nothing, so it is ignored (as Claude
  // Code ignores a timeout under 1000), the entry stays usable and a note says why.
  const cline = only({ command: "npx", timeout: 60 });
  assertEquals([cline.problem, cline.timeoutMs], [undefined, undefined]);
  assertStringIncludes(cline.notes?.[0] ?? "", '"timeout": 60 is ignored');
  assertStringIncludes(cline.notes?.[0] ?? "", "Write 60000 for 60 s");
  const huge = only({ command: "npx", timeout: 1e12 });
  assertEquals(huge.timeoutMs, 86_400_000);
  assertStringIncludes(huge.notes?.[0] ?? "", "more than a day");
  // Not a number: the entry says what the field must be.
  assertStringIncludes(
    only({ command: "npx", timeout: "60000" }).problem ?? "",
    '"timeout" must be a number of milliseconds, e.g. 60000, not a string',
  );
  // The timeout is no part of what the connection depends on: changing it restarts nothing.
  assertEquals(
    only({ command: "npx", timeout: 5000 }).fingerprint,
    only({ command: "npx" }).fingerprint,
  );
});

Deno.test("config hides disabled entries behind a flag but keeps them listed", () => {
  const servers = parse({
    mcpServers: { on: { command: "a" }, off: { command: "b", disabled: true } },
  });
  assertEquals(servers.map((s) => [s.name, s.disabled]), [["on", false], ["off", true]]);
});

Deno.test("config resolves a relative cwd against the config file's directory", () => {
  assertEquals(only({ command: "x", cwd: "tools/srv" }).cwd, "/cfg/tools/srv");
  assertEquals(only({ command: "x", cwd: "/abs" }).cwd, "/abs");
  assertEquals(only({ command: "x", cwd: "~/srv" }).cwd, "/home/u/srv");
  assertEquals(only({ command: "x" }).cwd, undefined);
});

Deno.test("config gives a stdio entry only the env the file gives", () => {
  const e = only({ command: "x", env: { ONLY: "this" } }, { PATH: "/bin", SECRET: "s" });
  assertEquals(e.env, { ONLY: "this" });
  assertEquals(only({ command: "x" }, { PATH: "/bin" }).env, {});
});

Deno.test("config accepts JSON with comments and trailing commas", async (t) => {
  await t.step("comments and trailing commas are blanked, strings untouched", () => {
    const servers = parse(`\uFEFF{
      // line comment
      "servers": { /* block
         comment */
        "web": { "url": "https://x.example/a//b/*c*/", "headers": { "A": "// not a comment", }, },
        "arr": { "command": "x", "args": ["a", "b",], },
      },
    }`);
    assertEquals(servers[0]!.url, "https://x.example/a//b/*c*/");
    assertEquals(servers[0]!.headers, { A: "// not a comment" });
    assertEquals(servers[1]!.args, ["a", "b"]);
  });
  await t.step("stripping keeps every offset so error positions still match the file", () => {
    const text = '{ /* c */ "a": 1, // x\n "b": [1,], }';
    const stripped = stripJsonc(text);
    assertEquals(stripped.length, text.length);
    assertEquals(JSON.parse(stripped), { a: 1, b: [1] });
    assertEquals(stripped.indexOf('"b"'), text.indexOf('"b"'));
  });
  await t.step("an unterminated block comment is reported with its position", () => {
    const e = assertThrows(() => parse('{\n  "mcpServers": {} /* oops\n}'), ConfigError);
    assertEquals([e.line, e.column], [2, 20]);
    assertStringIncludes(e.message, "/cfg/.mcp.json:2:20");
  });
});

// ---------------------------------------------------------------------------------------------
// Expansion

Deno.test("config expands ${VAR} and ${VAR:-default} in every field", async (t) => {
  const env = { TOKEN: "t0k", BIN: "/opt/bin", EMPTY: "", PORT: "3000" };
  await t.step("stdio: command, args, env values and cwd", () => {
    const e = only({
      command: "${BIN}/server",
      args: [
        "--port",
        "${PORT}",
        "${MISSING:-fallback}",
        "${EMPTY:-used-when-empty}",
        "x${EMPTY}y",
      ],
      env: { API_TOKEN: "${TOKEN}", MODE: "${MODE:-prod}" },
      cwd: "${BIN}/work",
    }, env);
    assertEquals(e.problem, undefined);
    assertEquals(e.command, "/opt/bin/server");
    assertEquals(e.args, ["--port", "3000", "fallback", "used-when-empty", "xy"]);
    assertEquals(e.env, { API_TOKEN: "t0k", MODE: "prod" });
    assertEquals(e.cwd, "/opt/bin/work");
  });
  await t.step("remote: url and header values", () => {
    const e = only({
      type: "http",
      url: "http://127.0.0.1:${PORT}/mcp?k=${TOKEN}",
      headers: { Authorization: "Bearer ${TOKEN}", "X-Env": "${STAGE:-dev}" },
    }, env);
    assertEquals(e.problem, undefined);
    assertEquals(e.url, "http://127.0.0.1:3000/mcp?k=t0k");
    assertEquals(e.headers, { Authorization: "Bearer t0k", "X-Env": "dev" });
  });
  await t.step("VS Code's ${env:VAR} and ${userHome} / ${workspaceFolder}", () => {
    const e = only(
      { command: "x", args: ["${env:TOKEN}", "${userHome}", "${workspaceFolder}"] },
      env,
    );
    assertEquals(e.args, ["t0k", "/home/u", "/cfg"]);
  });
  await t.step("text that is not a variable is left alone", () => {
    const e = only({ command: "x", args: ["$HOME", "${}", "${a b}", "$${TOKEN}"] }, env);
    assertEquals(e.args, ["$HOME", "${}", "${a b}", "$t0k"]);
  });
});

Deno.test("config marks only the entry with an unset variable unusable and names both", async (t) => {
  const servers = parse({
    mcpServers: {
      github: {
        command: "npx",
        args: ["--token", "${GH_TOKEN}"],
        env: { GITHUB_PERSONAL_ACCESS_TOKEN: "${GH_TOKEN}" },
      },
      fine: { command: "npx", args: ["${HOME_DIR:-/h}"] },
      web: { type: "http", url: "${BASE}/mcp", headers: { K: "${KEY}" } },
    },
  }, {});
  const [github, fine, web] = servers as [ServerEntry, ServerEntry, ServerEntry];
  await t.step("the problem names the entry, the variable and where it is used", () => {
    assertStringIncludes(github.problem ?? "", 'MCP server "github"');
    assertStringIncludes(github.problem ?? "", "GH_TOKEN is not set");
    assertStringIncludes(github.problem ?? "", "args[1], env.GITHUB_PERSONAL_ACCESS_TOKEN");
    assertStringIncludes(github.problem ?? "", "${GH_TOKEN:-value}");
  });
  await t.step("every unset variable is named", () => {
    assertStringIncludes(web.problem ?? "", "BASE is not set (used in url)");
    assertStringIncludes(web.problem ?? "", "KEY is not set (used in headers.K)");
    assert(!(web.problem ?? "").includes("not a valid URL"), "no URL noise for an unset variable");
  });
  await t.step("other entries still work", () => {
    assertEquals(fine.problem, undefined);
    assertEquals(fine.args, ["/h"]);
  });
  await t.step("VS Code ${input:...} is reported as unanswerable", () => {
    const e = only({ command: "x", env: { K: "${input:api-key}" } });
    assertStringIncludes(e.problem ?? "", "${input:api-key} is a VS Code prompt");
  });
});

// ---------------------------------------------------------------------------------------------
// Validation

Deno.test("config explains each invalid entry and keeps the others", async (t) => {
  const cases: [string, unknown, string][] = [
    ["neither command nor url", { args: [] }, 'neither "command"'],
    [
      "args not a list",
      { command: "x", args: "-y pkg" },
      '"args" must be a list of strings, not a string',
    ],
    [
      "an arg not a string",
      { command: "x", args: ["a", 2] },
      '"args[1]" must be a string, not a number',
    ],
    [
      "env not an object",
      { command: "x", env: ["A=1"] },
      '"env" must be an object of string values',
    ],
    [
      "an env value not a string",
      { command: "x", env: { PORT: 3000 } },
      '"env.PORT" must be a string, not a number (write it in quotes: "3000")',
    ],
    ["headers not an object", { url: "http://h/", headers: "x" }, '"headers" must be an object'],
    ["url not http(s)", { type: "http", url: "ftp://h/x" }, "must start with http:// or https://"],
    ["url not a url", { type: "sse", url: "not a url" }, "is not a valid URL"],
    ["unknown type", { type: "websocket", url: "ws://h" }, 'unknown "type": "websocket"'],
    ["http without url", { type: "http", command: "x" }, 'it has "type": "http" but no "url"'],
    [
      "stdio with only a url",
      { type: "stdio", url: "http://h/" },
      'for a remote server use "type": "http"',
    ],
    ["empty command", { command: "  " }, '"command" is empty'],
    [
      "disabled not a boolean",
      { command: "x", disabled: "yes" },
      '"disabled" must be true or false',
    ],
    ["entry not an object", "npx server", "the entry must be an object"],
    ["command not a string", { command: ["npx"] }, '"command" must be string, not a list'],
  ];
  for (const [what, raw, expected] of cases) {
    await t.step(what, () => {
      const servers = parse({ mcpServers: { bad: raw, good: { command: "ok" } } });
      const [bad, good] = servers as [ServerEntry, ServerEntry];
      assertStringIncludes(bad.problem ?? "(none)", expected);
      assertStringIncludes(bad.problem ?? "", 'MCP server "bad":');
      assertEquals(good.problem, undefined);
    });
  }
  await t.step("several problems of one entry are all listed", () => {
    const e = only({ command: "x", args: [1], env: { A: true } });
    assertStringIncludes(e.problem ?? "", '"args[0]"');
    assertStringIncludes(e.problem ?? "", '"env.A" must be a string, not a boolean');
  });
  await t.step("an invalid entry still shows what could be read", () => {
    const e = only({ command: "npx", args: ["ok", 3], env: { A: "1", B: 2 } });
    assertEquals(e.command, "npx");
    assertEquals(e.args, ["ok"]);
    assertEquals(e.env, { A: "1" });
    assertEquals(e.envNames, ["A"]);
  });
});

Deno.test("config treats a file without a server map as a file-level error", async (t) => {
  const cases: [string, string][] = [
    ["[]", "holds a list, not an object"],
    ['"x"', "holds a string, not an object"],
    ['{"mcp": {}}', 'no "mcpServers" or "servers" object (top-level keys: mcp)'],
    ["{}", "top-level keys: none"],
    ['{"mcpServers": []}', '"mcpServers" must be an object mapping server names'],
    ['{"servers": "x"}', '"servers" must be an object'],
  ];
  for (const [text, expected] of cases) {
    await t.step(text, () => {
      const e = assertThrows(() => parse(text), ConfigError);
      assertStringIncludes(e.message, "/cfg/.mcp.json: ");
      assertStringIncludes(e.message, expected);
      assertEquals(e.path, "/cfg/.mcp.json");
    });
  }
  await t.step("an empty server map is fine", () => {
    assertEquals(parse('{"mcpServers": {}}'), []);
  });
});

// ---------------------------------------------------------------------------------------------
// Syntax error positions

Deno.test("config reports JSON syntax errors with the right line and column", async (t) => {
  const cases: [string, string, number, number, string][] = [
    ["missing value", '{\n  "mcpServers": {\n    "a": \n  }\n}', 4, 3, "expected a value"],
    [
      "missing comma",
      '{\n  "mcpServers": {\n    "a": {"command": "x"}\n    "b": {}\n  }\n}',
      4,
      5,
      "expected ',' or '}'",
    ],
    ["missing colon", '{\n  "mcpServers" {}\n}', 2, 16, "expected ':'"],
    ["single quotes", "{\n  'mcpServers': {}\n}", 2, 3, "a property name in double quotes"],
    [
      "unterminated string",
      '{\n  "mcpServers": {"a": {"command": "np\n}}}',
      2,
      38,
      "no raw control characters",
    ],
    ["unexpected end", '{\n  "mcpServers": {\n', 3, 1, "found the end of the file"],
    ["text after the value", '{"mcpServers": {}}\n}', 2, 1, "the end of the file"],
    ["bad escape", '{"mcpServers": {"a": {"command": "C:\\x"}}}', 1, 37, "a valid escape"],
    ["empty file", "", 1, 1, "expected a value"],
  ];
  for (const [what, text, line, column, detail] of cases) {
    await t.step(what, () => {
      const e = assertThrows(() => parse(text), ConfigError);
      assertEquals([e.line, e.column], [line, column], e.message);
      assertStringIncludes(e.message, `/cfg/.mcp.json:${line}:${column}: invalid JSON: `);
      assertStringIncludes(e.message, detail);
      assert(e.cause instanceof SyntaxError, "the engine's error is chained");
    });
  }
});

Deno.test("config reads both forms of the engine's JSON error position", async (t) => {
  const text = '{\n  "a": 1,\n  "b" 2\n}';
  await t.step("'at position N (line L column C)'", () => {
    assertEquals(
      jsonErrorPosition(
        "Expected ':' after property name in JSON at position 18 (line 3 column 7)",
        text,
      ),
      { line: 3, column: 7, offset: 18 },
    );
  });
  await t.step("'at position N' alone is turned into line and column", () => {
    assertEquals(jsonErrorPosition("Unexpected number in JSON at position 18", text), {
      line: 3,
      column: 7,
      offset: 18,
    });
  });
  await t.step("'Unexpected end of JSON input' points after the last character", () => {
    assertEquals(jsonErrorPosition("Unexpected end of JSON input", '{\n  "a": '), {
      line: 2,
      column: 7,
      offset: 8,
    });
  });
  await t.step("a message without a position gives none", () => {
    assertEquals(
      jsonErrorPosition(`Unexpected token '}', "..." is not valid JSON`, text),
      undefined,
    );
  });
  await t.step("the engine's position agrees with the scanner's on real errors", () => {
    // Errors the engine gives a position for; others ('{"x": tru }', "[1,,]") it does not, and
    // the scanner alone places them (see the syntax error positions above).
    for (const bad of [text, '{"a": [1, 2}', '{"a": 1,}', '{\n  "a" 1}']) {
      let message = "";
      try {
        JSON.parse(bad);
      } catch (e) {
        message = (e as Error).message;
      }
      const engine = jsonErrorPosition(message, bad);
      const located = locateJsonError(bad);
      assert(located !== undefined, bad);
      assert(engine?.offset !== undefined, `no position read from the engine's "${message}"`);
      assertEquals(engine.offset, located.offset, bad);
    }
  });
  await t.step("lineColumn counts from 1 and handles CRLF", () => {
    assertEquals(lineColumn("ab\r\ncd", 5), { line: 2, column: 2 });
    assertEquals(lineColumn("ab", 0), { line: 1, column: 1 });
  });
  await t.step("absurdly deep nesting still gives a ConfigError, not a crash", () => {
    const deep = '{"mcpServers": ' + "[".repeat(200_000) + "}";
    const e = assertThrows(() => parse(deep), ConfigError);
    assertStringIncludes(e.message, "invalid JSON");
  });
  await t.step("valid JSON has no error location", () => {
    assertEquals(locateJsonError('{"a": [1, -2.5e3, true, null, "\\u00e9\\n"]}'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Fingerprint and recursion guard

Deno.test("config fingerprints change exactly when the resolved entry changes", () => {
  const base = {
    mcpServers: {
      a: { command: "npx", args: ["x"], env: { A: "1", B: "2" } },
      b: { command: "y" },
    },
  };
  const [a1, b1] = parse(base) as [ServerEntry, ServerEntry];
  const [a2] = parse(base) as [ServerEntry];
  assertEquals(a1.fingerprint, a2.fingerprint, "stable across reads");
  assertMatch(a1.fingerprint, /^[0-9a-f]{16}$/);
  const reordered = parse({
    mcpServers: {
      b: { command: "y" },
      a: { env: { B: "2", A: "1" }, args: ["x"], command: "npx" },
    },
  });
  assertEquals(reordered[1]!.fingerprint, a1.fingerprint, "key order does not matter");
  assertEquals(reordered[0]!.fingerprint, b1.fingerprint);
  const variants: unknown[] = [
    { command: "npx", args: ["x", "y"], env: { A: "1", B: "2" } },
    { command: "npx", args: ["x"], env: { A: "1", B: "3" } },
    { command: "npx", args: ["x"], env: { A: "1", B: "2" }, cwd: "/w" },
    { command: "node", args: ["x"], env: { A: "1", B: "2" } },
  ];
  for (const v of variants) assertNotEquals(only(v).fingerprint, a1.fingerprint, JSON.stringify(v));
  const viaVar = only({ command: "npx", args: ["${X}"], env: { A: "1", B: "2" } }, { X: "x" });
  assertEquals(viaVar.fingerprint, a1.fingerprint, "the resolved value counts, not the template");
  const remote = only({ type: "http", url: "http://h/", headers: { K: "1" } });
  assertNotEquals(
    only({ type: "http", url: "http://h/", headers: { K: "2" } }).fingerprint,
    remote.fingerprint,
  );
  assertNotEquals(
    only({ type: "sse", url: "http://h/", headers: { K: "1" } }).fingerprint,
    remote.fingerprint,
  );
  assertEquals(fingerprintOf(remote), remote.fingerprint);
});

Deno.test("isBridgeEntry recognises entries that would start this bridge again", () => {
  const stdio = (command: string, args: string[] = [], cwd?: string) => ({
    transport: "stdio" as const,
    command,
    args,
    cwd,
  });
  const main = "/src/bridge/main.ts";
  assert(isBridgeEntry(stdio("lmstudio-bridge", ["serve"]), { mainPath: main }));
  assert(isBridgeEntry(stdio("/usr/local/bin/lmstudio-bridge"), { mainPath: main }));
  assert(isBridgeEntry(stdio("npx", ["-y", "lmstudio-bridge"]), { mainPath: main }));
  assert(
    isBridgeEntry(stdio("deno", ["run", "-A", "/home/u/lmstudio-bridge/main.ts", "serve"]), {
      mainPath: main,
    }),
  );
  assert(
    isBridgeEntry(stdio("deno", ["run", "-P=bridge", "/src/bridge/main.ts", "serve"]), {
      mainPath: main,
    }),
  );
  assert(
    isBridgeEntry(stdio("deno", ["run", "main.ts", "serve"], "/src/bridge"), { mainPath: main }),
  );
  assert(isBridgeEntry(stdio("deno", ["run", "file:///src/bridge/main.ts"]), { mainPath: main }));
  assert(
    !isBridgeEntry(stdio("npx", ["-y", "@modelcontextprotocol/server-memory"]), { mainPath: main }),
  );
  assert(!isBridgeEntry(stdio("deno", ["run", "/other/main.ts"]), { mainPath: main }));
  assert(
    !isBridgeEntry(stdio("deno", ["run", "file:///other/%E0main.ts"]), { mainPath: main }),
    "a file URL that does not decode is no match, not an exception",
  );
  assert(!isBridgeEntry({ transport: "http", args: [], cwd: undefined }, { mainPath: main }));
  // With the default main path: this repository's own main.ts.
  const ownMain = new URL("../main.ts", import.meta.url).pathname;
  assert(isBridgeEntry(stdio("deno", ["run", "-A", ownMain, "serve"])));
});

Deno.test("isBridgeEntry recognises this project run through deno task, as the README configures it", async (t) => {
  // <root>/bridge is the project (deno.json + main.ts), with lib/ inside it and a nested project
  // nested/ that has a deno.json of its own; <root>/other is another project; <root>/link points
  // at the bridge.
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "bridge_entry_test_" }));
  try {
    const bridge = join(root, "bridge");
    const other = join(root, "other");
    await Deno.mkdir(join(bridge, "lib"), { recursive: true });
    await Deno.mkdir(join(bridge, "nested"), { recursive: true });
    await Deno.mkdir(other, { recursive: true });
    for (const dir of [bridge, join(bridge, "nested"), other]) {
      await Deno.writeTextFile(join(dir, "deno.json"), '{"tasks": {"start": "deno run main.ts"}}');
    }
    await Deno.writeTextFile(join(bridge, "main.ts"), "");
    await Deno.symlink(bridge, join(root, "link"));
    const main = join(bridge, "main.ts");
    const stdio = (command: string, args: string[], cwd?: string) => ({
      transport: "stdio" as const,
      command,
      args,
      cwd,
    });
    const is = (command: string, args: string[], cwd?: string) =>
      isBridgeEntry(stdio(command, args, cwd), { mainPath: main });

    await t.step("the README entry: deno task --cwd <repo> start", () => {
      assert(is("deno", ["task", "--cwd", bridge, "start"]));
      assert(is("/usr/bin/deno", ["task", "--cwd", bridge, "start"]));
      assert(is("deno", ["task", `--cwd=${bridge}`, "start"]));
      assert(is("deno", ["task", "-q", "--cwd", bridge, "cli", "serve"]));
      assert(is("deno", ["task", "--cwd", `${bridge}/`, "start"]), "a trailing slash");
      assert(is("deno", ["task", "--cwd", "../bridge", "start"], other), "relative to cwd");
      assert(is("deno", ["task", "--cwd", join(root, "link"), "start"]), "through a symlink");
      assert(is("deno", ["task", "--cwd", join(bridge, "lib"), "start"]), "deno task looks up");
    });
    await t.step("deno task --config <repo>/deno.json", () => {
      assert(is("deno", ["task", "--config", join(bridge, "deno.json"), "start"]));
      assert(is("deno", ["task", `--config=${join(bridge, "deno.json")}`, "start"]));
      assert(is("deno", ["task", "-c", "deno.json", "start"], bridge));
    });
    await t.step("deno task start with the entry's cwd in the repo", () => {
      assert(is("deno", ["task", "start"], bridge));
      assert(is("deno", ["task", "start"], join(bridge, "lib")));
    });
    await t.step("deno run <repo>/main.ts serve", () => {
      assert(is("deno", ["run", "-P=bridge", "--no-prompt", main, "serve"]));
      assert(is("deno", ["run", "-A", "./main.ts", "serve"], bridge));
      assert(is("deno", ["run", "-A", join(root, "link", "main.ts"), "serve"]));
    });
    await t.step("a compiled binary named lmstudio-bridge", () => {
      assert(is("/opt/bin/lmstudio-bridge", ["serve"]));
      assert(is("lmstudio-bridge-x86_64-linux", ["serve"]));
    });
    await t.step("other projects, other tasks and other commands are not the bridge", () => {
      assert(!is("deno", ["task", "--cwd", other, "start"]));
      assert(!is("deno", ["task", "start"], other));
      assert(!is("deno", ["task", "--cwd", join(bridge, "nested"), "start"]), "own deno.json");
      assert(!is("deno", ["task", "--cwd", bridge, "test"]));
      assert(!is("deno", ["task", "--config", join(other, "deno.json"), "start"], bridge));
      assert(!is("npx", ["task", "--cwd", bridge, "start"]));
      assert(!is("deno", ["run", "-A", join(other, "main.ts")], bridge));
      assert(!is("deno", ["run", "-A", "npm:@modelcontextprotocol/server-memory"], bridge));
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("entryTarget shows the command line or the url", () => {
  assertEquals(
    entryTarget(only({ command: "npx", args: ["-y", "pkg", "a b"] })),
    'npx -y pkg "a b"',
  );
  assertEquals(entryTarget(only({ url: "http://h/mcp" })), "http://h/mcp");
});

// ---------------------------------------------------------------------------------------------
// Search order

Deno.test("config search order: first existing file wins", async (t) => {
  await using tr = await tree();
  const project = join(tr.cwd, ".mcp.json");
  const lmstudio = join(tr.home, ".lmstudio", "mcp.json");
  const homeFile = join(tr.home, ".mcp.json");
  const parentFile = join(tr.parent, ".mcp.json");
  const file = (name: string) => ({ mcpServers: { [name]: { command: name } } });

  await t.step("the candidates, in order", () => {
    assertEquals(
      [...candidatePaths({ cwd: tr.cwd, home: tr.home })].map((c) => c.path),
      [project, lmstudio, homeFile, parentFile],
    );
  });
  await t.step("no file anywhere: empty config, path undefined, no error", async () => {
    const c = await source(tr).current();
    assertEquals(c, {
      path: undefined,
      searched: [project, lmstudio, homeFile, parentFile],
      servers: [],
      bridge: { path: undefined, searched: undefined, settings: {}, warnings: [] },
    });
  });
  await t.step("../.mcp.json is the last resort", async () => {
    await tr.write(parentFile, file("parent"));
    const c = await source(tr).current();
    assertEquals([c.path, names(c.servers)], [parentFile, ["parent"]]);
  });
  await t.step("~/.mcp.json beats ../.mcp.json", async () => {
    await tr.write(homeFile, file("home"));
    assertEquals(names((await source(tr).current()).servers), ["home"]);
  });
  await t.step("~/.lmstudio/mcp.json beats ~/.mcp.json", async () => {
    await tr.write(lmstudio, file("lmstudio"));
    assertEquals(names((await source(tr).current()).servers), ["lmstudio"]);
  });
  await t.step("./.mcp.json (the project) beats LM Studio's own file", async () => {
    await tr.write(project, file("project"));
    const c = await source(tr).current();
    assertEquals([c.path, names(c.servers)], [project, ["project"]]);
  });
  await t.step("$MCP_JSON_PATH beats them all, relative to cwd, ~ expanded", async () => {
    await tr.write(join(tr.root, "custom.json"), file("custom"));
    for (const value of [join(tr.root, "custom.json"), "../../custom.json"]) {
      const c = await source(tr, { mcpJsonPath: value }).current();
      assertEquals([c.path, names(c.servers), c.searched], [join(tr.root, "custom.json"), [
        "custom",
      ], [join(tr.root, "custom.json")]]);
    }
    await tr.write(join(tr.home, "mine.json"), file("mine"));
    const c = await source(tr, { mcpJsonPath: "~/mine.json" }).current();
    assertEquals(names(c.servers), ["mine"]);
  });
  await t.step(
    "MCP_JSON_PATH is the app's setting, not read from the environment here",
    async () => {
      // The ${VAR} environment may hold MCP_JSON_PATH; only the mcpJsonPath option counts.
      const c = await source(tr, {
        env: { HOME: tr.home, MCP_JSON_PATH: join(tr.root, "custom.json") },
      }).current();
      assertEquals(names(c.servers), ["project"]);
      const app = createApp(
        resolveSettings({ MCP_JSON_PATH: join(tr.root, "custom.json"), INIT_CWD: tr.cwd }),
        { log: silent },
      );
      assertEquals(names((await app.config.current()).servers), ["custom"]);
    },
  );
  await t.step("--config beats $MCP_JSON_PATH", async () => {
    await tr.write(join(tr.root, "flag.json"), file("flag"));
    const c = await source(tr, {
      explicitPath: join(tr.root, "flag.json"),
      mcpJsonPath: join(tr.root, "custom.json"),
    }).current();
    assertEquals(names(c.servers), ["flag"]);
  });
  await t.step("an explicit file that does not exist is an error, not skipped", async () => {
    const missing = join(tr.root, "nope.json");
    const viaFlag = await source(tr, { explicitPath: missing }).current();
    assertEquals(viaFlag.servers, []);
    assertEquals(viaFlag.errorPath, missing);
    assertStringIncludes(viaFlag.error ?? "", `${missing} (given with --config) does not exist`);
    const viaEnv = await source(tr, { mcpJsonPath: missing }).current();
    assertStringIncludes(viaEnv.error ?? "", "(given by MCP_JSON_PATH) does not exist");
    const e = await assertRejects(
      async () => usableEntry(await source(tr, { explicitPath: missing }).current(), "project"),
      ConfigError,
    );
    assertStringIncludes(e.message, "does not exist");
  });
  await t.step("home is the user's home directory when not given", () => {
    const home = homeDir();
    assert(home !== undefined, "the test needs HOME");
    const s = new ConfigSource({ cwd: tr.cwd, env: {}, log: silent });
    assertEquals(s.candidates().map((c) => c.source), ["project", "lmstudio", "home", "parent"]);
    assertEquals(s.candidates()[1]!.path, join(home, ".lmstudio", "mcp.json"));
  });
  await t.step("duplicate candidates are searched once (cwd is home)", () => {
    const paths = [...candidatePaths({ cwd: tr.home, home: tr.home })].map((c) => c.path);
    assertEquals(paths, [
      homeFile,
      join(tr.home, ".lmstudio", "mcp.json"),
      join(tr.root, ".mcp.json"),
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// usableEntry()

Deno.test("usableEntry returns usable entries of the current config and explains the rest", async (t) => {
  await using tr = await tree();
  await tr.write(join(tr.cwd, ".mcp.json"), {
    mcpServers: {
      memory: { command: "npx", args: ["-y", "@modelcontextprotocol/server-memory"] },
      Files: { command: "npx" },
      old: { command: "x", disabled: true },
      gh: { command: "x", env: { T: "${GH_TOKEN}" } },
    },
  });
  const s = source(tr);
  const get = async (name: string) => usableEntry(await s.current(), name);
  await t.step("a usable entry", async () => {
    assertEquals((await get("memory")).command, "npx");
  });
  await t.step(
    "an unknown name lists the available servers and suggests a near match",
    async () => {
      const e = await assertRejects(() => get("files"), ConfigError);
      assertStringIncludes(
        e.message,
        `No MCP server named "files" in ${join(tr.cwd, ".mcp.json")}`,
      );
      assertStringIncludes(e.message, 'Did you mean "Files"?');
      assertStringIncludes(e.message, "Available servers: memory, Files");
      assertStringIncludes(e.message, "old disabled, gh has a problem");
      assertEquals(e.server, "files");
    },
  );
  await t.step("a disabled entry says so", async () => {
    await assertRejects(() => get("old"), ConfigError, '"old" is disabled');
  });
  await t.step("an entry with a problem gives the problem", async () => {
    await assertRejects(() => get("gh"), ConfigError, "GH_TOKEN is not set");
  });
  await t.step("with no config at all, the message says where it looked", async () => {
    await Deno.remove(join(tr.cwd, ".mcp.json"));
    const e = await assertRejects(() => get("memory"), ConfigError, "no MCP config file found");
    assertStringIncludes(e.message, join(tr.cwd, ".mcp.json"));
    assertStringIncludes(e.message, "MCP_JSON_PATH");
  });
});

// ---------------------------------------------------------------------------------------------
// Hot reload

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("config hot reload sees every kind of change on the next call", async (t) => {
  await using tr = await tree();
  const project = join(tr.cwd, ".mcp.json");
  const homeFile = join(tr.home, ".mcp.json");
  const fs = countingFs();
  // The real clock: files just written count as "modified just now" and are re-checked by content.
  const s = source(tr, { fs, now: Date.now });
  const servers = (m: Record<string, unknown>) => ({ mcpServers: m });

  await t.step("a file created after start is picked up", async () => {
    assertEquals((await s.current()).path, undefined);
    await tr.write(homeFile, servers({ a: { command: "a" } }));
    const c = await s.current();
    assertEquals([c.path, names(c.servers)], [homeFile, ["a"]]);
  });
  await t.step("an in-place edit is seen", async () => {
    await tr.write(homeFile, servers({ a: { command: "a" }, bb: { command: "b" } }));
    assertEquals(names((await s.current()).servers), ["a", "bb"]);
  });
  await t.step("a same-size edit right after a read is seen", async () => {
    const before = await s.current();
    await tr.write(homeFile, servers({ a: { command: "a" }, bc: { command: "b" } }));
    const after = await s.current();
    assertEquals(names(after.servers), ["a", "bc"]);
    assertNotEquals(after, before);
  });
  await t.step("an unchanged file keeps the same config object", async () => {
    const first = await s.current();
    assertStrictEquals(await s.current(), first);
  });
  await t.step("replace-by-rename (how editors save) is seen", async () => {
    const tmp = join(tr.home, ".mcp.json.tmp");
    await tr.write(tmp, servers({ renamed: { command: "r" } }));
    await Deno.rename(tmp, homeFile);
    assertEquals(names((await s.current()).servers), ["renamed"]);
  });
  await t.step("a higher-priority file appearing takes over", async () => {
    await tr.write(project, servers({ project: { command: "p" } }));
    const c = await s.current();
    assertEquals([c.path, names(c.servers)], [project, ["project"]]);
  });
  await t.step("deleting it falls back to the next candidate", async () => {
    await Deno.remove(project);
    const c = await s.current();
    assertEquals([c.path, names(c.servers)], [homeFile, ["renamed"]]);
  });
  await t.step("a broken edit keeps the last good servers and reports the error", async () => {
    await tr.write(homeFile, '{"mcpServers": {\n  "x": {"command": "x",}\n  "y": 1\n}}');
    const c = await s.current();
    assertEquals([c.path, names(c.servers)], [homeFile, ["renamed"]]);
    assertStringIncludes(c.error ?? "", `${homeFile}:3:3: invalid JSON`);
    assertStringIncludes(
      c.error ?? "",
      `Still using the last good configuration from ${homeFile} (1 server)`,
    );
    assertEquals(c.errorPath, homeFile);
    assertEquals(
      usableEntry(await s.current(), "renamed").command,
      "r",
      "the last good entry stays usable",
    );
  });
  await t.step("a shape error is kept the same way", async () => {
    await tr.write(homeFile, '{"mcpServer": {}}');
    const c = await s.current();
    assertEquals(names(c.servers), ["renamed"]);
    assertStringIncludes(c.error ?? "", 'no "mcpServers" or "servers" object');
  });
  await t.step("repairing the file clears the error", async () => {
    await tr.write(homeFile, servers({ fixed: { command: "f" } }));
    const c = await s.current();
    assertEquals([c.error, names(c.servers)], [undefined, ["fixed"]]);
  });
  await t.step("deleting the last file empties the config", async () => {
    await Deno.remove(homeFile);
    assertEquals(await s.current(), {
      path: undefined,
      searched: s.candidates().map((c) => c.path),
      servers: [],
      bridge: { path: undefined, searched: undefined, settings: {}, warnings: [] },
    });
  });
  await t.step("a broken file with no earlier good config reports no servers", async () => {
    await tr.write(project, "{");
    const c = await s.current();
    assertEquals([c.path, c.servers], [project, []]);
    assertStringIncludes(c.error ?? "", "No MCP servers are available until it is fixed");
  });
  await t.step("a deleted explicit file keeps the last good servers with an error", async () => {
    const flag = join(tr.root, "flag.json");
    await tr.write(flag, servers({ f: { command: "f" } }));
    const e = source(tr, { explicitPath: flag });
    assertEquals(names((await e.current()).servers), ["f"]);
    await Deno.remove(flag);
    const c = await e.current();
    assertEquals(names(c.servers), ["f"]);
    assertStringIncludes(c.error ?? "", "does not exist");
    // A different size: the recreated file may get the freed inode back within one clock tick.
    await tr.write(flag, servers({ gg: { command: "g" } }));
    assertEquals(names((await e.current()).servers), ["gg"]);
  });
});

Deno.test("config re-reads only when the file changes, and concurrent calls share one read", async (t) => {
  await using tr = await tree();
  const project = join(tr.cwd, ".mcp.json");
  await tr.write(project, { mcpServers: { a: { command: "a" } } });
  const fs = countingFs();
  const s = source(tr, { fs }); // clock far ahead: timestamps are trusted

  await t.step("100 calls on an unchanged file: one read, one stat each", async () => {
    const first = await s.current();
    for (let i = 0; i < 99; i++) assertStrictEquals(await s.current(), first);
    assertEquals(fs.reads, 1);
    assertEquals(
      fs.stats,
      200,
      "the project file is found first, so one stat per call, and one of the settings file",
    );
  });
  // Each edit changes the size: with timestamps trusted (the clock is far ahead), two writes in
  // the same kernel clock tick would otherwise look identical to stat, as on any real system
  // within the 2 s window that the production clock covers by comparing content.
  await t.step("a change causes exactly one more read", async () => {
    await tr.write(project, { mcpServers: { bb: { command: "b" } } });
    assertEquals(names((await s.current()).servers), ["bb"]);
    await s.current();
    assertEquals(fs.reads, 2);
  });
  await t.step("concurrent calls during a reload share one stat and one read", async () => {
    await tr.write(project, { mcpServers: { ccc: { command: "c" } } });
    const statsBefore = fs.stats;
    const results = await Promise.all(Array.from({ length: 20 }, () => s.current()));
    assertEquals(fs.reads, 3);
    assertEquals(fs.stats - statsBefore, 2, "the config file and the settings file");
    for (const r of results) assertStrictEquals(r, results[0]);
    assertEquals(names(results[0]!.servers), ["ccc"]);
  });
  await t.step("fingerprints are computed once per read, not per call", async () => {
    const a = await s.current();
    const b = await s.current();
    assertStrictEquals(a.servers[0], b.servers[0]);
  });
});

Deno.test("config does not trust the timestamp of a file modified just now", async (t) => {
  await using tr = await tree();
  const project = join(tr.cwd, ".mcp.json");
  await tr.write(project, { mcpServers: { aaaa: { command: "a" } } });
  const real = await Deno.stat(project);
  // A coarse-clock filesystem: every stat reports the same mtime, ctime and inode, so a same-size
  // edit is invisible to stat alone.
  let reads = 0;
  const frozen: ConfigFs = {
    stat: async (path) => ({
      ...(await Deno.stat(path)),
      mtime: real.mtime,
      ctime: real.ctime,
      ino: real.ino,
    }),
    readTextFile: (path) => {
      reads++;
      return Deno.readTextFile(path);
    },
  };
  let now = real.mtime!.getTime() + 500;
  const s = source(tr, { fs: frozen, now: () => now });

  await t.step("while recent, the content is compared and a same-size edit is seen", async () => {
    const first = await s.current();
    assertEquals(names(first.servers), ["aaaa"]);
    assertStrictEquals(await s.current(), first, "same bytes: same config object");
    await tr.write(project, { mcpServers: { bbbb: { command: "b" } } });
    assertEquals(names((await s.current()).servers), ["bbbb"]);
    assertEquals(reads, 3);
  });
  await t.step("once the file is older than the window, stat alone is trusted", async () => {
    now += 5_000;
    await s.current(); // one last read that finds the file settled
    const settled = reads;
    for (let i = 0; i < 10; i++) await s.current();
    assertEquals(reads, settled);
  });
  await sleep(0);
});

Deno.test("config sees a rename-replace even when size and timestamps are identical", async () => {
  await using tr = await tree();
  const project = join(tr.cwd, ".mcp.json");
  await tr.write(project, { mcpServers: { aaaa: { command: "a" } } });
  const real = await Deno.stat(project);
  let reads = 0;
  const frozenTimes: ConfigFs = {
    stat: async (path) => ({ ...(await Deno.stat(path)), mtime: real.mtime, ctime: real.ctime }),
    readTextFile: (path) => {
      reads++;
      return Deno.readTextFile(path);
    },
  };
  const s = source(tr, { fs: frozenTimes }); // timestamps trusted: only the inode can tell
  assertEquals(names((await s.current()).servers), ["aaaa"]);
  await s.current();
  assertEquals(reads, 1);
  const tmp = join(tr.cwd, ".mcp.json.new");
  await tr.write(tmp, { mcpServers: { bbbb: { command: "b" } } });
  await Deno.rename(tmp, project);
  assertEquals(names((await s.current()).servers), ["bbbb"]);
  assertEquals(reads, 2);
});

Deno.test("config warns about problems a reload brings, once per change, not on first read", async () => {
  await using tr = await tree();
  const lines: string[] = [];
  const log = createLogger({ level: "warn", color: false, write: (l) => lines.push(l) });
  const file = join(tr.cwd, ".mcp.json");
  await tr.write(file, { mcpServers: { gh: { command: "x", args: ["${NOPE}"] } } });
  const s = source(tr, { log });
  await s.current();
  // The first read is shown by whoever asked (mcps, doctor, the command's error): no warning.
  assertEquals(lines, []);
  await tr.write(file, { mcpServers: { gh: { command: "x", args: ["${NOPE}", "changed"] } } });
  await s.current();
  await s.current();
  assertEquals(lines.length, 1);
  assertStringIncludes(lines[0]!, "NOPE is not set");
});

Deno.test("resolveEntry never throws, whatever the input", () => {
  for (const raw of [null, 1, "x", [], { command: 1 }, { url: {} }, { env: "x" }, { type: 3 }]) {
    const e = resolveEntry("n", raw, { path: "/c/.mcp.json", env: {} });
    assert(e.problem !== undefined, JSON.stringify(raw));
    assertEquals(e.name, "n");
  }
  assertStringIncludes(
    resolveEntry("", { command: "x" }, { path: "/c/.mcp.json", env: {} }).problem ?? "",
    "the server name is empty",
  );
});
