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
 *
 * The texts the loop writes are here too: the system prompt that tells the model how to work, and
 * the summary of the work done that ends every answer the model did not give itself (unfinished,
 * cancelled, failed).
 *
 * The loop's options, result and errors are in agent_types.ts; its setup (servers, tools, model,
 * context window) in agent_setup.ts, the context budget in agent_budget.ts, the tool calls and
 * progress in agent_calls.ts, traces in agent_trace.ts.
 */
import { raceAbort } from "./abort.ts";
import {
  assistantMessage,
  callArguments,
  DEFAULT_HEARTBEAT_MS,
  pendingCalls,
  ProgressReporter,
  REPEAT_LIMIT,
  RepeatGuard,
  runCalls,
} from "./agent_calls.ts";
import {
  buildCatalog,
  contextWindow,
  listServerTools,
  prepareModel,
  resolveServers,
} from "./agent_setup.ts";
import {
  AgentError,
  type AgentOptions,
  type AgentResult,
  type AgentServices,
  DEFAULT_MAX_ROUNDS,
  isAbort,
  type StopReason,
  type ToolCallRecord,
} from "./agent_types.ts";
import {
  DEFAULT_CONTEXT_TOKENS,
  fitConversation,
  planBudget,
  resultChars,
  toolOverflowMessage,
} from "./agent_budget.ts";
import type { ChatMessage, ChatRequest, ChatResult, Usage } from "./lmstudio_types.ts";
import { log as rootLog } from "./log.ts";
import { recoverTextToolCalls } from "./tool_calls.ts";
import { ArgumentValidator } from "./tool_schema.ts";
import { errorMessage } from "./errors.ts";
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

/**
 * The options of {@linkcode runAgent} that come from the caller's services and settings: the
 * default model, the model TTL, the context length, the nesting depth and the services.
 */
export function agentOptionsFrom(
  services: AgentServices,
): Pick<AgentOptions, "defaultModel" | "ttlSeconds" | "defaultContextLength" | "depth" | "deps"> {
  const { settings } = services;
  return {
    defaultModel: settings.defaultModel,
    ttlSeconds: settings.modelTtlSeconds,
    defaultContextLength: settings.defaultContextLength,
    depth: settings.depth,
    deps: {
      client: services.client,
      pool: services.pool,
      config: services.config,
      models: services.models,
      log: services.log,
    },
  };
}

/** Depth at which a bridge refuses autonomous tools. */
const MAX_DEPTH = 2;

function emptyUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
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
  const timeBudget = new AbortController();
  const budgetTimer = options.timeBudgetMs !== undefined
    ? setTimeout(
      () => timeBudget.abort(new DOMException("time budget exhausted", "TimeoutError")),
      options.timeBudgetMs,
    )
    : undefined;
  const signal = AbortSignal.any([userSignal, timeBudget.signal]);
  const usage = emptyUsage();
  const records: ToolCallRecord[] = [];
  const notes: string[] = [];
  let rounds = 0;
  let model = options.model ?? options.defaultModel ?? "";
  // What a model the bridge loads gets, and the window assumed when the server does not tell.
  const defaultContext = options.defaultContextLength ?? DEFAULT_CONTEXT_TOKENS;
  let contextTokens = defaultContext;
  let servers: string[] = [];
  let lastText = "";

  const progress = new ProgressReporter({
    sink: options.onProgress,
    total: maxRounds,
    info: () => ({ elapsedMs: Math.round(now() - started), usage: { ...usage } }),
    log,
  });

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
    if (!userSignal.aborted && timeBudget.signal.aborted) {
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

    const toolsPromise = listServerTools(deps.pool, servers, signal);
    const modelPromise = prepareModel({
      client: deps.client,
      models: deps.models,
      model: options.model,
      defaultModel: options.defaultModel,
      contextLength: defaultContext,
      notes,
      signal,
    });
    // Both at once; an unknown model fails the task without waiting for the servers to start.
    const [listed, prepared] = await raceAbort(Promise.all([toolsPromise, modelPromise]), signal);
    const built = buildCatalog(listed, {
      discover,
      allowedTools: options.allowedTools,
      notes,
    });
    servers = built.servers;
    const catalog = built.catalog;

    model = prepared.id;
    contextTokens = await raceAbort(
      contextWindow({
        client: deps.client,
        model,
        fallback: defaultContext,
        notes,
        signal,
        // A pre-load changes what the list says about the model: read it again then.
        ...(deps.models ? {} : { listing: prepared.listing }),
      }),
      signal,
    );

    // ---- Budget.
    const tools = catalog.openaiTools;
    const messages: ChatMessage[] = [
      { role: "system", content: systemPrompt(servers) },
      { role: "user", content: options.task },
    ];
    const budget = planBudget({ contextTokens, maxTokens: options.maxTokens, tools, messages });
    trace?.write({
      type: "start",
      task: options.task,
      servers,
      model,
      context_tokens: contextTokens,
      tool_tokens: budget.toolTokens,
      tools: catalog.names,
      notes,
    });
    if (budget.fixedTokens > budget.promptBudget) {
      return finish("context_overflow", toolOverflowMessage(budget, tools));
    }

    // ---- The loop.
    const validator = new ArgumentValidator();
    const usedIds = new Set<string>();
    const repeats = new RepeatGuard();
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

      if (!fitConversation(messages, { budget: budget.promptBudget - budget.toolTokens, log })) {
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
      const stopHeartbeat = progress.heartbeat({
        round,
        everyMs: heartbeatMs,
        describe: () => {
          const waited = ((now() - asked) / 1000).toFixed(0);
          return `round ${round}/${maxRounds}: ${model} still generating (${waited} s)`;
        },
      });
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
        stopHeartbeat();
      }
      const modelMs = Math.round(now() - asked);
      trace?.write({ type: "response", round, ms: modelMs, body: reply });
      if (reply.usage) {
        usage.prompt_tokens += reply.usage.prompt_tokens;
        usage.completion_tokens += reply.usage.completion_tokens;
        usage.total_tokens += reply.usage.total_tokens;
      }

      let text = reply.content;
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
        const cutOff = reply.finishReason === "length";
        if (!nudged) {
          nudged = true;
          messages.push({ role: "assistant", content: "" });
          messages.push({
            role: "user",
            content: cutOff
              ? "Your last reply ran out of tokens before it said anything. Answer briefly now, " +
                "or call a tool."
              : "Your last reply was empty. Give your final answer now, or call a tool.",
          });
          continue;
        }
        if (cutOff) {
          return finish(
            "error",
            `${emptyReplyCutOff(options.maxTokens, reply.reasoning)}\n${
              workSummary(records, lastText)
            }`,
            "reply cut off by max_tokens",
          );
        }
        return finish(
          "error",
          `The model returned no answer text twice.\n${workSummary(records, lastText)}`,
          "empty answer",
        );
      }

      const pending = pendingCalls(calls, { round, usedIds, catalog });
      messages.push(assistantMessage(text, pending));

      // A model that repeats itself is not making progress.
      for (const p of pending) {
        if (repeats.repeated(p)) {
          return finish(
            "repeated_call",
            `Stopped: the model called ${p.name} with the same arguments ${REPEAT_LIMIT} times in ` +
              `a row (${shortJson(callArguments(p))}), so it was not making progress.\n${
                workSummary(records, lastText)
              }`,
          );
        }
      }

      const run = await runCalls(pending, {
        round,
        maxRounds,
        recovered,
        maxChars: resultChars(budget, pending.length),
        execute: { catalog, validator, host: deps.pool, signal, timeoutMs: options.toolTimeoutMs },
        progress,
        heartbeatMs,
        trace,
        now,
      });
      records.push(...run.records);
      if (run.failed) {
        if (isAbort(run.failed.error, signal)) return stoppedByAbort();
        throw run.failed.error;
      }
      pending.forEach((p, i) => {
        messages.push({
          role: "tool",
          tool_call_id: p.id,
          name: p.name,
          content: run.contents[i]!,
        });
      });
    }
  } catch (error: unknown) {
    if (isAbort(error, signal) && !(error instanceof AgentError)) return stoppedByAbort();
    throw error;
  } finally {
    if (budgetTimer !== undefined) clearTimeout(budgetTimer);
  }
}
