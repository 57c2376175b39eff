/**
 * Sampling for downstream servers: a server that asks for an LLM (`sampling/createMessage`)
 * while one of its tools runs for the local model is answered by the same local model, through
 * the task's LM Studio client, with the task's model, within limits:
 *
 * - `max_tokens` (lmstudio-bridge.json `sampling.max_tokens`, default
 *   {@linkcode DEFAULT_SAMPLING_MAX_TOKENS}): the reply gets the smaller of this and what the
 *   server asked for;
 * - `per_task` (`sampling.per_task`, default {@linkcode DEFAULT_SAMPLING_PER_TASK}): requests
 *   answered in one task; later ones are refused (0 turns sampling off);
 * - the request and its reply must fit the model's context window;
 * - the approval rules: a request is decided like a call of the tool `sampling/createMessage` of
 *   that server (`tools["everything/sampling/createMessage"]`, or
 *   `servers.everything.tools["sampling/createMessage"]`; globs such as `*` match it too). When
 *   no rule matches it is answered (within the limits); a rule can make it `ask` or `deny`.
 *
 * The server's model preferences are not followed (the task's model answers), nor
 * `includeContext`; requests that offer the model tools are refused (the bridge does not declare
 * sampling with tools). A refusal is an error the server receives, saying why. Every request is
 * recorded (`sampling` in the result, a `sampling` trace event) and its tokens count in the
 * task's usage.
 */
import type { ApprovalGate } from "./agent_approval.ts";
import { conversationTokens } from "./agent_budget.ts";
import { McpMessageError, samplingChatMessages } from "./agent_messages.ts";
import type { TraceSink } from "./agent_trace.ts";
import type { AgentLmClient, SamplingLimits, SamplingRecord } from "./agent_types.ts";
import { BridgeError, errorMessage } from "./errors.ts";
import type { ChatMessage, Usage } from "./lmstudio_types.ts";
import type { CreateMessageRequestParams, CreateMessageResult } from "./sdk.ts";
import { clause, plural, shorten } from "./text.ts";
import { isAbort } from "./abort.ts";

/** Longest sampling reply when the settings do not say, in tokens. */
export const DEFAULT_SAMPLING_MAX_TOKENS = 1024;
/** Sampling requests answered per task when the settings do not say. */
export const DEFAULT_SAMPLING_PER_TASK = 10;
/** The tool name the approval rules know a server's sampling requests by. */
export const SAMPLING_TOOL = "sampling/createMessage";

/** Why a sampling request was not answered. */
export class SamplingError
  extends BridgeError<"limit" | "unsupported" | "too_large" | "refused" | "model"> {
  override name = "SamplingError";
}

/** The tool call during which a server asks. */
export interface SamplingCall {
  round: number;
  server: string;
  tool: string;
  signal: AbortSignal;
}

/** The MCP stop reason of a chat finish reason. */
function stopReason(finish: string | undefined): string {
  if (finish === "length") return "maxTokens";
  if (finish === undefined || finish === "stop" || finish === "tool_calls") return "endTurn";
  return finish;
}

/** What the approver is shown of a request: the asking tool, the limits, the messages shortened. */
function requestSummary(
  call: SamplingCall,
  params: CreateMessageRequestParams,
  maxTokens: number,
  messages: readonly ChatMessage[],
): Record<string, unknown> {
  const text = (m: ChatMessage) =>
    typeof m.content === "string"
      ? m.content
      : (m.content ?? []).map((p) => p.type === "text" ? p.text : "[image]").join(" ");
  return {
    during_tool: call.tool,
    max_tokens: maxTokens,
    ...(params.systemPrompt ? { system_prompt: shorten(params.systemPrompt, 200) } : {}),
    messages: messages.filter((m) => m.role !== "system").map((m) =>
      `${m.role}: ${shorten(text(m), 200)}`
    ),
  };
}

/** What {@linkcode SamplingAnswerer} works with: the task's client, model, window and gate. */
export interface SamplingOptions {
  client: AgentLmClient;
  /** The task's model (known once the task is prepared). */
  model: () => string;
  /** The model's context window, in tokens. */
  contextTokens: () => number;
  approvals: ApprovalGate;
  /** The task's usage: sampling tokens are added to it. */
  usage: Usage;
  /** The limits in force (the bridge settings', or the caller's). */
  limits: () => SamplingLimits;
  /** The task's temperature, for requests that give none. */
  temperature?: number;
  ttlSeconds?: number;
  trace?: TraceSink;
  now: () => number;
}

/**
 * The sampling of one task: answers the requests of the servers whose tools the loop calls
 * ({@linkcode SamplingAnswerer.answer}), within the limits, and keeps their records.
 */
export class SamplingAnswerer {
  readonly records: SamplingRecord[] = [];
  readonly #o: SamplingOptions;
  /** Requests let through to the model so far (the per-task count). */
  #granted = 0;

  constructor(o: SamplingOptions) {
    this.#o = o;
  }

  /**
   * Answers one request with the local model, or throws {@linkcode SamplingError} saying why not
   * (the server receives it as the error of its request). Rejects on an abort of `signal` or the
   * call's.
   */
  async answer(
    call: SamplingCall,
    params: CreateMessageRequestParams,
    signal: AbortSignal,
  ): Promise<CreateMessageResult> {
    const o = this.#o;
    const both = AbortSignal.any([signal, call.signal]);
    const started = o.now();
    const limits = o.limits();
    const requested = params.maxTokens;
    const maxTokens = Math.max(
      1,
      Math.min(requested, limits.max_tokens ?? DEFAULT_SAMPLING_MAX_TOKENS),
    );
    const record = (r: Partial<SamplingRecord> & { ok: boolean }) => {
      const full: SamplingRecord = {
        round: call.round,
        server: call.server,
        tool: call.tool,
        requested_max_tokens: requested,
        max_tokens: maxTokens,
        prompt_tokens: 0,
        completion_tokens: 0,
        duration_ms: Math.round(o.now() - started),
        ...r,
      };
      this.records.push(full);
      o.trace?.write({ type: "sampling", ...full });
    };
    const refuse = (kind: SamplingError["kind"], why: string): never => {
      record({ ok: false, error: why });
      throw new SamplingError(kind, `lmstudio-bridge did not answer the sampling request: ${why}`);
    };

    if ((params.tools?.length ?? 0) > 0) {
      refuse("unsupported", "it offers the model tools, and the bridge samples without tools");
    }
    let messages: ChatMessage[] = [];
    try {
      messages = samplingChatMessages(params);
    } catch (error: unknown) {
      if (!(error instanceof McpMessageError)) throw error;
      refuse("unsupported", error.message);
    }
    const promptTokens = conversationTokens(messages);
    const window = o.contextTokens();
    if (promptTokens + maxTokens > window) {
      refuse(
        "too_large",
        `its messages (about ${promptTokens} tokens) and a reply of up to ${maxTokens} tokens ` +
          `do not fit the model's context window (${window} tokens)`,
      );
    }
    const perTask = limits.per_task ?? DEFAULT_SAMPLING_PER_TASK;
    if (this.#granted >= perTask) {
      refuse(
        "limit",
        perTask === 0
          ? "sampling is turned off (sampling.per_task is 0 in lmstudio-bridge.json)"
          : `this task has had its ${plural(perTask, "sampling request")} ` +
            "(sampling.per_task in lmstudio-bridge.json)",
      );
    }
    const refusal = await o.approvals.check({
      entry: {
        name: `${call.server}/${SAMPLING_TOOL}`,
        server: call.server,
        tool: SAMPLING_TOOL,
        readOnly: true,
        destructive: false,
      },
      kind: "sampling",
      fallback: { action: "allow", rule: "default: sampling within limits" },
      args: requestSummary(call, params, maxTokens, messages),
      round: call.round,
      signal: both,
    });
    if (refusal !== undefined) refuse("refused", refusal.error);
    // Counted before the request, so that requests made at once cannot pass the limit together.
    this.#granted += 1;
    try {
      const reply = await o.client.chat({
        model: o.model(),
        messages,
        max_tokens: maxTokens,
        ...(params.temperature ?? o.temperature) !== undefined
          ? { temperature: params.temperature ?? o.temperature }
          : {},
        ...(params.stopSequences?.length ? { stop: params.stopSequences } : {}),
        ...(o.ttlSeconds !== undefined && o.ttlSeconds > 0 ? { ttl: o.ttlSeconds } : {}),
      }, { signal: both });
      const usage = reply.usage;
      if (usage) {
        o.usage.prompt_tokens += usage.prompt_tokens;
        o.usage.completion_tokens += usage.completion_tokens;
        o.usage.total_tokens += usage.total_tokens;
      }
      const stop = stopReason(reply.finishReason);
      record({
        ok: true,
        prompt_tokens: usage?.prompt_tokens ?? promptTokens,
        completion_tokens: usage?.completion_tokens ?? Math.ceil(reply.content.length / 4),
        stop_reason: stop,
      });
      return {
        model: o.model(),
        role: "assistant",
        content: { type: "text", text: reply.content },
        stopReason: stop,
      };
    } catch (error: unknown) {
      if (isAbort(error, both)) throw error;
      const message = errorMessage(error);
      record({ ok: false, error: `the model request failed: ${message}` });
      throw new SamplingError(
        "model",
        `lmstudio-bridge could not answer the sampling request: the local model failed: ` +
          `${clause(message)}`,
        { cause: error },
      );
    }
  }
}
