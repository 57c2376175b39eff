import {
  ArgumentValidator,
  cleanToolSchema,
  describeParameters,
  estimateTokens,
  formatToolResult,
  globToRegExp,
  parseToolArguments,
  recoverTextToolCalls,
  sanitizeToolName,
  stableStringify,
  stripThinking,
  TOOL_NAME_PATTERN,
  ToolCatalog,
  truncateText,
} from "../lib/tool_calls.ts";
import type { Tool } from "../lib/sdk.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

function tool(name: string, inputSchema: Record<string, unknown> = {}, description = ""): Tool {
  return {
    name,
    description,
    inputSchema: { type: "object", ...inputSchema },
  } as Tool;
}

Deno.test("cleanToolSchema removes what local servers reject and keeps the structure", () => {
  const cleaned = cleanToolSchema({
    $schema: "http://json-schema.org/draft-07/schema#",
    type: "object",
    properties: {
      url: { type: "string", format: "uri", description: "Where to go" },
      when: { type: "string", format: "date-time" },
      tags: { type: "array", items: { type: "string", format: "email", $comment: "x" } },
      meta: { type: "object", additionalProperties: {} },
      nested: { type: "object", properties: { a: { type: "string", format: "hostname" } } },
    },
    required: [],
    additionalProperties: false,
  });
  assertEquals(cleaned, {
    type: "object",
    properties: {
      url: { type: "string", description: "Where to go (format: uri)" },
      when: { type: "string", format: "date-time" },
      tags: { type: "array", items: { type: "string", description: "(format: email)" } },
      meta: { type: "object", additionalProperties: true },
      nested: {
        type: "object",
        properties: { a: { type: "string", description: "(format: hostname)" } },
      },
    },
    additionalProperties: false,
  });
});

Deno.test("cleanToolSchema makes any input a top-level object schema with properties", () => {
  assertEquals(cleanToolSchema(undefined), { type: "object", properties: {} });
  assertEquals(cleanToolSchema({ type: "object" }), { type: "object", properties: {} });
  assertEquals(cleanToolSchema("nonsense"), { type: "object", properties: {} });
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

Deno.test("parseToolArguments", async (t) => {
  await t.step("accepts objects, JSON strings, empty and double-encoded arguments", () => {
    assertEquals(parseToolArguments({ a: 1 }), { ok: true, value: { a: 1 }, repaired: false });
    assertEquals(parseToolArguments('{"a":1}'), { ok: true, value: { a: 1 }, repaired: false });
    assertEquals(parseToolArguments(""), { ok: true, value: {}, repaired: false });
    assertEquals(parseToolArguments("null"), { ok: true, value: {}, repaired: false });
    assertEquals(parseToolArguments(JSON.stringify('{"a":1}')), {
      ok: true,
      value: { a: 1 },
      repaired: true,
    });
  });

  await t.step("repairs common near-JSON", () => {
    const cases: [string, unknown][] = [
      ['{"a": 1, "b": [1, 2,],}', { a: 1, b: [1, 2] }],
      ["{'path': 'notes.txt'}", { path: "notes.txt" }],
      ['{path: "x", depth: 2}', { path: "x", depth: 2 }],
      ['{"ok": True, "v": None}', { ok: true, v: null }],
      ['```json\n{"a": 1}\n```', { a: 1 }],
      ['{"path": "notes.txt", "opts": {"x": [1', { path: "notes.txt", opts: { x: [1] } }],
    ];
    for (const [text, value] of cases) {
      const parsed = parseToolArguments(text);
      assert(parsed.ok, `expected ${text} to parse`);
      assertEquals(parsed.value, value);
      assertEquals(parsed.repaired, true);
    }
  });

  await t.step("reports what is wrong with hopeless input", () => {
    const parsed = parseToolArguments("call it with the path please");
    assert(!parsed.ok);
    assertStringIncludes(parsed.error, "invalid JSON");
    const array = parseToolArguments("[1, 2]");
    assert(!array.ok);
    assertStringIncludes(array.error, "must be a JSON object, got an array");
  });
});

Deno.test("ArgumentValidator lists every problem with the arguments readably", () => {
  const validator = new ArgumentValidator();
  const schema = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: {
      path: { type: "string" },
      depth: { type: "integer" },
      url: { type: "string", format: "uri" },
      opts: { type: "object", properties: { mode: { type: "string", enum: ["a", "b"] } } },
    },
    required: ["path"],
  };
  assertEquals(validator.problems(schema, { path: "x", url: "not a uri" }), []);
  const problems = validator.problems(schema, { depth: "deep", opts: { mode: "c" } });
  assertEquals(problems.length, 3);
  assert(problems.some((p) => p.includes("must have required property 'path'")));
  assert(problems.some((p) => p.includes("arguments.depth must be integer")));
  assert(problems.some((p) => p.includes("arguments.opts.mode must be equal to one of")));
  assertEquals(validator.problems({ $ref: "https://example.com/remote.json" }, {}), []);
  assertEquals(
    describeParameters(schema),
    "path (string, required), depth (integer), url (string), opts (object)",
  );
});

Deno.test("recoverTextToolCalls", async (t) => {
  const known = new Set(["read_file", "create_entities"]);
  const isTool = (n: string) => known.has(n);

  await t.step("reads <tool_call> blocks (Qwen/Hermes)", () => {
    const r = recoverTextToolCalls(
      'Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.txt"}}\n</tool_call>',
      isTool,
    );
    assertEquals(r.calls, [{ name: "read_file", arguments: { path: "a.txt" } }]);
    assertEquals(r.text, "Let me look.");
  });

  await t.step("reads [TOOL_REQUEST] blocks (LM Studio default format)", () => {
    const r = recoverTextToolCalls(
      '[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "b.txt"}}[END_TOOL_REQUEST]',
      isTool,
    );
    assertEquals(r.calls, [{ name: "read_file", arguments: { path: "b.txt" } }]);
    assertEquals(r.text, "");
  });

  await t.step("reads fenced and bare JSON, several calls in order", () => {
    const r = recoverTextToolCalls(
      'First:\n```json\n{"name": "create_entities", "parameters": {"entities": []}}\n```\n' +
        'then {"function": {"name": "read_file", "arguments": "{\\"path\\": \\"c\\"}"}}',
      isTool,
    );
    assertEquals(r.calls, [
      { name: "create_entities", arguments: { entities: [] } },
      { name: "read_file", arguments: '{"path": "c"}' },
    ]);
    assertEquals(r.text, "First:\n\nthen");
  });

  await t.step("reads an unclosed <tool_call> at the end and a JSON list of calls", () => {
    const r = recoverTextToolCalls(
      '<tool_call>[{"name": "read_file", "arguments": {"path": "x"}}, ' +
        '{"name": "read_file", "arguments": {"path": "y"}}]',
      isTool,
    );
    assertEquals(r.calls.length, 2);
    assertEquals(r.calls[1], { name: "read_file", arguments: { path: "y" } });
  });

  await t.step("leaves JSON alone unless it names a real tool", () => {
    const text = 'The answer is {"name": "Alice", "arguments": {"age": 3}} as requested.';
    const r = recoverTextToolCalls(text, isTool);
    assertEquals(r.calls, []);
    assertEquals(r.text, text);
    assertEquals(recoverTextToolCalls("plain answer", isTool).calls, []);
  });

  await t.step("reads clear call envelopes even when they name no known tool", () => {
    const envelopes: [string, string][] = [
      ['<tool_call>{"name": "made_up", "arguments": {}}</tool_call>', ""],
      [
        'Checking.\n[TOOL_REQUEST]{"name": "made_up", "arguments": {"a": 1}}[END_TOOL_REQUEST]',
        "Checking.",
      ],
      ['{"name": "made_up", "arguments": {"a": 1}}', ""],
      ['```json\n{"name": "made_up", "arguments": {}}\n```', ""],
    ];
    for (const [text, rest] of envelopes) {
      const r = recoverTextToolCalls(text, isTool);
      assertEquals(r.calls.map((c) => c.name), ["made_up"], text);
      assertEquals(r.text, rest);
    }
  });

  await t.step("leaves prose with JSON in it alone, even JSON shaped like a call", () => {
    for (
      const text of [
        'Result: {"name": "Bob", "arguments": {"age": 3}}',
        '{"name": "Bob", "arguments": {"age": 3}, "id": 7}',
        'Here:\n```json\n{"name": "Bob", "arguments": {}}\n```\nThat is the record.',
      ]
    ) {
      const r = recoverTextToolCalls(text, isTool);
      assertEquals(r.calls, [], text);
      assertEquals(r.text, text);
    }
  });
});

Deno.test("stripThinking separates reasoning from the answer", () => {
  assertEquals(stripThinking("<think>hmm</think>\nThe answer."), {
    text: "The answer.",
    reasoning: "hmm",
  });
  assertEquals(stripThinking("pondering</think>Done"), { text: "Done", reasoning: "pondering" });
  assertEquals(stripThinking("Done<think>unfinished"), { text: "Done", reasoning: "unfinished" });
});

Deno.test("formatToolResult includes every content part", () => {
  const text = formatToolResult({
    content: [
      { type: "text", text: "first" },
      { type: "image", data: "A".repeat(4096), mimeType: "image/png" },
      {
        type: "resource",
        resource: { uri: "file:///a.txt", mimeType: "text/plain", text: "body" },
      },
      { type: "resource", resource: { uri: "file:///b.bin", blob: "AAAA" } },
      { type: "resource_link", uri: "file:///c", name: "c" },
      { type: "text", text: "last" },
    ],
  });
  assertEquals(
    text,
    [
      "first",
      "[image: image/png, 3.0 KB]",
      "[resource file:///a.txt, text/plain]\nbody",
      "[resource file:///b.bin, 3 B (binary, not shown)]",
      "[resource link c file:///c]",
      "last",
    ].join("\n"),
  );
  assertEquals(
    formatToolResult({ content: [], structuredContent: { n: 1 } }),
    '{"n":1}',
  );
  assertEquals(
    formatToolResult({ content: [{ type: "text", text: "no such file" }], isError: true }),
    "The tool reported an error:\nno such file",
  );
  assertEquals(formatToolResult({ content: [] }), "(the tool returned no content)");
});

Deno.test("truncateText keeps head and tail and says how much was cut", () => {
  const long = "a".repeat(5000) + "TAIL";
  const { text, cut } = truncateText(long, 1000);
  assert(text.length <= 1000 + 10, `length ${text.length}`);
  assert(text.startsWith("aaa"));
  assert(text.endsWith("TAIL"));
  assertStringIncludes(text, `truncated: ${cut} of 5004 characters`);
  assertEquals(truncateText("short", 1000), { text: "short", cut: 0 });
  assertEquals(estimateTokens("12345678"), 2);
});

Deno.test("stableStringify ignores key order", () => {
  assertEquals(stableStringify({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  assertEquals(stableStringify({ a: 1, b: 2 }), stableStringify({ b: 2, a: 1 }));
});
