/**
 * `doctor` end to end (main.ts under the "bridge" permission set): each check is printed as it
 * finishes, so a server stuck in its handshake holds back nothing else; the bridge's own entry is
 * not started.
 */
import { assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, bridgeCommand } from "./helpers.ts";
import { assertGone, processTree } from "./fixtures/pool_support.ts";
import { join } from "../lib/path.ts";

Deno.test("doctor prints the finished checks while a server hangs in its handshake", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await Deno.makeTempDir({ prefix: "doctor_test_" });
  try {
    await Deno.writeTextFile(
      join(home, ".mcp.json"),
      JSON.stringify({
        mcpServers: {
          // Starts and never answers initialize.
          stuck: { command: "deno", args: ["eval", "setInterval(() => {}, 1000)"] },
        },
      }),
    );
    const { command, args } = bridgeCommand(["doctor"]);
    const child = new Deno.Command(command, {
      args,
      cwd: home,
      env: baseEnv({
        LMSTUDIO_BASE_URL: fake.baseUrl,
        HOME: home,
        MCP_CONNECT_TIMEOUT_MS: "600000",
      }),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    // The LM Studio check is printed although the stuck server's check can take ten minutes.
    while (!/ok\s+LM Studio/.test(stdout)) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    assertMatch(stdout, /ok\s+LM Studio\s+http:\/\/127\.0\.0\.1:\d+ answers/);
    assertEquals(stdout.includes("server stuck"), false, "the stuck server is still being checked");
    // Closing the pool waits for a pending handshake (see the report): end the run and the stuck
    // server by force.
    const tree = processTree(child.pid);
    for (const pid of tree.reverse()) Deno.kill(pid, "SIGKILL");
    await reader.cancel();
    await child.status;
    for (const pid of tree) await assertGone(pid);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("doctor does not start the bridge's own entry, as run --all skips it", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await Deno.makeTempDir({ prefix: "doctor_test_" });
  try {
    await Deno.writeTextFile(
      join(home, ".mcp.json"),
      JSON.stringify({ mcpServers: { self: { command: "lmstudio-bridge", args: ["serve"] } } }),
    );
    const { command, args } = bridgeCommand(["doctor", "--json"]);
    const out = await new Deno.Command(command, {
      args,
      cwd: home,
      env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home }),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const report = JSON.parse(new TextDecoder().decode(out.stdout));
    const self = (report.checks as { name: string; status: string; detail: string }[])
      .find((c) => c.name === "server self");
    assertEquals(self?.status, "ok");
    assertStringIncludes(self?.detail ?? "", "this bridge itself (not started");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
