/**
 * `serve` as Claude Code runs it: main.ts spawned under the "bridge" permission set, spoken to
 * by a real SDK Client over stdio.
 */
import { Client, StdioClientTransport } from "../lib/sdk.ts";
import type { CallToolResult } from "../lib/sdk.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, bridgeCommand } from "./helpers.ts";

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
  let stderr = "";
  transport.stderr?.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
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
  // The banner went to stderr: version, URL and state.
  for (let i = 0; i < 50 && !stderr.includes("serving MCP"); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
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
