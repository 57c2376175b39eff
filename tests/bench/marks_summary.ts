/**
 * Reads the timestamps a served bridge wrote with the prototype instrumentation
 * (tests/bench/prototypes.patch, PROTO_MARKS=FILE) and prints, in ms (medians):
 * - for the tasks that answer at once, each step from the tool call's arrival (`tool_in`) to the
 *   first chat request (config check, model listing, catalog, validator, ...);
 * - for the tasks of more than 50 rounds, each step of a round, the round, and the round without
 *   the waits on the fake LM Studio (`fetch -> headers`) and on the downstream server (from
 *   `send` to `line_in`): the part the bridge's own code takes.
 *
 *   deno run -A tests/bench/marks_summary.ts FILE
 */
import { median } from "./support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

type Mark = [string, number];
const marks = JSON.parse(await Deno.readTextFile(Deno.args[0]!)) as Mark[];
const tasks: Mark[][] = [];
let current: Mark[] | undefined;
for (const m of marks) {
  if (m[0] === "tool_in") current = [];
  current?.push(m);
  if (m[0] === "loop_done" && current !== undefined) {
    tasks.push(current);
    current = undefined;
  }
}
const roundsOf = (t: Mark[]) => t.filter(([n]) => n === "round_start").length;
const steps = (seq: Mark[]) =>
  seq.slice(1).map((b, i) => [`${seq[i]![0]} -> ${b[0]}`, b[1] - seq[i]![1]] as const);

/** Median of each step (in first-seen order) over `seqs`, with how often it occurs per sequence. */
function table(seqs: Mark[][], extra: Record<string, number[]> = {}): void {
  const by = new Map<string, number[]>();
  for (const seq of seqs) for (const [k, v] of steps(seq)) by.set(k, [...by.get(k) ?? [], v]);
  for (const [k, v] of [...by, ...Object.entries(extra)]) {
    const per = Math.round(v.length / seqs.length);
    print(`${median(v).toFixed(3).padStart(8)}  x${per}  ${k}`);
  }
}

const short = tasks.filter((t) => roundsOf(t) === 1).slice(3);
print(`${tasks.length} tasks; ${short.length} answer-at-once tasks after 3 warm-ups`);
if (short.length > 0) {
  table(short, {
    "TOTAL tool_in -> chat_call": short.map((t) =>
      t.find(([n]) => n === "chat_call")![1] - t[0]![1]
    ),
  });
}
const long = tasks.filter((t) => roundsOf(t) > 50).slice(1);
print(`\n${long.length} long tasks after 1 warm-up; steps of rounds 2 to the end`);
const rounds: Mark[][] = [];
for (const t of long) {
  const starts = t.flatMap(([n], i) => n === "round_start" ? [i] : []);
  for (let i = 1; i + 1 < starts.length; i++) rounds.push(t.slice(starts[i], starts[i + 1]! + 1));
}
const waits = new Set(["fetch -> headers", "send -> sent", "sent -> line_in", "send -> line_in"]);
table(rounds, {
  "ROUND": rounds.map((r) => r.at(-1)![1] - r[0]![1]),
  "ROUND without the waits on LM Studio and the downstream server": rounds.map((r) =>
    r.at(-1)![1] - r[0]![1] - steps(r).filter(([k]) => waits.has(k)).reduce((s, [, v]) => s + v, 0)
  ),
});
