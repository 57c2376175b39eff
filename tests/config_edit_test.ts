/**
 * `mcps add` and `mcps remove`: the config file is edited in place, every comment and all the
 * formatting kept; end to end under the sandbox, which writes nothing itself.
 */
import { assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";
import { runCli } from "./helpers.ts";
import { addServer, ConfigEditError, removeServer } from "../lib/config_edit.ts";
import { JsoncSyntaxError, parseJsonc } from "../lib/jsonc.ts";
import { join } from "../lib/path.ts";

const ORIGINAL = `// Servers for this project (JSONC: comments are fine)
{
    "mcpServers": {
        /* files of the project */
        "files": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."] },
        "memory": {
            "command": "npx", // the launcher
            "args": ["-y", "@modelcontextprotocol/server-memory"],
        },
    },
    "other": true
}
`;

Deno.test("addServer appends an entry in the file's own indentation, keeping everything else", () => {
  const added = addServer(ORIGINAL, "git", { command: "uvx", args: ["mcp-server-git"] });
  assertEquals(
    added,
    ORIGINAL.replace(
      `"args": ["-y", "@modelcontextprotocol/server-memory"],
        },`,
      `"args": ["-y", "@modelcontextprotocol/server-memory"],
        },
        "git": {
            "command": "uvx",
            "args": ["mcp-server-git"]
        },`,
    ),
  );
  assertEquals(removeServer(added, "git"), ORIGINAL);
});

Deno.test("removeServer takes out one entry and nothing else", () => {
  const removed = removeServer(ORIGINAL, "files");
  assertEquals(removed, ORIGINAL.replace(/ {8}"files": .*\n/, ""));
  const data = parseJsonc(removeServer(removed, "memory"));
  assertEquals(data, { mcpServers: {}, other: true });
});

Deno.test("edits of files without servers, empty files and broken files", () => {
  assertEquals(parseJsonc(addServer("", "a", { command: "x" })), {
    mcpServers: { a: { command: "x" } },
  });
  assertEquals(parseJsonc(addServer('{ "x": 1 }', "a", { command: "x" })), {
    x: 1,
    mcpServers: { a: { command: "x" } },
  });
  assertEquals(
    addServer('{\n  "servers": {}\n}\n', "a", { command: "x" }),
    '{\n  "servers": {\n    "a": {\n      "command": "x"\n    }\n  }\n}\n',
  );
  assertThrows(() => addServer(ORIGINAL, "memory", { command: "x" }), ConfigEditError, "--force");
  assertEquals(
    (parseJsonc(addServer(ORIGINAL, "memory", { command: "x" }, { replace: true })) as {
      mcpServers: Record<string, unknown>;
    }).mcpServers.memory,
    { command: "x" },
  );
  assertThrows(() => removeServer(ORIGINAL, "nope"), ConfigEditError, "it has: files, memory");
  assertThrows(() => addServer('{"mcpServers": {', "a", { command: "x" }), JsoncSyntaxError);
});

Deno.test("mcps add and remove edit the user's config under the sandbox", async () => {
  const dir = await Deno.makeTempDir({ prefix: "config_edit_test_" });
  try {
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(config, ORIGINAL);
    const env = { HOME: dir, INIT_CWD: dir };
    const add = await runCli(
      ["mcps", "add", "everything", "--env", "DEBUG=1", "--", "npx", "-y", "server-everything"],
      { env, cwd: dir },
    );
    assertEquals(add.code, 0, add.stderr);
    assertStringIncludes(add.stderr, `Added server "everything" to ${config}`);
    const text = await Deno.readTextFile(config);
    assertStringIncludes(text, "/* files of the project */");
    assertStringIncludes(text, '"args": ["-y", "server-everything"]');
    assertStringIncludes(text, '"env": {\n                "DEBUG": "1"\n            }');
    const list = await runCli(["mcps"], { env, cwd: dir });
    assertStringIncludes(list.stdout, "everything  [stdio, not started]");
    const again = await runCli(["mcps", "add", "everything", "--", "npx"], { env, cwd: dir });
    assertEquals(again.code, 1);
    assertStringIncludes(again.stderr, 'a server named "everything" is already in the file');
    const remove = await runCli(["mcps", "remove", "everything"], { env, cwd: dir });
    assertEquals(remove.code, 0, remove.stderr);
    assertEquals(await Deno.readTextFile(config), ORIGINAL);
    const usage = await runCli(["mcps", "add", "x"], { env, cwd: dir });
    assertEquals(usage.code, 2);
    assertStringIncludes(usage.stderr, "after --");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
