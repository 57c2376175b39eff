/**
 * What the peer loops share (they run as child processes: `deno run --no-config --no-lock
 * --node-modules-dir=manual` in the cache directory the bench installed them into, so nothing
 * here may use the project's import map). The bench hands a {@linkcode PeerJob} as the first
 * argument; the peer sets up its SDK, runs the planned tasks one after the other and prints one
 * JSON line, a {@linkcode PeerReport}, on stdout.
 *
 * The peers' packages are not dependencies of the project: they are loaded by file URL from the
 * cache's node_modules, and each peer declares the few members it uses of them.
 */

/** The downstream MCP server, as in an MCP config file. */
export interface PeerServer {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** What the bench asks a peer to do. */
export interface PeerJob {
  /** The directory holding the installed node_modules. */
  modules: string;
  /** The fake LM Studio, e.g. http://127.0.0.1:1234 (the OpenAI API is under /v1). */
  baseUrl: string;
  model: string;
  server: PeerServer;
  /** One task per entry, in order: its text and the model turns it may take. */
  tasks: { text: string; rounds: number }[];
}

/** What a peer prints when done. */
export interface PeerReport {
  /** Loading the SDK, connecting to the server, listing its tools. */
  setupMs: number;
  /** Wall time of each task, in plan order. */
  tasks: { rounds: number; ms: number; answer: string }[];
}

/** A peer's loop once set up. */
export interface PeerLoop {
  /** Runs one task to its answer, allowing `maxTurns` model turns. */
  task(text: string, maxTurns: number): Promise<string>;
  close(): Promise<void>;
}

/**
 * The file URL of `specifier` (a package name with an optional subpath) in the installed
 * node_modules, from the package's `exports` (its `import` condition).
 */
export function moduleUrl(modules: string, specifier: string): string {
  const parts = specifier.split("/");
  const nameLength = specifier.startsWith("@") ? 2 : 1;
  const name = parts.slice(0, nameLength).join("/");
  const subpath = ["."].concat(parts.slice(nameLength)).join("/");
  const dir = `${modules}/node_modules/${name}`;
  const manifest: unknown = JSON.parse(Deno.readTextFileSync(`${dir}/package.json`));
  const target = exportTarget(manifest, subpath);
  if (target === undefined) throw new Error(`${specifier}: no import export in ${dir}`);
  return new URL(target, `file://${dir}/`).href;
}

function exportTarget(manifest: unknown, subpath: string): string | undefined {
  const exports = field(manifest, "exports");
  const entry = field(exports, subpath);
  const target = typeof entry === "string"
    ? entry
    : field(entry, "import") ?? field(entry, "default");
  return typeof target === "string" ? target : undefined;
}

function field(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined;
}

/** Reads the job, sets the peer up, runs the tasks and prints the report. */
export async function runPeer(setup: (job: PeerJob) => Promise<PeerLoop>): Promise<void> {
  const job: PeerJob = JSON.parse(Deno.args[0] ?? "null");
  const t0 = performance.now();
  const loop = await setup(job);
  const setupMs = performance.now() - t0;
  const tasks: PeerReport["tasks"] = [];
  try {
    for (const { text, rounds } of job.tasks) {
      const start = performance.now();
      const answer = await loop.task(text, rounds + 1);
      tasks.push({ rounds, ms: performance.now() - start, answer });
    }
  } finally {
    await loop.close();
  }
  const report: PeerReport = { setupMs, tasks };
  await Deno.stdout.write(new TextEncoder().encode(`${JSON.stringify(report)}\n`));
}
