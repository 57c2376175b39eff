/**
 * Attack: downstream MCP servers that fail (the attack server, tests/fixtures/attack_server.ts):
 * crashes mid-call, hangs, floods of stdout and stderr, 10-50 MB results, an exit at start, a
 * server that never answers initialize, and processes that try to outlive the bridge. Each
 * failure is explained to the model, the next call recovers, and nothing is left running.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import {
  answer,
  CHAT,
  ProgrammableModel,
  toolCalls,
  toolMessages,
} from "./fixtures/attack_model.ts";
import {
  attackEntry,
  commandLine,
  descendants,
  figure,
  killAll,
  pidsIn,
  resultText,
  rssKb,
  type Serve,
  startServe,
  survivors,
  tempProject,
} from "./fixtures/attack_support.ts";
import { processGone, waitFor } from "./fixtures/pool_support.ts";

/** Runs a task on `server` whose model calls `tool` once, then answers; the model's view of it. */
async function callThroughModel(
  serve: Serve,
  model: ProgrammableModel,
  server: string,
  tool: string,
  args: Record<string, unknown> = {},
): Promise<{ told: string; stopped?: string; text: string; isError?: boolean }> {
  model.sequence([toolCalls({ name: tool, arguments: args }), answer(`done with ${tool}`)]);
  const r = await serve.call("autonomous_with_mcp", {
    mcp_name: server,
    task: "go",
    max_rounds: 3,
  });
  const last = model.fake.requestsTo(CHAT).at(-1);
  const stopped = (r.structuredContent as { stopped_because?: string } | undefined)
    ?.stopped_because;
  return {
    told: toolMessages(last).at(-1) ?? "",
    stopped,
    text: resultText(r),
    isError: r.isError,
  };
}

Deno.test("downstream faults: crash, hang, floods, 10-50 MB results, exit at start, silent initialize are explained and the next call recovers; no orphans", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const starts = project.file("starts.txt");
  await project.write({
    a: attackEntry(["--starts", starts]),
    dead: attackEntry(["--exit-at-start", "3"]),
    mute: attackEntry(["--never-init", "--starts", project.file("mute.txt")]),
  });
  const serve = await startServe(project.dir, model.baseUrl, {
    MCP_CALL_TIMEOUT_MS: "4000",
    MCP_CONNECT_TIMEOUT_MS: "6000",
  });
  const rows: string[] = [];
  try {
    const first = await callThroughModel(serve, model, "a", "pid");
    assertEquals(first.stopped, "answer");
    const pid1 = Number(first.told);
    assert(pid1 > 0, first.told);

    // Crash in the middle of a call: the model is told who died, how, and what it said.
    const crash = await callThroughModel(serve, model, "a", "crash", { code: 7 });
    assertEquals(crash.stopped, "answer");
    assertMatch(crash.told, /exit|code 7/i);
    assertStringIncludes(crash.told, "crashing mid-call");
    rows.push(`crash: "${crash.told.slice(0, 140)}"`);
    const after = await callThroughModel(serve, model, "a", "pid");
    const pid2 = Number(after.told);
    assert(pid2 > 0 && pid2 !== pid1, `no restart after the crash: ${after.told}`);
    assert(processGone(pid1));

    // A call that never answers times out with a message; the server is still usable.
    const hang = await callThroughModel(serve, model, "a", "hang");
    assertEquals(hang.stopped, "answer");
    assertMatch(hang.told, /time|timed out|no answer/i);
    rows.push(`hang: "${hang.told.slice(0, 140)}"`);
    assertStringIncludes(
      (await callThroughModel(serve, model, "a", "echo", { text: "ok1" })).told,
      "ok1",
    );

    // 10 MB of non-JSON lines on stdout, then 10 MB on stderr: the answer still arrives.
    const flood = await callThroughModel(serve, model, "a", "flood_stdout", { mb: 10 });
    assertStringIncludes(flood.told, "flooded stdout with 10240 lines");
    const errFlood = await callThroughModel(serve, model, "a", "flood_stderr", { mb: 10 });
    assertStringIncludes(errFlood.told, "flooded stderr with 10240 lines");
    rows.push(`floods of 10 MB on stdout and stderr answered; bridge RSS ${rssKb(serve.pid)} kB`);

    // Big results reach the model truncated to fit its context, with a marker.
    for (const mb of [10, 50]) {
      const big = await callThroughModel(serve, model, "a", "big", { mb });
      assertEquals(big.stopped, "answer", big.text);
      assert(big.told.length < 200_000, `${mb} MB result passed on whole (${big.told.length})`);
      rows.push(
        `${mb} MB result: the model got ${big.told.length} chars; RSS ${rssKb(serve.pid)} kB`,
      );
    }
    assertStringIncludes(
      (await callThroughModel(serve, model, "a", "echo", { text: "ok2" })).told,
      "ok2",
    );
    assert(rssKb(serve.pid) < 1_500_000, `bridge RSS ${rssKb(serve.pid)} kB after the big results`);

    // A server that exits at start, and one that never answers initialize: the task fails
    // before any model request, saying why.
    const chats = model.chats;
    const dead = await serve.call("autonomous_with_mcp", { mcp_name: "dead", task: "go" });
    assertEquals(dead.isError, true);
    assertMatch(resultText(dead), /exit/i);
    assertStringIncludes(resultText(dead), "exiting at start on purpose");
    rows.push(`exit at start: "${resultText(dead).slice(0, 160)}"`);
    const mute = await serve.call("autonomous_with_mcp", { mcp_name: "mute", task: "go" });
    assertEquals(mute.isError, true);
    assertMatch(resultText(mute), /handshake|initiali[sz]e/i);
    rows.push(`never initializes: "${resultText(mute).slice(0, 160)}"`);
    assertEquals(model.chats, chats);
    // And the good server still answers.
    assertStringIncludes(
      (await callThroughModel(serve, model, "a", "echo", { text: "ok3" })).told,
      "ok3",
    );
  } finally {
    const below = descendants(serve.pid);
    await serve.close();
    const left = await survivors([serve.pid, ...below]);
    killAll(left);
    for (const row of rows) figure(row);
    figure(`${below.length} processes below the bridge at close, ${left.length} left after it`);
    assertEquals(left.map(commandLine), []);
  }
  const spawned = await pidsIn(starts);
  figure(`server "a" spawned ${spawned.length} times (1 + 1 per crash)`);
  assertEquals(spawned.length, 2);
  assertEquals(await survivors([...spawned, ...(await pidsIn(project.file("mute.txt")))]), []);
});

Deno.test("a grandchild in the server's process group ends with the bridge", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const file = project.file("grandchild.txt");
  await project.write({ g: attackEntry(["--grandchild", file]) });
  const serve = await startServe(project.dir, model.baseUrl);
  const r = await callThroughModel(serve, model, "g", "pid");
  assertEquals(r.stopped, "answer");
  await waitFor("the grandchild's pid", async () => (await pidsIn(file)).length > 0);
  const [grandchild] = await pidsIn(file);
  assert(!processGone(grandchild!));
  await serve.close();
  const left = await survivors([grandchild!, Number(r.told)]);
  killAll(left);
  assertEquals(left, [], "a grandchild outlived the bridge's close");
});

Deno.test({
  name: "a grandchild that moved to its own session (setsid) ends with the bridge",
  fn: async () => {
    await using model = await ProgrammableModel.start();
    await using project = await tempProject();
    const file = project.file("setsid.txt");
    await project.write({ s: attackEntry(["--setsid-grandchild", file]) });
    const serve = await startServe(project.dir, model.baseUrl);
    const r = await callThroughModel(serve, model, "s", "pid");
    assertEquals(r.stopped, "answer");
    await waitFor("the grandchild's pid", async () => (await pidsIn(file)).length > 0);
    const [grandchild] = await pidsIn(file);
    await serve.close();
    const left = await survivors([grandchild!], 3000);
    killAll(left);
    assertEquals(left, [], `setsid grandchild ${grandchild} outlived the bridge`);
  },
});

/**
 * Starts serve with server `x` (flags, plus a grandchild in its process group), uses it once,
 * SIGKILLs the bridge; answers the server's pid, the grandchild's, and which of them are left.
 */
async function afterSigkill(
  flags: string[],
): Promise<{ server: number; grandchild: number; left: number[] }> {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const file = project.file("grandchild.txt");
  await project.write({ x: attackEntry([...flags, "--grandchild", file]) });
  const serve = await startServe(project.dir, model.baseUrl);
  const r = await callThroughModel(serve, model, "x", "pid");
  const server = Number(r.told);
  assert(server > 0, r.text);
  const [grandchild] = await pidsIn(file);
  Deno.kill(serve.pid, "SIGKILL");
  await waitFor("the bridge to die", () => processGone(serve.pid));
  await serve.close().catch(() => {});
  const left = await survivors([server, grandchild!], 3000);
  killAll(left);
  return { server, grandchild: grandchild!, left };
}

Deno.test("after a SIGKILL of the bridge, a server that honours end of input exits", async () => {
  const { server, grandchild, left } = await afterSigkill([]);
  const state = (pid: number) => left.includes(pid) ? "survived" : "gone";
  figure(
    `after SIGKILL of the bridge: server ${state(server)}, its grandchild ${state(grandchild)}`,
  );
  assert(!left.includes(server), `server ${server} outlived the SIGKILLed bridge`);
});

Deno.test({
  name: "after a SIGKILL of the bridge, the grandchild of a server that exited is gone too",
  fn: async () => {
    const { grandchild, left } = await afterSigkill([]);
    assertEquals(left, [], `grandchild ${grandchild} outlived the SIGKILLed bridge`);
  },
});

Deno.test({
  name: "after a SIGKILL of the bridge, a server that ignores SIGTERM and end of input is gone too",
  fn: async () => {
    const { server, left } = await afterSigkill(["--ignore-term"]);
    assertEquals(left, [], `server ${server} outlived the SIGKILLed bridge`);
  },
});
