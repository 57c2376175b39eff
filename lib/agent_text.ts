/**
 * Texts the autonomous loop writes: the system prompt that tells the model how to work, the short
 * JSON quoted in messages, and the summary of the work done that ends every answer the model did
 * not give itself (unfinished, cancelled, failed).
 */
import type { AgentResult, ToolCallRecord } from "./agent_types.ts";
import { shortJson } from "./text.ts";

/** The system message: the servers whose tools the model may call and how to work with them. */
export function systemPrompt(servers: readonly string[]): string {
  return [
    `You are an autonomous assistant working on a task. You can call tools of these MCP servers: ${
      servers.join(", ")
    }. The tools run locally on the user's machine.`,
    "Work step by step: call tools to gather information or make changes, read their results, " +
    "and continue until the task is done. If a tool returns an error, read it, fix the arguments " +
    "or try another way; do not repeat a failing call unchanged.",
    "When the task is done, reply with the final answer as plain text without calling a tool. " +
    "The caller sees only that answer, not the tool results, so make it complete.",
  ].join("\n");
}

/** "N tool calls: 1. name {args} -> ok ..." for answers that end without the model's own. */
export function workSummary(records: readonly ToolCallRecord[], lastText: string): string {
  const lines: string[] = [];
  if (records.length === 0) lines.push("No tool calls were made.");
  else {
    lines.push(`Tool calls made (${records.length}):`);
    const shown = records.slice(-30);
    if (records.length > shown.length) {
      lines.push(`  ... ${records.length - shown.length} earlier calls not listed`);
    }
    shown.forEach((r, i) => {
      const n = records.length - shown.length + i + 1;
      const outcome = r.ok ? "ok" : `failed: ${shortJson(r.error ?? "error", 160)}`;
      lines.push(`  ${n}. [round ${r.round}] ${r.name} ${shortJson(r.arguments)} -> ${outcome}`);
    });
  }
  if (lastText.trim() !== "") lines.push(`Last message from the model:\n${lastText.trim()}`);
  return lines.join("\n");
}

/** The result as the `run --json` document and the autonomous tools' structured content share it. */
export function agentResultJson(result: AgentResult): Record<string, unknown> {
  return {
    answer: result.answer,
    rounds: result.rounds,
    tool_calls: result.tool_calls,
    usage: result.usage,
    stopped_because: result.stopped_because,
    model: result.model,
    servers: result.servers,
    notes: result.notes,
    ...(result.error !== undefined ? { error: result.error } : {}),
  };
}
