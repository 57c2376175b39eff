/**
 * The child process of a stdio MCP server, its whole life cycle: spawn, pipes, stderr tail, exit,
 * process-group signalling and the close sequence.
 *
 * {@linkcode StdioChildTransport} is the MCP stdio client transport the pool uses: it spawns the
 * server with `Deno.Command`, speaks newline-delimited JSON-RPC over its stdin and stdout, and
 * tells apart two events that the SDK's transport merges:
 *
 * - the spawned process exited ({@linkcode StdioChildOptions.onExit}, with its code or signal);
 * - the connection closed (`onclose`): nothing can answer any more, because every process
 *   holding its stdout is gone, or the bridge closed it.
 *
 * They differ when the spawned process is a launcher such as `npx`: if it dies, the server it
 * started can still hold the pipes and answer. Closing ends stdin, waits, then sends SIGTERM and
 * SIGKILL, like the SDK; when the server runs in its own process group
 * ({@linkcode StdioChildOptions.signalGroup}), the signals go to the whole group, and whatever
 * is left of the group after the spawned process exited is stopped too.
 *
 * The pool watches the child through {@linkcode ChildState}: how it exited
 * ({@linkcode ExitInfo}), the last lines of its stderr kept for error messages
 * ({@linkcode StderrTail}), and the end of that stderr stream, so a message about a crash can
 * wait briefly for the child's last words ({@linkcode settleWithin}).
 *
 * Signalling a whole group stops what a server started (`npx` runs the server as its child; a
 * killed `npx` leaves that child behind). Deno lets a program signal processes other than its own
 * children only with unrestricted `--allow-run` (`Deno.kill`), or by running `kill` when the
 * sandbox allows that command. {@linkcode groupSignaller} picks whichever is allowed, or none: a
 * server is only put in its own process group when the bridge can signal that group.
 */
import { ChunkReader } from "./byte_stream.ts";
import { JSONRPCMessageSchema, type Transport } from "./sdk.ts";

// -- what the pool reads of the child -------------------------------------------------------------

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

// -- process groups -------------------------------------------------------------------------------

/**
 * Sends `signal` to every process in the group `pgid`. Resolves true when it was delivered,
 * false when no process of the group is left (or the signal could not be sent).
 */
export type GroupSignaller = (pgid: number, signal: Deno.Signal) => Promise<boolean>;

/** `Deno.kill(-pgid)`: needs unrestricted `--allow-run`. */
export function denoKillGroup(pgid: number, signal: Deno.Signal): Promise<boolean> {
  try {
    Deno.kill(-pgid, signal);
    return Promise.resolve(true);
  } catch {
    // No such process group (all gone) or not allowed: nothing was delivered either way.
    return Promise.resolve(false);
  }
}

/** Runs `kill -s SIGNAL -- -PGID`: needs `kill` in the sandbox's run list. */
export async function killCommandGroup(pgid: number, signal: Deno.Signal): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("kill", {
      args: ["-s", signal.replace(/^SIG/, ""), "--", `-${pgid}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    // `kill` is missing or not allowed: nothing was delivered.
    return false;
  }
}

/** Whether the sandbox lets this process run `command` (any command when undefined). */
function mayRun(command?: string): boolean {
  const descriptor: Deno.RunPermissionDescriptor = command === undefined
    ? { name: "run" }
    : { name: "run", command };
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/**
 * How this process may signal process groups: `Deno.kill` with unrestricted `--allow-run`, the
 * `kill` command when the sandbox allows running it, otherwise (and on Windows) not at all.
 */
export function groupSignaller(
  o: { mayRun?: (command?: string) => boolean; os?: typeof Deno.build.os } = {},
): GroupSignaller | undefined {
  const allowed = o.mayRun ?? mayRun;
  if ((o.os ?? Deno.build.os) === "windows") return undefined;
  if (allowed()) return denoKillGroup;
  return allowed("kill") ? killCommandGroup : undefined;
}

// -- the transport --------------------------------------------------------------------------------

type Message = Parameters<Transport["send"]>[0];

/** Default wait for the child after closing stdin, and again after SIGTERM (as in the SDK). */
// Short enough that the whole close (end of input, SIGTERM, the group) fits in the time an MCP
// client gives the bridge itself between ending its stdin and sending SIGKILL (2 s + 2 s).
const CLOSE_GRACE_MS = 1000;
/**
 * Longest line accepted on stdout; a longer one closes the connection. One JSON-RPC message may
 * be this long (a 16 MB file's text, escaped and sent twice).
 */
const MAX_LINE_CHARS = 64 * 1024 * 1024;

/** What {@linkcode StdioChildTransport} runs and whom it tells. */
export interface StdioChildOptions {
  command: string;
  args: string[];
  /** The child's whole environment (nothing else is inherited). */
  env: Record<string, string>;
  cwd?: string;
  /** Each chunk the child writes to stderr. */
  onStderr?: (chunk: Uint8Array) => void;
  /** Called once when the spawned process exits (processes it started may live on). */
  onExit?: (exit: ExitInfo) => void;
  /**
   * Signals a process group. When given, the child starts in its own process group and signals
   * go to the whole group; otherwise the child stays in ours and only it is signalled.
   */
  signalGroup?: GroupSignaller;
  /** Wait after closing stdin, and again after SIGTERM, before the next step. Default 1000. */
  closeGraceMs?: number;
  /** Longest stdout line (one JSON-RPC message) accepted, in characters. Default 64 MiB. */
  maxLineChars?: number;
  /** Told the spawned process's id (to follow what it starts, pool_reaper.ts). */
  onSpawned?: (pid: number) => void;
  /**
   * Ends what the process left behind outside its group (pool_reaper.ts); awaited at the end of
   * the close sequence.
   */
  reap?: (pid: number) => Promise<void>;
}

/** A stdio MCP client transport over a `Deno.Command` child; see the module docs. */
export class StdioChildTransport implements Transport, ChildState {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Transport["onmessage"];

  readonly #o: StdioChildOptions;
  readonly #graceMs: number;
  readonly #maxLineChars: number;
  #closeReason: string | undefined;
  #child?: Deno.ChildProcess;
  #writer?: WritableStreamDefaultWriter<Uint8Array>;
  #stdout?: ChunkReader;
  #stderr?: ReadableStreamDefaultReader<Uint8Array>;
  #exit?: ExitInfo;
  #exited: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null });
  #stdoutEnded: Promise<void> = Promise.resolve();
  /** Settled once stderr has ended; the same promise before and after start. */
  readonly #stderrDone = Promise.withResolvers<void>();
  #closing?: Promise<void>;
  #notified = false;

  constructor(options: StdioChildOptions) {
    this.#o = options;
    this.#graceMs = options.closeGraceMs ?? CLOSE_GRACE_MS;
    this.#maxLineChars = options.maxLineChars ?? MAX_LINE_CHARS;
  }

  /** The spawned process's id, once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How the spawned process exited, once it has. */
  get exit(): ExitInfo | undefined {
    return this.#exit;
  }

  /** Settles once the spawned process has exited (at once when it was never spawned). */
  get exited(): Promise<unknown> {
    return this.#exited;
  }

  /**
   * Resolves once the child's stderr has ended (everything it wrote was passed on); may be taken
   * before {@linkcode start}.
   */
  get stderrEnded(): Promise<void> {
    return this.#stderrDone.promise;
  }

  /** Spawns the server. Throws Deno's spawn errors (NotFound, NotCapable, PermissionDenied). */
  start(): Promise<void> {
    if (this.#child !== undefined) {
      return Promise.reject(new Error("StdioChildTransport already started"));
    }
    const o = this.#o;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(o.command, {
        args: o.args,
        env: o.env,
        clearEnv: true,
        cwd: o.cwd,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        detached: o.signalGroup !== undefined,
      }).spawn();
    } catch (error) {
      this.#stderrDone.resolve(); // Nothing will be written.
      return Promise.reject(error);
    }
    this.#child = child;
    o.onSpawned?.(child.pid);
    this.#writer = child.stdin.getWriter();
    this.#exited = child.status.then((status) => {
      const exit = { code: status.signal === null ? status.code : null, signal: status.signal };
      this.#exit = exit;
      this.#o.onExit?.(exit);
      return exit;
    });
    this.#stdout = new ChunkReader(child.stdout);
    this.#stderr = child.stderr.getReader();
    this.#stdoutEnded = this.#readStdout(this.#stdout);
    this.#readStderr(this.#stderr).then(this.#stderrDone.resolve);
    this.#stdoutEnded.then(async () => {
      if (this.#closing !== undefined) return;
      // Nobody holds its stdout any more: the server is gone. Wait briefly for its exit status,
      // so that whoever hears of the close can tell how it ended.
      await settleWithin(this.#exited, 500);
      this.#notifyClosed();
    });
    return Promise.resolve();
  }

  /** Why the transport gave up on the server, when it did (not set for an ordinary exit). */
  get closeReason(): string | undefined {
    return this.#closeReason;
  }

  /** Writes one message as a line on the child's stdin. */
  async send(message: Message): Promise<void> {
    const writer = this.#writer;
    if (writer === undefined || this.#closing !== undefined) throw new Error("Not connected");
    await writer.write(new TextEncoder().encode(JSON.stringify(message) + "\n"));
  }

  /** Ends stdin, waits, then SIGTERM, SIGKILL; stops what is left of the group. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const child = this.#child;
    if (child === undefined) {
      this.#notifyClosed();
      return;
    }
    const writer = this.#writer;
    // A child that reads nothing may never take the rest of its input: do not wait on that.
    // Ending stdin and the wait for the exit share one grace period.
    const started = performance.now();
    if (writer !== undefined) await settleWithin(writer.close(), this.#graceMs);
    const left = Math.max(0, this.#graceMs - (performance.now() - started));
    if (this.#exit === undefined && !(await this.#exitsWithin(left))) {
      await this.#signal(child, "SIGTERM");
      if (!(await this.#exitsWithin(this.#graceMs))) await this.#signal(child, "SIGKILL");
    }
    await this.#exited;
    const signalGroup = this.#o.signalGroup;
    if (signalGroup !== undefined && (await signalGroup(child.pid, "SIGTERM"))) {
      // What it started outlived it (a launcher's server): give it a moment to end, then kill.
      await settleWithin(this.#stdoutEnded, Math.min(this.#graceMs, 1000));
      await signalGroup(child.pid, "SIGKILL");
    }
    // What left the group (a session of its own) or escaped before the group was signalled.
    await this.#o.reap?.(child.pid);
    // Without a group, a process it started may still hold the pipes; stop reading them.
    await Promise.all([
      this.#stdout?.cancel().catch(() => undefined),
      this.#stderr?.cancel().catch(() => undefined),
    ]);
    await Promise.all([this.#stdoutEnded, this.#stderrDone.promise]);
    this.#notifyClosed();
  }

  async #exitsWithin(ms: number): Promise<boolean> {
    await settleWithin(this.#exited, ms);
    return this.#exit !== undefined;
  }

  async #signal(child: Deno.ChildProcess, signal: Deno.Signal): Promise<void> {
    if (this.#o.signalGroup !== undefined && (await this.#o.signalGroup(child.pid, signal))) {
      return;
    }
    try {
      child.kill(signal);
    } catch {
      // It exited in the meantime.
    }
  }

  #notifyClosed(): void {
    if (this.#notified) return;
    this.#notified = true;
    this.onclose?.();
  }

  async #readStdout(reader: ChunkReader): Promise<void> {
    const decoder = new TextDecoder();
    let pending: string[] = [];
    let pendingLength = 0;
    try {
      for (;;) {
        const value = await reader.read();
        if (value === undefined) break;
        let text = decoder.decode(value, { stream: true });
        let newline = text.indexOf("\n");
        while (newline !== -1) {
          pending.push(text.slice(0, newline));
          this.#deliver(pending.join(""));
          pending = [];
          pendingLength = 0;
          text = text.slice(newline + 1);
          newline = text.indexOf("\n");
        }
        if (text !== "") {
          pending.push(text);
          pendingLength += text.length;
        }
        if (pendingLength > this.#maxLineChars) {
          pending = [];
          pendingLength = 0;
          this.#closeReason = `it sent a message larger than ${charCount(this.#maxLineChars)} ` +
            "(one JSON-RPC line, e.g. a huge tool result), so the bridge closed the connection. " +
            "Ask the tool for less data (a smaller range, a filter, a page)";
          this.onerror?.(new Error(this.#closeReason));
          this.close().catch(() => undefined);
        }
      }
    } catch (error) {
      // Cancelled by close(), or the pipe failed; either way nothing more comes.
      if (this.#closing === undefined) this.onerror?.(asError(error));
    }
  }

  #deliver(raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") return;
    let message: Message;
    try {
      message = JSONRPCMessageSchema.parse(JSON.parse(line));
    } catch {
      // Banners and logs printed to stdout: skip them, keep the connection.
      this.onerror?.(
        new Error(`skipped a stdout line that is not JSON-RPC: ${line.slice(0, 200)}`),
      );
      return;
    }
    this.onmessage?.(message);
  }

  async #readStderr(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.#o.onStderr?.(value);
      }
    } catch {
      // Cancelled by close(), or the pipe failed: the tail so far is all there is.
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** A message length in characters: "64 Mi characters" for the 64 MiB limit, else the count. */
function charCount(chars: number): string {
  return chars >= 1024 * 1024
    ? `${Math.round(chars / 1024 / 1024)} Mi characters`
    : `${chars} characters`;
}
