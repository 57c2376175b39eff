import { parseToolArguments } from "../lib/tool_arguments.ts";
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

  await t.step("reports what is wrong with hopeless input", () => {
    const parsed = parseToolArguments("call it with the path please");
    assert(!parsed.ok);
    assertStringIncludes(parsed.error, "invalid JSON");
    const array = parseToolArguments("[1, 2]");
    assert(!array.ok);
    assertStringIncludes(array.error, "must be a JSON object, got an array");
  });
});
