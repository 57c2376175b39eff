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
import type { ModelList, Usage } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import type { CallToolResult, Tool } from "./sdk.ts";
import type { TraceSink } from "./agent_trace.ts";

/** Rounds allowed when the caller does not say. */
export const DEFAULT_MAX_ROUNDS = 100;

/**
 * Why a task could not start: recursion, unknown servers, no tools, unknown model. The message says
 * what to do.
 */
export class AgentError extends BridgeError<"recursion" | "servers" | "tools" | "model"> {
  override name = "AgentError";
}

/** True when `signal` fired or `error` is an abort (an AbortError, or of kind "aborted"). */
export function isAbort(error: unknown, signal: AbortSignal): boolean {
  if (signal.aborted) return true;
  return error instanceof Error && (error.name === "AbortError" ||
    (error as { kind?: unknown }).kind === "aborted");
}

/** What the loop needs from the MCP pool; {@linkcode McpPool} satisfies it structurally. */
export interface ToolHost {
  listTools(server: string, options?: { signal?: AbortSignal }): Promise<Tool[]>;
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
    },
  ): Promise<CallToolResult>;
}

/** A progress notification of a running downstream tool. */
export interface ToolProgress {
  progress: number;
  total?: number;
  message?: string;
}

/** What the loop needs from the LM Studio client. */
export type AgentLmClient = Pick<
  LmStudioClient,
  "baseUrl" | "chat" | "resolveModel" | "listModels"
>;
/** The server's model list, or why it could not be read. */
export type ModelListing = { list: ModelList } | { error: string };
/** What the loop needs from the MCP config. */
export type AgentConfig = Pick<ConfigSource, "current">;
/** What the loop needs from the model manager (optional); ModelManager satisfies it. */
export interface AgentModels {
  /**
   * Makes sure `model` is loaded, loading it with `contextLength` when it is not; answers with
   * the name to send in requests (`model`), how (`via`: "already-loaded", "lms", "rest" or
   * "jit") and anything the caller should know (`note`).
   */
  ensureLoaded(
    model: string,
    options?: { signal?: AbortSignal; contextLength?: number },
  ): Promise<{ model?: string; via?: string; note?: string }>;
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

/** Services the loop uses. */
export interface AgentDeps {
  client: AgentLmClient;
  pool: ToolHost;
  config: AgentConfig;
  models?: AgentModels;
  log?: Logger;
  /** Clock in milliseconds (default performance.now). */
  now?: () => number;
}

/** Options of {@linkcode runAgent}. */
export interface AgentOptions {
  task: string;
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
  deps: AgentDeps;
}
