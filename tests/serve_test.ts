/**
 * `serve` as Claude Code runs it: main.ts spawned under the "bridge" permission set, spoken to
 * by a real SDK Client over stdio.
 */
import { Client, StdioClientTransport } from "../lib/sdk_client.ts";
import type { CallToolResult } from "../lib/sdk.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import { baseEnv, bridgeCommand, REPO } from "./helpers.ts";

/** `main.ts serve` with piped stdio, LM Studio pointed at a closed port, HOME and cwd in `home`. */
function spawnServe(home: string): Deno.ChildProcess {
  const { command, args } = bridgeCommand(["serve"]);
  return new Deno.Command(command, {
    args,
    cwd: home,
    env: baseEnv({ LMSTUDIO_BASE_URL: "http://127.0.0.1:9", HOME: home, LMSTUDIO_RETRIES: "0" }),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test("serve answers a real MCP client over stdio and closes when the client goes", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await Deno.makeTempDir();
  const { command, args } = bridgeCommand(["serve"]);
  const transport = new StdioClientTransport({
    command,
    args,
    cwd: home,
    env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home, LOG_LEVEL: "info" }),
    stderr: "pipe",
  });
  const stderrStream = transport.stderr;
  assert(stderrStream !== null, "stderr is piped");
  let stderr = "";
  stderrStream.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
  let stderrEnded = false;
  stderrStream.on("end", () => stderrEnded = true);
  const client = new Client({ name: "serve-test", version: "1" });
  await client.connect(transport);
  try {
    const { tools } = await client.listTools();
    assert(tools.length >= 18, `expected all tools, got ${tools.length}`);
    const r = await client.callTool({
      name: "chat_completion",
      arguments: { prompt: "ping" },
    }) as CallToolResult;
    assertEquals(r.content[0], { type: "text", text: "Echo: ping" });
    const bad = await client.callTool({ name: "chat_completion", arguments: { prompt: 42 } });
    assertEquals(bad.isError, true);
    const health = await client.callTool({ name: "health_check", arguments: {} });
    assertEquals(health.isError, undefined);
  } finally {
    await client.close();
  }
  // The banner went to stderr: version, URL and state (all of it is read once the server is gone).
  await waitFor("the server's stderr to end", () => stderrEnded);
  assertMatch(
    stderr,
    /lmstudio-bridge \S+ serving MCP on stdio; LM Studio at http:\/\/127\.0\.0\.1:\d+ answering/,
  );
  await Deno.remove(home, { recursive: true });
});

Deno.test("serve exits cleanly on stdin EOF with nothing but protocol on stdout", async () => {
  const home = await Deno.makeTempDir();
  const child = spawnServe(home);
  const writer = child.stdin.getWriter();
  const init = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "raw", version: "1" },
    },
  };
  await writer.write(new TextEncoder().encode(JSON.stringify(init) + "\n"));
  await writer.write(new TextEncoder().encode("this is not json\n"));
  await writer.close();
  const started = performance.now();
  const out = await child.output();
  const elapsed = performance.now() - started;
  assertEquals(out.code, 0);
  assert(elapsed < 5000, `exit took ${elapsed} ms`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  for (const line of lines) assertEquals(JSON.parse(line).jsonrpc, "2.0");
  assertEquals(JSON.parse(lines[0]!).id, 1);
  assertStringIncludes(new TextDecoder().decode(out.stderr), "not answering");
  await Deno.remove(home, { recursive: true });
});

Deno.test("serve exits cleanly on SIGTERM", async () => {
  const home = await Deno.makeTempDir();
  const child = spawnServe(home);
  // Wait for the banner: the signal handlers are installed before it is printed.
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  while (!stderr.includes("serving MCP")) {
    const { value, done } = await reader.read();
    if (done) break;
    stderr += value;
  }
  child.kill("SIGTERM");
  const [status, stdout] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
  ]);
  await reader.cancel();
  await child.stdin.close();
  assertEquals(status.code, 0);
  assertEquals(stdout, "");
  await Deno.remove(home, { recursive: true });
});

Deno.test("a client that disconnects leaves no downstream server running, even one that ignores end of input", async () => {
  await using fake = await FakeLmStudio.start();
  const home = await Deno.makeTempDir();
  const starts = `${home}/starts.txt`;
  const fixture = new URL("./fixtures/pool_fixture_server.ts", import.meta.url).pathname;
  await Deno.writeTextFile(
    `${home}/.mcp.json`,
    JSON.stringify({
      mcpServers: {
        stubborn: {
          command: "deno",
          args: [
            "run",
            "-A",
            "--cached-only",
            "--frozen",
            "--config",
            `${REPO}/deno.json`,
            fixture,
            "--ignore-eof",
            "--starts",
            starts,
          ],
          // The test's HOME is a temp dir: point Deno at the warm module cache.
          env: { DENO_DIR: baseEnv().DENO_DIR },
        },
      },
    }),
  );
  const { command, args } = bridgeCommand(["serve"]);
  const transport = new StdioClientTransport({
    command,
    args,
    cwd: home,
    env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home, LOG_LEVEL: "error" }),
    stderr: "pipe",
  });
  const client = new Client({ name: "serve-test", version: "1" });
  await client.connect(transport);
  // The autonomous tool connects to the server (listing its tools) before asking the model.
  const r = await client.callTool({
    name: "autonomous_with_mcp",
    arguments: { mcp_name: "stubborn", task: "say hi" },
  }) as CallToolResult;
  assertEquals(r.isError, undefined, JSON.stringify(r.content));
  const pid = Number((await Deno.readTextFile(starts)).trim());
  assert(pid > 0);
  // The SDK client's close: end stdin, SIGTERM after 2 s, SIGKILL after 2 more.
  await client.close();
  let alive = true;
  for (let i = 0; i < 60 && alive; i++) {
    alive = await Deno.stat(`/proc/${pid}`).then(() => true, () => false);
    if (alive) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assertEquals(alive, false, `server ${pid} outlived the bridge`);
  await Deno.remove(home, { recursive: true });
});
