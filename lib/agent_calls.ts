/**
 * The tool calls of one round of the autonomous loop: giving each a unique id and resolving its
 * name, echoing them in the assistant message, spotting a model that repeats itself, running the
 * calls in parallel (with progress and trace events), and recording their outcomes. Every failure
 * (unknown tool, unreadable arguments, arguments that do not match the schema, tool errors) becomes
 * text the model can act on. Progress goes through the loop's ProgressReporter (agent_progress.ts).
 */
import type { ApprovalGate } from "./agent_approval.ts";
import type { ProgressReporter } from "./agent_progress.ts";
import { runResourceTool } from "./agent_resources.ts";
import {
  type ServerRequestHandlers,
  type ToolCallRecord,
  type ToolHost,
  type ToolProgress,
} from "./agent_types.ts";
import { stableStringify } from "./json.ts";
import type { ChatMessage, RawToolCall } from "./lmstudio_types.ts";
import type { CallToolResult } from "./sdk.ts";
import { parseToolArguments, TOO_DEEP } from "./tool_calls.ts";
import type { CatalogEntry, ToolCatalog } from "./tool_catalog.ts";
import type { ToolOffer } from "./tool_demand.ts";
import { formatToolResult, truncateText } from "./tool_output.ts";
import { type ArgumentValidator, describeParameters } from "./tool_schema.ts";
import type { TraceSink } from "./agent_trace.ts";
import { errorMessage } from "./errors.ts";
import { clip, shortJson } from "./text.ts";
import { isAbort } from "./abort.ts";

/** The same call with the same arguments this many times in a row stops the loop. */
export const REPEAT_LIMIT = 3;

/** A call of the model, resolved against the catalog, arguments parsed. */
export interface PendingCall {
  id: string;
  name: string;
  rawArguments: string | Record<string, unknown>;
  entry: CatalogEntry | undefined;
  parsed: ReturnType<typeof parseToolArguments>;
}

/**
 * Gives every call an id that is unique in the conversation (`usedIds` holds those given so far);
 * the assistant message and the tool messages must carry the same ones.
 */
export function pendingCalls(
  calls: readonly RawToolCall[],
  o: { round: number; usedIds: Set<string>; catalog: ToolCatalog },
): PendingCall[] {
  const { round, usedIds, catalog } = o;
  return calls.map((call, i) => {
    let id = call.id?.trim() || `call_${round}_${i + 1}`;
    if (usedIds.has(id)) id = `call_${round}_${i + 1}_${usedIds.size}`;
    usedIds.add(id);
    const entry = catalog.resolve(call.name);
    return {
      id,
      name: entry?.name ?? call.name,
      rawArguments: call.arguments,
      entry,
      parsed: parseToolArguments(call.arguments),
    };
  });
}

/**
 * Characters of unreadable arguments kept: echoed back in the assistant message (the model sees
 * what it sent without a runaway text of 100,000 brackets filling the context window) and in the
 * records. The trace's response event has them whole.
 */
const UNREADABLE_CHARS = 2000;

/**
 * Unreadable arguments as text: the raw text, or an object the server sent (which may nest too
 * deeply for `JSON.stringify`'s callers downstream) in bounded stable JSON.
 */
function rawText(p: PendingCall): string {
  return typeof p.rawArguments === "string" ? p.rawArguments : stableStringify(p.rawArguments);
}

/** Unreadable arguments as kept: {@linkcode rawText}, cut to {@linkcode UNREADABLE_CHARS}. */
function unreadableText(p: PendingCall): string {
  return clip(rawText(p), UNREADABLE_CHARS);
}

/** The assistant message of a round: its text and the calls, arguments as JSON text. */
export function assistantMessage(text: string, pending: readonly PendingCall[]): ChatMessage {
  return {
    role: "assistant",
    content: text,
    tool_calls: pending.map((p) => ({
      id: p.id,
      type: "function",
      function: {
        name: p.name,
        arguments: p.parsed.ok ? JSON.stringify(p.parsed.value) : unreadableText(p),
      },
    })),
  };
}

/** Counts identical calls in a row, across rounds. */
export class RepeatGuard {
  #key = "";
  #count = 0;

  /** Counts `p`; true when it is the {@linkcode REPEAT_LIMIT}th identical call in a row. */
  repeated(p: PendingCall): boolean {
    // Parsed arguments are within MAX_JSON_DEPTH; unreadable ones are compared as text.
    const key = `${p.name} ${p.parsed.ok ? stableStringify(p.parsed.value) : rawText(p)}`;
    this.#count = key === this.#key ? this.#count + 1 : 1;
    this.#key = key;
    return this.#count >= REPEAT_LIMIT;
  }
}

/**
 * The arguments of `p` as the caller sees them (records, traces, the work summary): parsed, or
 * the raw text when unreadable (cut to {@linkcode UNREADABLE_CHARS}). Either serialises safely:
 * parsed arguments nest at most MAX_JSON_DEPTH levels, and an unreadable object is bounded text.
 */
export function callArguments(p: PendingCall): unknown {
  return p.parsed.ok ? p.parsed.value : unreadableText(p);
}

/** The record of one call, as the caller of the loop sees it. */
function callRecord(
  p: PendingCall,
  o: {
    round: number;
    ok: boolean;
    error?: string;
    durationMs: number;
    resultChars: number;
    truncatedChars?: number;
    recovered?: boolean;
  },
): ToolCallRecord {
  return {
    round: o.round,
    name: p.name,
    ...(p.entry ? { server: p.entry.server, tool: p.entry.tool } : {}),
    arguments: callArguments(p),
    ok: o.ok,
    ...(o.error !== undefined ? { error: o.error } : {}),
    duration_ms: o.durationMs,
    result_chars: o.resultChars,
    ...(o.truncatedChars ? { truncated_chars: o.truncatedChars } : {}),
    ...(o.recovered ? { recovered_from_text: true } : {}),
  };
}

/**
 * What running a call needs: catalog, validator, the task's approvals, MCP host, signal and
 * per-call timeout.
 */
export interface ExecuteContext {
  catalog: ToolCatalog;
  validator: ArgumentValidator;
  approvals: ApprovalGate;
  host: ToolHost;
  signal: AbortSignal;
  timeoutMs?: number;
  /** Answers the requests the server sends while the call of `entry` in `round` runs. */
  serverRequests?: (entry: CatalogEntry, round: number) => ServerRequestHandlers;
  /** The tools sent: runs `load_tools` calls and loads the tools called (tool_demand.ts). */
  offer?: ToolOffer;
}

/**
 * Runs one call once its arguments are read and valid and the approvals let it; every failure
 * and refusal becomes text the model can act on. Only an abort rejects. The tool's own progress
 * notifications go to `onProgress`; `onAsk` and `onAnswer` frame asking the user to approve it.
 */
async function executeCall(
  p: PendingCall,
  ctx: ExecuteContext,
  o: {
    round: number;
    onProgress: (p: ToolProgress) => void;
    onAsk: () => void;
    onAnswer: () => void;
  },
): Promise<{ text: string; ok: boolean; error?: string }> {
  const offer = ctx.offer;
  if (!p.entry && offer?.loadName !== undefined && p.name === offer.loadName) {
    if (p.parsed.ok) return offer.load(p.parsed.value, o.round);
    return {
      ok: false,
      error: `arguments are not a JSON object: ${p.parsed.error}`,
      text: `Error: the arguments for ${p.name} could not be read: ${p.parsed.error}. Send ` +
        'them as one JSON object, e.g. {"names": ["a_tool"]}.',
    };
  }
  if (!p.entry) {
    const error = `there is no tool named "${p.name}"`;
    return {
      ok: false,
      error,
      text: `Error: ${error}. Available tools: ${ctx.catalog.names.join(", ")}. ` +
        "Call one of these by its exact name.",
    };
  }
  // Called without loading it first, a tool is loaded: its definition is sent from now on.
  offer?.touch(p.entry, o.round);
  const schema = p.entry.inputSchema;
  // Only the error texts below need the summary.
  const parameters = () => describeParameters(schema);
  if (!p.parsed.ok) {
    const raw = rawText(p);
    const tooDeep = p.parsed.error === TOO_DEEP;
    const error = tooDeep ? TOO_DEEP : `arguments are not a JSON object: ${p.parsed.error}`;
    const fix = tooDeep
      ? "Send the arguments as one JSON object with far less nesting"
      : "Send the arguments as one JSON object";
    return {
      ok: false,
      error,
      text: `Error: the arguments for ${p.name} could not be read: ${p.parsed.error}. You sent: ${
        shortJson(raw, 500)
      }\n${fix}. Parameters: ${parameters()}. Call the tool again with corrected arguments.`,
    };
  }
  const problems = ctx.validator.problems(schema, p.parsed.value);
  if (problems.length > 0) {
    return {
      ok: false,
      error: `arguments do not match the schema: ${problems.join("; ")}`,
      text: `Error: the arguments for ${p.name} do not match its input schema:\n${
        problems.map((m) => `- ${m}`).join("\n")
      }\nParameters: ${parameters()}. Call the tool again with corrected arguments.`,
    };
  }
  // Decided on the catalog entry the name resolved to, never on the name the model wrote.
  const refusal = await ctx.approvals.check({
    entry: p.entry,
    args: p.parsed.value,
    round: o.round,
    signal: ctx.signal,
    onAsk: o.onAsk,
    onAnswer: o.onAnswer,
  });
  if (refusal !== undefined) return { ok: false, ...refusal };
  if (p.entry.resourceTool !== undefined) {
    return await runResourceTool(ctx.host, {
      server: p.entry.server,
      tool: p.entry.resourceTool,
      args: p.parsed.value,
    }, ctx.signal);
  }
  let result: CallToolResult;
  try {
    result = await ctx.host.callTool(p.entry.server, p.entry.tool, p.parsed.value, {
      origin: "model",
      readOnly: p.entry.readOnly,
      signal: ctx.signal,
      ...(ctx.timeoutMs !== undefined ? { timeoutMs: ctx.timeoutMs } : {}),
      onProgress: o.onProgress,
      ...(ctx.serverRequests !== undefined
        ? { onServerRequest: ctx.serverRequests(p.entry, o.round) }
        : {}),
    });
  } catch (error: unknown) {
    if (isAbort(error, ctx.signal)) throw error;
    const message = errorMessage(error);
    return {
      ok: false,
      error: message,
      text: `Error: calling ${p.name} failed: ${message}\n` +
        "You may retry once, try different arguments or another tool, or explain the problem " +
        "in your final answer.",
    };
  }
  const text = formatToolResult(result);
  if (result.isError === true) return { ok: false, error: shortJson(text, 300), text };
  return { ok: true, text };
}

/** A number as progress text: at most two decimals. */
function amount(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/** "3/6 message" (or "3 message") for a downstream tool's progress notification. */
function toolProgressText(p: ToolProgress): string {
  const count = p.total !== undefined
    ? `${amount(p.progress)}/${amount(p.total)}`
    : amount(p.progress);
  const message = p.message?.trim();
  return message ? `${count} ${message}` : count;
}

/** What {@linkcode runCalls} returns: records, result texts, and why it stopped early. */
export interface RoundOutcome {
  /** In call order; calls that did not finish are recorded as "cancelled". */
  records: ToolCallRecord[];
  /** The result text of each call, cut to `maxChars`, in call order. */
  contents: string[];
  /** Set when the round did not finish (an abort, or an unexpected failure). */
  failed?: { error: unknown };
}

/**
 * Runs the calls of a round in parallel, each result cut to `maxChars`, writing trace events and
 * reporting progress: each call as it starts, each progress notification of a tool as a small
 * step ("round 2/9: filesystem__x: 3/6 copying"), and a heartbeat naming the calls still running
 * whenever `heartbeatMs` pass without another event, so a caller that resets its timeout on
 * progress waits for a long tool. Never rejects: a round cut short by an abort says so in `failed`.
 */
export async function runCalls(
  pending: readonly PendingCall[],
  o: {
    round: number;
    maxRounds: number;
    /** The calls were printed as text by the model and recovered. */
    recovered: boolean;
    maxChars: number;
    execute: ExecuteContext;
    progress: ProgressReporter;
    /** Longest silence while tools run, in milliseconds. */
    heartbeatMs: number;
    trace?: TraceSink;
    now: () => number;
  },
): Promise<RoundOutcome> {
  const { round, progress, trace, now } = o;
  const prefix = `round ${round}/${o.maxRounds}:`;
  const outcomes = pending.map(() => undefined as ToolCallRecord | undefined);
  const contents: string[] = pending.map(() => "");
  const running = new Map<number, string>();
  const started = now();
  const runOne = async (p: PendingCall, index: number): Promise<void> => {
    const begun = now();
    running.set(index, p.name);
    progress.report(
      round - 1 + (index + 1) / (pending.length + 1),
      round,
      `${prefix} calling ${p.name}`,
      p.name,
    );
    trace?.write({
      type: "tool_call",
      round,
      id: p.id,
      name: p.name,
      server: p.entry?.server,
      tool: p.entry?.tool,
      arguments: callArguments(p),
    });
    const relay = (tp: ToolProgress) => {
      // A notification that arrives after the call ended says nothing new.
      if (running.has(index)) {
        progress.bump(round, `${prefix} ${p.name}: ${toolProgressText(tp)}`, p.name);
      }
    };
    const asking = {
      onAsk: () => {
        running.set(index, `${p.name} (waiting for approval)`);
        progress.bump(round, `${prefix} asking to approve ${p.name}`, p.name);
      },
      onAnswer: () => running.set(index, p.name),
    };
    let executed: Awaited<ReturnType<typeof executeCall>>;
    try {
      executed = await executeCall(p, o.execute, { round, onProgress: relay, ...asking });
    } finally {
      running.delete(index);
    }
    const { text: content, ok, error } = executed;
    const cut = truncateText(content, o.maxChars);
    contents[index] = cut.text;
    const ms = Math.round(now() - begun);
    outcomes[index] = callRecord(p, {
      round,
      ok,
      ...(error !== undefined ? { error } : {}),
      durationMs: ms,
      resultChars: content.length,
      truncatedChars: cut.cut,
      recovered: o.recovered,
    });
    trace?.write({ type: "tool_result", round, id: p.id, ms, ok, error, content: cut.text });
  };
  const stopHeartbeat = progress.heartbeat({
    round,
    everyMs: o.heartbeatMs,
    describe: () => {
      const names = [...running.values()];
      const waited = ((now() - started) / 1000).toFixed(0);
      const what = names.length === 1
        ? names[0]
        : `${names.length} tool calls (${names.join(", ")})`;
      return `${prefix} still running ${what} (${waited} s)`;
    },
  });
  try {
    // The host stops a call on the signal: an abort rejects here as soon as a call sees it.
    await Promise.all(pending.map(runOne));
  } catch (error: unknown) {
    const records = pending.map((p, i) =>
      outcomes[i] ??
        callRecord(p, { round, ok: false, error: "cancelled", durationMs: 0, resultChars: 0 })
    );
    return { records, contents, failed: { error } };
  } finally {
    stopHeartbeat();
  }
  return { records: outcomes.map((r) => r!), contents };
}
