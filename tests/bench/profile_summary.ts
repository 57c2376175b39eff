/**
 * Reads a V8 CPU profile (`deno run --cpu-prof`, e.g. written by profile_loop.ts) and prints where
 * the time went: self time by area (this project's lib/ files, the MCP SDK, zod, Deno's runtime,
 * node compatibility, idle, GC), self time by function, and inclusive time by function (each
 * function counted once per sample however deep it recurs), optionally only under `--under=NAME`
 * (a function name), to read one code path.
 *
 *   deno run -A tests/bench/profile_summary.ts FILE.cpuprofile [--top=30] [--under=runRound]
 *     [--filter=lib/]
 *
 * Figures are ms over the whole profile; divide by the rounds or tasks the run made.
 */

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

/** One line on stderr. */
function printError(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`));
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = Deno.args.find((a) => !a.startsWith("--"));
if (file === undefined) {
  printError("usage: profile_summary.ts FILE.cpuprofile [--top=N] [--under=FN] [--filter=S]");
  Deno.exit(2);
}
const option = (name: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const top = Number(option("top") ?? 30);
const under = option("under");
const filter = option("filter");

const profile = JSON.parse(await Deno.readTextFile(file)) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** A short place for a frame: lib/x.ts, @modelcontextprotocol/sdk/..., ext:..., node:... */
function where(url: string): string {
  if (url === "") return "";
  const lib = /\/(lib\/[^/]+\.ts|main\.ts|tests\/[^?]+)$/.exec(url);
  if (lib) return lib[1]!;
  const npm = /registry\.npmjs\.org\/(@?[^/]+(?:\/[^/]+)?)\/[^/]+\/(.*)$/.exec(url);
  if (npm) return `${npm[1]}/${npm[2]}`;
  return url.replace(/^file:\/\/.*\/node_modules\//, "");
}

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === "(idle)") return "idle";
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(program)") return "program (native, outside JS)";
  if (/\/lib\/[^/]+\.ts$|\/main\.ts$/.test(url)) return "bridge lib/";
  if (url.includes("@modelcontextprotocol")) return "MCP SDK";
  if (url.includes("/zod/") || url.includes("zod@")) return "zod";
  if (url.startsWith("node:") || url.includes("ext:deno_node") || url.includes("ext:node")) {
    return "node compat";
  }
  if (url.startsWith("ext:")) return `deno runtime (${url.split("/")[0]!.slice(4)})`;
  if (url === "") return "native/builtins";
  return where(url);
}

const key = (f: CallFrame) =>
  `${f.functionName || "(anonymous)"} ${where(f.url)}:${f.lineNumber + 1}`;

/** The stack of a sample, leaf first. */
function stack(id: number): ProfileNode[] {
  const out: ProfileNode[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    out.push(byId.get(cur)!);
  }
  return out;
}

const selfByArea = new Map<string, number>();
const selfByFn = new Map<string, number>();
const totalByFn = new Map<string, number>();
let total = 0;
let counted = 0;
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
for (let i = 0; i < profile.samples.length; i++) {
  const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000; // us -> ms
  total += dt;
  const frames = stack(profile.samples[i]!);
  if (under !== undefined && !frames.some((n) => n.callFrame.functionName === under)) continue;
  counted += dt;
  const leaf = frames[0]!.callFrame;
  add(selfByArea, area(leaf), dt);
  add(selfByFn, key(leaf), dt);
  const seen = new Set<string>();
  for (const n of frames) {
    const k = key(n.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    add(totalByFn, k, dt);
  }
}

const printTop = (title: string, m: Map<string, number>, n: number) => {
  print(`\n${title}`);
  [...m.entries()]
    .filter(([k]) => filter === undefined || k.includes(filter))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .forEach(([k, v]) => print(`${v.toFixed(1).padStart(9)} ms  ${k}`));
};
print(
  `${file}: ${total.toFixed(0)} ms sampled` +
    (under ? `, ${counted.toFixed(0)} ms of it under ${under}` : ""),
);
printTop("self time by area", selfByArea, 20);
printTop("self time by function", selfByFn, top);
printTop("inclusive time by function", totalByFn, top);
