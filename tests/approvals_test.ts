/**
 * The surfaces of approvals: the MCP approver asks the client's user through elicitation (a real
 * SDK Client that declares it and answers, and one that does not), and `run` asks on the terminal
 * (a pseudo-terminal through util-linux `script`), refuses without one, and allows all with --yes.
 */
import { ElicitRequestSchema, McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { REQUEST } from "./fixtures/tty_approver.ts";
import { mcpApprover } from "../lib/server_agent.ts";
import { cliApproval, terminalApprover } from "../lib/cli_run.ts";
import { captureOutput } from "../lib/output.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { cachedRun } from "./fixtures/pool_support.ts";
import { baseEnv, REPO, terminal } from "./helpers.ts";
import { resultText } from "./rigs.ts";
import { shellWord } from "../lib/text.ts";
import { redact } from "../lib/redact.ts";

/**
 * An McpServer with one tool, `ask`, that runs the MCP approver on REQUEST and returns its answer
 * as JSON; connected in memory to a real SDK Client with `capabilities`.
 */
async function connect(
  capabilities: Record<string, unknown>,
  onElicit?: (message: string) => { action: "accept" | "decline" | "cancel"; content?: object },
): Promise<{ client: Client; close: () => Promise<void> }> {
  const server = new McpServer({ name: "approvals-test", version: "1" });
  server.registerTool("ask", { description: "asks" }, async (extra) => ({
    content: [{
      type: "text",
      text: JSON.stringify(await mcpApprover(server, extra)(REQUEST, extra.signal)),
    }],
  }));
  const client = new Client({ name: "test-client", version: "1" }, { capabilities });
  if (onElicit) {
    client.setRequestHandler(ElicitRequestSchema, (request) => {
      const params = request.params;
      return onElicit("message" in params ? params.message : "");
    });
  }
  const [a, b] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(a), client.connect(b)]);
  return {
    client,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

async function ask(client: Client): Promise<unknown> {
  const result = await client.callTool({ name: "ask", arguments: {} });
  return JSON.parse(resultText(result as Parameters<typeof resultText>[0]));
}

Deno.test("the MCP approver asks a client that can elicit, and maps its answer", async () => {
  const messages: string[] = [];
  let reply: { action: "accept" | "decline" | "cancel"; content?: object } = {
    action: "accept",
    content: { decision: "task" },
  };
  const { client, close } = await connect({ elicitation: {} }, (message) => {
    messages.push(message);
    return reply;
  });
  try {
    assertEquals(await ask(client), "task");
    const message = messages[0] ?? "";
    assertStringIncludes(message, 'write_file on MCP server "filesystem"');
    assertStringIncludes(message, "destructive");
    assertStringIncludes(message, '"path":"/tmp/notes.txt"');
    assertStringIncludes(message, "Task: Write the notes");
    assert(!message.includes("sk-live"), `the API key is redacted: ${message}`);
    reply = { action: "accept", content: { decision: "once" } };
    assertEquals(await ask(client), "once");
    reply = { action: "decline" };
    assertEquals(await ask(client), "deny");
    reply = { action: "cancel" };
    assertEquals(await ask(client), "deny");
  } finally {
    await close();
  }
});

Deno.test("the MCP approver is unavailable with a client that cannot elicit", async () => {
  const { client, close } = await connect({});
  try {
    const answer = await ask(client) as { unavailable?: string };
    assertStringIncludes(answer.unavailable ?? "", "test-client cannot ask its user");
  } finally {
    await close();
  }
});

Deno.test("redact hides secret-named values and token-like strings, nothing else", () => {
  assertEquals(
    redact({
      path: "/a",
      password: "hunter2",
      headers: { Authorization: "Bearer abc", author: "Ann" },
      list: ["ghp_0123456789abcdefghij0123", "plain"],
    }),
    {
      path: "/a",
      password: "***",
      headers: { Authorization: "***", author: "Ann" },
      list: ["***", "plain"],
    },
  );
});

Deno.test("run's approval: --yes allows all; without a terminal nobody is asked", async () => {
  const out = captureOutput();
  const yes = cliApproval({ yes: true, stdinIsTerminal: false, out });
  assertEquals(yes.approveAll, true);
  const none = cliApproval({ yes: false, stdinIsTerminal: false, out });
  assertEquals(none.approveAll, false);
  const answer = await none.approve(REQUEST, new AbortController().signal);
  assert(typeof answer === "object", "unavailable");
  assertStringIncludes(answer.unavailable, "standard input is not a terminal");
  assertStringIncludes(answer.unavailable, "--yes");
});

Deno.test("the terminal approver reads once / task / deny, asks again after nonsense", async () => {
  const lines = ["maybe", "t"];
  const out = captureOutput();
  const approve = terminalApprover(out, () => Promise.resolve(lines.shift() ?? null));
  assertEquals(await approve(REQUEST, new AbortController().signal), "task");
  assertStringIncludes(out.err, '"maybe" is not an answer.');
  const ended = terminalApprover(out, () => Promise.resolve(null));
  assertEquals(await ended(REQUEST, new AbortController().signal), "deny");
});

Deno.test({
  name: "run asks on a real terminal and takes the typed answer",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const driver = `${REPO}/tests/fixtures/tty_approver.ts`;
    const command = ["deno", ...cachedRun([driver])].map(shellWord).join(" ");
    const term = terminal(command, { env: baseEnv() });
    await term.waitFor(/Allow it\?/);
    assertStringIncludes(term.screen, 'write_file on MCP server "filesystem"');
    assert(!term.screen.includes("sk-live"), term.screen);
    await term.type("t\n");
    await term.waitFor(/ANSWER:/);
    await term.close();
    const seen = term.screen;
    assertStringIncludes(seen, 'ANSWER: {"answer":"task","approveAll":false}');
  },
});

Deno.test("without a terminal, run's approver says nobody can be asked", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cachedRun([`${REPO}/tests/fixtures/tty_approver.ts`]),
    env: baseEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertStringIncludes(text, '"unavailable":"standard input is not a terminal');
});
