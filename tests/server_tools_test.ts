/**
 * The bridge's own tools as a calling model gets them: the whole `tools/list` of `serve` within
 * the context budget, and the choice of tool groups (`serve --tools`, LMSTUDIO_BRIDGE_TOOLS):
 * a real SDK client against `main.ts serve` under the "bridge" permission set sees only the
 * chosen tools, a call to another is refused saying how to get it, and an unknown name stops the
 * start with the closest valid one.
 */
import { Client, StdioClientTransport } from "../lib/sdk_client.ts";
import type { CallToolResult, Tool } from "../lib/sdk.ts";
import { TOOL_CONTEXT_BUDGET, toolContextSize } from "../lib/server_tools.ts";
import { ALL_TOOLS, chooseTools, serveToolsOption, TOOL_GROUPS } from "../lib/tool_groups.ts";
import { CHARS_PER_TOKEN } from "../lib/tool_output.ts";
import { UsageError } from "../lib/args.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, bridgeCommand, runCli } from "./helpers.ts";
import { resultText } from "./rigs.ts";

/** A real client connected to `main.ts serve ARGS` with `env`. */
async function served(
  args: string[],
  env: Record<string, string>,
): Promise<{ client: Client; home: string } & AsyncDisposable> {
  const home = await Deno.makeTempDir({ prefix: "server_tools_" });
  const { command, args: argv } = bridgeCommand(["serve", ...args]);
  const transport = new StdioClientTransport({
    command,
    args: argv,
    cwd: home,
    env: baseEnv({ HOME: home, LOG_LEVEL: "error", ...env }),
    stderr: "ignore",
  });
  const client = new Client({ name: "server-tools-test", version: "1" });
  await client.connect(transport);
  return {
    client,
    home,
    async [Symbol.asyncDispose]() {
      await client.close();
      await Deno.remove(home, { recursive: true });
    },
  };
}

/** What a client like Claude Code gives its model of `tools`, in characters of JSON. */
function modelContextChars(tools: Tool[]): number {
  return JSON.stringify(
    tools.map((t) => ({ name: t.name, description: t.description, inputSchema: t.inputSchema })),
  ).length;
}

Deno.test(`serve's whole tools/list takes at most ${TOOL_CONTEXT_BUDGET} tokens of a model's context`, async () => {
  await using fake = await FakeLmStudio.start();
  await using bridge = await served([], { LMSTUDIO_BASE_URL: fake.baseUrl });
  const { tools } = await bridge.client.listTools();
  assertEquals(tools.map((t) => t.name), [...ALL_TOOLS]);
  const chars = modelContextChars(tools);
  const tokens = Math.ceil(chars / CHARS_PER_TOKEN);
  assert(
    tokens <= TOOL_CONTEXT_BUDGET,
    `the tool definitions take ${chars} characters, ~${tokens} tokens, over the budget of ` +
      `${TOOL_CONTEXT_BUDGET}: shorten descriptions (details go in parameter descriptions)`,
  );
  // The size the module reports is the size served (with the default LMSTUDIO_CONTEXT_LENGTH).
  assertEquals(toolContextSize(ALL_TOOLS, { defaultContextLength: 8192 }).chars, chars);
  for (const tool of tools) {
    assert((tool.description ?? "").length >= 40, `${tool.name} needs a real description`);
    assertEquals(tool.inputSchema.$schema, undefined, `${tool.name} lists no $schema`);
  }
});

Deno.test("serve --tools autonomous,mcp serves only those tools and refuses the others", async () => {
  await using fake = await FakeLmStudio.start();
  await using bridge = await served(["--tools", "autonomous,mcp"], {
    LMSTUDIO_BASE_URL: fake.baseUrl,
  });
  const { tools } = await bridge.client.listTools();
  assertEquals(tools.map((t) => t.name), [
    "list_available_mcps",
    "autonomous_with_mcp",
    "autonomous_with_multiple_mcps",
    "autonomous_discover_and_execute",
  ]);
  // After autonomous_with_mcp, the others refer to it for the parameters they share.
  const task = (name: string) =>
    JSON.stringify(tools.find((t) => t.name === name)?.inputSchema.properties?.task);
  assertStringIncludes(task("autonomous_with_mcp"), "Self-contained");
  assertEquals(task("autonomous_with_multiple_mcps"), '{"type":"string"}');
  assertStringIncludes(
    tools.find((t) => t.name === "autonomous_with_multiple_mcps")?.description ?? "",
    "Like autonomous_with_mcp (same parameters)",
  );
  const refused = await bridge.client.callTool({
    name: "chat_completion",
    arguments: { prompt: "ping" },
  }) as CallToolResult;
  assertEquals(refused.isError, true);
  const text = resultText(refused);
  assertStringIncludes(text, "chat_completion is not served here");
  assertStringIncludes(text, "mcp, autonomous");
  assertStringIncludes(text, "add lmstudio (or chat_completion)");
  assertEquals(
    fake.requestsTo("/v1/chat/completions").filter((r) => r.method === "POST"),
    [],
    "a refused call reaches no model",
  );
  // The instructions speak of what is served only.
  const told = bridge.client.getInstructions() ?? "";
  assertStringIncludes(told, "Delegate self-contained work with the autonomous_* tools");
  assert(!/chat_completion|lms_|health_check/.test(told), told);
  const listed = await bridge.client.callTool({ name: "list_available_mcps", arguments: {} });
  assertEquals(listed.isError, undefined);
});

Deno.test("LMSTUDIO_BRIDGE_TOOLS chooses the tools of serve, groups and tool names mixed", async () => {
  await using fake = await FakeLmStudio.start();
  await using bridge = await served([], {
    LMSTUDIO_BASE_URL: fake.baseUrl,
    LMSTUDIO_BRIDGE_TOOLS: " vision, Health_Check,autonomous_discover_and_execute ",
  });
  const { tools } = await bridge.client.listTools();
  assertEquals(tools.map((t) => t.name), [
    "health_check",
    "analyze_image",
    "autonomous_discover_and_execute",
  ]);
  // Without autonomous_with_mcp listed, this one describes itself and its parameters in full.
  const all = tools[2]!;
  assert(!(all.description ?? "").includes("Like autonomous_with_mcp"), all.description);
  assertStringIncludes(JSON.stringify(all.inputSchema.properties?.task), "Self-contained");
  const health = await bridge.client.callTool({ name: "health_check", arguments: {} });
  assertEquals(health.isError, undefined);
  const refused = await bridge.client.callTool({ name: "lms_server_status", arguments: {} });
  assertEquals(refused.isError, true);
  assertStringIncludes(resultText(refused as CallToolResult), "add lms (or lms_server_status)");
});

Deno.test("an unknown tool group stops serve at start with the closest name, exit 2", async () => {
  const flag = await runCli(["serve", "--tools", "autonomus,mcp"]);
  assertEquals(flag.code, 2, flag.stderr);
  assertStringIncludes(flag.stderr, `"autonomus"`);
  assertStringIncludes(flag.stderr, "did you mean autonomous?");
  assertStringIncludes(flag.stderr, "Usage:"); // the help of serve follows a usage error
  assertEquals(flag.stdout, "");
  const variable = await runCli(["serve"], { env: { LMSTUDIO_BRIDGE_TOOLS: "visoin" } });
  assertEquals(variable.code, 2, variable.stderr);
  assertStringIncludes(variable.stderr, "LMSTUDIO_BRIDGE_TOOLS");
  assertStringIncludes(variable.stderr, "did you mean vision?");
  assertEquals(variable.stdout, "");
});

Deno.test("chooseTools: groups expand, the table's order holds, empty and unknown explain", () => {
  assertEquals(chooseTools("lms_load_model,sessions", "x"), {
    tools: ["list_sessions", "close_session", "lms_load_model"],
  });
  assertEquals(chooseTools("autonomous", "x"), { tools: [...TOOL_GROUPS.autonomous] });
  const empty = chooseTools(" , ", "--tools");
  assert("problem" in empty);
  assertStringIncludes(empty.problem, "names no tools");
  const unknown = chooseTools("chat_completon", "--tools");
  assert("problem" in unknown);
  assertStringIncludes(unknown.problem, "did you mean chat_completion?");
});

Deno.test("serveToolsOption takes --tools out of serve's arguments", () => {
  assertEquals(serveToolsOption(["--http", "8765", "--tools=mcp"]), {
    tools: ["list_available_mcps"],
    rest: ["--http", "8765"],
  });
  assertEquals(serveToolsOption(["--http", "8765"]), { rest: ["--http", "8765"] });
  assertThrows(() => serveToolsOption(["--tools"]), UsageError, "--tools needs a list");
  assertThrows(() => serveToolsOption(["--tools", "--http"]), UsageError, "--tools needs a list");
});
