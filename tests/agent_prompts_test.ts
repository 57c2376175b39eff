/**
 * Prompts of MCP servers to start a task from: the loop puts the prompt's messages before the
 * task text, checks the name and the required arguments first and says what the server offers
 * when they are wrong; the autonomous tools take a `prompt` input and `run` takes `--prompt
 * SERVER/NAME` with `--prompt-arg KEY=VALUE`. The loop side runs on a host with contract 6's
 * methods (tests/agent_harness.ts `featureHost`); the end-to-end tests against server-everything
 * run through the pool.
 */
import { AgentError } from "../lib/agent_types.ts";
import { UsageError } from "../lib/args.ts";
import { runCommand } from "../lib/cli_run.ts";
import { captureOutput } from "../lib/output.ts";
import { McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { type AgentApp, registerAutonomousTools } from "../lib/server_agent.ts";
import {
  answer,
  CHAT,
  featureHost,
  type Harness,
  messagesOf,
  type ServerFeatures,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { cachedEntry, REFERENCE_SERVERS, textOf } from "./fixtures/pool_support.ts";
import { commandContext, quiet } from "./rigs.ts";
import type { ToolHost } from "../lib/agent_types.ts";

const WEATHER: ServerFeatures = {
  prompts: [
    {
      name: "weather",
      description: "Asks about the weather",
      arguments: [{ name: "city", description: "Name of the city", required: true }, {
        name: "state",
      }],
    },
    { name: "greeting" },
  ],
  prompt: (name, args) => ({
    messages: name === "weather"
      ? [
        { role: "user", content: { type: "text", text: `What's the weather in ${args.city}?` } },
        { role: "assistant", content: { type: "text", text: "I will look it up." } },
      ]
      : [{ role: "user", content: { type: "text", text: "Say hello." } }],
  }),
};

Deno.test("a prompt's messages start the conversation, before the task text", async () => {
  await withHarness(async (h) => {
    const host = featureHost(h.pool, { fixture: WEATHER });
    h.fake.script(CHAT, answer("Sunny."), answer("Hello."));
    const result = await h.run({
      deps: { pool: host },
      task: "Answer in one word.",
      prompt: { server: "fixture", name: "weather", arguments: { city: "Paris" } },
    });
    assertEquals(result.answer, "Sunny.");
    assertEquals(messagesOf(h.fake.requestsTo(CHAT)[0]!).slice(1), [
      { role: "user", content: "What's the weather in Paris?" },
      { role: "assistant", content: "I will look it up." },
      { role: "user", content: "Answer in one word." },
    ]);
    assertEquals(host.calls, ['prompt weather {"city":"Paris"}']);
    assertStringIncludes(
      result.notes.join("\n"),
      'started from the prompt "weather" of MCP server "fixture" (2 messages)',
    );
    // Without task text, the prompt is all there is.
    await h.run({
      deps: { pool: host },
      task: "",
      prompt: { server: "fixture", name: "greeting" },
    });
    assertEquals(messagesOf(h.fake.requestsTo(CHAT)[1]!).slice(1), [
      { role: "user", content: "Say hello." },
    ]);
  });
});

Deno.test("a wrong prompt name or a missing argument fails before any model request, saying what the server has", async (t) => {
  await withHarness(async (h) => {
    const host = featureHost(h.pool, { fixture: WEATHER, memory: {} });
    const fails = async (prompt: { server: string; name: string }, message: string) => {
      const error = await assertRejects(
        () => h.run({ deps: { pool: host }, prompt }),
        AgentError,
      );
      assertEquals(error.kind, "prompt");
      assertEquals(error.message, message);
    };
    await t.step("unknown name", () =>
      fails(
        { server: "fixture", name: "wether" },
        'Cannot start from the prompt "wether" of MCP server "fixture": the server has no such ' +
          'prompt. Did you mean "weather"? Its prompts: weather, greeting.',
      ));
    await t.step("missing argument", () =>
      fails(
        { server: "fixture", name: "weather" },
        'Cannot start from the prompt "weather" of MCP server "fixture": it needs the 1 ' +
          "argument city (Name of the city). Give them as the prompt's arguments " +
          "(`run --prompt-arg NAME=VALUE`).",
      ));
    await t.step("a server without prompts", () =>
      fails(
        { server: "memory", name: "x" },
        'Cannot start from the prompt "x" of MCP server "memory": the server offers no prompts.',
      ));
    assertEquals(h.fake.requestsTo(CHAT).length, 0);
  });
});

Deno.test("run --prompt SERVER/NAME --prompt-arg K=V starts from the prompt; misuse is a usage error", async (t) => {
  await withHarness(async (h) => {
    const host = featureHost(h.pool, { fixture: WEATHER });
    const app: AgentApp = {
      client: h.client,
      pool: () => Promise.resolve(host),
      config: h.config,
      log: quiet,
      settings: {
        defaultModel: undefined,
        modelTtlSeconds: 0,
        defaultContextLength: 8192,
        depth: 0,
      },
    };
    await t.step("without a task", async () => {
      h.fake.script(CHAT, answer("Rain."));
      const out = captureOutput();
      const code = await runCommand(
        ["--mcp", "fixture", "--prompt", "fixture/weather", "--prompt-arg", "city=Oslo, Norway"],
        commandContext(app, out),
      );
      assertEquals(code, 0);
      assertEquals(out.out, "Rain.\n");
      assertEquals(messagesOf(h.fake.requestsTo(CHAT).at(-1)!).slice(1, 2), [
        { role: "user", content: "What's the weather in Oslo, Norway?" },
      ]);
    });
    for (
      const [argv, message] of [
        [
          ["--prompt", "weather"],
          '--prompt takes SERVER/NAME (a prompt of an MCP server), got "weather".',
        ],
        [
          ["--prompt", "fixture/weather", "--prompt-arg", "city"],
          '--prompt-arg takes KEY=VALUE, got "city".',
        ],
        [["--prompt-arg", "city=x", "task"], "--prompt-arg needs --prompt SERVER/NAME."],
      ] as const
    ) {
      await t.step(argv.join(" "), async () => {
        const error = await assertRejects(
          () => runCommand(["--mcp", "fixture", ...argv], commandContext(app, captureOutput())),
          UsageError,
        );
        assertEquals(error.message, message);
      });
    }
  });
});

/** The autonomous tools over `host`, connected in memory to a real SDK client. */
async function autonomousClient(h: Harness, host: ToolHost) {
  const server = new McpServer({ name: "bridge-test", version: "0" });
  registerAutonomousTools(server, {
    client: h.client,
    pool: () => Promise.resolve(host),
    config: h.config,
    log: quiet,
    settings: { defaultModel: undefined, modelTtlSeconds: 0, defaultContextLength: 8192, depth: 0 },
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: "test", version: "0" });
  await Promise.all([server.connect(a), client.connect(b)]);
  return { client, close: () => client.close().then(() => server.close()) };
}

Deno.test("the autonomous tools take a prompt; its server defaults to the task's only server", async () => {
  await withHarness(async (h) => {
    const host = featureHost(h.pool, { fixture: WEATHER });
    const { client, close } = await autonomousClient(h, host);
    try {
      h.fake.script(CHAT, answer("Cloudy."));
      const one = await client.callTool({
        name: "autonomous_with_mcp",
        arguments: {
          mcp_name: "fixture",
          task: "Be brief.",
          prompt: "weather",
          prompt_arguments: { city: "Rome" },
        },
      });
      assertStringIncludes(textOf(one as { content: unknown[] }), "Cloudy.");
      assertEquals(messagesOf(h.fake.requestsTo(CHAT)[0]!)[1], {
        role: "user",
        content: "What's the weather in Rome?",
      });
      const several = await client.callTool({
        name: "autonomous_with_multiple_mcps",
        arguments: { mcp_names: ["fixture", "memory"], task: "t", prompt: "weather" },
      });
      assertEquals(several.isError, true);
      assertStringIncludes(
        textOf(several as { content: unknown[] }),
        'Name the MCP server that has the prompt "weather" as SERVER/NAME',
      );
      h.fake.script(CHAT, answer("Sunny."));
      const named = await client.callTool({
        name: "autonomous_with_multiple_mcps",
        arguments: {
          mcp_names: ["fixture", "memory"],
          task: "Be brief.",
          prompt: "fixture/weather",
          prompt_arguments: { city: "Oslo" },
        },
      });
      assertStringIncludes(textOf(named as { content: unknown[] }), "Sunny.");
      assert(
        JSON.stringify(messagesOf(h.fake.requestsTo(CHAT).at(-1)!)).includes(
          "What's the weather in Oslo?",
        ),
      );
    } finally {
      await close();
    }
  });
});

Deno.test({
  name: "end to end: a task starts from server-everything's args-prompt through the pool",
  fn: async () => {
    await withHarness(async (h) => {
      h.fake.script(CHAT, answer("Mild."));
      const result = await h.run({
        servers: ["memory"],
        task: "",
        prompt: { server: "everything", name: "args-prompt", arguments: { city: "Lyon" } },
      });
      assertEquals(result.answer, "Mild.");
      assertEquals(messagesOf(h.fake.requestsTo(CHAT)[0]!).slice(1), [
        { role: "user", content: "What's weather in Lyon?" },
      ]);
    }, { servers: { everything: cachedEntry([REFERENCE_SERVERS.everything]) } });
  },
});
