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
import { processTree } from "../fixtures/pool_support.ts";

export { denoChildEnv, REFERENCE_VERSION, textOf } from "../fixtures/pool_support.ts";

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
