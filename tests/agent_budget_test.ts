import { conversationTokens, fitConversation, planBudget } from "../lib/agent_budget.ts";
import type { ChatMessage, OpenAiTool } from "../lib/lmstudio_types.ts";
import { estimateTokens } from "../lib/tool_output.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

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

Deno.test("a conversation counted every round counts the same as counted afresh", () => {
  const messages: ChatMessage[] = [
    { role: "system", content: "Work step by step." },
    { role: "user", content: "Find the notes." },
  ];
  const afresh = () => conversationTokens([...messages]);
  assertEquals(conversationTokens(messages), afresh());
  for (let round = 1; round <= 5; round++) {
    messages.push({
      role: "assistant",
      content: "",
      tool_calls: [{
        id: `c${round}`,
        type: "function",
        function: { name: "search", arguments: `{"q":"${"x".repeat(round * 10)}"}` },
      }],
    });
    messages.push({ role: "tool", tool_call_id: `c${round}`, content: "y".repeat(round * 100) });
    assertEquals(conversationTokens(messages), afresh(), `round ${round}`);
  }
  // Condensing replaces a message: the count follows.
  const before = conversationTokens(messages);
  assert(fitConversation(messages, { budget: before - 20 }));
  assertEquals(conversationTokens(messages), afresh());
  assert(conversationTokens(messages) < before);
  messages.splice(3, 2);
  assertEquals(conversationTokens(messages), afresh());
});
