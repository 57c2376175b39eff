import { stableStringify } from "../lib/json.ts";
import { assertEquals } from "./assert.ts";

Deno.test("stableStringify ignores key order", () => {
  assertEquals(stableStringify({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  assertEquals(stableStringify({ a: 1, b: 2 }), stableStringify({ b: 2, a: 1 }));
});
