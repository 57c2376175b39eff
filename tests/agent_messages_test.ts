import {
  McpMessageError,
  promptChatMessages,
  samplingChatMessages,
} from "../lib/agent_messages.ts";
import { assertEquals, assertThrows } from "./assert.ts";

Deno.test("a prompt's messages become chat messages: texts as text, what chat cannot carry described", () => {
  assertEquals(
    promptChatMessages([
      { role: "user", content: { type: "text", text: "What's the weather in Paris?" } },
      { role: "assistant", content: { type: "text", text: "Let me look." } },
      {
        role: "user",
        content: {
          type: "resource",
          resource: { uri: "demo://notes/1", mimeType: "text/plain", text: "It rains." },
        },
      },
      { role: "user", content: { type: "audio", data: "AAAA", mimeType: "audio/wav" } },
      { role: "assistant", content: { type: "image", data: "AAAA", mimeType: "image/png" } },
    ]),
    [
      { role: "user", content: "What's the weather in Paris?" },
      { role: "assistant", content: "Let me look." },
      { role: "user", content: "[resource demo://notes/1, text/plain]\nIt rains." },
      { role: "user", content: "[audio: audio/wav, 3 B]" },
      // An assistant message cannot hold an image part.
      { role: "assistant", content: "[image: image/png, 3 B]" },
    ],
  );
});

Deno.test("an image in a user message becomes an image part beside its text", () => {
  assertEquals(
    samplingChatMessages({
      systemPrompt: "You describe images.",
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image", data: "iVBORw0K", mimeType: "image/png" },
        ],
      }],
    }),
    [
      { role: "system", content: "You describe images." },
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0K" } },
        ],
      },
    ],
  );
});

Deno.test("a sampling request with tool use is refused with why", () => {
  const error = assertThrows(
    () =>
      samplingChatMessages({
        messages: [{
          role: "assistant",
          content: { type: "tool_use", id: "1", name: "x", input: {} },
        }],
      }),
    McpMessageError,
  );
  assertEquals(
    error.message,
    "a message holds a tool_use block: the bridge answers sampling requests without tools " +
      "(it does not declare the sampling.tools capability)",
  );
});
