/**
 * The contract of the autonomous loop ({@linkcode runAgent} in agent.ts): what it needs from the
 * MCP pool, the LM Studio client, the config and the model manager; its options and their
 * defaults; the progress events it sends; the result that says how and why it stopped; and how it
 * fails: {@linkcode AgentError} for a task that cannot start (recursion guard, unknown servers, no
 * tools, a model the server does not have), and {@linkcode isAbort} to tell a cancellation or an
 * exhausted time budget from a real failure.
 */
import type { ConfigSource } from "./config.ts";
import { BridgeError } from "./errors.ts";
import type { LmStudioClient } from "./lmstudio.ts";
import type {
  ChatMessage,
  ChatRequest,
  ChatResult,
  ChatStreamEvent,
  GenerationStats,
  ModelList,
  Usage,
} from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import type { ServerRequestHandlers } from "./pool_requests.ts";
import type {
  CallToolResult,
  ElicitRequestParams,
  ElicitResult,
  GetPromptResult,
  Prompt,
  ReadResourceResult,
  Resource,
  ResourceTemplate,
  Tool,
} from "./sdk.ts";
import type { TraceSink } from "./agent_trace.ts";
import type { ArgumentValidator } from "./tool_schema.ts";

/** Rounds allowed when the caller does not say. */
export const DEFAULT_MAX_ROUNDS = 100;

/**
 * Why a task could not start: recursion, unknown servers, no tools, unknown model. The message says
 * what to do.
 */
export class AgentError
  extends BridgeError<"recursion" | "servers" | "tools" | "model" | "session" | "prompt"> {
  override name = "AgentError";
}

/**
 * Answers to the requests a downstream server sends while one of its tools runs (the pool gives
 * a server's `sampling/createMessage` or `elicitation/create` to the call that registered them).
 */
export type { ServerRequestHandlers } from "./pool_requests.ts";
/** What a server offers besides tools, from its declared capabilities. */
export interface ServerOffers {
  tools: boolean;
  resources: boolean;
  prompts: boolean;
}

/**
 * What the loop needs from the MCP pool; {@linkcode McpPool} satisfies it structurally. The
 * optional methods are the servers' resources and prompts: a host without them offers none.
 */
export interface ToolHost {
  listTools(
    server: string,
    options?: { signal?: AbortSignal; onNote?: (note: string) => void },
  ): Promise<readonly Tool[]>;
  callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    options?: {
      signal?: AbortSignal;
      timeoutMs?: number;
      /** The tool's own progress notifications, relayed to the loop's caller. */
      onProgress?: (p: ToolProgress) => void;
      /** "model": made for the local model (the pool guards the bridge's config files). */
      origin?: "model";
      /** The tool is marked read-only: the call cannot have changed the config. */
      readOnly?: boolean;
      /** Answers the server's sampling and elicitation requests while the call runs. */
      onServerRequest?: ServerRequestHandlers;
    },
  ): Promise<CallToolResult>;
  /** What `server` offers (its capabilities). */
  offers?(server: string, options: { signal?: AbortSignal }): Promise<ServerOffers>;
  /** The resources of `server` (every page). */
  listResources?(server: string, options: { signal?: AbortSignal }): Promise<Resource[]>;
  /** The resource templates of `server` (every page). */
  listResourceTemplates?(
    server: string,
    options: { signal?: AbortSignal },
  ): Promise<ResourceTemplate[]>;
  /** Reads one resource of `server`. */
  readResource?(
    server: string,
    uri: string,
    options: { signal?: AbortSignal },
  ): Promise<ReadResourceResult>;
  /** The prompts of `server` (every page). */
  listPrompts?(server: string, options: { signal?: AbortSignal }): Promise<Prompt[]>;
  /** One prompt of `server`, with `args` filled in. */
  getPrompt?(
    server: string,
    name: string,
    args: Record<string, string>,
    options: { signal?: AbortSignal },
  ): Promise<GetPromptResult>;
}

/** A progress notification of a running downstream tool. */
export interface ToolProgress {
  progress: number;
  total?: number;
  message?: string;
}

/**
 * What the loop needs from the LM Studio client: its chat request reports the reply as it streams
 * (`onEvent`, where the server streams) and answers with the generation's figures (`stats`). The
 * loop never changes a message or tool definition it sent (`unchanged`: a client may keep their
 * JSON for the next rounds).
 */
export interface AgentLmClient
  extends Pick<LmStudioClient, "baseUrl" | "resolveModel" | "listModels"> {
  chat(
    request: ChatRequest,
    options?: {
      signal?: AbortSignal;
      onEvent?: (event: ChatStreamEvent) => void;
      unchanged?: boolean;
    },
  ): Promise<ChatResult & { stats?: GenerationStats }>;
}
/** The server's model list, or why it could not be read. */
export type ModelListing = { list: ModelList } | { error: string };
/** What the loop needs from the MCP config. */
export type AgentConfig = Pick<ConfigSource, "current">;
/** What the loop needs from the model manager (optional); ModelManager satisfies it. */
export interface AgentModels {
  /**
   * Makes sure `model` is loaded, loading it with `contextLength` when it is not; answers with
   * the name to send in requests (`model`), how (`via`: "already-loaded", "lms", "rest" or
   * "jit") and anything the caller should know (`note`). Given the model list the caller has
   * (`list`), it does not read it again, and answers with a fresh one after a load (`list`).
   */
  ensureLoaded(
    model: string,
    options?: { signal?: AbortSignal; contextLength?: number; list?: ModelList },
  ): Promise<{ model?: string; via?: string; note?: string; list?: ModelList }>;
}

/** Why the loop stopped. */
export type StopReason =
  | "answer"
  | "max_rounds"
  | "repeated_call"
  | "cancelled"
  | "time_budget"
  | "context_overflow"
  | "error";

/** One tool call the model made, as the caller of the loop sees it. */
export interface ToolCallRecord {
  round: number;
  /** The name the model used. */
  name: string;
  /** The server and tool it mapped to (absent for unknown names). */
  server?: string;
  tool?: string;
  /** Parsed arguments, or the raw text when it was not valid JSON. */
  arguments: unknown;
  ok: boolean;
  /** Why the call failed (bad arguments, unknown tool, tool error, timeout...). */
  error?: string;
  duration_ms: number;
  /** Characters of the result text before truncation. */
  result_chars: number;
  /** Characters cut from the result to fit the context window. */
  truncated_chars?: number;
  /** The call was printed as text by the model and recovered. */
  recovered_from_text?: boolean;
}

/**
 * A conversation the loop can continue: the servers whose tools it offers, the model, and the
 * messages so far (the system message first), kept within the model's context window. Every
 * result carries one; {@linkcode AgentOptions.session} continues it. Sessions are plain data
 * (agent_sessions.ts stores them and writes them as JSON).
 */
export interface AgentSession {
  servers: string[];
  model: string;
  messages: ChatMessage[];
  /** Tasks run in this conversation so far. */
  tasks: number;
  /** Rounds of all its tasks. */
  rounds: number;
}

/** The figures of one round's model request. */
export interface RoundDetail {
  round: number;
  /** The whole request, in milliseconds. */
  model_ms: number;
  /** Time to the first token, when the reply streamed. */
  ttft_ms?: number;
  /** Tokens of the reply per second of generation (after the first token when that is known). */
  tokens_per_second?: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** True when the server reported no usage and the token counts are estimates (characters / 4). */
  estimated: boolean;
  /** Tool calls the reply asked for. */
  tool_calls: number;
  /** Estimated tokens of the tool definitions the request carried. */
  tool_tokens: number;
  /** Tools sent on demand: the tools whose full definitions the request carried. */
  tools_loaded?: string[];
}

/** How a task's tools were sent on demand (tool_demand.ts). */
export interface ToolsOnDemand {
  /** The tools in the catalogue. */
  catalog: number;
  /** Estimated tokens all their definitions would take. */
  all_tokens: number;
  /** The share of the context window the definitions may take. */
  share: number;
  /** The catalogue tool's name. */
  load_tool: string;
  /** Every tool loaded (or unloaded to make room), in order, with its round. */
  loads: ToolLoad[];
}

/** The outcome of {@linkcode runAgent}. */
export interface AgentResult {
  answer: string;
  rounds: number;
  tool_calls: ToolCallRecord[];
  usage: Usage;
  stopped_because: StopReason;
  model: string;
  /** Servers whose tools were offered. */
  servers: string[];
  /** The context window assumed, in tokens. */
  context_tokens: number;
  /** Things the caller should know (skipped servers, assumed context length, ...). */
  notes: string[];
  /** Every approval decision, in the order made. */
  approvals: ApprovalRecord[];
  /** Every sampling request of a server, answered or not, in order. */
  sampling: SamplingRecord[];
  /** The figures of each round's model request, in order. */
  rounds_detail: RoundDetail[];
  /** Set when the tool definitions were sent on demand: which tools were loaded and when. */
  tools_on_demand?: ToolsOnDemand;
  /** The conversation with this task in it, to keep for a task that continues it. */
  session: AgentSession;
  /** The failure behind `stopped_because: "error"`. */
  error?: string;
}

/** A progress event: `progress` increases strictly; `total` is max_rounds. */
export interface AgentProgress {
  progress: number;
  total: number;
  message: string;
  round: number;
  /** The tool being called, for tool events. */
  tool?: string;
  elapsedMs: number;
  usage: Usage;
}

/** What a rule says about a tool call: run it, ask the user first, or refuse it. */
export type ApprovalRule = "allow" | "ask" | "deny";

/**
 * Approval rules, as the bridge settings file (lmstudio-bridge.json) has them: `tools` holds
 * global rules keyed by `"server/tool"` globs (a key without "/" is a tool glob on every server),
 * `servers.<name>.tools` a server's own rules keyed by tool globs. `*` and `?` are wildcards.
 * Which rule decides is described in agent_approval.ts.
 */
export interface ApprovalRules {
  tools?: Readonly<Record<string, ApprovalRule>>;
  servers?: Readonly<Record<string, { readonly tools?: Readonly<Record<string, ApprovalRule>> }>>;
}

/** What the person who approves a tool call is shown. */
export interface ApprovalRequest {
  server: string;
  /** The tool's real name on its server. */
  tool: string;
  /** The call's arguments, secrets and long values shortened (`redact` in text.ts). */
  arguments: Record<string, unknown>;
  /** The task, as the caller gave it (cut to 500 characters). */
  task: string;
  /** From the tool's MCP annotations: readOnlyHint. */
  readOnly: boolean;
  /** From the tool's MCP annotations: destructiveHint (true when not said, as MCP defines it). */
  destructive: boolean;
  /**
   * "sampling": not a tool call but a server asking the local model to generate text; `tool` is
   * then `sampling/createMessage` and `arguments` say which of its tools asked and what for.
   */
  kind?: "sampling";
}

/** Run this call (`once`), run it and later calls of the same tool in this task, or refuse it. */
export type ApprovalAnswer = "once" | "task" | "deny";

/**
 * Asks a person whether a tool call may run. `{ unavailable }` says why nobody can be asked (the
 * MCP client cannot elicit, stdin is not a terminal); the call is then refused with a message that
 * says how to allow it. Rejects only when `signal` aborts.
 */
export type Approver = (
  request: ApprovalRequest,
  signal: AbortSignal,
) => Promise<ApprovalAnswer | { unavailable: string }>;

/** One approval decision, as the result and the trace report it. */
export interface ApprovalRecord {
  round: number;
  server: string;
  tool: string;
  /**
   * What decided: the rule that matched (`servers.filesystem.tools["write_*"]: ask`), a default
   * (`default: read-only`, `default: not read-only`), `approve_all`, or an earlier answer
   * (`approved for this task in round 2`).
   */
  rule: string;
  /** The approver was asked. */
  asked: boolean;
  /**
   * `allow` (ran without asking), `once` / `task` (approved), `deny` (refused by a rule or the
   * user), `unavailable` (nobody could be asked: refused).
   */
  answer: "allow" | ApprovalAnswer | "unavailable";
  /** Why nobody could be asked, for `unavailable`. */
  reason?: string;
}

/** Services the loop uses. */
export interface AgentDeps {
  client: AgentLmClient;
  pool: ToolHost;
  config: AgentConfig;
  models?: AgentModels;
  log?: Logger;
  /** Clock in milliseconds (default performance.now). */
  now?: () => number;
  /** Validates the model's arguments (default: the one every task shares). */
  validator?: ArgumentValidator;
}

/** A prompt of an MCP server that starts a task: which server, which prompt, its arguments. */
export interface StartingPrompt {
  server: string;
  name: string;
  arguments?: Record<string, string>;
}

/** Options of {@linkcode runAgent}. */
export interface AgentOptions {
  /** The task; may be empty when `prompt` says what to do. */
  task: string;
  /**
   * Start from this prompt of an MCP server (`prompts/get`): its messages come before the task
   * text. The server may be any usable server of the config, not only those whose tools are
   * offered.
   */
  prompt?: StartingPrompt;
  /** Server names, or "all" for every enabled usable server except the bridge itself. */
  servers: readonly string[] | "all";
  model?: string;
  /** Model used when `model` is not given (settings.defaultModel). */
  defaultModel?: string;
  /** Default {@linkcode DEFAULT_MAX_ROUNDS}. */
  maxRounds?: number;
  /** Limit of each model reply. */
  maxTokens?: number;
  temperature?: number;
  /** The caller's own instructions (`run --system`), added to the loop's system message. */
  instructions?: string;
  /** Glob patterns (`*`, `?`) over raw or `server__tool` names. */
  allowedTools?: readonly string[];
  /** Overall time budget in milliseconds. */
  timeBudgetMs?: number;
  /** Per tool call timeout (the pool's default otherwise). */
  toolTimeoutMs?: number;
  /** Sent as `ttl` with each request so a JIT-loaded model stays loaded between rounds. */
  ttlSeconds?: number;
  /**
   * Context length a model the bridge loads gets, and the window assumed when the server does not
   * tell (settings.defaultContextLength; default 8192).
   */
  defaultContextLength?: number;
  /** Nesting depth of this bridge (settings.depth); 2 or more refuses to run. */
  depth?: number;
  signal?: AbortSignal;
  onProgress?: (event: AgentProgress) => void;
  /**
   * Longest silence while the model generates or a tool runs: a heartbeat event goes out after
   * this many milliseconds without another (default 10 s).
   */
  heartbeatMs?: number;
  trace?: TraceSink;
  /**
   * Approval rules (the bridge settings' `tools` and `servers.<name>.tools`); see
   * agent_approval.ts for which one decides and the defaults when none does.
   */
  rules?: ApprovalRules;
  /**
   * Continue this conversation: the task is asked after its messages, with its servers and model
   * (`servers` and `model` are then not used; a note says so when they name others).
   */
  session?: AgentSession;
  /** Asks a person about the calls the rules say to ask about; without it nobody can be asked. */
  approve?: Approver;
  /** Allow every call that would be asked about (`run --yes`); deny rules still deny. */
  approveAll?: boolean;
  /**
   * Asks the person behind the task what a server wants to know (elicitation); without it such
   * requests are declined. The model never sees them.
   */
  elicit?: Elicitor;
  /**
   * Limits of the sampling requests of servers, answered by the task's model (default: the
   * bridge settings' `sampling` section; see agent_sampling.ts).
   */
  sampling?: SamplingLimits;
  /**
   * Share of the context window (0 to 1) the tool definitions may take before they are sent on
   * demand (default: the bridge settings' `tools_on_demand.share`, else 0.4; 1 never; see
   * tool_demand.ts).
   */
  toolShare?: number;
  deps: AgentDeps;
}

/** The limits of sampling (lmstudio-bridge.json `sampling`). */
export interface SamplingLimits {
  max_tokens?: number;
  per_task?: number;
}

/** One sampling request, as the result and the trace report it. */
export interface SamplingRecord {
  round: number;
  /** The server that asked, and its tool whose call was running. */
  server: string;
  tool: string;
  ok: boolean;
  /** Why it was not answered, or why the model failed. */
  error?: string;
  /** What the server asked for, and what the reply was allowed. */
  requested_max_tokens: number;
  max_tokens: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** endTurn, maxTokens, or what the model said. */
  stop_reason?: string;
  duration_ms: number;
}

/** What the person asked sees of an elicitation request. */
export interface ElicitationRequest {
  /** The server that asks, and its tool whose call is running. */
  server: string;
  tool: string;
  /** The task, as the caller gave it. */
  task: string;
  params: ElicitRequestParams;
}

/**
 * Asks the person behind the task what a server wants to know: their answer, or a decline
 * ({@linkcode declined}) saying why nobody could be asked. Rejects only when `signal` aborts.
 */
export type Elicitor = (request: ElicitationRequest, signal: AbortSignal) => Promise<ElicitResult>;

/** A tool loaded (or unloaded to make room) in a round, as the result and the trace report it. */
export interface ToolLoad {
  round: number;
  tool: string;
  /** `load_tools`: the model asked; `call`: it called the tool without loading it first. */
  via: "load_tools" | "call";
  /** Unloaded to make room for others (`via` says what loaded those). */
  unloaded?: true;
}
