/**
 * Elicitation requests of downstream servers reach the person behind the task, never the local
 * model: the loop hands them to the caller's elicitor (or declines them with why), the autonomous
 * tools forward them to an MCP client that can elicit (a real SDK Client in memory) and decline
 * for one that cannot, and `run` asks on the terminal (scripted lines) or declines without one.
 * The loop side runs with a tool run in-process that asks as a server would
 * (tests/agent_harness.ts `featureHost`, contract 3); the end-to-end test against
 * server-everything runs through the pool.
 */
import { DECLINE_REASON_KEY } from "../lib/agent_elicitation.ts";
import type { ServerRequestHandlers, ToolHost } from "../lib/agent_types.ts";
import { fieldValue, type LineReader, terminalElicitor } from "../lib/cli_elicit.ts";
import { runCommand } from "../lib/cli_run.ts";
import { captureOutput } from "../lib/output.ts";
import {
  type ElicitRequestParams,
  ElicitRequestSchema,
  type ElicitResult,
  McpServer,
} from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { type AgentApp, registerAutonomousTools } from "../lib/server_agent.ts";
import {
  answer,
  calls,
  CHAT,
  featureHost,
  type Harness,
  messagesOf,
  toolMessages,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { cachedEntry, REFERENCE_SERVERS, textOf } from "./fixtures/pool_support.ts";
import { commandContext, quiet } from "./rigs.ts";
import { type ElicitationRequest } from "../lib/agent_types.ts";

const SECRET_QUESTION = "What is your favourite colour?";

const FORM: ElicitRequestParams = {
  message: SECRET_QUESTION,
  requestedSchema: {
    type: "object",
    properties: { colour: { type: "string", title: "Colour" } },
    required: ["colour"],
  },
};

/** A host whose fixture server has `ask_user`: it elicits `params` and answers with the result. */
function elicitingHost(h: Harness, params: ElicitRequestParams = FORM) {
  return featureHost(h.pool, {
    fixture: {
      tools: {
        ask_user: {
          definition: {
            description: "Asks the user.",
            inputSchema: { type: "object" },
            annotations: { readOnlyHint: true },
          },
          run: async (_args, handlers: ServerRequestHandlers, signal) => {
            if (handlers.elicit === undefined) throw new Error("no elicitation handler");
            const result = await handlers.elicit(params, signal);
            return { content: [{ type: "text", text: JSON.stringify(result) }] };
          },
        },
      },
    },
  });
}

function settings() {
  return { defaultModel: undefined, modelTtlSeconds: 0, defaultContextLength: 8192, depth: 0 };
}

Deno.test("a server's elicitation goes to the caller's elicitor and never to the model", async () => {
  await withHarness(async (h) => {
    const asked: ElicitationRequest[] = [];
    h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("blue it is"));
    const result = await h.run({
      deps: { pool: elicitingHost(h) },
      task: "Find the colour",
      elicit: (req) => {
        asked.push(req);
        return Promise.resolve({ action: "accept", content: { colour: "blue" } });
      },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(asked, [{
      server: "fixture",
      tool: "ask_user",
      task: "Find the colour",
      params: FORM,
    }]);
    const requests = h.fake.requestsTo(CHAT);
    assertEquals(
      JSON.parse(String(toolMessages(requests[1]!)[0]!.content)),
      { action: "accept", content: { colour: "blue" } },
    );
    // The model was never asked the question: only the task's two rounds reached it.
    assertEquals(requests.length, 2);
    assert(!requests.some((r) => JSON.stringify(messagesOf(r)).includes(SECRET_QUESTION)));
  });
});

Deno.test("without an elicitor, or when it fails, the request is declined with why, and a note says so", async (t) => {
  await withHarness(async (h) => {
    for (
      const [label, elicit, reason] of [
        ["no elicitor", undefined, "this caller offers no way to ask its user"],
        [
          "a failing elicitor",
          () => Promise.reject(new Error("the dialog broke")),
          "asking the user failed: the dialog broke",
        ],
      ] as const
    ) {
      await t.step(label, async () => {
        h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("no colour"));
        const result = await h.run({ deps: { pool: elicitingHost(h) }, elicit });
        const text = String(toolMessages(h.fake.requestsTo(CHAT).at(-1)!)[0]!.content);
        assertEquals(JSON.parse(text), {
          action: "decline",
          _meta: { [DECLINE_REASON_KEY]: reason },
        });
        assertStringIncludes(
          result.notes.join("\n"),
          `MCP server "fixture" asked for the user's input (elicitation) while its tool ask_user ` +
            `ran; it was declined: ${reason}`,
        );
      });
    }
  });
});

/** The autonomous tools over `host`, in memory to a real SDK Client with `capabilities`. */
async function autonomousClient(
  h: Harness,
  host: ToolHost,
  capabilities: Record<string, unknown>,
  onElicit?: (params: ElicitRequestParams) => ElicitResult,
) {
  const server = new McpServer({ name: "bridge-test", version: "0" });
  const app: AgentApp = {
    client: h.client,
    pool: () => Promise.resolve(host),
    config: h.config,
    log: quiet,
    settings: settings(),
  };
  registerAutonomousTools(server, app);
  const client = new Client({ name: "test-client", version: "0" }, { capabilities });
  if (onElicit) client.setRequestHandler(ElicitRequestSchema, (r) => onElicit(r.params));
  const [a, b] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(a), client.connect(b)]);
  return { client, close: () => client.close().then(() => server.close()) };
}

Deno.test("the autonomous tools forward elicitation to a client that can elicit, saying which server asks", async () => {
  await withHarness(async (h) => {
    const seen: ElicitRequestParams[] = [];
    const { client, close } = await autonomousClient(
      h,
      elicitingHost(h),
      { elicitation: { form: {} } },
      (params) => {
        seen.push(params);
        return { action: "accept", content: { colour: "green" } };
      },
    );
    try {
      h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("green"));
      const result = await client.callTool({
        name: "autonomous_with_mcp",
        arguments: { mcp_name: "fixture", task: "colour?" },
      });
      assertStringIncludes(textOf(result as { content: unknown[] }), "green");
      assertEquals(seen.length, 1);
      assertEquals(
        seen[0]!.message,
        'MCP server "fixture" asks (its tool ask_user runs for a task of the local model): ' +
          SECRET_QUESTION,
      );
      assertEquals(
        "requestedSchema" in seen[0]! ? seen[0]!.requestedSchema : undefined,
        FORM.requestedSchema,
      );
      const tool = String(toolMessages(h.fake.requestsTo(CHAT)[1]!)[0]!.content);
      assertEquals(JSON.parse(tool), { action: "accept", content: { colour: "green" } });
    } finally {
      await close();
    }
  });
});

Deno.test("the autonomous tools decline elicitation a client cannot answer, with why", async (t) => {
  await withHarness(async (h) => {
    const url: ElicitRequestParams = {
      mode: "url",
      message: "Sign in",
      elicitationId: "e1",
      url: "https://example.com/login",
    };
    for (
      const [label, capabilities, params, reason] of [
        ["no elicitation", {}, FORM, "test-client does not offer MCP elicitation"],
        [
          "form only, URL asked",
          { elicitation: { form: {} } },
          url,
          "test-client cannot answer URL elicitation",
        ],
      ] as const
    ) {
      await t.step(label, async () => {
        const { client, close } = await autonomousClient(h, elicitingHost(h, params), capabilities);
        try {
          h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("none"));
          const result = await client.callTool({
            name: "autonomous_with_mcp",
            arguments: { mcp_name: "fixture", task: "t" },
          });
          const tool = String(toolMessages(h.fake.requestsTo(CHAT).at(-1)!)[0]!.content);
          assertEquals(JSON.parse(tool)._meta[DECLINE_REASON_KEY], reason);
          assertStringIncludes(textOf(result as { content: unknown[] }), reason);
        } finally {
          await close();
        }
      });
    }
  });
});

/** A LineReader that types `lines`, then reaches the end of input. */
function typed(lines: string[]): LineReader {
  const queue = [...lines];
  return () => Promise.resolve(queue.length > 0 ? queue.shift()! : null);
}

const EVERY_KIND: ElicitRequestParams = {
  message: "Tell us about you",
  requestedSchema: {
    type: "object",
    properties: {
      name: { type: "string", title: "Name", description: "Your full name" },
      agree: { type: "boolean", title: "Agree" },
      age: { type: "integer", minimum: 1, maximum: 130 },
      friend: { type: "string", enum: ["Monica", "Rachel", "Joey"] },
      hero: {
        type: "string",
        oneOf: [{ const: "h1", title: "Superman" }, { const: "h2", title: "Batman" }],
      },
      fish: {
        type: "array",
        items: { anyOf: [{ const: "f1", title: "Tuna" }, { const: "f2", title: "Trout" }] },
      },
      line: { type: "string", default: "It was a dark night." },
      note: { type: "string" },
    },
    required: ["name", "age"],
  },
};

Deno.test("the terminal elicitor asks each field, checks the answers, and keeps defaults", async () => {
  const out = captureOutput();
  const elicit = terminalElicitor(
    out,
    typed(["y", "", "Ada Lovelace", "yes", "200", "36", "2", "batman", "1, 2", "", ""]),
  );
  const result = await elicit(
    { server: "everything", tool: "trigger", task: "t", params: EVERY_KIND },
    new AbortController().signal,
  );
  assertEquals(result, {
    action: "accept",
    content: {
      name: "Ada Lovelace",
      agree: true,
      age: 36,
      friend: "Rachel",
      hero: "h2",
      fish: ["f1", "f2"],
      line: "It was a dark night.",
    },
  });
  assertStringIncludes(out.err, 'MCP server "everything" asks you (its tool trigger runs');
  assertStringIncludes(out.err, "Name (name), required - Your full name");
  assertStringIncludes(out.err, "This one is required.");
  assertStringIncludes(out.err, "That does not fit: give at most 130.");
  assertStringIncludes(out.err, "1) Monica  2) Rachel  3) Joey");
  assertStringIncludes(out.err, 'Enter keeps "It was a dark night."');
});

Deno.test("the terminal elicitor declines on no, cancels at the end of input or after three misfits", async (t) => {
  const ask = (lines: string[], params: ElicitRequestParams = EVERY_KIND) =>
    terminalElicitor(captureOutput(), typed(lines))(
      { server: "s", tool: "t", task: "x", params },
      new AbortController().signal,
    );
  await t.step("no", async () => assertEquals(await ask(["n"]), { action: "decline" }));
  await t.step("Enter", async () => assertEquals(await ask([""]), { action: "decline" }));
  await t.step(
    "end of input",
    async () => assertEquals(await ask(["y", "Ada"]), { action: "cancel" }),
  );
  await t.step(
    "misfits",
    async () =>
      assertEquals(await ask(["y", "Ada", "maybe", "perhaps", "dunno"]), { action: "cancel" }),
  );
  await t.step("URL", async () =>
    assertEquals(
      await ask(["yes"], {
        mode: "url",
        message: "Sign in",
        elicitationId: "1",
        url: "https://x.test/",
      }),
      { action: "accept" },
    ));
});

Deno.test("field answers are read by their schema", () => {
  assertEquals(fieldValue({ type: "number" }, "3.5"), { value: 3.5 });
  assertEquals(fieldValue({ type: "integer" }, "3.5"), { error: "give a whole number" });
  assertEquals(fieldValue({ type: "boolean" }, "No"), { value: false });
  assertEquals(fieldValue({ type: "string", format: "email" }, "ada"), {
    error: "give an email address",
  });
  assertEquals(fieldValue({ type: "string", format: "date" }, "2024-02-30"), {
    value: "2024-02-30",
  });
  assertEquals(fieldValue({ type: "string", maxLength: 2 }, "abc"), {
    error: "give at most 2 characters",
  });
  assertEquals(
    fieldValue({ type: "array", items: { enum: ["a", "b"] }, maxItems: 1 }, "a,b"),
    { error: "choose at most 1" },
  );
});

Deno.test("run asks a server's elicitation on the terminal, and declines without one", async (t) => {
  await withHarness(async (h) => {
    const app: AgentApp = {
      client: h.client,
      pool: () => Promise.resolve(elicitingHost(h)),
      config: h.config,
      log: quiet,
      settings: settings(),
    };
    await t.step("on a terminal", async () => {
      h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("red"));
      const out = captureOutput();
      const code = await runCommand(["--mcp", "fixture", "colour?"], commandContext(app, out), {
        stdinIsTerminal: true,
        readLine: typed(["y", "red"]),
      });
      assertEquals(code, 0);
      assertStringIncludes(out.err, SECRET_QUESTION);
      const tool = String(toolMessages(h.fake.requestsTo(CHAT).at(-1)!)[0]!.content);
      assertEquals(JSON.parse(tool), { action: "accept", content: { colour: "red" } });
    });
    await t.step("without a terminal", async () => {
      h.fake.script(CHAT, calls({ name: "ask_user", arguments: {} }), answer("none"));
      const out = captureOutput();
      await runCommand(["--mcp", "fixture", "colour?"], commandContext(app, out), {
        stdinIsTerminal: false,
      });
      const tool = String(toolMessages(h.fake.requestsTo(CHAT).at(-1)!)[0]!.content);
      assertEquals(
        JSON.parse(tool)._meta[DECLINE_REASON_KEY],
        "standard input is not a terminal, so nobody can be asked",
      );
      assertStringIncludes(out.err, "it was declined: standard input is not a terminal");
    });
  });
});

Deno.test({
  name: "end to end: server-everything's trigger-elicitation-request reaches the elicitor",
  fn: async () => {
    await withHarness(async (h) => {
      const asked: ElicitationRequest[] = [];
      h.fake.script(
        CHAT,
        calls({ name: "trigger-elicitation-request", arguments: {} }),
        answer("done"),
      );
      const result = await h.run({
        servers: ["everything"],
        rules: { tools: { "everything/*": "allow" } },
        elicit: (req) => {
          asked.push(req);
          return Promise.resolve({ action: "accept", content: { name: "Ada" } });
        },
      });
      assertEquals(result.stopped_because, "answer");
      assertEquals(asked.map((a) => [a.server, a.tool]), [[
        "everything",
        "trigger-elicitation-request",
      ]]);
      const tool = String(toolMessages(h.fake.requestsTo(CHAT)[1]!)[0]!.content);
      assertStringIncludes(tool, "Ada");
    }, { servers: { everything: cachedEntry([REFERENCE_SERVERS.everything]) } });
  },
});
