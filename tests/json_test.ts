import { nestedDeeperThan, stableStringify, TOO_DEEP_MARK } from "../lib/json.ts";
import { assert, assertEquals } from "./assert.ts";

/** `levels` nested arrays around 1: `[[...[1]...]]`, parsed. */
function deepArray(levels: number): unknown {
  return JSON.parse(`${"[".repeat(levels)}1${"]".repeat(levels)}`);
}

Deno.test("stableStringify ignores key order", () => {
  assertEquals(stableStringify({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  assertEquals(stableStringify({ a: 1, b: 2 }), stableStringify({ b: 2, a: 1 }));
});

Deno.test("stableStringify writes values nested too deeply as a mark instead of overflowing the stack", () => {
  const text = stableStringify(deepArray(100_000));
  assert(text.startsWith("[".repeat(64) + TOO_DEEP_MARK), text.slice(0, 80));
  assertEquals(stableStringify({ a: { b: [1] } }, 2), `{"a":{"b":${TOO_DEEP_MARK}}}`);
});

Deno.test("nestedDeeperThan measures any depth without recursion", () => {
  assertEquals(nestedDeeperThan(deepArray(100_000), 64), true);
  assertEquals(nestedDeeperThan(deepArray(64), 64), false);
  assertEquals(nestedDeeperThan(deepArray(65), 64), true);
  assertEquals(nestedDeeperThan({ a: [], b: { c: {} } }, 3), false);
  assertEquals(nestedDeeperThan({ a: [], b: { c: {} } }, 2), true);
  assertEquals(nestedDeeperThan("text", 0), false);
});
