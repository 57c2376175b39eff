/**
 * How the autonomous loop fails: {@linkcode AgentError} for a task that cannot start (recursion
 * guard, unknown servers, no tools, a model the server does not have), and {@linkcode isAbort} to
 * tell a cancellation or an exhausted time budget from a real failure.
 */
import { BridgeError } from "./errors.ts";

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
