import { parseToolArguments, recoverTextToolCalls, TOO_DEEP } from "../lib/tool_calls.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

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

  await t.step(
    "refuses arguments nested deeper than 64 levels, as text, object or repaired",
    () => {
      const levels = 100_000;
      const text = `{"a":${"[".repeat(levels)}${"]".repeat(levels)}}`;
      assertEquals(parseToolArguments(text), { ok: false, error: TOO_DEEP });
      assertEquals(parseToolArguments(JSON.parse(text)), { ok: false, error: TOO_DEEP });
      assertEquals(parseToolArguments(JSON.stringify(text)), { ok: false, error: TOO_DEEP });
      // Truncated: the repair closes the brackets, and the depth is refused.
      assertEquals(parseToolArguments(`{"a":${"[".repeat(levels)}`), {
        ok: false,
        error: TOO_DEEP,
      });
      assertEquals(TOO_DEEP, "arguments nested too deeply (> 64 levels)");
      const within = `{"a":${"[".repeat(63)}${"]".repeat(63)}}`;
      assert(parseToolArguments(within).ok, "64 levels are accepted");
    },
  );

  await t.step("reports what is wrong with hopeless input", () => {
    const parsed = parseToolArguments("call it with the path please");
    assert(!parsed.ok);
    assertStringIncludes(parsed.error, "invalid JSON");
    const array = parseToolArguments("[1, 2]");
    assert(!array.ok);
    assertStringIncludes(array.error, "must be a JSON object, got an array");
  });
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

  await t.step("an answer without a JSON object holds no call, and is trimmed", () => {
    for (const text of ["  done \n", "<tool_call>read_file a.txt</tool_call>", "[TOOL_REQUEST]x"]) {
      assertEquals(recoverTextToolCalls(text, isTool), { calls: [], text: text.trim() });
    }
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
