/**
 * Shapes of MCP tool results shared by every tool module: a text summary for the reading model,
 * optional structured content, and failures as `isError` results (never thrown at the client).
 */
import type { CallToolResult } from "./sdk.ts";

/** A successful result: human/model-readable text plus optional structured content. */
export function textResult(text: string, structured?: Record<string, unknown>): CallToolResult {
  return structured === undefined
    ? { content: [{ type: "text", text }] }
    : { content: [{ type: "text", text }], structuredContent: structured };
}

/** The message of anything thrown, without a stack. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/** A failed result the calling model can read and act on. */
export function errorResult(error: unknown, context?: string): CallToolResult {
  const message = errorMessage(error);
  return {
    content: [{ type: "text", text: context ? `${context}: ${message}` : message }],
    isError: true,
  };
}

/**
 * What a tool shows instead of a model's empty answer: that it ran out of max_tokens (spent on
 * reasoning, when it reasoned) and to call again with more, or that the answer was just empty.
 */
export function emptyAnswerText(finishReason: string | undefined, reasoned: boolean): string {
  return finishReason === "length"
    ? "(The model produced no answer before reaching max_tokens" +
      (reasoned ? "; it spent them on reasoning" : "") + ". Call again with a larger max_tokens.)"
    : "(The model returned an empty answer.)";
}
