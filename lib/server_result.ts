/**
 * Shapes of the results of the bridge's own MCP tools, shared by every tool group (server_*.ts): a
 * text summary for the reading model, optional structured content, and failures as `isError`
 * results (never thrown at the client).
 */
import type { CallToolResult } from "./sdk.ts";
import { errorMessage } from "./errors.ts";
import { safeText, safeValue } from "./text.ts";

/**
 * `result` with {@linkcode safeText} applied to its text parts and structured content: text from
 * a model, a downstream server or a file reaches the client without terminal escape sequences.
 */
export function safeResult(result: CallToolResult): CallToolResult {
  const content = result.content.map((part) =>
    part.type === "text" ? { ...part, text: safeText(part.text) } : part
  );
  const structured = result.structuredContent;
  if (structured === undefined) return { ...result, content };
  const safe = safeValue(structured);
  return {
    ...result,
    content,
    structuredContent: typeof safe === "object" && safe !== null && !Array.isArray(safe)
      ? Object.fromEntries(Object.entries(safe))
      : structured,
  };
}

/** A successful result: human/model-readable text plus optional structured content. */
export function textResult(text: string, structured?: Record<string, unknown>): CallToolResult {
  return safeResult(
    structured === undefined
      ? { content: [{ type: "text", text }] }
      : { content: [{ type: "text", text }], structuredContent: structured },
  );
}

/** A failed result the calling model can read and act on. */
export function errorResult(error: unknown, context?: string): CallToolResult {
  const message = errorMessage(error);
  return safeResult({
    content: [{ type: "text", text: context ? `${context}: ${message}` : message }],
    isError: true,
  });
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

/** Annotations of a tool that only reads (lists, reports). */
export const READ_ONLY = {
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
} as const;

/**
 * Runs a tool body; a failure becomes an isError result, with `explain` given the first say on
 * what to tell the caller (it returns undefined to use the error's own message).
 */
export async function guarded(
  body: () => Promise<CallToolResult>,
  explain?: (error: unknown) => Promise<CallToolResult | undefined>,
): Promise<CallToolResult> {
  try {
    return safeResult(await body());
  } catch (error: unknown) {
    const explained = await explain?.(error);
    return explained === undefined ? errorResult(error) : safeResult(explained);
  }
}
