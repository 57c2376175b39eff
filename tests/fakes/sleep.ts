/**
 * A sleep for the `sleep` seam of the LM Studio client and the model manager that cancels the
 * call under test once it starts waiting: the real {@linkcode abortableSleep}, with the test's
 * AbortController aborted as the wait begins, and a record of whether the wait then ran in full
 * or was cut short. A test of "cancelling a wait stops it at once" asserts on that record, not on
 * the clock.
 */
import { abortableSleep } from "../../lib/abort.ts";

/** See the module doc. */
export class AbortingSleep {
  /** How the last wait ended; undefined while none has. */
  waited: "in full" | "cut short" | undefined;
  readonly #controller: AbortController;
  readonly #reason: unknown;

  /** Aborts `controller` (with `reason`, when given) as each wait begins. */
  constructor(controller: AbortController, reason?: unknown) {
    this.#controller = controller;
    this.#reason = reason;
  }

  /** The sleep to hand to the code under test. */
  readonly sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
    const sleeping = abortableSleep(ms, signal);
    this.#controller.abort(this.#reason);
    try {
      await sleeping;
      this.waited = "in full";
    } catch (error: unknown) {
      this.waited = "cut short";
      throw error;
    }
  };
}
