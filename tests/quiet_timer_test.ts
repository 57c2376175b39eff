/**
 * The timer behind stalled streams, tool-call watchdogs and idle connections: it acts only after
 * `ms` without a touch by its clock, however often its real timer fires, and never once stopped.
 */
import { assertEquals } from "./assert.ts";
import { QuietTimer } from "../lib/quiet_timer.ts";

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
