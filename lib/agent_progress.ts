/**
 * The loop's progress ({@linkcode ProgressReporter}): events whose `progress` increases strictly
 * (as MCP progress notifications require), the progress of downstream tools relayed as small
 * steps, and heartbeats that keep a caller informed (and its request timer reset) while the model
 * generates or a tool runs. A consumer that throws is logged and ignored; it never stops the task.
 * Its own module, with few imports: `serve` and the terminal chat use it for a single model
 * request without loading the loop.
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

/** Shortest time between two {@linkcode ProgressReporter.update} events: at most 4 a second. */
export const UPDATE_GAP_MS = 250;

/**
 * Monotonic progress: every value is larger than the one before. Events of their own (a round
 * starts, a tool is called) go out at once; the frequent updates of a streaming reply
 * ({@linkcode ProgressReporter.update}) at most every {@linkcode UPDATE_GAP_MS}, the latest one
 * sent when the gap has passed unless an event of its own superseded it.
 */
export class ProgressReporter {
  #last = -1;
  #sink: ((event: AgentProgress) => void) | undefined;
  #total: number;
  #info: () => { elapsedMs: number; usage: Usage };
  #log: Logger;
  #now: () => number;
  #beats = new Set<Beat>();
  /** When the last event went out (the clock's time). */
  #sentAt = Number.NEGATIVE_INFINITY;
  /** The latest update held back by the rate limit, and the timer that sends it. */
  #held: { round: number; message: string; tool?: string } | undefined;
  #heldTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * `sink` gets the events (none are made without one); `info` adds elapsed time and usage; `now`
   * is the clock of the rate limit (default performance.now).
   */
  constructor(options: {
    sink: ((event: AgentProgress) => void) | undefined;
    total: number;
    info: () => { elapsedMs: number; usage: Usage };
    log: Logger;
    now?: () => number;
  }) {
    this.#sink = options.sink;
    this.#total = options.total;
    this.#info = options.info;
    this.#log = options.log;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * A new state of something that changes often (a streaming reply): a small step, sent at once
   * when the last event is {@linkcode UPDATE_GAP_MS} old, else held back and sent when the gap has
   * passed (a newer update replaces it; an event of its own drops it).
   */
  update(round: number, message: string, tool?: string): void {
    if (!this.#sink) return;
    const wait = this.#sentAt + UPDATE_GAP_MS - this.#now();
    if (wait <= 0) {
      this.bump(round, message, tool);
      return;
    }
    this.#held = { round, message, ...(tool !== undefined ? { tool } : {}) };
    this.#heldTimer ??= setTimeout(() => {
      this.#heldTimer = undefined;
      const held = this.#held;
      if (held !== undefined) this.bump(held.round, held.message, held.tool);
    }, wait);
  }

  /** Drops a held update for good: the task has ended (heartbeats are stopped by their owners). */
  dispose(): void {
    this.#dropHeld();
  }

  /** Drops an update held back by the rate limit (the task ends, a newer state went out). */
  #dropHeld(): void {
    this.#held = undefined;
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
  }

  /** Reports `target`, or a little more than the last value when `target` is not larger. */
  report(target: number, round: number, message: string, tool?: string): void {
    if (!this.#sink) return;
    this.#dropHeld();
    // Targets read well with three decimals; small steps need the finer scale.
    const value = rounded(Math.max(Math.round(target * 1000) / 1000, this.#last + MIN_STEP));
    this.#last = value;
    this.#sentAt = this.#now();
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

  /** Whether progress goes anywhere (the caller asked for it): without, updates are dropped. */
  get reporting(): boolean {
    return this.#sink !== undefined;
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
