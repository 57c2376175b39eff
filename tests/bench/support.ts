/**
 * Shared pieces of the benchmarks (`deno task bench`). Not a bench file itself: `deno bench` only
 * runs files ending in `_bench.ts`.
 *
 * Deno.bench has no before/after hooks, and it does not wait for async work started in a
 * `beforeunload` listener. So resources that several benches share (a live MCP connection, a
 * fake LM Studio) are {@linkcode Shared}: made on first use, and closed, awaited, when a bench
 * of another resource starts (benches of a file run one after the other, in order). Whatever is
 * still open when the file ends gets a synchronous last resort on `unload` (kill the children,
 * remove the temp dirs).
 */
import { createLogger, type Logger } from "../../lib/log.ts";
import { join } from "../../lib/path.ts";
import {
  cachedRun,
  childrenCached,
  denoChildEnv,
  processTree,
  REFERENCE_SERVERS,
} from "../fixtures/pool_support.ts";

export {
  cachedEntry,
  cachedRun,
  denoChildEnv,
  REFERENCE_SERVERS,
  REFERENCE_VERSION,
  textOf,
} from "../fixtures/pool_support.ts";

/** The repository root. */
export const ROOT: string = decodeURIComponent(new URL("../..", import.meta.url).pathname)
  .replace(/\/$/, "");
/** The project's deno.json (its import map and the "bridge" permission set). */
export const DENO_JSON: string = join(ROOT, "deno.json");
/** A logger that prints nothing: benchmarks measure work, not logging. */
export const quiet: Logger = createLogger({ level: "silent" });

/** What a {@linkcode Shared} factory returns. */
export interface Resource<T> {
  value: T;
  /** Closes everything the resource opened (servers, pools, temp dirs). */
  close(): Promise<void>;
  /** Synchronous last resort at exit, when `close` never ran: kill children, remove temp dirs. */
  abandon?(): void;
}

let active: Shared<unknown> | undefined;

/** Closes the shared resource that is open, if any. Call it first in a self-contained bench. */
export async function releaseShared(): Promise<void> {
  const current = active;
  active = undefined;
  await current?.close();
}

globalThis.addEventListener("unload", () => active?.abandon());

/** A resource shared by consecutive benches; at most one is open at a time. */
export class Shared<T> {
  readonly #make: () => Promise<Resource<T>>;
  #resource?: Promise<Resource<T>>;
  /** The resource once made (for the synchronous exit path). */
  #ready?: Resource<T>;

  constructor(make: () => Promise<Resource<T>>) {
    this.#make = make;
  }

  /** The resource, made on first use; closes the one another bench left open first. */
  async get(): Promise<T> {
    if (active !== this) {
      await releaseShared();
      active = this as Shared<unknown>;
    }
    this.#resource ??= this.#make().then((r) => this.#ready = r);
    return (await this.#resource).value;
  }

  /** Closes the resource; the next {@linkcode get} makes a new one. */
  async close(): Promise<void> {
    const resource = this.#resource;
    this.#resource = undefined;
    this.#ready = undefined;
    await (await resource)?.close();
  }

  /** Synchronous cleanup at exit (see {@linkcode Resource.abandon}). */
  abandon(): void {
    this.#ready?.abandon?.();
    this.#ready = undefined;
  }
}

/** Kills `pid` and everything below it (Linux /proc); for exit-time cleanup only. */
export function killTree(pid: number): void {
  for (const p of processTree(pid).reverse()) {
    try {
      Deno.kill(p, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Throws when `condition` is false: a bench that measures a failure measures nothing. */
export function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`benchmark sanity check failed: ${what}`);
}

/**
 * The short run: `BENCH_QUICK=1 deno task bench` (or `-- --quick` after a bench file). Fewer
 * rounds, tasks and servers; every figure is still a median of at least 5.
 */
export const QUICK: boolean = Deno.env.get("BENCH_QUICK") === "1" || Deno.args.includes("--quick");

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The command line of `pid` (Linux /proc), "" when it is gone. */
export function commandLine(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

/** Resident memory of `pid` in bytes, split into its private and its shared pages; 0s when gone. */
export function residentBytes(pid: number): { private: number; shared: number } {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  } catch {
    return { private: 0, shared: 0 };
  }
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return {
    private: (kb("Private_Clean") + kb("Private_Dirty")) * 1024,
    shared: (kb("Shared_Clean") + kb("Shared_Dirty")) * 1024,
  };
}

/**
 * CPU time `pid` alone (its own threads, not its children) has used so far, ms: the run time of
 * each thread (Linux /proc/PID/task/TID/schedstat, in ns); 0 when it is gone. Threads that have
 * ended are not counted. Steadier than wall time on a busy machine, and finer than utime + stime
 * (10 ms ticks): time spent waiting for a core is not in it.
 */
export function cpuMs(pid: number | "self"): number {
  let ns = 0;
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0]);
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    // The process ended meanwhile.
  }
  return ns / 1e6;
}

/** {@linkcode cpuMs} of `pid` and everything below it. */
export function treeCpuMs(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + cpuMs(p), 0);
}

/**
 * Resident memory of `pid` and everything below it, leaving out the subtrees of processes whose
 * command line matches `exclude` (the downstream MCP servers, when the bridge alone is meant).
 * Each process's private pages, plus the shared pages once (those of the process that has the
 * most): the pages a `deno task` wrapper shares with the `deno run` below it are the same pages
 * of the same executable, and adding up RSS would count them twice. For one process it is its
 * RSS.
 */
export function treeMemory(pid: number, exclude?: RegExp): number {
  const tree = processTree(pid);
  const skipped = new Set<number>();
  for (const p of tree) {
    if (p !== pid && exclude?.test(commandLine(p))) {
      for (const q of processTree(p)) skipped.add(q);
    }
  }
  let own = 0;
  let shared = 0;
  for (const p of tree) {
    if (skipped.has(p)) continue;
    const r = residentBytes(p);
    own += r.private;
    shared = Math.max(shared, r.shared);
  }
  return own + shared;
}

/** Child programs of the benches themselves, beside this file. */
const BENCH_CHILDREN = ["floor_server.ts", "minimal_server.ts"];

let benchCached: Promise<void> | undefined;

/**
 * Caches every program a bench starts (main.ts, the fixtures, the reference servers, the bench's
 * own servers) with the lockfile read-only, so children run from the cache without the network.
 */
export function benchChildrenCached(): Promise<void> {
  return benchCached ??= (async () => {
    await childrenCached();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "cache",
        "--frozen",
        `--config=${DENO_JSON}`,
        ...BENCH_CHILDREN.map((f) => join(ROOT, "tests", "bench", f)),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `Caching the bench's own servers failed:\n${new TextDecoder().decode(out.stderr)}`,
      );
    }
  })();
}

/** The deno cache children must use (their HOME is a temp dir, so it is passed explicitly). */
export function denoDir(): string {
  return Deno.env.get("DENO_DIR") ?? join(Deno.env.get("HOME") ?? "/root", ".cache", "deno");
}

/** A stdio MCP config entry. */
export interface StdioEntry {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The reference server-memory as a config entry, storing its graph in `file`: `deno` from PATH
 * (as a user writes it; the bridge's permission set allows it by name) running the pinned
 * package from the cache, so no run needs the network.
 */
export function memoryEntry(file: string): StdioEntry {
  return {
    command: "deno",
    args: cachedRun([REFERENCE_SERVERS.memory]),
    env: { ...denoChildEnv(), DENO_DIR: denoDir(), MEMORY_FILE_PATH: file },
  };
}
