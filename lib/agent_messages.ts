/**
 * MCP messages as chat messages for LM Studio: the messages of a server's prompt (which start a
 * task, see `AgentOptions.prompt`) and of a server's sampling request (which the local model
 * answers, agent_sampling.ts). Texts stay text; an image in a user message becomes an image part
 * (a data URL); what a chat message cannot carry (audio, an image in an assistant message, an
 * embedded resource, a resource link) becomes text that says what it was, as tool results do
 * (tool_output.ts). Pure: no I/O.
 */
import type { ChatContentPart, ChatMessage } from "./lmstudio_types.ts";
import { isRecord } from "./json.ts";
import type { PromptMessage, SamplingMessage } from "./sdk.ts";
import { describePart } from "./tool_output.ts";
import { BridgeError } from "./errors.ts";

/** An MCP message the chat API cannot carry (tool use inside a sampling request). */
export class McpMessageError extends BridgeError<"unsupported"> {
  override name = "McpMessageError";
}

/** One content block of an MCP message as chat parts. */
function blockParts(block: unknown, role: "user" | "assistant"): ChatContentPart[] {
  if (!isRecord(block)) return [];
  if (block.type === "text") {
    return typeof block.text === "string" ? [{ type: "text", text: block.text }] : [];
  }
  if (
    block.type === "image" && role === "user" && typeof block.data === "string" &&
    typeof block.mimeType === "string"
  ) {
    return [{
      type: "image_url",
      image_url: { url: `data:${block.mimeType};base64,${block.data}` },
    }];
  }
  if (block.type === "tool_use" || block.type === "tool_result") {
    throw new McpMessageError(
      "unsupported",
      `a message holds a ${block.type} block: the bridge answers sampling requests without ` +
        "tools (it does not declare the sampling.tools capability)",
    );
  }
  // Audio, assistant images, embedded resources and links: described as text.
  const text = describePart(block);
  return text === "" ? [] : [{ type: "text", text }];
}

/**
 * One MCP message (content: one block or a list) as a chat message: plain text when it is only
 * text, else a list of parts (user messages with images).
 */
function chatMessage(role: "user" | "assistant", content: unknown): ChatMessage {
  const blocks = Array.isArray(content) ? content : [content];
  const parts = blocks.flatMap((b) => blockParts(b, role));
  if (parts.every((p) => p.type === "text")) {
    return { role, content: parts.map((p) => p.type === "text" ? p.text : "").join("\n") };
  }
  return { role, content: parts };
}

/** The messages of a server's prompt (`prompts/get`) as chat messages, in order. */
export function promptChatMessages(messages: readonly PromptMessage[]): ChatMessage[] {
  return messages.map((m) => chatMessage(m.role, m.content));
}

/**
 * The messages of a sampling request as chat messages: the server's system prompt first when it
 * gives one. Throws {@linkcode McpMessageError} for tool use, which the bridge does not offer.
 */
export function samplingChatMessages(
  o: { messages: readonly SamplingMessage[]; systemPrompt?: string },
): ChatMessage[] {
  const system: ChatMessage[] = o.systemPrompt?.trim()
    ? [{ role: "system", content: o.systemPrompt }]
    : [];
  return [...system, ...o.messages.map((m) => chatMessage(m.role, m.content))];
}
