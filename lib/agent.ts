/**
 * The autonomous loop: hands a task to the local model together with the tools of MCP servers,
 * runs the tool calls it asks for (in parallel within a round), feeds the results back and stops
 * with an answer, at `max_rounds`, on a repeated call loop, on cancellation, at a time budget or
 * when the context window cannot hold the tools.
 *
 * Everything the model gets wrong (bad JSON, arguments that do not match the schema, unknown tool
 * names, tool errors, timeouts) goes back to it as a tool result it can act on; model output never
 * crashes the loop. The conversation is kept inside the model's context window by truncating large
 * tool results and condensing the oldest ones first (tokens estimated as characters / 4).
 */
import type { ConfigSource } from "./config.ts";
import type { LmStudioClient } from "./lmstudio.ts";
import type { ChatMessage, ChatRequest, ChatResult, Usage } from "./lmstudio_types.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { isBridgeEntry, type ServerEntry } from "./server_entry.ts";
import { errorMessage } from "./tool_result.ts";
import {
  ArgumentValidator,
  type CatalogEntry,
  CHARS_PER_TOKEN,
  describeParameters,
  estimateTokens,
  formatToolResult,
  parseToolArguments,
  recoverTextToolCalls,
  stableStringify,
  stripThinking,
  ToolCatalog,
  truncateText,
} from "./tool_calls.ts";
import type { CallToolResult, Tool } from "./sdk.ts";
import type { TraceSink } from "./trace.ts";
import { raceAbort } from "./abort.ts";

/** What the loop needs from the MCP pool; {@linkcode McpPool} satisfies it structurally. */
export interface ToolHost {
  listTools(server: string, options?: { signal?: AbortSignal }): Promise<Tool[]>;
  callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<CallToolResult>;
}

/** What the loop needs from the LM Studio client. */
export type AgentLmClient = Pick<LmStudioClient, "chat" | "resolveModel" | "listModels">;
/** What the loop needs from the MCP config. */
export type AgentConfig = Pick<ConfigSource, "current" | "get">;
/** What the loop needs from the model manager (optional); ModelManager satisfies it. */
export interface AgentModels {
  ensureLoaded(model: string, options?: { signal?: AbortSignal }): Promise<{ note?: string }>;
}

/** Why the loop stopped. */
export type StopReason =
  | "answer"
  | "max_rounds"
  | "repeated_call"
  | "cancelled"
  | "time_budget"
  | "context_overflow"
  | "error";

/** One tool call the model made, as the caller of the loop sees it. */
export interface ToolCallRecord {
  round: number;
  /** The name the model used. */
  name: string;
  /** The server and tool it mapped to (absent for unknown names). */
  server?: string;
  tool?: string;
  /** Parsed arguments, or the raw text when it was not valid JSON. */
  arguments: unknown;
  ok: boolean;
  /** Why the call failed (bad arguments, unknown tool, tool error, timeout...). */
  error?: string;
  duration_ms: number;
  /** Characters of the result text before truncation. */
  result_chars: number;
  /** Characters cut from the result to fit the context window. */
  truncated_chars?: number;
  /** The call was printed as text by the model and recovered. */
  recovered_from_text?: boolean;
}

/** The outcome of {@linkcode runAgent}. */
export interface AgentResult {
  answer: string;
  rounds: number;
  tool_calls: ToolCallRecord[];
  usage: Usage;
  stopped_because: StopReason;
  model: string;
  /** Servers whose tools were offered. */
  servers: string[];
  /** The context window assumed, in tokens. */
  context_tokens: number;
  /** Things the caller should know (skipped servers, assumed context length, ...). */
  notes: string[];
  /** The failure behind `stopped_because: "error"`. */
  error?: string;
}

/** A progress event: `progress` increases strictly; `total` is max_rounds. */
export interface AgentProgress {
  progress: number;
  total: number;
  message: string;
  round: number;
  /** The tool being called, for tool events. */
  tool?: string;
  elapsedMs: number;
  usage: Usage;
}

/** Services the loop uses. */
export interface AgentDeps {
  client: AgentLmClient;
  pool: ToolHost;
  config: AgentConfig;
  models?: AgentModels;
  log?: Logger;
  /** Clock in milliseconds (default performance.now). */
  now?: () => number;
}

/** Options of {@linkcode runAgent}. */
export interface AgentOptions {
  task: string;
  /** Server names, or "all" for every enabled usable server except the bridge itself. */
  servers: readonly string[] | "all";
  model?: string;
  /** Model used when `model` is not given (settings.defaultModel). */
  defaultModel?: string;
  /** Default {@linkcode DEFAULT_MAX_ROUNDS}. */
  maxRounds?: number;
  /** Limit of each model reply. */
  maxTokens?: number;
  temperature?: number;
  /** Glob patterns (`*`, `?`) over raw or `server__tool` names. */
  allowedTools?: readonly string[];
  /** Overall time budget in milliseconds. */
  timeBudgetMs?: number;
  /** Per tool call timeout (the pool's default otherwise). */
  toolTimeoutMs?: number;
  /** Sent as `ttl` with each request so a JIT-loaded model stays loaded between rounds. */
  ttlSeconds?: number;
  /** Context window assumed when the server does not tell (settings.defaultContextLength). */
  defaultContextLength?: number;
  /** Nesting depth of this bridge (settings.depth); 2 or more refuses to run. */
  depth?: number;
  signal?: AbortSignal;
  onProgress?: (event: AgentProgress) => void;
  /** Heartbeat interval during long model generations (default 10 s). */
  heartbeatMs?: number;
  trace?: TraceSink;
  deps: AgentDeps;
}

/** Rounds allowed when the caller does not say. */
export const DEFAULT_MAX_ROUNDS = 100;
/** Depth at which a bridge refuses autonomous tools. */
export const MAX_DEPTH = 2;
/** The same call with the same arguments this many times in a row stops the loop. */
export const REPEAT_LIMIT = 3;
const DEFAULT_HEARTBEAT_MS = 10_000;
/** Smallest room a single tool result gets, in tokens. */
const MIN_RESULT_TOKENS = 256;
/** Tokens added per message for role markers and separators. */
const MESSAGE_OVERHEAD_TOKENS = 4;

/** Why a task could not start: recursion, unknown servers, no tools... The message says what to do. */
export class AgentError extends Error {
  override name = "AgentError";
  readonly kind: "recursion" | "servers" | "tools";
  constructor(kind: AgentError["kind"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

function emptyUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
}

function isAbort(error: unknown, signal: AbortSignal): boolean {
  if (signal.aborted) return true;
  return error instanceof Error && (error.name === "AbortError" ||
    (error as { kind?: unknown }).kind === "aborted");
}

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

function conversationTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((sum, m) => sum + messageTokens(m), 0);
}

function systemPrompt(servers: readonly string[]): string {
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

function shortJson(value: unknown, max = 200): string {
  const text = typeof value === "string" ? value : stableStringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** "N tool calls: 1. name {args} -> ok ..." for answers that end without the model's own. */
function workSummary(records: readonly ToolCallRecord[], lastText: string): string {
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

interface ResolvedServers {
  names: string[];
  notes: string[];
}

async function resolveServers(
  selection: readonly string[] | "all",
  config: AgentConfig,
): Promise<ResolvedServers> {
  if (selection === "all") {
    const current = await config.current();
    const notes: string[] = [];
    if (current.error) {
      notes.push(`MCP config problem (using the last good config): ${current.error}`);
    }
    const usable: ServerEntry[] = [];
    for (const entry of current.servers) {
      if (entry.disabled) continue;
      if (isBridgeEntry(entry)) {
        notes.push(`skipped "${entry.name}": it launches this bridge (recursion guard)`);
      } else if (entry.problem !== undefined) {
        notes.push(`skipped "${entry.name}": ${entry.problem}`);
      } else usable.push(entry);
    }
    if (usable.length === 0) {
      const where = current.path
        ? `in ${current.path}`
        : `(no MCP config file found; searched ${current.searched.join(", ")})`;
      throw new AgentError(
        "servers",
        `No usable MCP servers ${where}${notes.length ? `: ${notes.join("; ")}` : ""}. ` +
          "Add servers under mcpServers in .mcp.json (or set MCP_JSON_PATH), then try again.",
      );
    }
    return { names: usable.map((e) => e.name), notes };
  }
  const names = [...new Set(selection.map((s) => s.trim()).filter((s) => s !== ""))];
  if (names.length === 0) {
    throw new AgentError("servers", "No MCP server named: give at least one server name.");
  }
  const problems: string[] = [];
  for (const name of names) {
    try {
      await config.get(name);
    } catch (error: unknown) {
      problems.push(errorMessage(error));
    }
  }
  if (problems.length > 0) throw new AgentError("servers", problems.join("\n"));
  return { names, notes: [] };
}

/** Monotonic progress: every value is larger than the one before. */
class ProgressReporter {
  #last = -1;
  #sink: ((event: AgentProgress) => void) | undefined;
  #total: number;
  #info: () => { elapsedMs: number; usage: Usage };
  #log: Logger;

  constructor(
    sink: ((event: AgentProgress) => void) | undefined,
    total: number,
    info: () => { elapsedMs: number; usage: Usage },
    log: Logger,
  ) {
    this.#sink = sink;
    this.#total = total;
    this.#info = info;
    this.#log = log;
  }

  report(target: number, round: number, message: string, tool?: string): void {
    if (!this.#sink) return;
    const value = Math.round(Math.max(target, this.#last + 0.001) * 1000) / 1000;
    this.#last = value;
    try {
      this.#sink({ progress: value, total: this.#total, message, round, tool, ...this.#info() });
    } catch (error: unknown) {
      // A broken progress consumer must not stop the task.
      this.#log.debug("progress callback failed", { error: errorMessage(error) });
    }
  }

  /** A small step forward (heartbeats). */
  bump(round: number, message: string): void {
    this.report(this.#last + 0.001, round, message);
  }
}

interface PendingCall {
  id: string;
  name: string;
  rawArguments: string | Record<string, unknown>;
  entry: CatalogEntry | undefined;
  parsed: ReturnType<typeof parseToolArguments>;
}

/**
 * Runs a task to the end. Problems found before the first model request (recursion guard, unknown
 * or disabled servers, servers that fail to start, no tools left after `allowedTools`, no model)
 * throw ({@linkcode AgentError}, or the client's error); everything after that ends in a result whose
 * `stopped_because` says why it ended.
 */
export async function runAgent(options: AgentOptions): Promise<AgentResult> {
  const { deps } = options;
  const log = deps.log ?? rootLog.child("agent");
  const now = deps.now ?? (() => performance.now());
  const started = now();
  const trace = options.trace;
  const maxRounds = Math.max(1, Math.floor(options.maxRounds ?? DEFAULT_MAX_ROUNDS));
  const depth = options.depth ?? 0;
  const userSignal = options.signal ?? new AbortController().signal;

  if (depth >= MAX_DEPTH) {
    throw new AgentError(
      "recursion",
      `Refusing to run an autonomous task: this bridge runs at nesting depth ${depth} ` +
        `(LMSTUDIO_BRIDGE_DEPTH=${depth}), i.e. it was started by another bridge's autonomous ` +
        "task, which was itself started by a bridge. Run the task from the outer bridge, or " +
        "remove the bridge from the MCP config it gives to its local model.",
    );
  }

  // The overall time budget aborts like a cancellation, but is reported as "time_budget".
  const budget = new AbortController();
  const budgetTimer = options.timeBudgetMs !== undefined
    ? setTimeout(
      () => budget.abort(new DOMException("time budget exhausted", "TimeoutError")),
      options.timeBudgetMs,
    )
    : undefined;
  const signal = AbortSignal.any([userSignal, budget.signal]);
  const usage = emptyUsage();
  const records: ToolCallRecord[] = [];
  const notes: string[] = [];
  let rounds = 0;
  let model = options.model ?? options.defaultModel ?? "";
  let contextTokens = options.defaultContextLength ?? 8192;
  let servers: string[] = [];
  let lastText = "";

  const progress = new ProgressReporter(
    options.onProgress,
    maxRounds,
    () => ({ elapsedMs: Math.round(now() - started), usage: { ...usage } }),
    log,
  );

  const finish = (
    stopped: StopReason,
    answer: string,
    error?: string,
  ): AgentResult => {
    const result: AgentResult = {
      answer,
      rounds,
      tool_calls: records,
      usage: { ...usage },
      stopped_because: stopped,
      model,
      servers,
      context_tokens: contextTokens,
      notes,
      ...(error !== undefined ? { error } : {}),
    };
    trace?.write({ type: "stop", stopped_because: stopped, answer, rounds, usage, error });
    progress.report(maxRounds, rounds, `done: ${stopped}`);
    log.debug("task finished", { stopped, rounds, ms: Math.round(now() - started) });
    return result;
  };

  const stoppedByAbort = (): AgentResult => {
    const elapsed = ((now() - started) / 1000).toFixed(1);
    if (!userSignal.aborted && budget.signal.aborted) {
      return finish(
        "time_budget",
        `The task is unfinished: the time budget of ${
          ((options.timeBudgetMs ?? 0) / 1000).toFixed(1)
        } s ran out after ${rounds} round(s).\n${workSummary(records, lastText)}`,
      );
    }
    return finish(
      "cancelled",
      `Cancelled after ${rounds} round(s) (${elapsed} s).\n${workSummary(records, lastText)}`,
    );
  };

  try {
    // ---- Before the first round: servers, tools, model, context window.
    const resolved = await raceAbort(resolveServers(options.servers, deps.config), signal);
    servers = resolved.names;
    notes.push(...resolved.notes);
    const discover = options.servers === "all";

    const toolsPromise = Promise.all(servers.map(async (server) => {
      try {
        return { server, tools: await deps.pool.listTools(server, { signal }) };
      } catch (error: unknown) {
        if (isAbort(error, signal)) throw error;
        return { server, error };
      }
    }));
    const modelPromise = (async () => {
      const id = await deps.client.resolveModel(options.model, {
        signal,
        kind: "llm",
        defaultModel: options.defaultModel,
      });
      if (deps.models) {
        try {
          const ensured = await deps.models.ensureLoaded(id, { signal });
          if (ensured.note) notes.push(ensured.note);
        } catch (error: unknown) {
          if (isAbort(error, signal)) throw error;
          // The chat request JIT-loads the model or fails with its own clear error.
          notes.push(`could not pre-load ${id}: ${errorMessage(error)}`);
        }
      }
      return id;
    })();
    modelPromise.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
    const listed = await raceAbort(toolsPromise, signal);
    const failed = listed.filter((l): l is { server: string; error: unknown } => "error" in l);
    if (failed.length > 0 && (!discover || failed.length === listed.length)) {
      throw new AgentError(
        "servers",
        failed.map((f) => `MCP server "${f.server}" is not usable: ${errorMessage(f.error)}`)
          .join("\n"),
        { cause: failed[0]?.error },
      );
    }
    for (const f of failed) notes.push(`skipped "${f.server}": ${errorMessage(f.error)}`);
    const ok = listed.filter((l): l is { server: string; tools: Tool[] } => "tools" in l);
    servers = ok.map((l) => l.server);
    const catalog = ToolCatalog.build(ok, {
      namespaced: ok.length > 1,
      allowed: options.allowedTools,
    });
    if (catalog.entries.length === 0) {
      const all = ok.flatMap((l) =>
        l.tools.map((t) => ok.length > 1 ? `${l.server}__${t.name}` : t.name)
      );
      throw new AgentError(
        "tools",
        all.length === 0
          ? `The MCP server(s) ${
            servers.join(", ")
          } offer no tools, so there is nothing to work with.`
          : `allowed_tools ${JSON.stringify(options.allowedTools)} matches none of the tools of ` +
            `${servers.join(", ")}. Available: ${all.join(", ")}. Use * and ? as wildcards, ` +
            "over raw names (read_*) or server__tool names (filesystem__read_*).",
      );
    }

    model = await raceAbort(modelPromise, signal);
    contextTokens = await raceAbort(
      contextWindow(deps.client, model, options, notes, signal),
      signal,
    );

    // ---- Budget.
    const tools = catalog.openaiTools;
    const toolTokens = estimateTokens(JSON.stringify(tools));
    const replyReserve = options.maxTokens ?? Math.min(4096, Math.floor(contextTokens / 4));
    const promptBudget = contextTokens - replyReserve;
    const messages: ChatMessage[] = [
      { role: "system", content: systemPrompt(servers) },
      { role: "user", content: options.task },
    ];
    const fixedTokens = toolTokens + conversationTokens(messages);
    trace?.write({
      type: "start",
      task: options.task,
      servers,
      model,
      context_tokens: contextTokens,
      tool_tokens: toolTokens,
      tools: catalog.names,
      notes,
    });
    if (fixedTokens > promptBudget) {
      const biggest = [...tools]
        .map((t) => ({ name: t.function.name, tokens: estimateTokens(JSON.stringify(t)) }))
        .sort((a, b) => b.tokens - a.tokens)
        .slice(0, 5)
        .map((t) => `${t.name} (~${t.tokens})`)
        .join(", ");
      return finish(
        "context_overflow",
        `The task was not started: the definitions of ${tools.length} tools need about ` +
          `${toolTokens} tokens, and with the task that is more than the ${promptBudget} tokens ` +
          `the model's context window (${contextTokens} tokens, ${replyReserve} kept for the ` +
          `reply) leaves for the conversation. Offer fewer tools with allowed_tools (the largest: ` +
          `${biggest}), pick fewer servers, or load the model with a larger context length.`,
      );
    }

    // ---- The loop.
    const validator = new ArgumentValidator();
    const usedIds = new Set<string>();
    let repeatKey = "";
    let repeatCount = 0;
    let nudged = false;
    const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;

    while (true) {
      if (signal.aborted) return stoppedByAbort();
      if (rounds >= maxRounds) {
        return finish(
          "max_rounds",
          `The task is unfinished: it stopped after ${rounds} rounds (max_rounds=${maxRounds}) ` +
            `without a final answer.\n${workSummary(records, lastText)}`,
        );
      }
      rounds += 1;
      const round = rounds;

      if (!fitConversation(messages, { budget: promptBudget - toolTokens, log })) {
        return finish(
          "context_overflow",
          `The task is unfinished: after ${round - 1} rounds the conversation no longer fits the ` +
            `model's context window (${contextTokens} tokens) even with earlier tool results ` +
            `condensed. Use a model loaded with a larger context, or split the task.\n${
              workSummary(records, lastText)
            }`,
        );
      }

      progress.report(round - 1, round, `round ${round}/${maxRounds}: asking ${model}`);
      const request: ChatRequest = {
        model,
        messages: messages.map((m) => ({ ...m })),
        tools,
        tool_choice: "auto",
        ...(options.maxTokens !== undefined ? { max_tokens: options.maxTokens } : {}),
        ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        ...(options.ttlSeconds !== undefined && options.ttlSeconds > 0
          ? { ttl: options.ttlSeconds }
          : {}),
      };
      trace?.write({ type: "request", round, body: request });
      const asked = now();
      const heartbeat = setInterval(() => {
        const waited = ((now() - asked) / 1000).toFixed(0);
        progress.bump(
          round,
          `round ${round}/${maxRounds}: ${model} still generating (${waited} s)`,
        );
      }, heartbeatMs);
      let reply: ChatResult;
      try {
        reply = await raceAbort(deps.client.chat(request, { signal }), signal);
      } catch (error: unknown) {
        if (isAbort(error, signal)) return stoppedByAbort();
        trace?.write({ type: "error", round, error: errorMessage(error) });
        return finish(
          "error",
          `The task failed in round ${round}: the model request failed: ${errorMessage(error)}\n${
            workSummary(records, lastText)
          }`,
          errorMessage(error),
        );
      } finally {
        clearInterval(heartbeat);
      }
      const modelMs = Math.round(now() - asked);
      trace?.write({ type: "response", round, ms: modelMs, body: reply });
      if (reply.usage) {
        usage.prompt_tokens += reply.usage.prompt_tokens;
        usage.completion_tokens += reply.usage.completion_tokens;
        usage.total_tokens += reply.usage.total_tokens;
      }

      let text = stripThinking(reply.content).text;
      let calls = reply.toolCalls;
      let recovered = false;
      if (calls.length === 0 && text !== "") {
        const found = recoverTextToolCalls(text, (name) => catalog.resolve(name) !== undefined);
        if (found.calls.length > 0) {
          calls = found.calls;
          text = found.text;
          recovered = true;
          log.debug("recovered tool calls printed as text", { round, count: calls.length });
        }
      }
      if (text !== "") lastText = text;

      if (calls.length === 0) {
        if (text !== "") return finish("answer", text);
        if (!nudged) {
          nudged = true;
          messages.push({ role: "assistant", content: "" });
          messages.push({
            role: "user",
            content: "Your last reply was empty. Give your final answer now, or call a tool.",
          });
          continue;
        }
        const why = reply.finishReason === "length"
          ? ` It ran out of tokens${
            options.maxTokens ? ` (max_tokens=${options.maxTokens})` : ""
          } before answering; allow more tokens.`
          : "";
        return finish(
          "error",
          `The model returned no answer text twice.${why}\n${workSummary(records, lastText)}`,
          "empty answer",
        );
      }

      // Give every call an id that is unique in the conversation; the assistant message and the
      // tool messages must carry the same ones.
      const pending: PendingCall[] = calls.map((call, i) => {
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
      messages.push({
        role: "assistant",
        content: text,
        tool_calls: pending.map((p) => ({
          id: p.id,
          type: "function",
          function: {
            name: p.name,
            arguments: p.parsed.ok
              ? JSON.stringify(p.parsed.value)
              : typeof p.rawArguments === "string"
              ? p.rawArguments
              : JSON.stringify(p.rawArguments),
          },
        })),
      });

      // A model that repeats itself is not making progress.
      for (const p of pending) {
        const key = `${p.name} ${
          p.parsed.ok ? stableStringify(p.parsed.value) : String(p.rawArguments)
        }`;
        repeatCount = key === repeatKey ? repeatCount + 1 : 1;
        repeatKey = key;
        if (repeatCount >= REPEAT_LIMIT) {
          return finish(
            "repeated_call",
            `Stopped: the model called ${p.name} with the same arguments ${REPEAT_LIMIT} times in ` +
              `a row (${
                shortJson(p.parsed.ok ? p.parsed.value : p.rawArguments)
              }), so it was not ` +
              `making progress.\n${workSummary(records, lastText)}`,
          );
        }
      }

      // Room for each result of this round: half of what the conversation may use, shared by the
      // calls of the round. Older results are condensed before the next request if need be.
      const perResultChars = Math.max(
        MIN_RESULT_TOKENS,
        Math.floor((promptBudget - fixedTokens) * 0.5 / pending.length),
      ) * CHARS_PER_TOKEN;

      const outcomes = pending.map(() => undefined as ToolCallRecord | undefined);
      const contents: string[] = pending.map(() => "");
      const runOne = async (p: PendingCall, index: number): Promise<void> => {
        const begun = now();
        progress.report(
          round - 1 + (index + 1) / (pending.length + 1),
          round,
          `round ${round}/${maxRounds}: calling ${p.name}`,
          p.name,
        );
        trace?.write({
          type: "tool_call",
          round,
          id: p.id,
          name: p.name,
          server: p.entry?.server,
          tool: p.entry?.tool,
          arguments: p.parsed.ok ? p.parsed.value : p.rawArguments,
        });
        const { text: content, ok, error } = await executeCall(p, {
          catalog,
          validator,
          host: deps.pool,
          signal,
          timeoutMs: options.toolTimeoutMs,
        });
        const cut = truncateText(content, perResultChars);
        contents[index] = cut.text;
        const ms = Math.round(now() - begun);
        outcomes[index] = {
          round,
          name: p.name,
          ...(p.entry ? { server: p.entry.server, tool: p.entry.tool } : {}),
          arguments: p.parsed.ok ? p.parsed.value : p.rawArguments,
          ok,
          ...(error !== undefined ? { error } : {}),
          duration_ms: ms,
          result_chars: content.length,
          ...(cut.cut > 0 ? { truncated_chars: cut.cut } : {}),
          ...(recovered ? { recovered_from_text: true } : {}),
        };
        trace?.write({ type: "tool_result", round, id: p.id, ms, ok, error, content: cut.text });
      };
      try {
        await raceAbort(Promise.all(pending.map(runOne)), signal);
      } catch (error: unknown) {
        pending.forEach((p, i) => {
          records.push(
            outcomes[i] ?? {
              round,
              name: p.name,
              ...(p.entry ? { server: p.entry.server, tool: p.entry.tool } : {}),
              arguments: p.parsed.ok ? p.parsed.value : p.rawArguments,
              ok: false,
              error: "cancelled",
              duration_ms: 0,
              result_chars: 0,
            },
          );
        });
        if (isAbort(error, signal)) return stoppedByAbort();
        throw error;
      }
      pending.forEach((p, i) => {
        records.push(outcomes[i]!);
        messages.push({ role: "tool", tool_call_id: p.id, name: p.name, content: contents[i]! });
      });
    }
  } catch (error: unknown) {
    if (isAbort(error, signal) && !(error instanceof AgentError)) return stoppedByAbort();
    throw error;
  } finally {
    if (budgetTimer !== undefined) clearTimeout(budgetTimer);
  }
}

interface ExecuteContext {
  catalog: ToolCatalog;
  validator: ArgumentValidator;
  host: ToolHost;
  signal: AbortSignal;
  timeoutMs?: number;
}

/** Runs one call; every failure becomes text the model can act on. Only an abort rejects. */
async function executeCall(
  p: PendingCall,
  ctx: ExecuteContext,
): Promise<{ text: string; ok: boolean; error?: string }> {
  if (!p.entry) {
    const error = `there is no tool named "${p.name}"`;
    return {
      ok: false,
      error,
      text: `Error: ${error}. Available tools: ${ctx.catalog.names.join(", ")}. ` +
        "Call one of these by its exact name.",
    };
  }
  const parameters = describeParameters(p.entry.inputSchema);
  if (!p.parsed.ok) {
    const raw = typeof p.rawArguments === "string"
      ? p.rawArguments
      : JSON.stringify(p.rawArguments);
    const error = `arguments are not a JSON object: ${p.parsed.error}`;
    return {
      ok: false,
      error,
      text:
        `Error: the arguments for ${p.name} could not be read: ${p.parsed.error}. You sent: ${
          shortJson(raw, 500)
        }\nSend the arguments as one JSON object. Parameters: ${parameters}. ` +
        "Call the tool again with corrected arguments.",
    };
  }
  const problems = ctx.validator.problems(p.entry.inputSchema, p.parsed.value);
  if (problems.length > 0) {
    return {
      ok: false,
      error: `arguments do not match the schema: ${problems.join("; ")}`,
      text: `Error: the arguments for ${p.name} do not match its input schema:\n${
        problems.map((m) => `- ${m}`).join("\n")
      }\nParameters: ${parameters}. Call the tool again with corrected arguments.`,
    };
  }
  let result: CallToolResult;
  try {
    result = await ctx.host.callTool(p.entry.server, p.entry.tool, p.parsed.value, {
      signal: ctx.signal,
      ...(ctx.timeoutMs !== undefined ? { timeoutMs: ctx.timeoutMs } : {}),
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

/** The context window of `model` in tokens, with a note when it had to be assumed. */
async function contextWindow(
  client: AgentLmClient,
  model: string,
  options: AgentOptions,
  notes: string[],
  signal: AbortSignal,
): Promise<number> {
  const fallback = options.defaultContextLength ?? 8192;
  try {
    const list = await client.listModels({ signal });
    const info = list.models.find((m) => m.id === model);
    if (info?.loadedContextLength) return info.loadedContextLength;
    if (info?.maxContextLength) {
      // Not loaded yet: a JIT load uses the server's default context, usually far below the maximum.
      const assumed = Math.min(info.maxContextLength, fallback);
      notes.push(
        `assumed a context window of ${assumed} tokens for ${model} (not loaded yet; maximum ` +
          `${info.maxContextLength})`,
      );
      return assumed;
    }
  } catch (error: unknown) {
    if (isAbort(error, signal)) throw error;
    notes.push(`could not read model details: ${errorMessage(error)}`);
  }
  notes.push(`assumed a context window of ${fallback} tokens (the server does not report it)`);
  return fallback;
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
        const keep = Math.max(400, content.length - Math.ceil(over * 4 / tail.length) - 200);
        condense(i, truncateText(content, keep).text);
      }
    }
  }
  options.log?.debug("condensed the conversation", { tokens: total, budget: options.budget });
  return total <= options.budget;
}
