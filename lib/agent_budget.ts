/**
 * The context budget of the autonomous loop: how the model's context window (read in
 * agent_setup.ts) is shared between tool definitions, the conversation and the reply, how much room
 * each tool result gets, and how the conversation is condensed to stay inside it. Pure arithmetic:
 * no I/O. Tokens are estimated as characters / 4.
 */
import type { ChatMessage, OpenAiTool } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import { CHARS_PER_TOKEN, estimateTokens, truncateText } from "./tool_output.ts";

/** Context window assumed when neither the caller nor the server says. */
export const DEFAULT_CONTEXT_TOKENS = 8192;
/** Smallest room a single tool result gets, in tokens. */
const MIN_RESULT_TOKENS = 256;
/** Tokens added per message for role markers and separators. */
const MESSAGE_OVERHEAD_TOKENS = 4;

function messageTokens(message: ChatMessage): number {
  let chars = 0;
  if (typeof message.content === "string") chars += message.content.length;
  else if (Array.isArray(message.content)) {
    for (const part of message.content) {
      chars += part.type === "text" ? part.text.length : 1000; // images: a flat guess
    }
  }
  for (const call of message.tool_calls ?? []) {
    chars += call.function.name.length + call.function.arguments.length + 20;
  }
  return Math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS;
}

/**
 * The last count of each conversation counted: its messages then and their tokens. The loop
 * counts its conversation every round; only the messages added or replaced since are counted
 * again (a message is never changed in place: a condensed one is a new object).
 */
const counted = new WeakMap<readonly ChatMessage[], { messages: ChatMessage[]; tokens: number }>();

/** Estimated tokens of a conversation, message overhead included. */
export function conversationTokens(messages: readonly ChatMessage[]): number {
  const kept = counted.get(messages);
  let same = 0;
  let tokens = 0;
  if (kept !== undefined && kept.messages.length <= messages.length) {
    while (same < kept.messages.length && kept.messages[same] === messages[same]) same++;
    if (same === kept.messages.length) tokens = kept.tokens;
    else same = 0;
  }
  for (let i = same; i < messages.length; i++) tokens += messageTokens(messages[i]!);
  counted.set(messages, { messages: messages.slice(), tokens });
  return tokens;
}

/** How a context window is shared, in tokens. */
export interface Budget {
  /** The whole context window. */
  contextTokens: number;
  /** The tool definitions. */
  toolTokens: number;
  /** Kept for the reply: max_tokens, or a quarter of the window up to 4096. */
  replyReserve: number;
  /** What the prompt (tools and conversation) may use. */
  promptBudget: number;
  /** The tools, the system message and the task: what every request carries. */
  fixedTokens: number;
}

/** JSON characters of each tool definition; definitions are made once per tool-list version. */
const definitionChars = new WeakMap<OpenAiTool, number>();

/** Estimated tokens of `tools` as JSON, each definition measured once. */
export function toolsTokens(tools: readonly OpenAiTool[]): number {
  // `[a,b]`: the brackets and the commas between the definitions.
  let chars = 2 + Math.max(0, tools.length - 1);
  for (const tool of tools) {
    let n = definitionChars.get(tool);
    if (n === undefined) {
      n = JSON.stringify(tool).length;
      definitionChars.set(tool, n);
    }
    chars += n;
  }
  return Math.ceil(chars / CHARS_PER_TOKEN);
}

/**
 * Shares `contextTokens` between the `tools`, the starting `messages` and the reply. With
 * `toolReserve`, the tools get at least that many tokens (tools sent on demand grow to it).
 */
export function planBudget(o: {
  contextTokens: number;
  maxTokens?: number;
  tools: readonly OpenAiTool[];
  messages: readonly ChatMessage[];
  toolReserve?: number;
}): Budget {
  const toolTokens = Math.max(toolsTokens(o.tools), o.toolReserve ?? 0);
  const replyReserve = o.maxTokens ?? Math.min(4096, Math.floor(o.contextTokens / 4));
  return {
    contextTokens: o.contextTokens,
    toolTokens,
    replyReserve,
    promptBudget: o.contextTokens - replyReserve,
    fixedTokens: toolTokens + conversationTokens(o.messages),
  };
}

/**
 * Why a task whose tool definitions do not fit was not started, naming the largest tools; with
 * `onDemand`, why even the catalogue of the tools sent on demand (tool_demand.ts) does not.
 */
export function toolOverflowMessage(
  budget: Budget,
  tools: readonly OpenAiTool[],
  onDemand?: { tools: number },
): string {
  if (onDemand !== undefined) {
    return `The task was not started: even sent on demand, the catalogue of ${onDemand.tools} ` +
      `tools and the room for the tools the model loads need about ${budget.toolTokens} ` +
      `tokens, and with the task that is more than the ${budget.promptBudget} tokens the ` +
      `model's context window (${budget.contextTokens} tokens, ${budget.replyReserve} kept for ` +
      "the reply) leaves for the conversation. Offer fewer tools with allowed_tools, pick fewer " +
      "servers, lower tools_on_demand.share in lmstudio-bridge.json, or load the model with a " +
      "larger context length.";
  }
  const biggest = [...tools]
    .map((t) => ({ name: t.function.name, tokens: estimateTokens(JSON.stringify(t)) }))
    .sort((a, b) => b.tokens - a.tokens)
    .slice(0, 5)
    .map((t) => `${t.name} (~${t.tokens})`)
    .join(", ");
  return `The task was not started: the definitions of ${tools.length} tools need about ` +
    `${budget.toolTokens} tokens, and with the task that is more than the ` +
    `${budget.promptBudget} tokens the model's context window (${budget.contextTokens} tokens, ` +
    `${budget.replyReserve} kept for the reply) leaves for the conversation. Offer fewer tools ` +
    `with allowed_tools (the largest: ${biggest}), pick fewer servers, or load the model with a ` +
    "larger context length.";
}

/**
 * Characters each result of a round of `calls` tool calls may keep: half of what the conversation
 * may use, shared by the calls of the round. Older results are condensed before the next request
 * if need be.
 */
export function resultChars(budget: Budget, calls: number): number {
  return Math.max(
    MIN_RESULT_TOKENS,
    Math.floor((budget.promptBudget - budget.fixedTokens) * 0.5 / calls),
  ) * CHARS_PER_TOKEN;
}

/**
 * Keeps the conversation under `budget` tokens: condenses the oldest tool results first, then the
 * text of old assistant messages, then truncates the last round's results. The system message, the
 * task and the last round's calls are never removed. Returns false when it still cannot fit.
 */
export function fitConversation(
  messages: ChatMessage[],
  options: { budget: number; log?: Logger },
): boolean {
  let total = conversationTokens(messages);
  if (total <= options.budget) return true;
  let lastAssistant = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]!.role === "assistant") {
      lastAssistant = i;
      break;
    }
  }
  const condense = (i: number, replacement: string) => {
    const before = messageTokens(messages[i]!);
    messages[i] = { ...messages[i]!, content: replacement };
    total += messageTokens(messages[i]!) - before;
  };
  // 1. Oldest tool results first (everything before the last round).
  for (let i = 2; i < lastAssistant && total > options.budget; i++) {
    const m = messages[i]!;
    if (m.role !== "tool" || typeof m.content !== "string" || m.content.startsWith("[condensed")) {
      continue;
    }
    condense(
      i,
      `[condensed: this earlier result of ${
        m.name ?? "the tool"
      } (${m.content.length} characters) ` +
        "was removed to fit the context window; call the tool again if you need it]",
    );
  }
  // 2. Long texts of old assistant messages.
  for (let i = 2; i < lastAssistant && total > options.budget; i++) {
    const m = messages[i]!;
    if (m.role !== "assistant" || typeof m.content !== "string" || m.content.length <= 200) {
      continue;
    }
    condense(i, `${m.content.slice(0, 150)}… [condensed]`);
  }
  // 3. The last round's results, cut evenly.
  if (total > options.budget && lastAssistant >= 0) {
    const tail = messages.map((m, i) => ({ m, i }))
      .filter(({ m, i }) =>
        i > lastAssistant && m.role === "tool" && typeof m.content === "string"
      );
    if (tail.length > 0) {
      const over = total - options.budget;
      for (const { m, i } of tail) {
        const content = m.content as string;
        const keep = Math.max(
          400,
          content.length - Math.ceil(over * CHARS_PER_TOKEN / tail.length) - 200,
        );
        condense(i, truncateText(content, keep).text);
      }
    }
  }
  options.log?.debug("condensed the conversation", { tokens: total, budget: options.budget });
  return total <= options.budget;
}
