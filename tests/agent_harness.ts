/**
 * What the tests of the autonomous loop share: a harness with a scripted fake LM Studio and REAL
 * MCP servers (the reference server-memory and server-filesystem, and the fixture
 * tests/fixtures/agent_server.ts) behind a real pool, readers of the chat requests the fake got,
 * scripted replies, and waits on what the fake and the fixture record.
 */
import { runAgent } from "../lib/agent.ts";
import type {
  AgentDeps,
  AgentOptions,
  AgentResult,
  ServerRequestHandlers,
  ToolHost,
} from "../lib/agent_types.ts";
import type {
  CallToolResult,
  GetPromptResult,
  Prompt,
  ReadResourceResult,
  Resource,
  ResourceTemplate,
  Tool,
} from "../lib/sdk.ts";
import { ConfigSource } from "../lib/config.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import {
  chatReply,
  FakeLmStudio,
  type FakeLmStudioOptions,
  type FakeModel,
  type RecordedRequest,
  type ScriptedReply,
  type ScriptedReplyValue,
} from "./fakes/lmstudio.ts";
import { REPO } from "./helpers.ts";
import { cachedEntry, REFERENCE_SERVERS } from "./fixtures/pool_support.ts";
import { quiet } from "./rigs.ts";

export const CHAT = "/v1/chat/completions";
export const FIXTURE: string = new URL("./fixtures/agent_server.ts", import.meta.url).pathname;
/** Measured figures go to stderr (visible in the test output). */
export const figures: Logger = createLogger({ level: "info", scope: "figure", color: false });

/** A task's world: the temp dir, the fake LM Studio, the client, config and pool. */
export interface Harness {
  dir: string;
  fake: FakeLmStudio;
  client: LmStudioClient;
  config: ConfigSource;
  pool: McpPool;
  /** Runs a task on the fixture server; `deps` replace the harness's own (a stub client). */
  run(
    options: Partial<Omit<AgentOptions, "deps">> & { task?: string; deps?: Partial<AgentDeps> },
  ): Promise<AgentResult>;
  /** What the fixture's sleeps did, in order (see tests/fixtures/agent_server.ts). */
  fixtureEvents(): Promise<FixtureEvent[]>;
}

/** One event of a fixture sleep. */
export interface FixtureEvent {
  event: "start" | "end" | "cancelled" | "note";
  ms?: number;
  label?: string;
  /** A note's text. */
  text?: string;
}

/** A temp dir with .mcp.json (memory, filesystem, fixture, a disabled entry, the bridge itself). */
export async function withHarness(
  fn: (h: Harness) => Promise<void>,
  o: {
    models?: FakeModel[];
    flavor?: FakeLmStudioOptions["flavor"];
    /** More entries for the .mcp.json. */
    servers?: Record<string, unknown>;
  } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const deno = Deno.execPath();
  const fixtureLog = join(dir, "fixture.jsonl");
  await Deno.writeTextFile(
    join(dir, ".mcp.json"),
    JSON.stringify({
      mcpServers: {
        memory: cachedEntry([REFERENCE_SERVERS.memory], {
          MEMORY_FILE_PATH: join(dir, "memory.jsonl"),
        }),
        filesystem: cachedEntry([REFERENCE_SERVERS.filesystem, dir]),
        fixture: cachedEntry([FIXTURE], { AGENT_FIXTURE_LOG: fixtureLog }),
        off: { command: deno, args: ["run", FIXTURE], disabled: true },
        bridge: { command: "lmstudio-bridge", args: ["serve"] },
        // As the README configures the bridge in Claude Code: discover-all must skip it too.
        lmstudio: { command: "deno", args: ["task", "--cwd", REPO, "start"] },
        ...o.servers,
      },
    }),
  );
  const fake = await FakeLmStudio.start({
    ...(o.models ? { models: o.models } : {}),
    ...(o.flavor ? { flavor: o.flavor } : {}),
  });
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const config = new ConfigSource({ explicitPath: join(dir, ".mcp.json"), log: quiet });
  const pool = new McpPool({ config, log: quiet, idleMs: 0 });
  const h: Harness = {
    dir,
    fake,
    client,
    config,
    pool,
    run: (options) =>
      runAgent({
        task: "the task",
        servers: ["fixture"],
        ttlSeconds: 600,
        ...options,
        deps: { client, pool, config, log: quiet, ...options.deps },
      }),
    fixtureEvents: async () => {
      const text = await Deno.readTextFile(fixtureLog).catch((error: unknown) => {
        if (error instanceof Deno.errors.NotFound) return "";
        throw error;
      });
      return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    },
  };
  try {
    await fn(h);
  } finally {
    await pool.close();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * `promise`, or a failure naming `what` when it has not settled after 10 s: what it waits for
 * takes milliseconds, so only a hang trips it.
 */
export async function settlesWithin<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A model reply held back until the task has sent a heartbeat ("still generating"): `seen` takes
 * each progress message. Fails naming the heartbeat when none comes within 10 s.
 */
export function replyAfterHeartbeat(
  reply: ScriptedReplyValue,
): { reply: ScriptedReply; seen(message: string | undefined): void } {
  const beat = Promise.withResolvers<void>();
  return {
    reply: async () => {
      await settlesWithin(beat.promise, "a heartbeat while the model generates");
      return reply;
    },
    seen: (message) => {
      if (message?.includes("still generating")) beat.resolve();
    },
  };
}

/** A reply that never comes, and what became of its request. */
export interface HeldReply {
  reply: ScriptedReply;
  /** Resolves when the request reaches the fake. */
  arrived: Promise<void>;
  /** Resolves when the client gives the request up (it was aborted). */
  abandoned: Promise<void>;
}

/** A scripted reply whose body never arrives: the status goes out, then nothing until aborted. */
export function heldReply(): HeldReply {
  const arrived = Promise.withResolvers<void>();
  const abandoned = Promise.withResolvers<void>();
  return {
    reply: () => {
      arrived.resolve();
      return new Response(new ReadableStream({ cancel: () => abandoned.resolve() }));
    },
    arrived: arrived.promise,
    abandoned: abandoned.promise,
  };
}

/** The messages of a chat request. */
export function messagesOf(req: RecordedRequest): ChatMessage[] {
  return (req.body as { messages: ChatMessage[] }).messages;
}

/** The tool names a chat request offered. */
export function toolNamesOf(req: RecordedRequest): string[] {
  const tools = (req.body as { tools?: { function: { name: string } }[] }).tools ?? [];
  return tools.map((t) => t.function.name);
}

/** The tool messages of a chat request. */
export function toolMessages(req: RecordedRequest): ChatMessage[] {
  return messagesOf(req).filter((m) => m.role === "tool");
}

/** A reply with answer text. */
export function answer(content: string): ScriptedReplyValue {
  return { body: chatReply({ content }) };
}

/** A reply that calls tools. */
export function calls(
  ...list: { name: string; arguments: string | Record<string, unknown>; id?: string | null }[]
): ScriptedReplyValue {
  return { body: chatReply({ content: "", toolCalls: list }) };
}

/** What a server offers besides its real tools, for {@linkcode featureHost}. */
export interface ServerFeatures {
  resources?: Resource[];
  templates?: ResourceTemplate[];
  /** Answers `resources/read`; throws for an unknown URI as a server would. */
  read?: (uri: string) => ReadResourceResult;
  prompts?: Prompt[];
  /** Answers `prompts/get`. */
  prompt?: (name: string, args: Record<string, string>) => GetPromptResult;
  /**
   * Tools run in this process, beside the server's real ones: each gets the handlers of the call
   * (contract 3), so it can ask for sampling or elicitation as a downstream server would.
   */
  tools?: Record<
    string,
    {
      definition: Omit<Tool, "name">;
      run: (
        args: Record<string, unknown>,
        handlers: ServerRequestHandlers,
        signal: AbortSignal,
      ) => Promise<CallToolResult>;
    }
  >;
}

/**
 * A {@linkcode ToolHost} with the real pool's tools plus resources, prompts and in-process tools
 * given per server, as McpPool offers them by contract 6 (and contract 3 for the handlers): the
 * loop's side of those contracts tested before and apart from the pool's. `calls` records what
 * was asked, in order (`read <uri>`, `prompt <name> <args>`, `list <server>`).
 */
export function featureHost(
  pool: ToolHost,
  features: Record<string, ServerFeatures>,
): ToolHost & { calls: string[] } {
  const calls: string[] = [];
  const of = (server: string) => features[server] ?? {};
  return {
    calls,
    async listTools(server, options) {
      const own = Object.entries(of(server).tools ?? {}).map(([name, t]) => ({
        name,
        ...t.definition,
      }));
      return [...await pool.listTools(server, options), ...own];
    },
    callTool(server, tool, args, options) {
      const own = of(server).tools?.[tool];
      if (own === undefined) return pool.callTool(server, tool, args, options);
      calls.push(`call ${server}/${tool}`);
      return own.run(
        args,
        options?.onServerRequest ?? {},
        options?.signal ?? new AbortController().signal,
      );
    },
    offers(server) {
      const f = of(server);
      return Promise.resolve({
        tools: true,
        resources: f.resources !== undefined || f.templates !== undefined,
        prompts: f.prompts !== undefined,
      });
    },
    listResources(server) {
      calls.push(`list ${server}`);
      return Promise.resolve(of(server).resources ?? []);
    },
    listResourceTemplates(server) {
      return Promise.resolve(of(server).templates ?? []);
    },
    readResource(server, uri) {
      calls.push(`read ${uri}`);
      const read = of(server).read;
      if (read === undefined) return Promise.reject(new Error(`${server} has no resources`));
      try {
        return Promise.resolve(read(uri));
      } catch (error: unknown) {
        return Promise.reject(error);
      }
    },
    listPrompts(server) {
      return Promise.resolve(of(server).prompts ?? []);
    },
    getPrompt(server, name, args) {
      calls.push(`prompt ${name} ${JSON.stringify(args)}`);
      const get = of(server).prompt;
      if (get === undefined) return Promise.reject(new Error(`${server} has no prompts`));
      try {
        return Promise.resolve(get(name, args));
      } catch (error: unknown) {
        return Promise.reject(error);
      }
    },
  };
}
