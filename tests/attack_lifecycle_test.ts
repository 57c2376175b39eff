/**
 * Attack: the life cycle under load. An idle close never closes a server under a running call;
 * the end of stdin, SIGTERM and SIGINT in the middle of a task end `serve` cleanly, with no
 * process left behind.
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { answer, lastToolMessage, ProgrammableModel, toolCalls } from "./fixtures/attack_model.ts";
import {
  attackEntry,
  commandLine,
  descendants,
  figure,
  killAll,
  pidsIn,
  RawServe,
  resultText,
  startServe,
  survivors,
  tempProject,
} from "./fixtures/attack_support.ts";
import { waitFor } from "./fixtures/pool_support.ts";

Deno.test("an idle close (MCP_IDLE_MS=100) never closes a server under a running 1.5 s call", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const starts = project.file("starts.txt");
  await project.write({ a: attackEntry(["--starts", starts]) });
  await using serve = await startServe(project.dir, model.baseUrl, { MCP_IDLE_MS: "100" });
  model.play((req) => {
    const told = lastToolMessage(req);
    return told === undefined
      ? toolCalls({ name: "slow", arguments: { ms: 1500 } })
      : answer(`told: ${told}`);
  });
  const r = await serve.call("autonomous_with_mcp", { mcp_name: "a", task: "wait" });
  assertStringIncludes(resultText(r), "told: slow done after 1500 ms");
  assertEquals((await pidsIn(starts)).length, 1);
});

for (const how of ["stdin EOF", "SIGTERM", "SIGINT"] as const) {
  Deno.test(`${how} in the middle of a task ends serve cleanly: exit 0, no process left`, async () => {
    await using model = await ProgrammableModel.start();
    await using project = await tempProject();
    const calls = project.file("calls.txt");
    await project.write({ a: attackEntry(["--calls", calls, "--grandchild", project.file("g")]) });
    model.play(() => toolCalls({ name: "hang", arguments: {} }));
    await using serve = new RawServe(project.dir, model.baseUrl);
    await serve.initialize();
    await serve.send({
      id: "task",
      method: "tools/call",
      params: { name: "autonomous_with_mcp", arguments: { mcp_name: "a", task: "hang" } },
    });
    await waitFor(
      "the hanging call",
      async () => (await Deno.readTextFile(calls).catch(() => "")).includes("hang"),
    );
    const below = descendants(serve.pid);
    const grandchild = (await pidsIn(project.file("g")))[0]!;
    if (how === "stdin EOF") await serve.close();
    else serve.child.kill(how);
    const status = await serve.close();
    const left = await survivors([...below, grandchild]);
    killAll(left);
    const answered = serve.seen("task") !== undefined;
    figure(
      `${how}: exit ${status.code}${status.signal ? ` (${status.signal})` : ""}, ` +
        `${below.length} processes below, ${left.length} left, the task ${
          answered ? "was answered" : "got no answer"
        }`,
    );
    assertEquals(status.code, 0, serve.stderr);
    assertEquals(left.map(commandLine), []);
    assert(!serve.lines.some((l) => !l.startsWith("{")), "stdout carried something else");
  });
}
