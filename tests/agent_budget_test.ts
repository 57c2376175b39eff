import { fitConversation, planBudget } from "../lib/agent_budget.ts";
import type { ChatMessage, OpenAiTool } from "../lib/lmstudio_types.ts";
import { estimateTokens } from "../lib/tool_output.ts";
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

Deno.test("planBudget counts the tool definitions as their JSON, whether measured before or not", () => {
  const tools: OpenAiTool[] = ["a", "bb", "ccc"].map((name) => ({
    type: "function",
    function: { name, description: "d".repeat(name.length * 7), parameters: { type: "object" } },
  }));
  const messages: ChatMessage[] = [{ role: "system", content: "s" }];
  const expected = estimateTokens(JSON.stringify(tools));
  assertEquals(planBudget({ contextTokens: 8192, tools, messages }).toolTokens, expected);
  assertEquals(planBudget({ contextTokens: 8192, tools, messages }).toolTokens, expected);
  assertEquals(planBudget({ contextTokens: 8192, tools: [], messages }).toolTokens, 1);
});
