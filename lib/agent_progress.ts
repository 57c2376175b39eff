/**
 * Progress of the autonomous loop: events whose `progress` increases strictly (as MCP progress
 * notifications require), the progress of downstream tools relayed as small steps, and heartbeats
 * that keep a caller informed (and its request timer reset) while the model generates or a tool
 * runs. A consumer that throws is logged and ignored; it never stops the task.
 */
import type { AgentProgress } from "./agent_types.ts";
import type { Usage } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import { errorMessage } from "./errors.ts";

/**
 * Longest silence, in milliseconds, while the model generates or a tool runs, when the caller
 * does not say: a heartbeat goes out after this long without any other event.
 */
export const DEFAULT_HEARTBEAT_MS = 10_000;

/** Values are rounded to this many decimals: small enough for a million steps per round. */
const SCALE = 1_000_000;
const MIN_STEP = 1 / SCALE;
/** The usual size of a small step (heartbeats, relayed progress). */
const STEP = 0.001;

function rounded(value: number): number {
  return Math.round(value * SCALE) / SCALE;
}

/** A heartbeat's timer, restarted by every event. */
interface Beat {
  restart(): void;
}

/** Monotonic progress: every value is larger than the one before. */
export class ProgressReporter {
  #last = -1;
  #sink: ((event: AgentProgress) => void) | undefined;
  #total: number;
  #info: () => { elapsedMs: number; usage: Usage };
  #log: Logger;
  #beats = new Set<Beat>();

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
    // Targets read well with three decimals; small steps need the finer scale.
    const value = rounded(Math.max(Math.round(target * 1000) / 1000, this.#last + MIN_STEP));
    this.#last = value;
    for (const beat of this.#beats) beat.restart();
    try {
      this.#sink({ progress: value, total: this.#total, message, round, tool, ...this.#info() });
    } catch (error: unknown) {
      // A broken progress consumer must not stop the task.
      this.#log.debug("progress callback failed", { error: errorMessage(error) });
    }
  }

  /**
   * A small step forward (heartbeats, a downstream tool's progress). Steps of round `round` stay
   * below `round`, where the next round starts, by shrinking as they approach it.
   */
  bump(round: number, message: string, tool?: string): void {
    const gap = round - this.#last;
    const step = gap > 2 * STEP ? STEP : Math.max(MIN_STEP, gap / 2);
    this.report(this.#last + step, round, message, tool);
  }

  /**
   * Bumps with `describe()` as message whenever `everyMs` pass without any event, until the
   * returned function is called. Events of any kind (a tool's own progress, other calls) restart
   * the wait, so a caller hears something at least every `everyMs`.
   */
  heartbeat(o: { round: number; everyMs: number; describe: () => string }): () => void {
    if (!this.#sink) return () => {};
    let timer: ReturnType<typeof setTimeout> | undefined;
    const beat: Beat = {
      restart: () => {
        clearTimeout(timer);
        timer = setTimeout(() => this.bump(o.round, o.describe()), o.everyMs);
      },
    };
    this.#beats.add(beat);
    beat.restart();
    return () => {
      this.#beats.delete(beat);
      clearTimeout(timer);
    };
  }
}
