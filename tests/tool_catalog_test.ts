import type { Tool } from "../lib/sdk.ts";
import {
  globToRegExp,
  sanitizeToolName,
  TOOL_NAME_PATTERN,
  ToolCatalog,
} from "../lib/tool_catalog.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";

function tool(name: string, inputSchema: Record<string, unknown> = {}, description = ""): Tool {
  return {
    name,
    description,
    inputSchema: { type: "object", ...inputSchema },
  } as Tool;
}

Deno.test("a catalog is reused for the same tool lists and options, and only for them", () => {
  const memory = [tool("read_graph"), tool("search_nodes")];
  const files = [tool("read_file")];
  const build = (
    servers: { server: string; tools: Tool[]; resources?: boolean }[],
    allowed?: string[],
  ) => ToolCatalog.build(servers, { namespaced: servers.length > 1, allowed });
  const one = build([{ server: "memory", tools: memory }]);
  assert(build([{ server: "memory", tools: memory }]) === one, "same list, same options");
  const others = [
    build([{ server: "memory", tools: [...memory] }]), // a new list (it changed)
    build([{ server: "memory", tools: memory }], ["read_*"]),
    build([{ server: "memory", tools: memory, resources: true }]),
    build([{ server: "memory", tools: memory }, { server: "files", tools: files }]),
    build([{ server: "memory2", tools: memory }]),
  ];
  for (const other of others) assert(other !== one);
  assertEquals(others.map((c) => c.names), [
    ["read_graph", "search_nodes"],
    ["read_graph"],
    ["read_graph", "search_nodes", "list_resources", "read_resource"],
    ["memory__read_graph", "memory__search_nodes", "files__read_file"],
    ["read_graph", "search_nodes"],
  ]);
  assertEquals(others[4]!.resolve("read_graph")?.server, "memory2");
  // The four built last on the same first list are kept: the first one has made way.
  assert(build([{ server: "memory", tools: memory }], ["read_*"]) === others[1]);
  const again = build([{ server: "memory", tools: memory }]);
  assert(again !== one);
  assertEquals(again.names, one.names);
});

Deno.test("tool names", async (t) => {
  await t.step("are sanitised to the OpenAI pattern", () => {
    assertEquals(sanitizeToolName("read file.v2/x"), "read_file_v2_x");
    assertEquals(sanitizeToolName(""), "tool");
  });

  await t.step("are raw for one server", () => {
    const catalog = ToolCatalog.build([{ server: "memory", tools: [tool("create_entities")] }], {
      namespaced: false,
    });
    assertEquals(catalog.names, ["create_entities"]);
    assertEquals(catalog.resolve("create_entities")?.server, "memory");
  });

  await t.step("are server__tool for several servers and map back exactly", () => {
    const catalog = ToolCatalog.build([
      { server: "memory", tools: [tool("read_graph")] },
      { server: "my fs", tools: [tool("read_file")] },
    ], { namespaced: true });
    assertEquals(catalog.names, ["memory__read_graph", "my_fs__read_file"]);
    const entry = catalog.resolve("my_fs__read_file");
    assertEquals([entry?.server, entry?.tool], ["my fs", "read_file"]);
  });

  await t.step("stay unique within 64 characters with a hash suffix", () => {
    const long = "x".repeat(70);
    const catalog = ToolCatalog.build([
      { server: "a", tools: [tool(`${long}1`), tool(`${long}2`), tool("a.b"), tool("a_b")] },
    ], { namespaced: false });
    const names = catalog.names;
    assertEquals(new Set(names).size, 4);
    for (const name of names) assertMatch(name, TOOL_NAME_PATTERN);
    assertEquals(catalog.resolve(names[0]!)?.tool, `${long}1`);
    assertEquals(catalog.resolve(names[1]!)?.tool, `${long}2`);
    assertEquals(catalog.resolve(names[2]!)?.tool, "a.b");
    assertEquals(catalog.resolve(names[3]!)?.tool, "a_b");
  });

  await t.step(
    "shorten a long server name before the tool name, with one prefix per server",
    () => {
      const server = "a-very-long-server-name-that-goes-on-and-on-and-on-forever-and-ever";
      const memoryTools = ["read_graph", "create_entities", "delete_observations"];
      const catalog = ToolCatalog.build([
        { server, tools: memoryTools.map((n) => tool(n)) },
        { server: "fs", tools: [tool("read_file")] },
      ], { namespaced: true });
      const names = catalog.names;
      const prefixes = new Set<string>();
      memoryTools.forEach((raw, i) => {
        const name = names[i]!;
        assertMatch(name, TOOL_NAME_PATTERN);
        assert(name.endsWith(`__${raw}`), `${name} keeps ${raw} whole`);
        prefixes.add(name.slice(0, -raw.length - 2));
        assertEquals([catalog.resolve(name)?.server, catalog.resolve(name)?.tool], [server, raw]);
      });
      assertEquals(prefixes.size, 1);
      const prefix = [...prefixes][0]!;
      assert(prefix.startsWith("a-very-long-server-name"), prefix);
      assertMatch(prefix, /_[0-9a-z]{6}$/);
      assertEquals(names[3], "fs__read_file");
    },
  );

  await t.step("shorten both parts only when the tool name alone is too long", () => {
    const server = "s".repeat(40);
    const longTool = `${"t".repeat(60)}_one`;
    const longTool2 = `${"t".repeat(60)}_two`;
    const catalog = ToolCatalog.build([
      { server, tools: [tool(longTool), tool(longTool2), tool("short")] },
      { server: "other", tools: [tool("x")] },
    ], { namespaced: true });
    const names = catalog.names;
    assertEquals(new Set(names).size, 4);
    for (const name of names) assertMatch(name, TOOL_NAME_PATTERN);
    assertEquals(catalog.resolve(names[0]!)?.tool, longTool);
    assertEquals(catalog.resolve(names[1]!)?.tool, longTool2);
    assertEquals(catalog.resolve(names[2]!)?.tool, "short");
    assert(names[2]!.endsWith("__short"), names[2]);
    assert(names[0]!.startsWith("sssss"), names[0]);
  });

  await t.step("give servers that sanitise alike distinct names, whatever their order", () => {
    const pair = [
      { server: "my server.v2", tools: [tool("read")] },
      { server: "my_server_v2", tools: [tool("read")] },
    ];
    for (const servers of [pair, [...pair].reverse()]) {
      const catalog = ToolCatalog.build(servers, { namespaced: true });
      const clean = catalog.entries.find((e) => e.server === "my_server_v2")!;
      const changed = catalog.entries.find((e) => e.server === "my server.v2")!;
      assertEquals(clean.name, "my_server_v2__read");
      assertMatch(changed.name, /^my_server_v2_[0-9a-z]{6}__read$/);
      assertEquals(catalog.resolve(clean.name)?.server, "my_server_v2");
      assertEquals(catalog.resolve(changed.name)?.server, "my server.v2");
    }
    const tools = [tool("a.b"), tool("a_b")];
    for (const list of [tools, [...tools].reverse()]) {
      const catalog = ToolCatalog.build([{ server: "s", tools: list }], { namespaced: false });
      assertEquals(catalog.resolve("a_b")?.tool, "a_b");
      assertMatch(catalog.entries.find((e) => e.tool === "a.b")!.name, /^a_b_[0-9a-z]{6}$/);
    }
  });

  await t.step("resolve forgiving variants the model may use", () => {
    const catalog = ToolCatalog.build([
      { server: "memory", tools: [tool("read_graph")] },
      { server: "fs", tools: [tool("read_file")] },
    ], { namespaced: true });
    assertEquals(catalog.resolve("read_file")?.server, "fs");
    assertEquals(catalog.resolve("fs.read_file")?.tool, "read_file");
    assertEquals(catalog.resolve("fs/read_file")?.tool, "read_file");
    assertEquals(catalog.resolve("MEMORY__READ_GRAPH")?.tool, "read_graph");
    assertEquals(catalog.resolve("write_file"), undefined);
  });
});

Deno.test("allowed_tools globs limit the catalog over raw or namespaced names", () => {
  const servers = [
    { server: "fs", tools: [tool("read_file"), tool("write_file"), tool("read_dir")] },
    { server: "memory", tools: [tool("read_graph"), tool("create_entities")] },
  ];
  const byRaw = ToolCatalog.build(servers, { namespaced: true, allowed: ["read_*"] });
  assertEquals(byRaw.names, ["fs__read_file", "fs__read_dir", "memory__read_graph"]);
  const byNs = ToolCatalog.build(servers, {
    namespaced: true,
    allowed: ["memory__*", "fs__?rite_file"],
  });
  assertEquals(byNs.names, ["fs__write_file", "memory__read_graph", "memory__create_entities"]);
  assertEquals(byNs.excluded, ["fs__read_file", "fs__read_dir"]);
  assert(globToRegExp("a.b").test("a.b"));
  assert(!globToRegExp("a.b").test("axb"));
});

Deno.test("OpenAI definitions are made once per tool-list version and name, not per task", () => {
  const listed = [tool("read", { properties: { path: { type: "string" } } }), tool("write")];
  const first = ToolCatalog.build([{ server: "fs", tools: listed }], { namespaced: false });
  const again = ToolCatalog.build([{ server: "fs", tools: listed }], { namespaced: false });
  assertEquals(first.openaiTools.length, 2);
  first.openaiTools.forEach((d, i) => assert(d === again.openaiTools[i], "the same definition"));
  // Namespaced, the name differs: another definition, the same cleaned schema.
  const namespaced = ToolCatalog.build([{ server: "fs", tools: listed }, {
    server: "memory",
    tools: [tool("read_graph")],
  }], { namespaced: true });
  assertEquals(namespaced.openaiTools[0]!.function.name, "fs__read");
  assert(namespaced.openaiTools[0] !== first.openaiTools[0]);
  assert(
    namespaced.openaiTools[0]!.function.parameters === first.openaiTools[0]!.function.parameters,
  );
  // A changed tool list brings new Tool objects: new definitions.
  const changed = [tool("read", { properties: { path: { type: "number" } } }), listed[1]!];
  const after = ToolCatalog.build([{ server: "fs", tools: changed }], { namespaced: false });
  assert(after.openaiTools[0] !== first.openaiTools[0]);
  assertEquals(after.openaiTools[0]!.function.parameters.properties, { path: { type: "number" } });
  assert(after.openaiTools[1] === first.openaiTools[1]);
});
