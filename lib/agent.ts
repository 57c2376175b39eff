/**
 * The autonomous loop: hands a task to the local model together with the tools of MCP servers,
 * runs the tool calls it asks for (in parallel within a round), feeds the results back and stops
 * with an answer, at `max_rounds`, on a repeated call loop, on cancellation, at a time budget or
 * when the context window cannot hold the tools. Tool definitions that would take more than a
 * share of the window are sent on demand (a catalogue and `load_tools`; tool_demand.ts).
 *
 * Everything the model gets wrong (bad JSON, arguments that do not match the schema, unknown tool
 * names, tool errors, timeouts) goes back to it as a tool result it can act on; model output never
 * crashes the loop. The conversation is kept inside the model's context window by truncating large
 * tool results and condensing the oldest ones first (tokens estimated as characters / 4).
 *
 * {@linkcode runAgent} reads as its steps: `prepareTask` (servers, tools, model, context window,
 * budget), then `runRound` (one model request and the tool calls it asks for) until a round ends
 * the task; `TaskRun` holds what the result reports, however the task ends.
 *
 * The texts the loop writes are here too: the system prompt that tells the model how to work, and
 * the summary of the work done that ends every answer the model did not give itself (unfinished,
 * cancelled, failed).
 *
 * The loop's options, result and errors are in agent_types.ts; its setup (servers, tools, model,
 * context window) in agent_setup.ts, the context budget in agent_budget.ts, the tool calls and
 * progress in agent_calls.ts, traces in agent_trace.ts.
 */
import { isAbort, raceAbort } from "./abort.ts";
import {
  assistantMessage,
  callArguments,
  type PendingCall,
  pendingCalls,
  REPEAT_LIMIT,
  RepeatGuard,
  runCalls,
} from "./agent_calls.ts";
import { ApprovalGate } from "./agent_approval.ts";
import { DEFAULT_HEARTBEAT_MS, ProgressReporter } from "./agent_progress.ts";
import { SamplingAnswerer } from "./agent_sampling.ts";
import { ElicitationRelay } from "./agent_elicitation.ts";
import {
  buildCatalog,
  listServerTools,
  prepareModel,
  readModelListing,
  resolveServers,
  startingPrompt,
} from "./agent_setup.ts";
import { ModelWatch } from "./agent_stream.ts";
import type { TraceSink } from "./agent_trace.ts";
import {
  AgentError,
  type AgentOptions,
  type AgentResult,
  type AgentSession,
  DEFAULT_MAX_ROUNDS,
  type RoundDetail,
  type SamplingLimits,
  type ServerRequestHandlers,
  type StopReason,
  type ToolCallRecord,
} from "./agent_types.ts";
import {
  type Budget,
  conversationTokens,
  DEFAULT_CONTEXT_TOKENS,
  fitConversation,
  planBudget,
  resultChars,
  toolOverflowMessage,
  toolsTokens,
} from "./agent_budget.ts";
import type {
  ChatMessage,
  ChatRequest,
  ChatResult,
  GenerationStats,
  RawToolCall,
  Usage,
} from "./lmstudio_types.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { recoverTextToolCalls } from "./tool_calls.ts";
import type { CatalogEntry, ToolCatalog } from "./tool_catalog.ts";
import { DEFAULT_TOOL_SHARE, ToolOffer } from "./tool_demand.ts";
import { type ArgumentValidator, sharedArgumentValidator } from "./tool_schema.ts";
import { errorMessage } from "./errors.ts";
import { clause, shortJson } from "./text.ts";

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
    approvals: result.approvals,
    sampling: result.sampling,
    rounds_detail: result.rounds_detail,
    ...(result.tools_on_demand !== undefined ? { tools_on_demand: result.tools_on_demand } : {}),
    ...(result.error !== undefined ? { error: result.error } : {}),
  };
}

/** Depth at which a bridge refuses autonomous tools. */
const MAX_DEPTH = 2;

function emptyUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
}

/** Throws {@linkcode AgentError} "recursion" when this bridge runs too deep to start a task. */
function refuseNested(depth: number): void {
  if (depth < MAX_DEPTH) return;
  throw new AgentError(
    "recursion",
    `Refusing to run an autonomous task: this bridge runs at nesting depth ${depth} ` +
      `(LMSTUDIO_BRIDGE_DEPTH=${depth}), i.e. it was started by another bridge's autonomous ` +
      "task, which was itself started by a bridge. Run the task from the outer bridge, or " +
      "remove the bridge from the MCP config it gives to its local model.",
  );
}

// ---- The texts of the stops the model did not choose. Each is followed by the work summary.

function maxRoundsText(rounds: number, maxRounds: number): string {
  return `The task is unfinished: it stopped after ${rounds} rounds (max_rounds=${maxRounds}) ` +
    "without a final answer.";
}

function timeBudgetText(budgetMs: number, rounds: number): string {
  return `The task is unfinished: the time budget of ${(budgetMs / 1000).toFixed(1)} s ran out ` +
    `after ${rounds} round(s).`;
}

function cancelledText(rounds: number, elapsedMs: number): string {
  return `Cancelled after ${rounds} round(s) (${(elapsedMs / 1000).toFixed(1)} s).`;
}

function conversationOverflowText(rounds: number, contextTokens: number): string {
  return `The task is unfinished: after ${rounds} rounds the conversation no longer fits the ` +
    `model's context window (${contextTokens} tokens) even with earlier tool results ` +
    "condensed. Use a model loaded with a larger context, or split the task.";
}

function modelFailedText(round: number, error: string): string {
  return `The task failed in round ${round}: the model request failed: ${error}`;
}

function roundFailedText(round: number, error: string): string {
  return `The task failed in round ${round}: ${clause(error)}. This is a fault of the bridge, ` +
    "not of the model or a tool; the work done so far is listed below. Please report it with " +
    "a trace of the task (--trace FILE, or trace_path).";
}

function repeatedCallText(p: PendingCall): string {
  return `Stopped: the model called ${p.name} with the same arguments ${REPEAT_LIMIT} times in ` +
    `a row (${shortJson(callArguments(p))}), so it was not making progress.`;
}

/**
 * Why a task ended after two empty replies cut off by the token limit, and what to do: usually a
 * reasoning model that spends its tokens thinking.
 */
function emptyReplyCutOff(maxTokens: number | undefined, reasoning: string | undefined): string {
  const limit = maxTokens !== undefined
    ? `max_tokens (${maxTokens})`
    : "the server's default max_tokens (or the end of the context window)";
  const thought = reasoning?.trim()
    ? ` The replies held only reasoning (${reasoning.trim().length} characters in the last).`
    : "";
  return `The model's reply hit ${limit} twice before it gave any answer text, so the task ` +
    `stopped.${thought} Reasoning models often spend their tokens thinking before they answer. ` +
    `Raise max_tokens${maxTokens !== undefined ? ` above ${maxTokens}` : ""} (the autonomous ` +
    "tools' max_tokens parameter, or `run --max-tokens N`), or use a model that thinks less.";
}

/** What the model is told after its first empty reply. */
function nudgeText(cutOff: boolean): string {
  return cutOff
    ? "Your last reply ran out of tokens before it said anything. Answer briefly now, " +
      "or call a tool."
    : "Your last reply was empty. Give your final answer now, or call a tool.";
}

/**
 * Notes for a continued task given `servers` or a `model` other than the session's, which it
 * keeps.
 */
function continuationNotes(options: AgentOptions, session: AgentSession): string[] {
  const notes: string[] = [];
  const asked = options.servers;
  const same = (a: readonly string[], b: readonly string[]) =>
    a.length === b.length && a.every((x) => b.includes(x));
  if (asked !== "all" && asked.length > 0 && !same(asked, session.servers)) {
    notes.push(
      `continued with the session's servers (${session.servers.join(", ")}), not ` +
        `${asked.join(", ")}: start a new session to use others`,
    );
  }
  if (options.model?.trim() && options.model !== session.model) {
    notes.push(
      `continued with the session's model ${session.model}, not ${options.model}: start a new ` +
        "session to use another",
    );
  }
  return notes;
}

/**
 * `messages` fit to be continued: an assistant message whose calls have no results (the task
 * stopped before they ran: cancelled, a repeated call, an error) gets a result for each saying
 * so, since a chat request whose calls have no results is refused.
 */
function closeOpenCalls(messages: readonly ChatMessage[]): ChatMessage[] {
  const answered = new Set(messages.filter((m) => m.role === "tool").map((m) => m.tool_call_id));
  const out: ChatMessage[] = [];
  for (const m of messages) {
    out.push(m);
    for (const call of m.role === "assistant" ? m.tool_calls ?? [] : []) {
      if (answered.has(call.id)) continue;
      out.push({
        role: "tool",
        tool_call_id: call.id,
        name: call.function.name,
        content: "[not run: the task stopped before this call ran]",
      });
    }
  }
  return out;
}

/**
 * One task as it runs: its options, clock, signal (the caller's, or the time budget running
 * out), progress and trace, and what its result reports however it ends; `finish`, `unfinished`
 * and `stoppedByAbort` end it.
 */
class TaskRun {
  readonly options: AgentOptions;
  readonly log: Logger;
  readonly now: () => number;
  readonly started: number;
  readonly trace: TraceSink | undefined;
  readonly maxRounds: number;
  readonly heartbeatMs: number;
  /** What a model the bridge loads gets, and the window assumed when the server does not tell. */
  readonly defaultContext: number;
  /** Aborts on the caller's signal or when the time budget runs out. */
  readonly signal: AbortSignal;
  readonly progress: ProgressReporter;
  readonly approvals: ApprovalGate;
  readonly sampling: SamplingAnswerer;
  readonly elicitation: ElicitationRelay;
  /** The sampling limits: the caller's, else the bridge settings' (prepareTask). */
  samplingLimits: SamplingLimits;
  readonly usage: Usage = emptyUsage();
  readonly records: ToolCallRecord[] = [];
  readonly notes: string[] = [];
  readonly roundsDetail: RoundDetail[] = [];
  /** The conversation, once the task has one (prepareTask). */
  messages: ChatMessage[] = [];
  rounds = 0;
  model: string;
  servers: string[] = [];
  contextTokens: number;
  /** The tool definitions sent each round, once the task has its tools (prepareTask). */
  offer: ToolOffer | undefined;
  /** The share of the window the tool definitions may take (prepareTask). */
  toolShare = DEFAULT_TOOL_SHARE;
  /** The model's last non-empty text, quoted in the work summary. */
  lastText = "";
  readonly #userSignal: AbortSignal;
  readonly #timeBudget = new AbortController();
  readonly #budgetTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: AgentOptions) {
    this.options = options;
    this.log = options.deps.log ?? rootLog.child("agent");
    this.now = options.deps.now ?? (() => performance.now());
    this.started = this.now();
    this.trace = options.trace;
    this.maxRounds = Math.max(1, Math.floor(options.maxRounds ?? DEFAULT_MAX_ROUNDS));
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.defaultContext = options.defaultContextLength ?? DEFAULT_CONTEXT_TOKENS;
    this.contextTokens = this.defaultContext;
    this.offer = undefined;
    this.model = options.session?.model || options.model || options.defaultModel || "";
    this.#userSignal = options.signal ?? new AbortController().signal;
    // The overall time budget aborts like a cancellation, but is reported as "time_budget".
    this.#budgetTimer = options.timeBudgetMs !== undefined
      ? setTimeout(
        () => this.#timeBudget.abort(new DOMException("time budget exhausted", "TimeoutError")),
        options.timeBudgetMs,
      )
      : undefined;
    this.signal = AbortSignal.any([this.#userSignal, this.#timeBudget.signal]);
    this.progress = new ProgressReporter({
      sink: options.onProgress,
      total: this.maxRounds,
      info: () => ({ elapsedMs: Math.round(this.now() - this.started), usage: { ...this.usage } }),
      log: this.log,
      now: this.now,
    });
    const task = options.task.trim() === "" && options.prompt !== undefined
      ? `(the prompt "${options.prompt.name}" of MCP server "${options.prompt.server}")`
      : options.task;
    this.approvals = new ApprovalGate({
      rules: options.rules,
      approveAll: options.approveAll,
      approve: options.approve,
      task,
      trace: this.trace,
      notes: this.notes,
    });
    this.elicitation = new ElicitationRelay({
      elicit: options.elicit,
      task,
      trace: this.trace,
      notes: this.notes,
    });
    this.samplingLimits = options.sampling ?? {};
    this.sampling = new SamplingAnswerer({
      client: options.deps.client,
      model: () => this.model,
      contextTokens: () => this.contextTokens,
      approvals: this.approvals,
      usage: this.usage,
      limits: () => this.samplingLimits,
      temperature: options.temperature,
      ttlSeconds: options.ttlSeconds,
      trace: this.trace,
      now: this.now,
    });
  }

  /** What the servers' requests get while the call of `entry` in `round` runs. */
  serverRequests(entry: CatalogEntry, round: number): ServerRequestHandlers {
    const call = { round, server: entry.server, tool: entry.tool, signal: this.signal };
    return {
      sample: (params, signal) => this.sampling.answer(call, params, signal),
      elicit: (params, signal) => this.elicitation.ask(call, params, signal),
    };
  }

  /** Ends the task: the result, the trace's stop event and the last progress event. */
  finish(stopped: StopReason, answer: string, error?: string): AgentResult {
    const result: AgentResult = {
      answer,
      rounds: this.rounds,
      tool_calls: this.records,
      usage: { ...this.usage },
      stopped_because: stopped,
      model: this.model,
      servers: this.servers,
      context_tokens: this.contextTokens,
      notes: this.notes,
      approvals: this.approvals.records,
      sampling: this.sampling.records,
      rounds_detail: this.roundsDetail,
      ...(this.offer?.onDemand
        ? {
          tools_on_demand: {
            catalog: this.offer.catalog.entries.length,
            all_tokens: this.offer.allTokens,
            share: this.toolShare,
            load_tool: this.offer.loadName!,
            loads: [...this.offer.history],
          },
        }
        : {}),
      session: this.session(),
      ...(error !== undefined ? { error } : {}),
    };
    this.trace?.write({
      type: "stop",
      stopped_because: stopped,
      answer,
      rounds: this.rounds,
      usage: this.usage,
      error,
    });
    this.progress.report(this.maxRounds, this.rounds, `done: ${stopped}`);
    this.log.debug("task finished", {
      stopped,
      rounds: this.rounds,
      ms: Math.round(this.now() - this.started),
    });
    return result;
  }

  /** The conversation to keep, with this task in it (or the session given, if it never began). */
  session(): AgentSession {
    const before = this.options.session;
    if (this.messages.length === 0 && before !== undefined) return before;
    return {
      servers: this.servers,
      model: this.model,
      messages: closeOpenCalls(this.messages),
      tasks: (before?.tasks ?? 0) + 1,
      rounds: (before?.rounds ?? 0) + this.rounds,
    };
  }

  /** Ends a task without the model's own answer: `text`, then what was done. */
  unfinished(stopped: StopReason, text: string, error?: string): AgentResult {
    return this.finish(stopped, `${text}\n${workSummary(this.records, this.lastText)}`, error);
  }

  /** Ends an aborted task: "time_budget" when the budget ran out, else "cancelled". */
  stoppedByAbort(): AgentResult {
    if (!this.#userSignal.aborted && this.#timeBudget.signal.aborted) {
      return this.unfinished(
        "time_budget",
        timeBudgetText(this.options.timeBudgetMs ?? 0, this.rounds),
      );
    }
    return this.unfinished("cancelled", cancelledText(this.rounds, this.now() - this.started));
  }

  /** Stops the time budget's clock and any progress held back. */
  dispose(): void {
    if (this.#budgetTimer !== undefined) clearTimeout(this.#budgetTimer);
    this.progress.dispose();
  }
}

/** What every round works on: the tools offered, the budget, the messages so far. */
interface Conversation {
  catalog: ToolCatalog;
  /** The tool definitions each request carries: all, or on demand. */
  offer: ToolOffer;
  budget: Budget;
  messages: ChatMessage[];
  validator: ArgumentValidator;
  /** Tool call ids given so far: each is unique in the conversation. */
  usedIds: Set<string>;
  repeats: RepeatGuard;
  /** The model was already asked once to answer after an empty reply. */
  nudged: boolean;
}

/**
 * Everything before the first round: the servers, their tools and the model (both at once, so an
 * unknown model fails the task without waiting for the servers to start), the context window,
 * the first messages and the budget. Records servers, model, window and notes in `run`.
 */
async function prepareTask(run: TaskRun): Promise<Conversation> {
  const { options, signal, notes } = run;
  const { deps, session } = options;
  // Asked first: the server's answer is on its way while the servers are resolved and listed.
  const listing = readModelListing(deps.client, signal, { reuse: true });
  // It rejects only on an abort; a failure before it is awaited must not go unhandled.
  listing.catch(() => {});
  if (session !== undefined) notes.push(...continuationNotes(options, session));
  // A session from a task that ended before it had servers or a model takes the options' own.
  const selection = session?.servers.length ? session.servers : options.servers;
  // The config takes no signal: the race ends the wait on a cancellation.
  const resolved = await raceAbort(resolveServers(selection, deps.config), signal);
  run.servers = resolved.names;
  notes.push(...resolved.notes);
  // Rules given by the caller win; else those of the bridge settings in force.
  if (options.rules === undefined) run.approvals.useRules(resolved.rules);
  if (options.sampling === undefined) run.samplingLimits = resolved.sampling;
  run.toolShare = options.toolShare ?? resolved.toolShare ?? DEFAULT_TOOL_SHARE;
  // All honour the signal: a cancellation rejects here at once.
  const [listed, prepared, prompted] = await Promise.all([
    listServerTools(deps.pool, run.servers, signal, notes),
    prepareModel({
      client: deps.client,
      listing,
      models: deps.models,
      model: session?.model || options.model,
      defaultModel: options.defaultModel,
      contextLength: run.defaultContext,
      notes,
      signal,
      onLoading: (model) => {
        const started = run.now();
        run.progress.report(0, 0, `loading ${model}`);
        return run.progress.heartbeat({
          round: 0,
          everyMs: run.heartbeatMs,
          describe: () => `loading ${model} (${((run.now() - started) / 1000).toFixed(0)} s)`,
        });
      },
    }),
    options.prompt !== undefined
      ? startingPrompt(deps.pool, options.prompt, { signal, notes })
      : Promise.resolve([]),
  ]);
  const { servers, catalog } = buildCatalog(listed, {
    discover: selection === "all",
    allowedTools: options.allowedTools,
    notes,
  });
  run.servers = servers;
  run.model = prepared.id;
  run.contextTokens = prepared.contextTokens;

  const offer = ToolOffer.plan({ catalog, contextTokens: run.contextTokens, share: run.toolShare });
  run.offer = offer;
  if (offer.onDemand) notes.push(offer.note(run.contextTokens, run.toolShare));
  // A prompt may say all there is to do; else the task follows its messages.
  const task: ChatMessage[] = options.prompt !== undefined && options.task.trim() === ""
    ? []
    : [{ role: "user", content: options.task }];
  const opening = [...prompted, ...task];
  // A continued conversation keeps its messages, the system message and first task first.
  const history = (session?.messages ?? []).map((m) => ({ ...m }));
  const system = options.instructions
    ? `${systemPrompt(servers)}

${options.instructions}`
    : systemPrompt(servers);
  const messages: ChatMessage[] = history[0]?.role === "system"
    ? [...history, ...opening]
    : [{ role: "system", content: system }, ...history, ...opening];
  run.messages = messages;
  const budget = planBudget({
    contextTokens: run.contextTokens,
    maxTokens: options.maxTokens,
    tools: offer.tools(),
    // On demand, the room for the definitions loaded is kept from the start.
    ...(offer.onDemand ? { toolReserve: offer.limit } : {}),
    // What every request carries: the older rounds of a continued conversation can be condensed.
    messages: session !== undefined ? [...messages.slice(0, 2), ...opening] : messages,
  });
  run.trace?.write({
    type: "start",
    task: options.task,
    ...(options.prompt !== undefined ? { prompt: options.prompt } : {}),
    servers,
    model: run.model,
    context_tokens: run.contextTokens,
    tool_tokens: budget.toolTokens,
    tools: catalog.names,
    ...(offer.onDemand
      ? { tools_on_demand: { all_tokens: offer.allTokens, share: run.toolShare } }
      : {}),
    notes,
  });
  return {
    catalog,
    offer,
    budget,
    messages,
    validator: options.deps.validator ?? sharedArgumentValidator,
    usedIds: new Set(
      messages.flatMap((m) => (m.tool_calls ?? []).map((c) => c.id)),
    ),
    repeats: new RepeatGuard(),
    nudged: false,
  };
}

/**
 * The chat request of a round: the conversation so far and the tools. The messages are the
 * conversation's own objects, which are never changed once made (a condensed message is a new
 * object), so the client keeps their JSON from round to round.
 */
function chatRequest(run: TaskRun, conversation: Conversation): ChatRequest {
  const { options } = run;
  return {
    model: run.model,
    messages: [...conversation.messages],
    tools: conversation.offer.tools(),
    tool_choice: "auto",
    ...(options.maxTokens !== undefined ? { max_tokens: options.maxTokens } : {}),
    ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
    ...(options.ttlSeconds !== undefined && options.ttlSeconds > 0
      ? { ttl: options.ttlSeconds }
      : {}),
  };
}

/**
 * Asks the model, with a heartbeat while it generates: its reply, or how the task ends when the
 * request fails or is aborted.
 */
async function askModel(
  run: TaskRun,
  conversation: Conversation,
  round: number,
): Promise<{ reply: ChatResult } | { stopped: AgentResult }> {
  const { trace, signal } = run;
  const prefix = `round ${round}/${run.maxRounds}:`;
  run.progress.report(round - 1, round, `${prefix} asking ${run.model}`);
  const request = chatRequest(run, conversation);
  trace?.write({ type: "request", round, body: request });
  const asked = run.now();
  const watch = new ModelWatch({ progress: run.progress, round, prefix, now: run.now });
  const stopHeartbeat = run.progress.heartbeat({
    round,
    everyMs: run.heartbeatMs,
    describe: () => {
      const waited = ((run.now() - asked) / 1000).toFixed(0);
      return `${prefix} ${run.model} still generating (${waited} s)`;
    },
  });
  let reply: ChatResult & { stats?: GenerationStats };
  try {
    reply = await run.options.deps.client.chat(request, {
      signal,
      // Without anyone to report to, the stream's events are not asked for: the reply's figures
      // come with it (its stats) all the same.
      ...(run.progress.reporting ? { onEvent: watch.onEvent } : {}),
      unchanged: true,
    });
  } catch (error: unknown) {
    if (isAbort(error, signal)) return { stopped: run.stoppedByAbort() };
    const message = errorMessage(error);
    trace?.write({ type: "error", round, error: message });
    return { stopped: run.unfinished("error", modelFailedText(round, message), message) };
  } finally {
    stopHeartbeat();
  }
  trace?.write({ type: "response", round, ms: Math.round(run.now() - asked), body: reply });
  const tools = request.tools ?? [];
  const toolTokens = toolsTokens(tools);
  const { offer } = conversation;
  run.roundsDetail.push({
    ...watch.finish(reply, () => conversationTokens(request.messages) + toolTokens),
    tool_tokens: toolTokens,
    ...(offer.onDemand
      ? { tools_loaded: tools.map((t) => t.function.name).filter((n) => n !== offer.loadName) }
      : {}),
  });
  if (reply.usage) {
    run.usage.prompt_tokens += reply.usage.prompt_tokens;
    run.usage.completion_tokens += reply.usage.completion_tokens;
    run.usage.total_tokens += reply.usage.total_tokens;
  }
  return { reply };
}

/**
 * The text and the tool calls of a reply: the calls of the tool-call API, else calls the model
 * printed as text (`recovered`), taken out of the text.
 */
function readReply(
  reply: ChatResult,
  conversation: Conversation,
): { text: string; calls: RawToolCall[]; recovered: boolean } {
  if (reply.toolCalls.length > 0 || reply.content === "") {
    return { text: reply.content, calls: reply.toolCalls, recovered: false };
  }
  const { catalog, offer } = conversation;
  const found = recoverTextToolCalls(
    reply.content,
    (name) => catalog.resolve(name) !== undefined || name === offer.loadName,
  );
  if (found.calls.length === 0) return { text: reply.content, calls: [], recovered: false };
  return { text: found.text, calls: found.calls, recovered: true };
}

/**
 * A reply without tool calls: the answer when it has text; an empty one gets one nudge (undefined:
 * the task goes on), a second ends the task.
 */
function endOrNudge(
  run: TaskRun,
  conversation: Conversation,
  reply: ChatResult,
  text: string,
): AgentResult | undefined {
  if (text !== "") {
    conversation.messages.push({ role: "assistant", content: text });
    return run.finish("answer", text);
  }
  const cutOff = reply.finishReason === "length";
  if (!conversation.nudged) {
    conversation.nudged = true;
    conversation.messages.push({ role: "assistant", content: "" });
    conversation.messages.push({ role: "user", content: nudgeText(cutOff) });
    return undefined;
  }
  if (cutOff) {
    return run.unfinished(
      "error",
      emptyReplyCutOff(run.options.maxTokens, reply.reasoning),
      "reply cut off by max_tokens",
    );
  }
  return run.unfinished("error", "The model returned no answer text twice.", "empty answer");
}

/**
 * One round: the checks before it (abort, max_rounds, the conversation fits), one model request,
 * and the tool calls it asks for ({@linkcode callTools}). Returns the result when the task ends in
 * this round, undefined when it goes on.
 */
async function runRound(
  run: TaskRun,
  conversation: Conversation,
): Promise<AgentResult | undefined> {
  const { budget, messages } = conversation;
  if (run.signal.aborted) return run.stoppedByAbort();
  if (run.rounds >= run.maxRounds) {
    return run.unfinished("max_rounds", maxRoundsText(run.rounds, run.maxRounds));
  }
  run.rounds += 1;
  const round = run.rounds;
  if (
    !fitConversation(messages, { budget: budget.promptBudget - budget.toolTokens, log: run.log })
  ) {
    return run.unfinished(
      "context_overflow",
      conversationOverflowText(round - 1, run.contextTokens),
    );
  }

  const asked = await askModel(run, conversation, round);
  if ("stopped" in asked) return asked.stopped;
  const { reply } = asked;
  const { text, calls, recovered } = readReply(reply, conversation);
  if (recovered) {
    run.log.debug("recovered tool calls printed as text", { round, count: calls.length });
  }
  if (text !== "") run.lastText = text;
  if (calls.length === 0) return endOrNudge(run, conversation, reply, text);

  return await callTools(run, conversation, { round, text, calls, recovered });
}

/**
 * The tool calls of a round: echoed in the conversation, checked for a model that repeats itself,
 * run in parallel, and their results appended. Returns the result when they end the task
 * (a repeated call, an abort), undefined when it goes on.
 */
async function callTools(
  run: TaskRun,
  conversation: Conversation,
  o: { round: number; text: string; calls: RawToolCall[]; recovered: boolean },
): Promise<AgentResult | undefined> {
  const { signal, options } = run;
  const { budget, messages, catalog, offer } = conversation;
  const { round, text, calls, recovered } = o;
  const pending = pendingCalls(calls, { round, usedIds: conversation.usedIds, catalog });
  messages.push(assistantMessage(text, pending));
  // A model that repeats itself is not making progress.
  for (const p of pending) {
    if (conversation.repeats.repeated(p)) {
      return run.unfinished("repeated_call", repeatedCallText(p));
    }
  }

  const outcome = await runCalls(pending, {
    round,
    maxRounds: run.maxRounds,
    recovered,
    maxChars: resultChars(budget, pending.length),
    execute: {
      catalog,
      validator: conversation.validator,
      approvals: run.approvals,
      host: options.deps.pool,
      signal,
      timeoutMs: options.toolTimeoutMs,
      serverRequests: (entry, round) => run.serverRequests(entry, round),
      offer,
    },
    progress: run.progress,
    heartbeatMs: run.heartbeatMs,
    trace: run.trace,
    now: run.now,
  });
  run.records.push(...outcome.records);
  const loads = offer.history.filter((l) => l.round === round);
  if (loads.length > 0) {
    run.trace?.write({ type: "tools_loaded", round, loads, loaded: offer.loaded });
  }
  if (outcome.failed) {
    if (isAbort(outcome.failed.error, signal)) return run.stoppedByAbort();
    throw outcome.failed.error;
  }
  pending.forEach((p, i) => {
    messages.push({
      role: "tool",
      tool_call_id: p.id,
      name: p.name,
      content: outcome.contents[i]!,
    });
  });
  return undefined;
}

/**
 * {@linkcode runRound}, and whatever it throws as the end of the task: an abort as "cancelled" or
 * "time_budget", anything else (a fault of the bridge, since everything the model gets wrong goes
 * back to it) as "error" with the work done so far.
 */
async function runRoundSafely(
  run: TaskRun,
  conversation: Conversation,
): Promise<AgentResult | undefined> {
  try {
    return await runRound(run, conversation);
  } catch (error: unknown) {
    if (isAbort(error, run.signal)) return run.stoppedByAbort();
    const message = errorMessage(error);
    run.log.warn("a round failed unexpectedly", { round: run.rounds, error: message });
    run.trace?.write({ type: "error", round: run.rounds, error: message });
    return run.unfinished("error", roundFailedText(run.rounds, message), message);
  }
}

/**
 * Runs a task to the end. Problems found before the first model request (recursion guard, unknown
 * or disabled servers, servers that fail to start, no tools left after `allowedTools`, no model)
 * throw ({@linkcode AgentError}, or the client's error); everything after that ends in a result whose
 * `stopped_because` says why it ended.
 */
export async function runAgent(options: AgentOptions): Promise<AgentResult> {
  refuseNested(options.depth ?? 0);
  const run = new TaskRun(options);
  try {
    const conversation = await prepareTask(run);
    const { budget, offer } = conversation;
    if (budget.fixedTokens > budget.promptBudget) {
      const onDemand = offer.onDemand ? { tools: offer.catalog.entries.length } : undefined;
      return run.finish("context_overflow", toolOverflowMessage(budget, offer.tools(), onDemand));
    }
    while (true) {
      const result = await runRoundSafely(run, conversation);
      if (result !== undefined) return result;
    }
  } catch (error: unknown) {
    if (isAbort(error, run.signal) && !(error instanceof AgentError)) return run.stoppedByAbort();
    throw error;
  } finally {
    run.dispose();
  }
}
