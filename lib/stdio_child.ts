/**
 * The child process of a stdio MCP server as the pool watches it: a `StdioClientTransport` that
 * also reports how the child exited ({@linkcode ObservedStdioTransport}), the last lines of its
 * stderr kept for error messages ({@linkcode StderrTail}), and the end of that stderr stream, so a
 * message about a crash can wait briefly for the child's last words ({@linkcode streamEnd},
 * {@linkcode settleWithin}).
 */
import { StdioClientTransport, type StdioServerParameters } from "./sdk.ts";

type Timer = ReturnType<typeof setTimeout>;

/** How a child process ended: its exit code, or the signal that killed it. */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** Filled in by the transport when the child exits. */
export interface ProcessWatch {
  exit?: ExitInfo;
}

interface ChildLike {
  once(event: "exit", listener: (code: number | null, signal: string | null) => void): unknown;
}

/**
 * The SDK keeps its ChildProcess private; we read only its exit code and signal, for error
 * messages. Without it (a future SDK) messages say "exited" without a code.
 */
function childOf(transport: StdioClientTransport): ChildLike | undefined {
  const child: unknown = Reflect.get(transport, "_process");
  if (typeof child !== "object" || child === null) return undefined;
  return typeof Reflect.get(child, "once") === "function" ? child as ChildLike : undefined;
}

/** StdioClientTransport that also reports how its child exited. */
export class ObservedStdioTransport extends StdioClientTransport {
  readonly #onExit: (exit: ExitInfo) => void;
  constructor(params: StdioServerParameters, onExit: (exit: ExitInfo) => void) {
    super(params);
    this.#onExit = onExit;
  }
  override async start(): Promise<void> {
    await super.start();
    childOf(this)?.once("exit", (code, signal) => this.#onExit({ code, signal }));
  }
}

/** Resolves once a stream has ended or closed. */
export interface EndSignal {
  readonly ended: Promise<void>;
}

/** The end of a Node-style stream (its "end" or "close" event, whichever comes first). */
export function streamEnd(
  stream: { once(event: string, listener: () => void): unknown },
): EndSignal {
  return {
    ended: new Promise<void>((resolve) => {
      stream.once("end", resolve);
      stream.once("close", resolve);
    }),
  };
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
