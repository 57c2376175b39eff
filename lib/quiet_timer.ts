/**
 * A timer for "nothing happened for `ms`": a stalled stream, a tool call without news, an idle
 * connection, a request that takes too long. {@linkcode QuietTimer.touch} marks activity without
 * touching the timer; when it comes due early, it is due again for the rest of the quiet time.
 * So activity that comes often (every chunk of a stream, every call on a connection) costs a
 * clock read, not a timer set and cleared each time.
 *
 * Every quiet timer is due on one shared clock ({@linkcode SharedClock}): one real timer, set for
 * the earliest due time and moved only when an earlier one comes. A request or a tool call then
 * adds and removes an entry of a set instead of setting and clearing a timer of its own.
 */

/** A timer as setTimeout returns it. */
export type TimerId = ReturnType<typeof setTimeout>;

/** The timer functions a {@linkcode SharedClock} uses (injected by tests). */
export interface ClockTimers {
  set(fn: () => void, ms: number): TimerId;
  clear(id: TimerId): void;
  /** Whether the timer keeps the process alive. */
  ref(id: TimerId, keep: boolean): void;
}

/** One due time on a {@linkcode SharedClock}. */
export interface Due {
  /** When, by `performance.now()`. */
  at: number;
  readonly fire: () => void;
  /** Whether it keeps the process alive while it waits. */
  readonly ref: boolean;
}

/** The longest delay a timer takes (about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

const REAL_TIMERS: ClockTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (id) => clearTimeout(id),
  ref: (id, keep) => keep ? Deno.refTimer(id) : Deno.unrefTimer(id),
};

/**
 * Many due times on one real timer. The timer is set for the earliest due time; a due time
 * removed before it leaves the timer be (when it then fires with nothing due, it is set for the
 * earliest left). It keeps the process alive only while a due time that does is waiting.
 */
export class SharedClock {
  readonly #due = new Set<Due>();
  readonly #timers: ClockTimers;
  #timer: TimerId | undefined;
  #timerAt = Infinity;
  /** Due times waiting that keep the process alive. */
  #refs = 0;

  constructor(timers: ClockTimers = REAL_TIMERS) {
    this.#timers = timers;
  }

  /** How many due times wait. */
  get size(): number {
    return this.#due.size;
  }

  add(due: Due): void {
    if (this.#due.has(due)) return;
    this.#due.add(due);
    const first = due.ref && this.#refs++ === 0;
    if (due.at < this.#timerAt) this.#arm(due.at);
    else if (first && this.#timer !== undefined) this.#timers.ref(this.#timer, true);
  }

  delete(due: Due): void {
    if (!this.#due.delete(due)) return;
    if (due.ref && --this.#refs === 0 && this.#timer !== undefined) {
      this.#timers.ref(this.#timer, false);
    }
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timerAt = at;
    // Rounded up: a timer that fires a fraction of a millisecond early would find nothing due.
    // At most the longest timer there is: one that fires before anything is due is set again.
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(at - performance.now())));
    this.#timer = this.#timers.set(() => this.#tick(), ms);
    if (this.#refs === 0) this.#timers.ref(this.#timer, false);
  }

  #tick(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    const fired: Due[] = [];
    let next = Infinity;
    for (const due of this.#due) {
      if (due.at <= now) fired.push(due);
      else if (due.at < next) next = due.at;
    }
    for (const due of fired) this.delete(due);
    if (next !== Infinity) this.#arm(next);
    for (const due of fired) {
      try {
        due.fire();
      } catch (error: unknown) {
        // As if thrown by a timer of its own: uncaught, without keeping the others from firing.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

const clock = new SharedClock();

/** See the module docs. */
export class QuietTimer {
  readonly #ms: number;
  readonly #onQuiet: () => void;
  readonly #now: () => number;
  readonly #clock: SharedClock;
  readonly #due: Due;
  #armed = false;
  #last = 0;
  #stopped = false;

  /**
   * `onQuiet` is called once `ms` passed without a {@linkcode touch}; the timer is then disarmed
   * until the next touch (which a caller that declines to act, being busy, relies on). `now`:
   * the clock that judges quiet (default `performance.now`); `unref`: the timer does not keep
   * the process alive; `clock`: the shared clock it is due on (tests).
   */
  constructor(
    ms: number,
    onQuiet: () => void,
    o: { now?: () => number; unref?: boolean; clock?: SharedClock } = {},
  ) {
    this.#ms = ms;
    this.#onQuiet = onQuiet;
    this.#now = o.now ?? (() => performance.now());
    this.#clock = o.clock ?? clock;
    this.#due = { at: 0, fire: () => this.#fire(), ref: o.unref !== true };
  }

  /** Something happened: the quiet time starts again (and the timer runs, if it did not). */
  touch(): void {
    if (this.#stopped) return;
    this.#last = this.#now();
    if (!this.#armed) this.#arm(this.#ms);
  }

  /** No more calls of `onQuiet`. */
  stop(): void {
    this.#stopped = true;
    if (this.#armed) this.#clock.delete(this.#due);
    this.#armed = false;
  }

  #arm(ms: number): void {
    this.#armed = true;
    this.#due.at = performance.now() + ms;
    this.#clock.add(this.#due);
  }

  #fire(): void {
    this.#armed = false;
    const quiet = this.#now() - this.#last;
    if (quiet < this.#ms) this.#arm(this.#ms - quiet);
    else this.#onQuiet();
  }
}
