/**
 * Progress of the autonomous loop: events whose `progress` increases strictly (as MCP progress
 * notifications require), and heartbeats that keep a caller informed while the model generates.
 * A consumer that throws is logged and ignored; it never stops the task.
 */
import type { AgentProgress } from "./agent_types.ts";
import type { Usage } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import { errorMessage } from "./tool_result.ts";

/** Heartbeat interval during long model generations when the caller does not say. */
export const DEFAULT_HEARTBEAT_MS = 10_000;

/** Monotonic progress: every value is larger than the one before. */
export class ProgressReporter {
  #last = -1;
  #sink: ((event: AgentProgress) => void) | undefined;
  #total: number;
  #info: () => { elapsedMs: number; usage: Usage };
  #log: Logger;

  /** `sink` gets the events (none are made without one); `info` adds elapsed time and usage. */
  constructor(options: {
    sink: ((event: AgentProgress) => void) | undefined;
    total: number;
    info: () => { elapsedMs: number; usage: Usage };
    log: Logger;
  }) {
    this.#sink = options.sink;
    this.#total = options.total;
    this.#info = options.info;
    this.#log = options.log;
  }

  /** Reports `target`, or a little more than the last value when `target` is not larger. */
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

  /** Bumps every `everyMs` with `describe()` as message, until the returned function is called. */
  heartbeat(o: { round: number; everyMs: number; describe: () => string }): () => void {
    const timer = setInterval(() => this.bump(o.round, o.describe()), o.everyMs);
    return () => clearInterval(timer);
  }
}
