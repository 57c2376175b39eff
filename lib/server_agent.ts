/**
 * The autonomous MCP tools: hand a task to the local model together with the tools of one, several
 * or all configured MCP servers (see lib/agent.ts for the loop). Progress goes to callers that sent
 * a progressToken; a cancelled request aborts the model request and the downstream calls. Every
 * result has a `session_id` that continues its conversation (server_sessions.ts). Also
 * {@linkcode runTask}, the way from the app into the loop that the `run` command shares.
 */
import {
  AgentError,
  type AgentLmClient,
  type AgentModels,
  type AgentOptions,
  type AgentProgress,
  type AgentResult,
  type ApprovalRequest,
  type Approver,
  type Elicitor,
  type StartingPrompt,
  type ToolHost,
} from "./agent_types.ts";
import type { App } from "./app.ts";
import { declined } from "./agent_elicitation.ts";
import type {
  CallToolResult,
  McpServer,
  RequestHandlerExtra,
  ServerNotification,
  ServerRequest,
} from "./sdk.ts";
import { errorResult, safeResult, textResult } from "./server_result.ts";
import { inSession, type SessionOutcome, SessionRegistry } from "./server_sessions.ts";
import { registerChosen, TOOL_DEFINITIONS as TOOLS } from "./server_tools.ts";
import type { ToolName } from "./tool_groups.ts";
import type { SessionInfo } from "./agent_sessions.ts";
import type { Settings } from "./settings.ts";
import {
  openTraceFile,
  TraceError,
  type TraceSink,
  type WritePermissionQuery,
} from "./agent_trace.ts";
import { widenCommand } from "./launch.ts";
import { errorMessage } from "./errors.ts";
import { clause, formatBytes, formatDuration, plural, shorten, shortJson } from "./text.ts";
import { dirname, resolve } from "./path.ts";
import { redact } from "./redact.ts";

/**
 * What the loop uses of the app: the config and the log as they are, the pool, the client and the
 * model manager only as far as the loop calls them, and four settings. {@linkcode App} satisfies it;
 * tests pass their own client, models or settings.
 */
export interface AgentApp extends Pick<App, "config" | "log"> {
  /** The MCP pool (App's McpPool; tests may give another host of tools). */
  pool(): Promise<ToolHost>;
  /** The autonomous tools' sessions (the App's; tools registered without one keep their own). */
  readonly sessions?: SessionRegistry;
  readonly client: AgentLmClient;
  /** Loads a named model first; without it the server loads models on demand (JIT). */
  readonly models?: AgentModels;
  readonly settings:
    & Pick<Settings, "defaultModel" | "modelTtlSeconds" | "defaultContextLength" | "depth">
    & Partial<Pick<Settings, "workDir">>;
}

/**
 * One task as `run` and the autonomous tools hand it over: the loop's options except those the app
 * supplies, and the trace file by path.
 */
export type AgentTask =
  & Omit<
    AgentOptions,
    "deps" | "trace" | "defaultModel" | "ttlSeconds" | "defaultContextLength" | "depth"
  >
  & {
    /** A JSONL trace file, relative to the directory the user runs the bridge from. */
    tracePath?: string;
    /** Write-permission lookup for the trace file (tests simulate a denial). */
    queryWritePermission?: WritePermissionQuery;
  };

/**
 * Runs one task of the loop with the app's services and settings, writing the trace when asked
 * (opened before the first request, closed at the end). Answers the result and the trace's full
 * path; throws what the loop throws, or why the trace cannot be written.
 */
export async function runTask(
  app: AgentApp,
  task: AgentTask,
): Promise<{ result: AgentResult; tracePath?: string }> {
  const { tracePath: given, queryWritePermission, ...options } = task;
  const { settings } = app;
  // Relative to where the user ran the bridge (under `deno task`, INIT_CWD, not the repository).
  const tracePath = given === undefined
    ? undefined
    : resolve(settings.workDir ?? Deno.cwd(), given);
  const trace = tracePath === undefined
    ? undefined
    : await openTrace(tracePath, queryWritePermission);
  try {
    // The loop's modules load with the first task: `serve` answers the handshake without them.
    const { runAgent } = await import("./agent.ts");
    const result = await runAgent({
      ...options,
      defaultModel: settings.defaultModel,
      ttlSeconds: settings.modelTtlSeconds,
      defaultContextLength: settings.defaultContextLength,
      depth: settings.depth,
      trace,
      deps: {
        client: app.client,
        pool: await app.pool(),
        config: app.config,
        models: app.models,
        log: app.log.child("agent"),
      },
    });
    return tracePath === undefined ? { result } : { result, tracePath };
  } finally {
    await trace?.close();
  }
}

/**
 * Opens the trace file, or says why not: without write permission for it, the exact command that
 * allows writing traces to its directory, for the way the bridge runs.
 */
async function openTrace(path: string, query?: WritePermissionQuery): Promise<TraceSink> {
  const state = await (query ?? queryWrite)(path);
  if (state !== "granted") {
    throw new TraceError(
      path,
      `Cannot write the trace to ${path}: the bridge's sandbox allows no writes there. Allow it ` +
        `with: ${widenCommand({ write: [path] })} (or name its directory, ${dirname(path)}, to ` +
        "allow every trace there); then run it again. Or leave out the trace option.",
    );
  }
  return await openTraceFile(path, { queryPermission: () => Promise.resolve(state) });
}

async function queryWrite(path: string): Promise<Deno.PermissionState> {
  return (await Deno.permissions.query({ name: "write", path })).state;
}

/**
 * The question a human answers about one tool call: which tool of which server, its arguments
 * (shortened, secrets redacted), what the tool says of itself, and the task it serves.
 */
export function approvalQuestion(req: ApprovalRequest): string {
  if (req.kind === "sampling") {
    const during = typeof req.arguments.during_tool === "string"
      ? ` while its tool ${req.arguments.during_tool} runs`
      : "";
    return [
      `MCP server "${req.server}" asks the local model to generate text (sampling)${during}.`,
      `Request: ${shortJson(redact(req.arguments), 400)}`,
      `Task: ${shorten(req.task, 200)}`,
    ].join("\n");
  }
  const kind = req.destructive
    ? " It may change or delete things (destructive)."
    : req.readOnly
    ? " It only reads."
    : "";
  return [
    `The local model wants to call ${req.tool} on MCP server "${req.server}".${kind}`,
    `Arguments: ${shortJson(redact(req.arguments), 400)}`,
    `Task: ${shorten(req.task, 200)}`,
  ].join("\n");
}

/** The choices of {@linkcode approvalQuestion}, with the answers they stand for. */
export const APPROVAL_CHOICES: ReadonlyArray<{ answer: "once" | "task" | "deny"; label: string }> =
  [
    { answer: "once", label: "Allow once" },
    { answer: "task", label: "Allow for this task" },
    { answer: "deny", label: "Deny" },
  ];

/**
 * An {@linkcode Approver} that asks the user of the MCP client, through elicitation, about the
 * calls of the task behind `extra` (the elicitation is related to that tool call). A client that
 * cannot elicit (no form elicitation capability) is `unavailable`; declining or dismissing the
 * question denies the call.
 */
export function mcpApprover(server: McpServer, extra: Pick<Extra, "requestId">): Approver {
  return async (req, signal) => {
    const capabilities = server.server.getClientCapabilities();
    const client = server.server.getClientVersion()?.name ?? "the MCP client";
    if (!capabilities?.elicitation) {
      return {
        unavailable: `${client} cannot ask its user (it does not offer MCP elicitation)`,
      };
    }
    if (!capabilities.elicitation.form) {
      return { unavailable: `${client} can elicit only through URLs, not with a question` };
    }
    let result;
    try {
      result = await server.server.elicitInput({
        mode: "form",
        message: approvalQuestion(req),
        requestedSchema: {
          type: "object",
          properties: {
            decision: {
              type: "string",
              title: "Decision",
              enum: APPROVAL_CHOICES.map((c) => c.answer),
              enumNames: APPROVAL_CHOICES.map((c) => c.label),
            },
          },
          required: ["decision"],
        },
      }, { signal, relatedRequestId: extra.requestId });
    } catch (error: unknown) {
      if (signal.aborted) throw error;
      return { unavailable: `asking ${client}'s user failed: ${errorMessage(error)}` };
    }
    if (result.action !== "accept") return "deny";
    const decision = result.content?.["decision"];
    return decision === "once" || decision === "task" ? decision : "deny";
  };
}

/**
 * An {@linkcode Elicitor} that forwards a downstream server's elicitation to the user of the MCP
 * client behind `extra` (related to that tool call), its message saying which server asks. A
 * client that cannot elicit in the request's mode (form or URL) gets it declined with why.
 */
export function mcpElicitor(server: McpServer, extra: Pick<Extra, "requestId">): Elicitor {
  return async (req, signal) => {
    const capabilities = server.server.getClientCapabilities()?.elicitation;
    const client = server.server.getClientVersion()?.name ?? "the MCP client";
    const { params } = req;
    const url = params.mode === "url";
    if (!capabilities) return declined(`${client} does not offer MCP elicitation`);
    if (url ? !capabilities.url : !capabilities.form) {
      return declined(`${client} cannot answer ${url ? "URL" : "form"} elicitation`);
    }
    const message = `MCP server "${req.server}" asks (its tool ${req.tool} runs for a task of ` +
      `the local model): ${params.message}`;
    try {
      return await server.server.elicitInput(
        params.mode === "url"
          ? { mode: "url", message, elicitationId: params.elicitationId, url: params.url }
          : { mode: "form", message, requestedSchema: params.requestedSchema },
        { signal, relatedRequestId: extra.requestId },
      );
    } catch (error: unknown) {
      if (signal.aborted) throw error;
      return declined(`asking ${client}'s user failed: ${clause(errorMessage(error))}`);
    }
  };
}

/** Test seams of the autonomous tools: a shorter heartbeat, a simulated write-permission denial. */
type AgentToolSeams = Pick<AgentTask, "heartbeatMs" | "queryWritePermission">;

type CommonArgs = {
  task: string;
  model?: string;
  max_rounds?: number;
  max_tokens?: number;
  allowed_tools?: string[] | string;
  time_budget_seconds?: number;
  prompt?: string;
  prompt_arguments?: Record<string, string>;
  trace_path?: string;
  session_id?: string;
};

/**
 * The prompt a task starts from (`prompt`: NAME or SERVER/NAME, with `prompt_arguments`): its
 * server defaults to the task's only server.
 */
function startingPrompt(
  args: Pick<CommonArgs, "prompt" | "prompt_arguments">,
  servers: readonly string[] | "all",
): StartingPrompt | undefined {
  const { prompt } = args;
  if (prompt === undefined) {
    if (args.prompt_arguments !== undefined) {
      throw new AgentError("prompt", "prompt_arguments needs prompt (NAME or SERVER/NAME).");
    }
    return undefined;
  }
  const slash = prompt.indexOf("/");
  const only = servers !== "all" && servers.length === 1 ? servers[0] : undefined;
  const server = slash > 0 ? prompt.slice(0, slash) : only;
  const name = slash > 0 ? prompt.slice(slash + 1) : prompt;
  if (!server || !name) {
    throw new AgentError(
      "prompt",
      `Name the MCP server that has the prompt "${prompt}" as SERVER/NAME: the task uses ` +
        "more than one server.",
    );
  }
  return {
    server,
    name,
    ...(args.prompt_arguments ? { arguments: args.prompt_arguments } : {}),
  };
}

/** The SDK's request extra as tool handlers receive it. */
type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

function allowedList(value: string[] | string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const list = (Array.isArray(value) ? value : value.split(","))
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return list.length > 0 ? list : undefined;
}

/** The parameter whose limit ended a task unfinished, by `stopped_because`. */
const LIMITS: Partial<Record<AgentResult["stopped_because"], string>> = {
  max_rounds: "max_rounds",
  time_budget: "time_budget_seconds",
};

/**
 * The tool result for an agent result: the answer (which says why a task stopped unfinished), one
 * status line (with the session that continues it), how to go on after a limit, structured
 * content.
 */
async function agentToolResult(
  { result, sessionId, note }: SessionOutcome,
): Promise<CallToolResult> {
  const { agentResultJson } = await import("./agent.ts");
  const failed = result.tool_calls.filter((c) => !c.ok).length;
  const status = [
    `stopped_because: ${result.stopped_because}`,
    `${result.rounds} round(s)`,
    `${result.tool_calls.length} tool call(s)${failed ? ` (${failed} failed)` : ""}`,
    `${result.usage.total_tokens} tokens`,
    `model ${result.model}`,
    ...(sessionId !== undefined ? [`session_id ${sessionId}`] : []),
  ].join(" · ");
  const all = note === undefined ? result.notes : [...result.notes, note];
  const notes = all.length ? `\nNotes: ${all.map(clause).join("; ")}.` : "";
  const limit = LIMITS[result.stopped_because];
  const next = limit !== undefined && sessionId !== undefined
    ? `\nTo go on, call again with session_id ${sessionId} (and a larger ${limit}).`
    : "";
  return safeResult({
    content: [{ type: "text", text: `${result.answer}\n\n[${status}]${notes}${next}` }],
    structuredContent: {
      ...agentResultJson(result),
      ...(note !== undefined ? { notes: all } : {}),
      ...(sessionId !== undefined ? { session_id: sessionId } : {}),
    },
    ...(result.stopped_because === "error" || result.stopped_because === "context_overflow"
      ? { isError: true }
      : {}),
  });
}

async function runTool(
  app: AgentApp,
  server: McpServer,
  seams: AgentToolSeams,
  sessions: SessionRegistry,
  servers: readonly string[] | "all",
  args: CommonArgs,
  extra: Extra,
): Promise<CallToolResult> {
  const token = extra._meta?.progressToken;
  const onProgress = token === undefined ? undefined : (p: AgentProgress) => {
    extra.sendNotification({
      method: "notifications/progress",
      params: { progressToken: token, progress: p.progress, total: p.total, message: p.message },
    }).catch((error: unknown) => {
      // The client went away; the abort signal ends the task.
      app.log.child("agent").debug("progress notification failed", { error: String(error) });
    });
  };
  try {
    const store = sessions.store(extra.sessionId);
    const outcome = await inSession(store, args.session_id, async (session) =>
      (await runTask(app, {
        task: args.task,
        session,
        servers,
        prompt: startingPrompt(args, servers),
        model: args.model,
        maxRounds: args.max_rounds,
        maxTokens: args.max_tokens,
        allowedTools: allowedList(args.allowed_tools),
        timeBudgetMs: args.time_budget_seconds !== undefined
          ? Math.round(args.time_budget_seconds * 1000)
          : undefined,
        signal: extra.signal,
        onProgress,
        approve: mcpApprover(server, extra),
        elicit: mcpElicitor(server, extra),
        heartbeatMs: seams.heartbeatMs,
        tracePath: args.trace_path,
        queryWritePermission: seams.queryWritePermission,
      })).result);
    return await agentToolResult(outcome);
  } catch (error: unknown) {
    return errorResult(error);
  }
}

/** `autonomous_with_mcp`: the local model works on a task with one server's tools. */
function registerAutonomousWithMcpTool(
  server: McpServer,
  app: AgentApp,
  seams: AgentToolSeams,
  sessions: SessionRegistry,
): void {
  server.registerTool(
    "autonomous_with_mcp",
    TOOLS.autonomous_with_mcp,
    (args, extra) => runTool(app, server, seams, sessions, [args.mcp_name], args, extra),
  );
}

/** `autonomous_with_multiple_mcps`: the local model works with several servers' tools. */
function registerAutonomousWithMultipleMcpsTool(
  server: McpServer,
  app: AgentApp,
  seams: AgentToolSeams,
  sessions: SessionRegistry,
): void {
  server.registerTool(
    "autonomous_with_multiple_mcps",
    TOOLS.autonomous_with_multiple_mcps,
    (args, extra) => runTool(app, server, seams, sessions, args.mcp_names, args, extra),
  );
}

/** `autonomous_discover_and_execute`: the local model works with every usable server's tools. */
function registerAutonomousDiscoverAndExecuteTool(
  server: McpServer,
  app: AgentApp,
  seams: AgentToolSeams,
  sessions: SessionRegistry,
): void {
  server.registerTool(
    "autonomous_discover_and_execute",
    TOOLS.autonomous_discover_and_execute,
    (args, extra) => runTool(app, server, seams, sessions, "all", args, extra),
  );
}

/** Registers the three autonomous tools and the tools of their sessions (those of `chosen`). */
export function registerAutonomousTools(
  server: McpServer,
  app: AgentApp,
  seams: AgentToolSeams = {},
  chosen?: readonly ToolName[],
): void {
  const sessions = app.sessions ?? new SessionRegistry();
  registerChosen(
    {
      autonomous_with_mcp: () => registerAutonomousWithMcpTool(server, app, seams, sessions),
      autonomous_with_multiple_mcps: () =>
        registerAutonomousWithMultipleMcpsTool(server, app, seams, sessions),
      autonomous_discover_and_execute: () =>
        registerAutonomousDiscoverAndExecuteTool(server, app, seams, sessions),
      list_sessions: () => registerListSessions(server, sessions),
      close_session: () => registerCloseSession(server, sessions),
    },
    server,
    app,
    chosen,
  );
}

/** One line of `list_sessions`. */
function sessionLine(s: SessionInfo): string {
  return [
    s.id,
    `model ${s.model || "?"}`,
    s.servers.length ? `servers ${s.servers.join(", ")}` : "no servers",
    `${plural(s.tasks, "task")}, ${plural(s.rounds, "round")}`,
    formatBytes(s.bytes),
    s.busy ? "running a task" : `expires in ${formatDuration(s.expires_in_ms)} unless used`,
  ].join(" · ");
}

/** `list_sessions`, over the store of the caller's MCP session. */
function registerListSessions(server: McpServer, sessions: SessionRegistry): void {
  server.registerTool("list_sessions", TOOLS.list_sessions, (extra) => {
    const list = sessions.store(extra.sessionId).list();
    const text = list.length === 0
      ? "No sessions: each autonomous_* result has a session_id that continues it."
      : list.map(sessionLine).join("\n");
    return textResult(text, { sessions: list });
  });
}

/** `close_session`, over the store of the caller's MCP session. */
function registerCloseSession(server: McpServer, sessions: SessionRegistry): void {
  server.registerTool("close_session", TOOLS.close_session, (args, extra) => {
    try {
      sessions.store(extra.sessionId).close(args.session_id);
      return textResult(`Closed session ${args.session_id}.`, { closed: args.session_id });
    } catch (error: unknown) {
      return errorResult(error);
    }
  });
}
