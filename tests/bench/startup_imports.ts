/**
 * What loading costs at start-up: for each set of modules, a fresh `deno run` (from the cache,
 * with the project's config) imports them and reports the import time, its RSS and used heap;
 * the wall time from spawn to exit is measured outside. Medians of REPS fresh processes. The
 * sets: nothing (the runtime alone), zod, the SDK's server modules imported directly, the
 * project's SDK entry lib/sdk.ts (the server side), with lib/sdk_client.ts (the client side the
 * pool loads on first use), main.ts's static imports, and main.ts plus lib/server.ts (what
 * `serve` loads before the handshake).
 *
 * Not a bench file. Run it alone: `deno run -A tests/bench/startup_imports.ts [REPS]`.
 */

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}
// No imports: the child run of this file must load nothing but what it measures.
const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const DENO_JSON = `${ROOT}/deno.json`;
function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const child = import.meta.filename;
if (Deno.args[0] === "--child") {
  const t0 = performance.now();
  for (const specifier of Deno.args.slice(1)) await import(specifier);
  const importMs = performance.now() - t0;
  const { rss, heapUsed } = Deno.memoryUsage();
  print(JSON.stringify({ importMs, rss, heapUsed }));
  Deno.exit(0);
}

const lib = (file: string) => `file://${ROOT}/${file}`;
const SETS: Record<string, string[]> = {
  "runtime alone": [],
  "zod": ["npm:zod@4.6.7"],
  "SDK server modules, direct": [
    "npm:/@modelcontextprotocol/sdk@1.32.2/server/mcp.js",
    "npm:/@modelcontextprotocol/sdk@1.32.2/server/stdio.js",
  ],
  "lib/sdk.ts (the SDK's server side)": [lib("lib/sdk.ts")],
  "lib/sdk.ts + lib/sdk_client.ts (all of the SDK)": [lib("lib/sdk.ts"), lib("lib/sdk_client.ts")],
  "main.ts static imports": [lib("main.ts")],
  "main.ts + lib/server.ts (serve)": [lib("main.ts"), lib("lib/server.ts")],
};
const reps = Number(Deno.args[0] ?? 7);
const rows: Record<string, { wall: number[]; importMs: number[]; rss: number[]; heap: number[] }> =
  {};
for (let rep = 0; rep < reps; rep++) {
  for (const [label, specifiers] of Object.entries(SETS)) {
    const t0 = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--cached-only", "--frozen", `--config=${DENO_JSON}`, child!, "--child"]
        .concat(specifiers),
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const wall = performance.now() - t0;
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    const row = rows[label] ??= { wall: [], importMs: [], rss: [], heap: [] };
    row.wall.push(wall);
    row.importMs.push(r.importMs);
    row.rss.push(r.rss / 2 ** 20);
    row.heap.push(r.heapUsed / 2 ** 20);
  }
}
print(`medians of ${reps}: spawn to exit ms | import ms | RSS MiB | heap used MiB`);
for (const [label, r] of Object.entries(rows)) {
  const f = (v: number[], d = 0) => median(v).toFixed(d).padStart(7);
  print(`${f(r.wall)}${f(r.importMs)}${f(r.rss, 1)}${f(r.heap, 1)}  ${label}`);
}
