/**
 * The whole MCP client surface end to end, as Claude Code meets it: a real SDK client (one that
 * can elicit) against `main.ts serve` under the bridge's permission set, the real
 * server-everything downstream, the fake LM Studio as the local model. One task reads a resource,
 * has the server elicit (answered by the client, never the model) and sample (answered by the
 * local model); a second starts from one of the server's prompts.
 */
import { type CallToolResult, ElicitRequestSchema } from "../lib/sdk.ts";
import { Client, StdioClientTransport } from "../lib/sdk_client.ts";
import { join } from "../lib/path.ts";
import { answer, calls, CHAT, messagesOf, toolMessages } from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedEntry, REFERENCE_SERVERS, trustAllTools } from "./fixtures/pool_support.ts";
import { baseEnv, bridgeCommand } from "./helpers.ts";

function textOf(result: CallToolResult): string {
  return result.content.map((c) => c.type === "text" ? c.text : "").join("\n");
}

Deno.test("through serve: a task reads a server's resources, its elicitation reaches the client, its sampling the local model, and a task starts from its prompt", async () => {
  await using fake = await FakeLmStudio.start();
  const dir = await Deno.makeTempDir({ prefix: "client_surface_" });
  await Deno.writeTextFile(
    join(dir, ".mcp.json"),
    // `deno` by name: the bridge's permission set allows running it from PATH.
    JSON.stringify({
      mcpServers: {
        everything: { ...cachedEntry([REFERENCE_SERVERS.everything]), command: "deno" },
      },
    }),
  );
  await trustAllTools(dir);
  const { command, args } = bridgeCommand(["serve"]);
  const transport = new StdioClientTransport({
    command,
    args,
    cwd: dir,
    env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, LOG_LEVEL: "warn" }),
    stderr: "pipe",
  });
  const client = new Client({ name: "surface-test", version: "1" }, {
    capabilities: { elicitation: {} },
  });
  const asked: string[] = [];
  client.setRequestHandler(ElicitRequestSchema, (request) => {
    asked.push(request.params.message);
    return { action: "accept", content: { name: "Ada" } };
  });
  await client.connect(transport);
  try {
    fake.script(
      CHAT,
      calls(
        { name: "list_resources", arguments: {} },
        { name: "trigger-elicitation-request", arguments: {} },
      ),
      calls({ name: "trigger-sampling-request", arguments: { prompt: "a haiku", maxTokens: 50 } }),
      answer("Drops on a tin roof"), // the sampling request, answered by the local model
      answer("done"),
    );
    const task = await client.callTool({
      name: "autonomous_with_mcp",
      arguments: { mcp_name: "everything", task: "Use the server." },
    }) as CallToolResult;
    assertEquals(task.isError, undefined, textOf(task));
    assertStringIncludes(textOf(task), "done");
    // The person was asked, through the client, naming the server.
    assertEquals(asked.length, 1);
    assertStringIncludes(asked[0]!, "everything");
    // The chats (the health check's token probe is a GET of the same path).
    const chats = () => fake.requestsTo(CHAT).filter((r) => r.method === "POST");
    const requests = chats();
    assertEquals(requests.length, 4);
    const round2 = toolMessages(requests[1]!).map((m) => String(m.content));
    assertStringIncludes(round2[0]!, "demo://resource/static/document/");
    assertStringIncludes(round2[1]!, "Ada");
    // The sampling request went to the local model with the server's prompt and limit.
    assertEquals((requests[2]!.body as Record<string, unknown>).max_tokens, 50);
    assertStringIncludes(JSON.stringify(messagesOf(requests[2]!)), "a haiku");
    assertStringIncludes(String(toolMessages(requests[3]!).at(-1)!.content), "Drops on a tin roof");
    const structured = task.structuredContent as { sampling?: unknown[] } | undefined;
    assertEquals(structured?.sampling?.length, 1, JSON.stringify(structured));

    fake.script(CHAT, answer("Mild."));
    const prompted = await client.callTool({
      name: "autonomous_with_mcp",
      arguments: {
        mcp_name: "everything",
        task: "Answer briefly.",
        prompt: "args-prompt",
        prompt_arguments: { city: "Lyon" },
      },
    }) as CallToolResult;
    assertEquals(prompted.isError, undefined, textOf(prompted));
    const first = messagesOf(chats()[4]!);
    assert(
      first.some((m) => m.role === "user" && String(m.content).includes("Lyon")),
      JSON.stringify(first),
    );
  } finally {
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
});
