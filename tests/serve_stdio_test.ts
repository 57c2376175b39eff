/**
 * `serve`'s stdio transport and large messages: an image of 8 MB sent inline as a data URI is
 * answered; a message over the 64 MiB limit gets a JSON-RPC error and the server goes on.
 */
import { Client, StdioClientTransport } from "../lib/sdk_client.ts";
import type { CallToolResult } from "../lib/sdk.ts";
import { LineStdioServerTransport, oversizedMessageId } from "../lib/server_stdio.ts";
import { PassThrough } from "node:stream";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, bridgeCommand, REPO } from "./helpers.ts";

Deno.test("the id of an oversized request is read from its first or last bytes", () => {
  assertEquals(oversizedMessageId('{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":"', ""), 7);
  assertEquals(
    oversizedMessageId('{"method":"tools/call","params":{"', 'aaa"}},"jsonrpc":"2.0","id":"q-1"}'),
    "q-1",
  );
  assertEquals(oversizedMessageId('{"method":"notifications/x","params":{"', 'aaa"}}}'), undefined);
  // An "id" inside the params is not the request's.
  assertEquals(oversizedMessageId('{"method":"x","params":{"id":3,"', 'a"}}'), undefined);
});

Deno.test("serve answers an 8 MB inline image and refuses a 70 MB request with an error, then goes on", async () => {
  await using fake = await FakeLmStudio.start({
    models: [{ id: "qwen2.5-vl-7b-instruct", type: "vlm", state: "loaded" }],
  });
  const home = await Deno.makeTempDir();
  const { command, args } = bridgeCommand(["serve"]);
  const transport = new StdioClientTransport({
    command,
    args,
    cwd: home,
    env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home, LOG_LEVEL: "warn" }),
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
  const client = new Client({ name: "serve-stdio-test", version: "1" });
  await client.connect(transport);
  try {
    // A real PNG padded to 8 MB after its end: 10.7 MB of base64, over the SDK's 10 MiB buffer.
    const png = await Deno.readFile(`${REPO}/tests/fixtures/images/red.png`);
    const big = new Uint8Array(8 * 1024 * 1024);
    big.set(png);
    const dataUri = `data:image/png;base64,${big.toBase64()}`;
    assert(dataUri.length > 10 * 1024 * 1024);
    const r = await client.callTool({
      name: "analyze_image",
      arguments: { images: dataUri, prompt: "What colour?", model: "qwen2.5-vl-7b-instruct" },
    }) as CallToolResult;
    assertEquals(r.isError, undefined, JSON.stringify(r.content).slice(0, 500) + stderr);

    const error = await assertRejects(() =>
      client.callTool({
        name: "chat_completion",
        arguments: { prompt: "x".repeat(70 * 1024 * 1024) },
      })
    );
    assertStringIncludes(error.message, "larger than the 64.0 MiB one message may have");

    const after = await client.callTool({ name: "health_check", arguments: {} });
    assertEquals(after.isError, undefined, "the server still serves");
    assertStringIncludes(stderr, "skipped a message of 70.0 MiB");
  } finally {
    await client.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("an oversized notification is logged and skipped; the next message is read", async () => {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const warnings: string[] = [];
  const log = {
    level: "warn" as const,
    debug() {},
    info() {},
    warn: (m: string) => void warnings.push(m),
    error() {},
    child() {
      return log;
    },
  };
  const transport = new LineStdioServerTransport(stdin, stdout, { log, maxMessageBytes: 100 });
  const received: unknown[] = [];
  const { promise: ok, resolve } = Promise.withResolvers<void>();
  transport.onmessage = (m) => {
    received.push(m);
    resolve();
  };
  await transport.start();
  stdin.write(`{"jsonrpc":"2.0","method":"notifications/x","params":{"a":"${"y".repeat(80)}`);
  stdin.write(`${"z".repeat(200)}"}}\n{"jsonrpc":"2.0","method":"notifications/ok"}\n`);
  await ok;
  assertEquals(received, [{ jsonrpc: "2.0", method: "notifications/ok" }]);
  assertEquals(warnings.length, 1);
  assertStringIncludes(warnings[0]!, "no request id found");
  await transport.close();
});
