/**
 * The timer behind stalled streams, tool-call watchdogs, idle connections and request timeouts:
 * it acts only after `ms` without a touch by its clock, however often its real timer fires, and
 * never once stopped; every quiet timer is due on one shared real timer.
 */
import { assertEquals } from "./assert.ts";
import { type ClockTimers, QuietTimer, SharedClock, type TimerId } from "../lib/quiet_timer.ts";

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("a quiet timer acts once its clock shows ms without a touch, not when its timer fires early", async () => {
  let now = 0;
  let quiet = 0;
  const done = Promise.withResolvers<void>();
  const timer = new QuietTimer(20, () => {
    quiet++;
    done.resolve();
  }, { now: () => now });
  timer.touch();
  // The clock stands still: its timer fires several times and is armed again each time.
  await pause(120);
  assertEquals(quiet, 0);
  now += 20;
  await done.promise;
  assertEquals(quiet, 1);
  // Disarmed after acting, until touched again; stopped, never again.
  await pause(60);
  assertEquals(quiet, 1);
  timer.touch();
  timer.stop();
  now += 1000;
  await pause(60);
  timer.touch();
  await pause(60);
  assertEquals(quiet, 1);
});

/** Real timers, counted: how often one was set and cleared, and each change of whether it is ref'd. */
function countedTimers(): ClockTimers & { sets: number; clears: number; refs: boolean[] } {
  const t = {
    sets: 0,
    clears: 0,
    refs: [] as boolean[],
    set(fn: () => void, ms: number): TimerId {
      t.sets++;
      return setTimeout(fn, ms);
    },
    clear(id: TimerId): void {
      t.clears++;
      clearTimeout(id);
    },
    ref(id: TimerId, keep: boolean): void {
      t.refs.push(keep);
      if (keep) Deno.refTimer(id);
      else Deno.unrefTimer(id);
    },
  };
  return t;
}

Deno.test("quiet timers armed and stopped one after another (a request, a call) share one real timer", () => {
  const timers = countedTimers();
  const clock = new SharedClock(timers);
  for (let i = 0; i < 100; i++) {
    const timer = new QuietTimer(60_000, () => {}, { clock });
    timer.touch();
    timer.touch();
    timer.stop();
  }
  // One timer, set for the first; the later ones are due after it, and none was cleared.
  assertEquals([timers.sets, timers.clears, clock.size], [1, 0, 0]);
  // With nothing left waiting it no longer keeps the process alive (the test would not end).
  assertEquals(timers.refs.at(-1), false);
});

Deno.test("the shared timer moves for an earlier due time and fires each timer in turn", async () => {
  const timers = countedTimers();
  const clock = new SharedClock(timers);
  const fired: string[] = [];
  const both = Promise.withResolvers<void>();
  const fire = (name: string) => () => {
    fired.push(name);
    if (fired.length === 2) both.resolve();
  };
  const late = new QuietTimer(80, fire("late"), { clock });
  const early = new QuietTimer(20, fire("early"), { clock });
  const stopped = new QuietTimer(10, fire("stopped"), { clock });
  late.touch();
  early.touch(); // earlier: the timer moves
  stopped.touch(); // earlier still; stopped before it is due, it never fires
  stopped.stop();
  assertEquals([timers.sets, timers.clears], [3, 2]);
  await both.promise;
  assertEquals(fired, ["early", "late"]);
  assertEquals(clock.size, 0);
});

Deno.test("the shared timer keeps the process alive only while a timer that does waits", () => {
  const timers = countedTimers();
  const clock = new SharedClock(timers);
  const idle = new QuietTimer(60_000, () => {}, { clock, unref: true });
  idle.touch();
  assertEquals(timers.refs, [false]);
  const call = new QuietTimer(60_000, () => {}, { clock });
  call.touch();
  assertEquals(timers.refs, [false, true]);
  call.stop();
  assertEquals(timers.refs, [false, true, false]);
  idle.stop();
  assertEquals(clock.size, 0);
});

Deno.test("a timer whose action throws does not keep the others due with it from acting", async () => {
  const clock = new SharedClock();
  const errors: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    errors.push(e.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    const acted = Promise.withResolvers<void>();
    const failing = new QuietTimer(5, () => {
      throw new Error("boom");
    }, { clock });
    const other = new QuietTimer(5, () => acted.resolve(), { clock });
    failing.touch();
    other.touch();
    await acted.promise;
    await pause(0);
    assertEquals(errors.map((e) => (e as Error).message), ["boom"]);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});
