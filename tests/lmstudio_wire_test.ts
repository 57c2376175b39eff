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

Deno.test("splitReasoning matches tags in any case and keeps text between blocks", () => {
  assertEquals(splitReasoning("<THINK>hmm</Think>\nThe answer."), {
    content: "The answer.",
    reasoning: "hmm",
  });
  assertEquals(splitReasoning("a<think>x<think>y</think>b"), {
    content: "ab",
    reasoning: "x<think>y",
  });
  assertEquals(splitReasoning("Done<think>unfinished"), {
    content: "Done",
    reasoning: "unfinished",
  });
});

Deno.test("splitReasoning reads 80,000 unclosed think tags in one pass", () => {
  const reply = "answer " + "<think>".repeat(80_000);
  const split = splitReasoning(reply);
  assertEquals(split.content, "answer");
  assertEquals(split.reasoning?.length, "<think>".length * 79_999);
});
