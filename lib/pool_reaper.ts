/**
 * Ending what stdio servers leave behind, as far as a process can.
 *
 * Closing a server stops its process group (pool_stdio.ts). Two kinds of process escape that:
 *
 * - a descendant that moved to a session (and so a group) of its own (`setsid`, daemons);
 * - everything, when the bridge itself is killed (SIGKILL leaves it no chance to clean up), if
 *   the servers ignore the end of their input and SIGTERM.
 *
 * Both are handled by a keeper: one small `deno` child per bridge ({@linkcode ProcessTracker}
 * starts it with the first stdio server), in a session of its own so that a signal to the
 * bridge's group does not reach it. The bridge tells it each server it starts; the keeper follows
 * each server's descendants through Linux's /proc (a scan every `intervalMs`, and one more before
 * it ends anything), and each server's environment carries a marker ({@linkcode OWNER_VARIABLE})
 * that its descendants inherit, so that descendants re-parented between scans are found too.
 * When the bridge has closed a server, the keeper ends what it left behind (SIGTERM, then
 * SIGKILL); when its input closes (the bridge exited, however it exited) it ends every server
 * still recorded and all their descendants, then exits.
 *
 * The keeper runs with all permissions (`deno run -A`): Deno lets a program read /proc only
 * then, and the bridge's own sandbox (`-P=bridge`) does not; its program is fixed text inside
 * the bridge, run from a `data:` URL, reading only what the bridge writes to it.
 *
 * What cannot be done: a process that left the server's session before a scan saw it and also
 * cleared its environment is not found; without /proc (macOS) only the servers' process groups
 * are ended; without `deno` to run (or on Windows) there is no keeper; and a keeper killed
 * together with the bridge (a whole cgroup or session killed at once) ends nothing.
 */
import type { Logger } from "./log.ts";

/** The variable that marks a server's environment (and its descendants') with its owner. */
export const OWNER_VARIABLE = "LMSTUDIO_BRIDGE_OWNER";

/** Default time between two scans of the running servers' descendants. */
const DEFAULT_INTERVAL_MS = 2000;
/** How long {@linkcode ProcessTracker.reap} waits for the keeper to report. */
const REAP_TIMEOUT_MS = 5000;

/**
 * The keeper's program. Input lines: `s PID MARKER GROUP` (a server started; GROUP 1 when it
 * leads a process group of its own), `r PID` (the bridge closed that server: end what is left
 * of it, then answer `done PID` on stdout). At the end of its input it ends everything recorded.
 * Ending: SIGTERM to the server's group, its recorded descendants still alive (same start time,
 * so a reused pid is spared) and every process carrying its marker; then, after a grace period,
 * SIGKILL to what is left. Argument: the scan interval in milliseconds.
 */
const KEEPER_SOURCE = `
const INTERVAL = Number(Deno.args[0]) || 2000;
const GRACE = 1000;
const roots = new Map();
const encoder = new TextEncoder();
const answer = (line) => { try { Deno.stdout.writeSync(encoder.encode(line + "\\n")); } catch {} };
const stat = (pid) => {
  try {
    const text = Deno.readTextFileSync("/proc/" + pid + "/stat");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return f[0] === "Z" ? undefined : { ppid: Number(f[1]), pgrp: Number(f[2]), start: f[19] };
  } catch { return undefined; }
};
const pids = () => {
  try {
    return [...Deno.readDirSync("/proc")].filter((e) => /^\\d+$/.test(e.name)).map((e) => Number(e.name));
  } catch { return []; }
};
const scan = () => {
  if (roots.size === 0) return;
  const children = new Map();
  for (const pid of pids()) {
    const s = stat(pid);
    if (s === undefined) continue;
    if (!children.has(s.ppid)) children.set(s.ppid, []);
    children.get(s.ppid).push([pid, s.start]);
  }
  for (const [root, r] of roots) {
    const queue = [...(children.get(root) ?? [])];
    while (queue.length > 0) {
      const [pid, start] = queue.shift();
      if (!r.known.has(pid)) r.known.set(pid, start);
      queue.push(...(children.get(pid) ?? []));
    }
  }
};
const alive = (records) => {
  const found = new Set();
  const markers = new Set(records.map((r) => "\\0${OWNER_VARIABLE}=" + r.marker + "\\0"));
  for (const pid of pids()) {
    if (pid === Deno.pid) continue;
    const s = stat(pid);
    if (s === undefined) continue;
    for (const r of records) {
      if ((pid === r.pid && s.start === r.start) || (r.group && s.pgrp === r.pid) ||
          r.known.get(pid) === s.start) found.add(pid);
    }
    if (found.has(pid)) continue;
    try {
      const env = "\\0" + Deno.readTextFileSync("/proc/" + pid + "/environ");
      for (const m of markers) if (env.includes(m)) found.add(pid);
    } catch {}
  }
  return [...found];
};
const signal = (list, sig) => { for (const pid of list) { try { Deno.kill(pid, sig); } catch {} } };
const end = async (records) => {
  scan();
  let left = alive(records);
  if (left.length === 0) return;
  signal(left, "SIGTERM");
  for (let waited = 0; waited < GRACE && left.length > 0; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    left = alive(records);
  }
  signal(left, "SIGKILL");
};
const timer = setInterval(scan, INTERVAL);
const handle = async (line) => {
  const [op, pid, marker, group] = line.trim().split(" ");
  if (op === "s") {
    roots.set(Number(pid), { pid: Number(pid), marker, group: group === "1", start: stat(pid)?.start, known: new Map() });
  } else if (op === "r") {
    const r = roots.get(Number(pid));
    if (r !== undefined) await end([r]);
    roots.delete(Number(pid));
    answer("done " + pid);
  }
};
const decoder = new TextDecoder();
let buffer = "";
try {
  for await (const chunk of Deno.stdin.readable) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let i = buffer.indexOf("\\n"); i >= 0; i = buffer.indexOf("\\n")) {
      await handle(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  }
} catch {}
clearInterval(timer);
await end([...roots.values()]);
`;

function mayRun(command: string): boolean {
  return Deno.permissions.querySync({ name: "run", command }).state === "granted";
}

/** Options of {@linkcode ProcessTracker}. */
export interface ProcessTrackerOptions {
  log: Logger;
  /** Time between the keeper's scans of the servers' descendants. Default 2000. */
  intervalMs?: number;
}

/**
 * The bridge's side of the keeper (see the module docs): marks each stdio server's environment,
 * tells the keeper what runs and what closed, and lets it go when the pool closes.
 */
export class ProcessTracker {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #prefix = `${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`;
  #seq = 0;
  #keeper?: Keeper;
  #failed = false;

  constructor(o: ProcessTrackerOptions) {
    this.#log = o.log;
    this.#intervalMs = o.intervalMs ?? DEFAULT_INTERVAL_MS;
  }

  /** A tracker when a keeper can run here (`deno` allowed, not Windows), else undefined. */
  static create(o: ProcessTrackerOptions): ProcessTracker | undefined {
    if (Deno.build.os === "windows" || !mayRun("deno")) return undefined;
    return new ProcessTracker(o);
  }

  /** A new marker for a server's environment ({@linkcode OWNER_VARIABLE}). */
  newMarker(): string {
    return `${this.#prefix}.${++this.#seq}`;
  }

  /** The server `pid` started (leading a process group of its own when `group`). */
  spawned(pid: number, marker: string, group: boolean): void {
    this.#start()?.send(`s ${pid} ${marker} ${group ? 1 : 0}`);
  }

  /** Ends what the server `pid` left behind (the bridge has closed it); resolves when done. */
  async reap(pid: number): Promise<void> {
    await this.#keeper?.request(`r ${pid}`, `done ${pid}`, REAP_TIMEOUT_MS);
  }

  /** Lets the keeper go: it ends whatever is still recorded (normally nothing), then exits. */
  async close(): Promise<void> {
    await this.#keeper?.close();
  }

  #start(): Keeper | undefined {
    if (this.#keeper === undefined && !this.#failed) {
      this.#keeper = Keeper.start(this.#intervalMs, this.#log);
      this.#failed = this.#keeper === undefined;
    }
    return this.#keeper;
  }
}

/** The keeper process and the pipes to it. */
class Keeper {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;
  readonly #encoder = new TextEncoder();
  #queue: Promise<void> = Promise.resolve();
  #replies: Promise<void> = Promise.resolve();
  #buffer = "";
  /** A read of the keeper's answers still under way (a wait for one timed out). */
  #pending?: Promise<ReadableStreamReadResult<string>>;
  #closed = false;

  private constructor(child: Deno.ChildProcess) {
    this.#writer = child.stdin.getWriter();
    this.#reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Starts the keeper, or undefined when it cannot be started. */
  static start(intervalMs: number, log: Logger): Keeper | undefined {
    const env: Record<string, string> = { NO_COLOR: "1" };
    for (const name of ["PATH", "HOME", "DENO_DIR"]) {
      try {
        const value = Deno.env.get(name);
        if (value !== undefined) env[name] = value;
      } catch {
        // Without env permission: deno's defaults.
      }
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("deno", {
        args: [
          "run",
          "-A",
          "--quiet",
          "--no-prompt",
          "--no-config",
          "--no-lock",
          `data:application/javascript;base64,${btoa(KEEPER_SOURCE)}`,
          String(intervalMs),
        ],
        env,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
        // Its own session: a Ctrl-C or a signal to the bridge's group does not reach it.
        detached: true,
      }).spawn();
    } catch (error) {
      log.debug("no process keeper: `deno` did not start; a killed bridge leaves its servers", {
        error: String(error),
      });
      return undefined;
    }
    // It must not keep the bridge alive: it ends when the bridge's end of its input closes.
    child.unref();
    child.status.catch(() => undefined);
    log.debug("process keeper started", { pid: child.pid });
    return new Keeper(child);
  }

  /** Sends one line (in order; a failed write is ignored: the keeper is gone). */
  send(line: string): void {
    if (this.#closed) return;
    const bytes = this.#encoder.encode(line + "\n");
    this.#queue = this.#queue.then(() => this.#writer.write(bytes)).catch(() => undefined);
  }

  /**
   * Sends `line` and waits (at most `timeoutMs`) for the line `reply`. Reads only while waiting:
   * a read left pending would keep the bridge's process alive.
   */
  request(line: string, reply: string, timeoutMs: number): Promise<void> {
    this.send(line);
    const wait = this.#replies.then(() => this.#readUntil(reply, Date.now() + timeoutMs));
    this.#replies = wait.catch(() => undefined);
    return this.#replies;
  }

  async #readUntil(reply: string, deadline: number): Promise<void> {
    for (;;) {
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        if (line === reply) return;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), left);
      });
      this.#pending ??= this.#reader.read();
      const next = await Promise.race([this.#pending, timeout]).finally(() => clearTimeout(timer));
      if (next === undefined) return; // Timed out; the read stays for the next wait.
      this.#pending = undefined;
      if (next.done) return;
      this.#buffer += next.value;
    }
  }

  /** Closes its input: it ends what is still recorded and exits. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.#replies;
    await this.#writer.close().catch(() => undefined);
  }
}
