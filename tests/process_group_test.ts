/**
 * Signalling process groups: which way the sandbox allows, and that both ways stop every process
 * of a real group (Linux: /proc tells whether a process still runs).
 */
import {
  denoKillGroup,
  type GroupSignaller,
  groupSignaller,
  killCommandGroup,
} from "../lib/process_group.ts";
import { assert, assertEquals } from "./assert.ts";
import { assertGone, processGone } from "./fixtures/pool_support.ts";

/** A sandbox that allows running exactly `granted` ("*" = unrestricted). */
const only = (...granted: string[]) => (command?: string) => granted.includes(command ?? "*");

Deno.test("groupSignaller uses Deno.kill with full run access, else the kill command, else nothing", () => {
  assertEquals(groupSignaller({ mayRun: only("*"), os: "linux" }), denoKillGroup);
  assertEquals(groupSignaller({ mayRun: only("kill"), os: "darwin" }), killCommandGroup);
  assertEquals(groupSignaller({ mayRun: only("npx", "node"), os: "linux" }), undefined);
  assertEquals(groupSignaller({ mayRun: only("*"), os: "windows" }), undefined);
});

for (const [name, signal] of [["Deno.kill", denoKillGroup], ["kill", killCommandGroup]] as const) {
  Deno.test(`${name} stops every process of a group, including one whose parent died`, async () => {
    await stopsTheGroup(signal);
  });
}

async function stopsTheGroup(signalGroup: GroupSignaller): Promise<void> {
  // sh starts a background sleep (its child, same group), prints its pid, then waits.
  const child = new Deno.Command("sh", {
    args: ["-c", "sleep 30 & echo $!; wait"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    detached: true,
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let sleeper: number | undefined;
  try {
    const { value } = await reader.read();
    sleeper = Number(value?.trim());
    assert(sleeper > 0, `pid of the background sleep: ${value}`);
    // The parent dies first, as when a user kills `npx`: its child lives on in the group.
    child.kill("SIGKILL");
    await child.status;
    assert(!processGone(sleeper), "the orphaned sleep still runs");
    assertEquals(await signalGroup(child.pid, "SIGTERM"), true);
    await assertGone(sleeper);
  } finally {
    if (sleeper !== undefined && !processGone(sleeper)) Deno.kill(sleeper, "SIGKILL");
    await reader.cancel();
    await child.status;
  }
}
