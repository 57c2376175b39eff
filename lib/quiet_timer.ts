/**
 * A timer for "nothing happened for `ms`": a stalled stream, a tool call without news, an idle
 * connection. {@linkcode QuietTimer.touch} marks activity without touching the timer; the one
 * timer, when it fires early, is armed again for the rest of the quiet time. So activity that
 * comes often (every chunk of a stream, every call on a connection) costs a clock read, not a
 * timer set and cleared each time.
 */

/** See the module docs. */
export class QuietTimer {
  readonly #ms: number;
  readonly #onQuiet: () => void;
  readonly #now: () => number;
  readonly #unref: boolean;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = 0;
  #stopped = false;

  /**
   * `onQuiet` is called once `ms` passed without a {@linkcode touch}; the timer is then disarmed
   * until the next touch (which a caller that declines to act, being busy, relies on). `now`:
   * the clock (default `performance.now`); `unref`: the timer does not keep the process alive.
   */
  constructor(
    ms: number,
    onQuiet: () => void,
    o: { now?: () => number; unref?: boolean } = {},
  ) {
    this.#ms = ms;
    this.#onQuiet = onQuiet;
    this.#now = o.now ?? (() => performance.now());
    this.#unref = o.unref ?? false;
  }

  /** Something happened: the quiet time starts again (and the timer runs, if it did not). */
  touch(): void {
    if (this.#stopped) return;
    this.#last = this.#now();
    if (this.#timer === undefined) this.#arm(this.#ms);
  }

  /** No more calls of `onQuiet`. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#fire(), ms);
    if (this.#unref) Deno.unrefTimer(this.#timer);
  }

  #fire(): void {
    this.#timer = undefined;
    const quiet = this.#now() - this.#last;
    if (quiet < this.#ms) this.#arm(this.#ms - quiet);
    else this.#onQuiet();
  }
}
