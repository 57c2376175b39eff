/**
 * What the bridge's tool definitions cost a calling model: `tools/list` of a served bridge, and
 * each tool's share of it (its description, its input schema and the parameter descriptions in
 * it, its output schema, the rest: name, title, annotations), in characters of the JSON an MCP
 * client puts in its model's context and in tokens estimated as characters / 4 (as the goal
 * summary does).
 *
 * Not a bench file. Run it alone:
 *
 *   deno run -A tests/bench/tool_context.ts [--json] [--drafts=tests/bench/tool_drafts.json]
 *
 * `--drafts=FILE` also prints what the list would cost with the descriptions of FILE (a tool's
 * `description` and `parameters`, and `shared_parameters` for every tool that has them), with
 * `$schema` and the integer ranges no model needs (9007199254740991, 1000000) left out, and what
 * each tool group (tool_groups.ts) and some combinations of groups would cost with them. "model
 * context" counts only what a client like Claude Code gives its model: name, description, input
 * schema (title, annotations and execution are metadata for the client).
 *
 * LMSTUDIO_BRIDGE_TOOLS and other variables of this process are passed on to the served bridge.
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { bridgeRunLaunch, serve } from "./serve_rig.ts";
import { benchChildrenCached } from "./support.ts";
import { TOOL_GROUPS } from "../../lib/tool_groups.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

/** The tool groups (tool_groups.ts, the names LMSTUDIO_BRIDGE_TOOLS takes), as membership tests. */
const GROUPS: Record<string, (name: string) => boolean> = Object.fromEntries(
  Object.entries(TOOL_GROUPS).map((
    [g, tools],
  ) => [g, (n: string) => (tools as readonly string[]).includes(n)]),
);

await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const dir = await Deno.makeTempDir({ prefix: "tool_context_" });
const env: Record<string, string> = { LMSTUDIO_BASE_URL: fake.baseUrl };
const passed = Deno.env.get("LMSTUDIO_BRIDGE_TOOLS");
if (passed !== undefined) env.LMSTUDIO_BRIDGE_TOOLS = passed;
const served = await serve(bridgeRunLaunch(), { cwd: dir, env });
try {
  const { tools } = await served.client.listTools();
  const len = (v: unknown) => v === undefined ? 0 : JSON.stringify(v).length;
  /** Characters of every `description` inside a schema. */
  const paramDescriptions = (node: unknown): number => {
    if (Array.isArray(node)) return node.reduce((s: number, n) => s + paramDescriptions(n), 0);
    if (typeof node !== "object" || node === null) return 0;
    let sum = 0;
    for (const [k, v] of Object.entries(node)) {
      if (k === "description" && typeof v === "string") sum += v.length;
      else sum += paramDescriptions(v);
    }
    return sum;
  };
  const rows = tools.map((t) => {
    const total = len(t);
    const description = (t.description ?? "").length;
    const input = len(t.inputSchema);
    const output = len(t.outputSchema);
    return {
      name: t.name,
      total,
      description,
      input,
      inputDescriptions: paramDescriptions(t.inputSchema),
      output,
      rest: total - description - input - output,
    };
  });
  const all = len(tools);
  if (Deno.args.includes("--json")) print(JSON.stringify({ all, rows }));
  else {
    print(
      `${tools.length} tools, ${all} characters, ~${Math.round(all / 4)} tokens (chars / 4)\n`,
    );
    print(
      "tool                              total  tokens  descr  input(of which descr)  output  rest",
    );
    for (const r of rows.sort((a, b) => b.total - a.total)) {
      print(
        `${r.name.padEnd(32)}${String(r.total).padStart(7)}${
          String(Math.round(r.total / 4)).padStart(8)
        }${String(r.description).padStart(7)}${String(r.input).padStart(7)}(${
          String(r.inputDescriptions).padStart(5)
        })${String(r.output).padStart(15)}${String(r.rest).padStart(6)}`,
      );
    }
    const sum = (k: "description" | "input" | "inputDescriptions" | "output" | "rest") =>
      rows.reduce((s, r) => s + r[k], 0);
    print(
      `\nsums: descriptions ${sum("description")}, input schemas ${sum("input")} (parameter ` +
        `descriptions ${sum("inputDescriptions")}), output schemas ${sum("output")}, ` +
        `names/titles/annotations ${sum("rest")}`,
    );
  }
  const drafts = Deno.args.find((a) => a.startsWith("--drafts="))?.slice("--drafts=".length);
  if (drafts !== undefined) printDrafts(tools, JSON.parse(await Deno.readTextFile(drafts)));
} finally {
  await served.close();
  await Deno.remove(dir, { recursive: true });
}

/** The drafts file: new descriptions per tool and per parameter. */
interface Drafts {
  shared_parameters: Record<string, string>;
  tools: Record<string, { description: string; parameters?: Record<string, string> }>;
}

function strip(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strip);
  if (typeof node !== "object" || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([k, v]) =>
        k !== "$schema" && !(k === "maximum" && (v === 9007199254740991 || v === 1e6))
      )
      .map(([k, v]) => [k, strip(v)]),
  );
}

function printDrafts(tools: Record<string, unknown>[], drafts: Drafts): void {
  const size = (v: unknown) => JSON.stringify(v).length;
  const context = (ts: Record<string, unknown>[]) =>
    size(ts.map((t) => ({ name: t.name, description: t.description, inputSchema: t.inputSchema })));
  const drafted = tools.map((tool) => {
    const t = structuredClone(tool);
    const draft = drafts.tools[String(t.name)];
    if (draft !== undefined) t.description = draft.description;
    const schema = t.inputSchema as { properties?: Record<string, Record<string, unknown>> };
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      const text = draft?.parameters?.[name] ?? drafts.shared_parameters[name];
      if (text !== undefined) property.description = text;
    }
    t.inputSchema = strip(t.inputSchema);
    return t;
  });
  const line = (label: string, ts: Record<string, unknown>[]) =>
    print(
      `${label.padEnd(40)}${String(ts.length).padStart(3)} tools ${String(size(ts)).padStart(6)} ` +
        `chars ~${String(Math.round(size(ts) / 4)).padStart(5)} tokens; model context ` +
        `~${Math.round(context(ts) / 4)} tokens`,
    );
  print("");
  line("today", tools);
  line("with the drafts", drafted);
  for (const [group, has] of Object.entries(GROUPS)) {
    line(`  group ${group}`, drafted.filter((t) => has(String(t.name))));
  }
  for (const combo of [["autonomous", "mcp"], ["autonomous", "mcp", "lmstudio"]]) {
    line(
      `  ${combo.join(",")}`,
      drafted.filter((t) => combo.some((g) => GROUPS[g]!(String(t.name)))),
    );
  }
}
