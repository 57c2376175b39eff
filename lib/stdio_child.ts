/**
 * The child process of a stdio MCP server as the pool watches it ({@linkcode ChildState}): how
 * it exited ({@linkcode ExitInfo}), the last lines of its stderr kept for error messages
 * ({@linkcode StderrTail}), and the end of that stderr stream, so a message about a crash can
 * wait briefly for the child's last words ({@linkcode settleWithin}). The transport that runs
 * the child is in stdio_transport.ts.
 */

type Timer = ReturnType<typeof setTimeout>;

/** How a child process ended: its exit code, or the signal that killed it. */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** What the pool reads of a stdio server's child, as its transport knows it at the moment. */
export interface ChildState {
  /** The spawned process's id, once started. */
  readonly pid: number | undefined;
  /** How the spawned process exited, once it has. */
  readonly exit: ExitInfo | undefined;
  /** Why the transport gave up on the server, when it did (not set for an ordinary exit). */
  readonly closeReason: string | undefined;
  /** Resolves once the child's stderr has ended. */
  readonly stderrEnded: Promise<void>;
}

/** Waits for `promise` (never rejecting) at most `ms`. */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: Timer | undefined;
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/** Keeps the last lines of a child's stderr and logs each line at debug level. */
export class StderrTail {
  readonly #max: number;
  readonly #lines: string[] = [];
  readonly #onLine: (line: string) => void;
  readonly #decoder = new TextDecoder();
  #partial = "";

  constructor(max: number, onLine: (line: string) => void) {
    this.#max = max;
    this.#onLine = onLine;
  }

  /** Adds a chunk of stderr output (bytes or text); complete lines are kept and logged. */
  push(chunk: unknown): void {
    const text = typeof chunk === "string"
      ? chunk
      : chunk instanceof Uint8Array
      ? this.#decoder.decode(chunk, { stream: true })
      : String(chunk);
    const parts = (this.#partial + text).split(/\r?\n/);
    this.#partial = parts.pop() ?? "";
    if (this.#partial.length > 4000) {
      parts.push(this.#partial);
      this.#partial = "";
    }
    for (const part of parts) this.#add(part);
  }

  /** Keeps the last, unterminated line too (the stream ended). */
  flush(): void {
    if (this.#partial !== "") this.#add(this.#partial);
    this.#partial = "";
  }

  #add(raw: string): void {
    // deno-lint-ignore no-control-regex
    const line = raw.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").trimEnd();
    if (line === "") return;
    const clipped = line.length > 500 ? `${line.slice(0, 500)}…` : line;
    this.#onLine(clipped);
    this.#lines.push(clipped);
    if (this.#lines.length > this.#max) this.#lines.shift();
  }

  /** The kept lines, oldest first (a copy). */
  get lines(): string[] {
    return [...this.#lines];
  }
}
