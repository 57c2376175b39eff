/**
 * The progress of the model request an MCP tool makes (`chat_completion`, `text_completion`,
 * `create_response`, `analyze_image`): its stream events in the words of the loop's progress
 * ({@linkcode ModelWatch}: "loading qwen3-8b", "waiting for the first token (12 s)", "model: 312
 * tokens, 41 tok/s", and at the end "model: 312 tokens in 7.6 s, 41 tok/s"), sent as MCP progress
 * notifications at most 4 a second ({@linkcode ProgressReporter.update}) when the caller sent a
 * progressToken, and not at all when it did not.
 */
import { ProgressReporter } from "./agent_progress.ts";
import { ModelWatch } from "./agent_stream.ts";
import type { ChatStreamEvent, GenerationStats } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import type { RequestHandlerExtra, ServerNotification, ServerRequest } from "./sdk.ts";

/** What of a tool call's context the progress uses. */
type ProgressExtra = Pick<
  RequestHandlerExtra<ServerRequest, ServerNotification>,
  "_meta" | "sendNotification"
>;

/** The progress of one model request of a tool. */
export interface ToolModelProgress {
  /** The request's `onEvent`; undefined when the caller asked for no progress. */
  readonly onEvent: ((event: ChatStreamEvent) => void) | undefined;
  /** Reports the reply's figures as the last message. */
  done(reply: { text: string; reasoning?: string; stats?: GenerationStats }): void;
  /** Drops an update still held back by the rate limit (the request failed or was cancelled). */
  dispose(): void;
}

const NONE: ToolModelProgress = { onEvent: undefined, done: () => {}, dispose: () => {} };

/** The progress of one model request of a tool called with `extra`. */
export function toolModelProgress(extra: ProgressExtra, log: Logger): ToolModelProgress {
  const token = extra._meta?.progressToken;
  if (token === undefined) return NONE;
  const started = performance.now();
  const progress = new ProgressReporter({
    sink: (p) => {
      extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken: token, progress: p.progress, total: p.total, message: p.message },
      }).catch((error: unknown) => {
        // The client went away; its cancellation ends the request.
        log.debug("progress notification failed", { error: String(error) });
      });
    },
    // One request: its progress climbs towards 1 and never reaches it.
    total: 1,
    info: () => ({
      elapsedMs: Math.round(performance.now() - started),
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    }),
    log,
  });
  const watch = new ModelWatch({ progress, round: 1, prefix: "", now: () => performance.now() });
  return {
    onEvent: watch.onEvent,
    done: (reply) => {
      // Only the closing message is wanted, not the round's figures (nor a prompt estimate).
      watch.finish({
        content: reply.text,
        ...(reply.reasoning !== undefined ? { reasoning: reply.reasoning } : {}),
        toolCalls: [],
        ...(reply.stats !== undefined ? { stats: reply.stats } : {}),
      }, () => 0);
      progress.dispose();
    },
    dispose: () => progress.dispose(),
  };
}
