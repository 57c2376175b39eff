/**
 * A stdio server's child process on its own, against `cat` and `sh` (real processes): the
 * transport's message framing, lines that are not JSON-RPC, the difference between the spawned
 * process exiting and the connection closing; and signalling process groups: which way the
 * sandbox allows, and that both ways stop every process of a real group (Linux: /proc tells
 * whether a process still runs).
 */
import {
  denoKillGroup,
  type ExitInfo,
  type GroupSignaller,
  groupSignaller,
  killCommandGroup,
  StdioChildTransport,
} from "../lib/pool_stdio.ts";
import { exitAfterBrokenPipe } from "../lib/pool_connect.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { assertGone, processGone, waitFor } from "./fixtures/pool_support.ts";

const ENV = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };

type Message = Parameters<StdioChildTransport["send"]>[0];

Deno.test("stdio transport frames big messages across pipe chunks and skips non-JSON lines", async () => {
  // `cat` echoes every line back: first a banner, then whatever we send.
  const transport = new StdioChildTransport({
    command: "sh",
    args: ["-c", "echo 'Server starting...'; exec cat"],
    env: ENV,
  });
  const received: Message[] = [];
  const errors: string[] = [];
  let closes = 0;
  transport.onmessage = (message) => received.push(message);
  transport.onerror = (error) => errors.push(error.message);
  transport.onclose = () => closes++;
  await transport.start();
  try {
    const big = "x".repeat(300_000);
    const message: Message = { jsonrpc: "2.0", method: "notifications/message", params: { big } };
    await transport.send(message);
    await transport.send({ jsonrpc: "2.0", id: 1, result: {} });
    await waitFor("both messages back", () => received.length >= 2);
    assertEquals(received, [message, { jsonrpc: "2.0", id: 1, result: {} }]);
    assertEquals(errors.length, 1);
    assertMatch(errors[0] ?? "", /not JSON-RPC: Server starting\.\.\./);
  } finally {
    await transport.close();
  }
  assertEquals(closes, 1, "onclose once, after close()");
  assertEquals(transport.exit, { code: 0, signal: null }, "cat ended with its input");
});

Deno.test("stdio transport reports the spawned process's exit apart from the connection closing", async () => {
  // A launcher: sh runs `cat` as its child and waits; killing sh leaves cat holding the pipes.
  const exits: ExitInfo[] = [];
  const transport = new StdioChildTransport({
    command: "sh",
    args: ["-c", "cat; exit 0"],
    env: ENV,
    onExit: (exit) => exits.push(exit),
  });
  const received: Message[] = [];
  let closes = 0;
  transport.onmessage = (message) => received.push(message);
  transport.onclose = () => closes++;
  await transport.start();
  try {
    await transport.send({ jsonrpc: "2.0", id: 6, result: {} });
    await waitFor("cat to answer", () => received.length === 1);
    const pid = transport.pid;
    assert(pid !== undefined);
    Deno.kill(pid, "SIGKILL");
    await waitFor("the launcher's exit", () => exits.length > 0);
    assertEquals(exits, [{ code: null, signal: "SIGKILL" }]);
    // cat still answers: the connection is not closed.
    await transport.send({ jsonrpc: "2.0", id: 7, result: {} });
    await waitFor("cat to answer again", () => received.length === 2);
    assertEquals(received.at(-1), { jsonrpc: "2.0", id: 7, result: {} });
    assertEquals(closes, 0);
  } finally {
    // Ends cat's input: it exits, and the close completes.
    await transport.close();
  }
  assertEquals(closes, 1);
});

Deno.test("a line longer than the limit closes the transport with a reason that says so", async () => {
  const transport = new StdioChildTransport({
    command: "sh",
    args: ["-c", "head -c 5000 /dev/zero | tr '\\0' x; sleep 5"],
    env: ENV,
    maxLineChars: 1000,
    closeGraceMs: 100,
  });
  const { promise: closed, resolve } = Promise.withResolvers<void>();
  transport.onclose = () => resolve();
  transport.onerror = () => {};
  await transport.start();
  await closed;
  assertStringIncludes(transport.closeReason ?? "", "larger than 1000 characters");
  assertStringIncludes(transport.closeReason ?? "", "Ask the tool for less data");
});

Deno.test("stdio transport's stderr end, taken before start, waits for the child's last words", async () => {
  const decoder = new TextDecoder();
  let stderr = "";
  const transport = new StdioChildTransport({
    command: "sh",
    args: ["-c", "sleep 0.2; echo 'last words' >&2"],
    env: ENV,
    onStderr: (chunk) => stderr += decoder.decode(chunk, { stream: true }),
  });
  const ended = transport.stderrEnded;
  await transport.start();
  try {
    await ended;
    assertEquals(stderr, "last words\n");
  } finally {
    await transport.close();
  }
});

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

Deno.test("a server that closed its input before the handshake is waited for: its exit explains the broken pipe", async () => {
  // It closes its stdin, says so on stderr, then exits with 3 a moment later.
  let said = "";
  const transport = new StdioChildTransport({
    command: "sh",
    args: ["-c", "exec 0<&-; echo closed >&2; sleep 1; exit 3"],
    env: ENV,
    onStderr: (chunk) => said += new TextDecoder().decode(chunk),
  });
  await transport.start();
  try {
    await waitFor("the server to close its input", () => said.includes("closed"));
    const message: Message = { jsonrpc: "2.0", id: 1, method: "initialize", params: {} };
    const error = await transport.send(message).then(() => undefined, (e: unknown) => e);
    assert(error !== undefined, "writing to a closed input fails");
    // Another error is no reason to wait.
    await exitAfterBrokenPipe(transport, new Error("something else"), 10_000);
    assertEquals(transport.exit, undefined);
    await exitAfterBrokenPipe(transport, error, 10_000);
    assertEquals(transport.exit, { code: 3, signal: null });
  } finally {
    await transport.close();
  }
});
