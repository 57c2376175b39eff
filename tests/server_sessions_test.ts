/**
 * The sessions of the autonomous tools (lib/server_sessions.ts) through real SDK clients: a
 * result's session_id continues its conversation, list_sessions and close_session, the clear
 * errors of unknown, closed, expired and busy sessions, and over `serve --http` each client's
 * sessions kept to itself and ended with its MCP session.
 */
import { createApp } from "../lib/app.ts";
import type { AgentLmClient } from "../lib/agent_types.ts";
import { join } from "../lib/path.ts";
import { type CallToolResult, McpServer } from "../lib/sdk.ts";
import { Client, InMemoryTransport } from "../lib/sdk_client.ts";
import { registerAutonomousTools } from "../lib/server_agent.ts";
import { startHttpBridge } from "../lib/server_http.ts";
import { SessionRegistry } from "../lib/server_sessions.ts";
import { resolveSettings } from "../lib/settings.ts";
import {
  answer,
  CHAT,
  type Harness,
  heldReply,
  messagesOf,
  toolNamesOf,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import { connectHttp } from "./fixtures/serve_http_support.ts";
import { quiet, resultText } from "./rigs.ts";

/** The autonomous tools on `h`, over `sessions`, connected in memory to a real SDK client. */
async function connect(
  h: Harness,
  sessions: SessionRegistry = new SessionRegistry(),
  client: AgentLmClient = h.client,
): Promise<{ call: Call; close(): Promise<void> }> {
  const server = new McpServer({ name: "bridge-under-test", version: "0" });
  registerAutonomousTools(server, {
    client,
    pool: () => Promise.resolve(h.pool),
    config: h.config,
    settings: {
      modelTtlSeconds: 600,
      defaultContextLength: 8192,
      depth: 0,
      defaultModel: undefined,
    },
    log: quiet,
    sessions,
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const sdk = new Client({ name: "test", version: "0" });
  await Promise.all([server.connect(a), sdk.connect(b)]);
  return {
    call: async (name, args = {}, signal) =>
      await sdk.callTool(
        { name, arguments: args },
        undefined,
        signal ? { signal } : {},
      ) as CallToolResult,
    close: async () => {
      await sdk.close();
      await server.close();
    },
  };
}

type Call = (
  name: string,
  args?: Record<string, unknown>,
  signal?: AbortSignal,
) => Promise<CallToolResult>;

/** autonomous_with_mcp on the fixture server, continuing the session `id`. */
function continueTask(call: Call, id: string, task: string, signal?: AbortSignal) {
  return call("autonomous_with_mcp", { mcp_name: "fixture", task, session_id: id }, signal);
}

function sessionIdOf(result: CallToolResult): string {
  const id = (result.structuredContent as { session_id?: unknown } | undefined)?.session_id;
  assert(typeof id === "string", `no session_id in ${resultText(result)}`);
  return id;
}

Deno.test("a result's session_id continues its conversation with the same servers and model", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("Noted: 42."), answer("You asked me to remember 42."));
    const { call, close } = await connect(h);
    try {
      const first = await call("autonomous_with_mcp", { mcp_name: "fixture", task: "remember 42" });
      const id = sessionIdOf(first);
      assertMatch(id, /^s_[0-9a-f]{32}$/);
      assertStringIncludes(resultText(first), `session_id ${id}`);

      // Another tool, naming no server: the session's servers and conversation go on.
      const second = await call("autonomous_discover_and_execute", {
        task: "what did I ask?",
        session_id: id,
      });
      assertEquals(sessionIdOf(second), id);
      assertStringIncludes(resultText(second), "You asked me to remember 42.");
      const [one, two] = h.fake.requestsTo(CHAT);
      assertEquals(toolNamesOf(two!), toolNamesOf(one!));
      const said = messagesOf(two!).slice(1).map((m) => [m.role, m.content]);
      assertEquals(said, [
        ["user", "remember 42"],
        ["assistant", "Noted: 42."],
        ["user", "what did I ask?"],
      ]);

      const listed = await call("list_sessions");
      const sessions = (listed.structuredContent as { sessions: Record<string, unknown>[] })
        .sessions;
      assertEquals(sessions.map((s) => [s.id, s.tasks, s.servers]), [[id, 2, ["fixture"]]]);
      assertStringIncludes(resultText(listed), `${id} · model `);

      const closed = await call("close_session", { session_id: id });
      assertEquals(closed.isError, undefined);
      const again = await continueTask(call, id, "and now?");
      assertEquals(again.isError, true);
      assertStringIncludes(resultText(again), `Session "${id}" is gone: it was closed`);
      assertStringIncludes(resultText(await call("list_sessions")), "No sessions");
      const unknown = await continueTask(call, "s_nope", "t");
      assertEquals(unknown.isError, true);
      assertStringIncludes(resultText(unknown), 'No session "s_nope"');
      assertEquals((await call("close_session", { session_id: "s_nope" })).isError, true);
      // Neither failure started a new session or asked the model.
      assertEquals(h.fake.requestsTo(CHAT).length, 2);
      assertStringIncludes(resultText(await call("list_sessions")), "No sessions");
    } finally {
      await close();
    }
  });
});

Deno.test("an expired session is an error that says so, not a new session", async () => {
  await withHarness(async (h) => {
    let now = 0;
    const sessions = new SessionRegistry({ idleMs: 60_000, now: () => now });
    h.fake.script(CHAT, answer("first"));
    const { call, close } = await connect(h, sessions);
    try {
      const id = sessionIdOf(await call("autonomous_with_mcp", { mcp_name: "fixture", task: "t" }));
      now += 61_000;
      const late = await continueTask(call, id, "t2");
      assertEquals(late.isError, true);
      assertStringIncludes(resultText(late), "it expired after 1 min without use");
      assertEquals(h.fake.requestsTo(CHAT).length, 1);
    } finally {
      await close();
    }
  });
});

Deno.test("a session runs one task at a time, and is free again when a task is cancelled", async () => {
  await withHarness(async (h) => {
    const held = heldReply();
    h.fake.script(CHAT, answer("first"), held.reply, answer("third"));
    const { call, close } = await connect(h);
    try {
      const id = sessionIdOf(await call("autonomous_with_mcp", { mcp_name: "fixture", task: "1" }));
      const controller = new AbortController();
      const running = continueTask(call, id, "2", controller.signal);
      running.catch(() => {}); // cancelled below
      await held.arrived;
      const busy = await continueTask(call, id, "2b");
      assertEquals(busy.isError, true);
      assertStringIncludes(resultText(busy), "is running a task");
      const listed = await call("list_sessions");
      assertStringIncludes(resultText(listed), "running a task");
      controller.abort();
      await held.abandoned;
      // The cancelled task ends; the session takes the next one.
      await waitFor("the cancelled task to end", async () => {
        const listed = (await call("list_sessions")).structuredContent as {
          sessions: { busy: boolean }[];
        };
        return listed.sessions[0]?.busy === false;
      }, 30_000);
      const third = await continueTask(call, id, "3");
      assertStringIncludes(resultText(third), "third");
      assertEquals(sessionIdOf(third), id);
    } finally {
      await close();
    }
  });
});

Deno.test("over HTTP each client sees only its own sessions, which end with its MCP session", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, answer("a's answer"));
    const settings = resolveSettings({ LMSTUDIO_BASE_URL: h.fake.baseUrl, LMSTUDIO_RETRIES: "0" });
    const app = createApp(settings, { configPath: join(h.dir, ".mcp.json"), log: quiet });
    const bridge = await startHttpBridge(app, { listen: { hostname: "127.0.0.1", port: 0 } });
    try {
      await using a = await connectHttp(bridge.url, { name: "a" });
      await using b = await connectHttp(bridge.url, { name: "b" });
      const id = sessionIdOf(
        await a.call("autonomous_with_mcp", { mcp_name: "fixture", task: "t" }),
      );
      assertStringIncludes(resultText(await b.call("list_sessions")), "No sessions");
      const stolen = await continueTask((name, args) => b.call(name, args), id, "what did a ask?");
      assertEquals(stolen.isError, true);
      assertStringIncludes(resultText(stolen), `No session "${id}"`);
      assertEquals((await b.call("close_session", { session_id: id })).isError, true);
      assertEquals(h.fake.requestsTo(CHAT).length, 1);
      assertStringIncludes(resultText(await a.call("list_sessions")), id);

      const owner = a.transport.sessionId;
      assert(owner !== undefined);
      assertEquals(app.sessions.store(owner).list().length, 1);
      await a.transport.terminateSession();
      await waitFor("a's MCP session to close", () => bridge.sessions() === 1, 30_000);
      assertEquals(app.sessions.store(owner).list().length, 0);
    } finally {
      await bridge.close("test over");
      await app.close();
    }
  });
});
