import { parseJsonOutput, statusAction } from "../lib/lms_output.ts";
import { assertEquals } from "./assert.ts";

Deno.test("instance statuses map to use, wait or reload", () => {
  assertEquals(statusAction("loaded"), "use");
  assertEquals(statusAction("IDLE"), "use");
  assertEquals(statusAction("processingPrompt"), "use");
  assertEquals(statusAction("loading"), "wait");
  assertEquals(statusAction("unloading"), "reload");
  assertEquals(statusAction("crashed"), "reload");
});

Deno.test("JSON output is found even after a stray line on stdout", () => {
  assertEquals(parseJsonOutput('[{"a":1}]\n'), [{ a: 1 }]);
  assertEquals(parseJsonOutput("Waking up LM Studio service...\n[1,2]"), [1, 2]);
});
