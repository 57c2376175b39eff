/**
 * Error plumbing every module shares: the base class {@linkcode BridgeError} (a `kind` and a
 * message that says what to do) and {@linkcode UsageError}, the message of anything thrown, the cause chain, telling Deno's
 * sandbox apart from the operating system, and one classifier of network failures.
 */

/**
 * The base of the bridge's own errors: a machine-readable `kind` and a message that says what
 * failed and what to do next. `main.ts` maps kinds to exit codes in one place.
 */
export class BridgeError<K extends string = string> extends Error {
  override name = "BridgeError";
  readonly kind: K;
  constructor(kind: K, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
  }
}

/**
 * Misuse of the command line; main.ts prints help and exits 2. Here rather than in args.ts so
 * that `serve` reports it without loading the option parser (and node:util behind it).
 */
export class UsageError extends BridgeError<"usage"> {
  override name = "UsageError";
  constructor(message: string, readonly command?: string) {
    super("usage", message);
  }
}

/** The message of anything thrown, without a stack. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/** `error` and its causes, outermost first (at most 10). */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && chain.length < 10) {
    chain.push(current);
    current = current instanceof Error ? current.cause : undefined;
  }
  return chain;
}

/** The string `code` of a Node-style system error ("ENOENT"), if it has one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code: unknown = Reflect.get(error, "code");
  return typeof code === "string" ? code : undefined;
}

/**
 * True when Deno's permission sandbox refused the operation, not the operating system. Deno
 * reports both a sandbox refusal (`NotCapable`, or a `PermissionDenied` without an errno code) and
 * an OS refusal (a `PermissionDenied` with an errno code such as EACCES: a file that is not
 * executable). Only the first is fixed by a permission flag, so only the first may be answered
 * with one.
 */
export function isSandboxDenial(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable ||
    (error instanceof Deno.errors.PermissionDenied && errnoCode(error) === undefined);
}

/** What kind of network failure an error is. */
export type NetworkFailureKind =
  | "refused"
  | "reset"
  | "dns"
  | "timeout"
  | "dropped"
  | "unreachable"
  | "other";

/** A network failure, classified, with a short reason for a message. */
export interface NetworkFailure {
  kind: NetworkFailureKind;
  /** "connection refused" rather than a stack of wrappers. */
  reason: string;
}

const NETWORK_PATTERNS: ReadonlyArray<[NetworkFailureKind, RegExp, string]> = [
  ["refused", /connection refused|ECONNREFUSED|os error (111|61|10061)\b/i, "connection refused"],
  [
    "reset",
    /connection (reset|aborted)|reset by peer|ECONNRESET/i,
    "the connection was reset",
  ],
  [
    "dns",
    /dns error|failed to lookup|name or service not known|ENOTFOUND/i,
    "its host name could not be resolved",
  ],
  ["timeout", /timed out|ETIMEDOUT/i, "the connection timed out"],
  [
    "dropped",
    /unexpected eof|incomplete|end of file|broken pipe|error reading a body|connection closed/i,
    "the connection closed in the middle of a response",
  ],
  ["unreachable", /fetch failed|error sending request/i, "the server could not be reached"],
];

/** Classifies a failed request or stream by its type and the messages of its cause chain. */
export function networkFailure(error: unknown): NetworkFailure {
  const chain = causeChain(error);
  if (chain.some((e) => e instanceof Deno.errors.ConnectionRefused)) {
    return { kind: "refused", reason: "connection refused" };
  }
  if (
    chain.some((e) =>
      e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.ConnectionAborted
    )
  ) {
    return { kind: "reset", reason: "the connection was reset" };
  }
  const text = chain.map((e) => e instanceof Error ? e.message : String(e)).join(": ");
  for (const [kind, pattern, reason] of NETWORK_PATTERNS) {
    if (pattern.test(text)) return { kind, reason };
  }
  const cleaned = text.replace(/\b(?:TypeError|SSE error|Error): /g, "").trim();
  return {
    kind: "other",
    reason: cleaned === "" || cleaned === "undefined"
      ? "the server closed the connection"
      : cleaned,
  };
}
