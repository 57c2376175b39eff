/**
 * How the autonomous loop fails: {@linkcode AgentError} for a task that cannot start (recursion
 * guard, unknown servers, no tools, a model the server does not have), and {@linkcode isAbort} to
 * tell a cancellation or an exhausted time budget from a real failure.
 */

/**
 * Why a task could not start: recursion, unknown servers, no tools, unknown model. The message says
 * what to do.
 */
export class AgentError extends Error {
  override name = "AgentError";
  readonly kind: "recursion" | "servers" | "tools" | "model";
  constructor(kind: AgentError["kind"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** True when `signal` fired or `error` is an abort (an AbortError, or of kind "aborted"). */
export function isAbort(error: unknown, signal: AbortSignal): boolean {
  if (signal.aborted) return true;
  return error instanceof Error && (error.name === "AbortError" ||
    (error as { kind?: unknown }).kind === "aborted");
}
