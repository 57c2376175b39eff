/**
 * What the loop makes of one model request as it streams: progress messages a person wants to
 * read ("round 2/9: loading qwen3-8b 60%", "reading the prompt 35%", "waiting for the first token
 * (12 s)", "model: 312 tokens, 41 tok/s"), sent through the rate limit of
 * {@linkcode ProgressReporter.update}, and the figures of the round for the result
 * (`rounds_detail`): time to first token, tokens per second, tokens in and out, as the server
 * reports them or estimated (characters / 4) when it does not, and saying so.
 *
 * A client that does not stream sends no events: the round then has the server's usage (or the
 * estimate) and the request's duration, and the heartbeat of the loop keeps the caller informed.
 */
import type { ProgressReporter } from "./agent_progress.ts";
import type { RoundDetail } from "./agent_types.ts";
import type { ChatResult, ChatStreamEvent, GenerationStats } from "./lmstudio_types.ts";
import { estimateTokens } from "./tool_output.ts";
import { plural } from "./text.ts";

/** " 60%" for a fraction the server told, "" when it did not. */
function percent(fraction: number | undefined): string {
  if (fraction === undefined || !Number.isFinite(fraction)) return "";
  return ` ${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}

/** Tokens per second to one decimal, when there is a time to divide by. */
function rate(tokens: number, ms: number): number | undefined {
  return ms > 0 && tokens > 0 ? Math.round(tokens / (ms / 1000) * 10) / 10 : undefined;
}

/** "41 tok/s" (whole numbers from 10 on, one decimal below). */
function rateText(tokensPerSecond: number): string {
  const shown = tokensPerSecond >= 10 ? Math.round(tokensPerSecond) : tokensPerSecond;
  return `${shown} tok/s`;
}

/** The tokens of a reply when the server reports none: characters / 4 of all it holds. */
export function estimateReplyTokens(
  reply: Pick<ChatResult, "content" | "reasoning" | "toolCalls">,
): number {
  const calls = reply.toolCalls.map((c) =>
    c.name + (typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments))
  ).join("");
  return estimateTokens(reply.content + (reply.reasoning ?? "") + calls);
}

/** Watches one model request: turns its stream events into progress, and its end into figures. */
export class ModelWatch {
  readonly #progress: ProgressReporter;
  readonly #round: number;
  readonly #prefix: string;
  readonly #now: () => number;
  readonly #started: number;
  #firstTokenAt: number | undefined;
  #tokens = 0;
  #answering = false;
  #toolCalls = 0;
  #stats: GenerationStats | undefined;

  constructor(o: {
    progress: ProgressReporter;
    round: number;
    /** "round 2/9:" ("" for none: a single request of a tool) */
    prefix: string;
    now: () => number;
  }) {
    this.#progress = o.progress;
    this.#round = o.round;
    this.#prefix = o.prefix;
    this.#now = o.now;
    this.#started = o.now();
  }

  /** Takes one stream event (pass it as the chat request's `onEvent`). */
  readonly onEvent = (event: ChatStreamEvent): void => {
    switch (event.type) {
      case "loading":
        return this.#update(`loading ${event.model}${percent(event.progress)}`);
      case "prompt":
        return this.#update(`reading the prompt${percent(event.progress)}`);
      case "waiting":
        return this.#update(
          `waiting for the first token (${Math.round(event.elapsedMs / 1000)} s)`,
        );
      case "delta": {
        this.#firstTokenAt ??= this.#now();
        // `tokens` counts the reply so far; a smaller count says nothing new.
        this.#tokens = Math.max(this.#tokens, event.tokens);
        if (event.content) this.#answering = true;
        if (event.toolCalls !== undefined) {
          this.#toolCalls = Math.max(this.#toolCalls, event.toolCalls);
        }
        return this.#update(this.#generating());
      }
      case "done":
        this.#stats = event.stats;
        return;
    }
  };

  #update(message: string): void {
    this.#progress.update(this.#round, this.#prefixed(message));
  }

  /** `message` after the prefix, when there is one. */
  #prefixed(message: string): string {
    return this.#prefix === "" ? message : `${this.#prefix} ${message}`;
  }

  /** "model: 312 tokens, 41 tok/s" while it generates (thinking, or writing tool calls). */
  #generating(): string {
    const what = this.#toolCalls > 0
      ? `writing ${plural(this.#toolCalls, "tool call")}, `
      : this.#answering
      ? ""
      : "thinking, ";
    // The tokens after the first over the time since it came: a single token has no rate yet.
    const perSecond = rate(this.#tokens - 1, this.#now() - (this.#firstTokenAt ?? this.#now()));
    return `model: ${what}${plural(this.#tokens, "token")}` +
      (perSecond !== undefined ? `, ${rateText(perSecond)}` : "");
  }

  /**
   * The figures of the round, from the server's stats, else its usage, else estimated; reports
   * them as the last progress message of the request ("model: 312 tokens in 7.6 s, 41 tok/s").
   */
  finish(
    reply: ChatResult & { stats?: GenerationStats },
    /** The request's tokens as the budget estimates them, asked only when the server did not say. */
    estimatePrompt: () => number,
  ): Omit<RoundDetail, "tool_tokens" | "tools_loaded"> {
    const stats = reply.stats ?? this.#stats;
    const totalMs = Math.round(stats?.totalMs ?? this.#now() - this.#started);
    let prompt = stats?.promptTokens ?? reply.usage?.prompt_tokens;
    let completion = stats?.completionTokens ?? reply.usage?.completion_tokens;
    let estimated = stats?.estimated ?? false;
    if (prompt === undefined || completion === undefined) {
      prompt ??= estimatePrompt();
      completion ??= estimateReplyTokens(reply);
      estimated = true;
    }
    const ttftMs = stats?.ttftMs ??
      (this.#firstTokenAt !== undefined ? this.#firstTokenAt - this.#started : undefined);
    // Generation time: after the first token when it is known, else the whole request.
    const perSecond = stats?.tokensPerSecond ??
      rate(completion, totalMs - (ttftMs ?? 0));
    const detail: Omit<RoundDetail, "tool_tokens" | "tools_loaded"> = {
      round: this.#round,
      model_ms: totalMs,
      ...(ttftMs !== undefined ? { ttft_ms: Math.round(ttftMs) } : {}),
      ...(perSecond !== undefined ? { tokens_per_second: Math.round(perSecond * 10) / 10 } : {}),
      prompt_tokens: prompt,
      completion_tokens: completion,
      estimated,
      tool_calls: reply.toolCalls.length,
    };
    const seconds = (totalMs / 1000).toFixed(1);
    const speed = detail.tokens_per_second !== undefined
      ? `, ${rateText(detail.tokens_per_second)}`
      : "";
    this.#progress.bump(
      this.#round,
      this.#prefixed(
        `model: ${estimated ? "about " : ""}${plural(completion, "token")} in ${seconds} s${speed}`,
      ),
    );
    return detail;
  }
}
