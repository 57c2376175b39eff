import { splitReasoning } from "../lib/lmstudio_wire.ts";
import { assertEquals } from "./assert.ts";

Deno.test("splitReasoning handles several, unterminated and prompt-opened think blocks", () => {
  assertEquals(splitReasoning("<think>a</think>x<think>b</think>y"), {
    content: "xy",
    reasoning: "a\n\nb",
  });
  assertEquals(splitReasoning("plan it</think>\nThe answer"), {
    content: "The answer",
    reasoning: "plan it",
  });
  assertEquals(splitReasoning("Answer <think>half"), { content: "Answer", reasoning: "half" });
  assertEquals(splitReasoning("  plain  "), { content: "plain" });
  assertEquals(splitReasoning("<THINK></THINK>ok"), { content: "ok" });
});
