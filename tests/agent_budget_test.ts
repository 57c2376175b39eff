import { fitConversation } from "../lib/agent_budget.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import { assertEquals, assertStringIncludes } from "./assert.ts";

Deno.test("fitConversation never drops the task or the last round and reports when it cannot fit", () => {
  const messages: ChatMessage[] = [
    { role: "system", content: "s" },
    { role: "user", content: "task ".repeat(100) },
    { role: "assistant", content: "", tool_calls: [] },
    { role: "tool", tool_call_id: "1", content: "x".repeat(4000) },
  ];
  assertEquals(fitConversation(messages, { budget: 10 }), false);
  assertEquals(messages[1]!.content, "task ".repeat(100));
  assertStringIncludes(String(messages[3]!.content), "truncated");
});
