/**
 * CLI commands for the downstream MCP servers: `mcps` (what is configured and its state),
 * `tools NAME` (what a server offers) and `call NAME TOOL` (one direct call, no LLM).
 */
import type { App, CommandContext } from "./app.ts";
import { flag, integerOption, parseArgs, stringOption, UsageError } from "./args.ts";
import { isRecord, tryParseJson } from "./json.ts";
import { needsMcpTasks } from "./pool_connection.ts";
import type { Tool } from "./sdk.ts";
import { formatPoolReport, poolReportJson } from "./server_mcp.ts";
import { firstLine, plural } from "./text.ts";
import { contentText } from "./tool_output.ts";

function noExtraPositionals(positionals: string[], expected: number, command: string): void {
  if (positionals.length > expected) {
    throw new UsageError(
      `unexpected argument${positionals.length - expected === 1 ? "" : "s"}: ${
        positionals.slice(expected).join(" ")
      }.`,
      command,
    );
  }
}

/**
 * `mcps [--json]`. Exits 1 when the config file or the bridge settings file in question is
 * missing, unreadable or broken (the report still shows what is known, e.g. the last good
 * configuration still in force).
 */
export async function mcpsCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "pool">>,
): Promise<number> {
  const args = parseArgs(argv, { json: { type: "boolean" } }, "mcps");
  noExtraPositionals(args.positionals, 0, "mcps");
  const report = await (await ctx.app.pool()).status();
  if (flag(args, "json")) {
    ctx.out.stdout(JSON.stringify(poolReportJson(report), null, 2) + "\n");
  } else {
    ctx.out.stdout(formatPoolReport(report) + "\n");
  }
  return report.config.error === undefined && report.config.bridge.error === undefined ? 0 : 1;
}

function schemaType(schema: unknown): string {
  if (typeof schema !== "object" || schema === null) return "any";
  const enumValues: unknown = Reflect.get(schema, "enum");
  if (Array.isArray(enumValues) && enumValues.length > 0 && enumValues.length <= 6) {
    return enumValues.map((v) => JSON.stringify(v)).join("|");
  }
  const type: unknown = Reflect.get(schema, "type");
  if (typeof type === "string") {
    if (type === "array") {
      const items = schemaType(Reflect.get(schema, "items"));
      return items === "any" ? "array" : `${items}[]`;
    }
    return type;
  }
  if (Array.isArray(type)) return type.filter((t) => typeof t === "string").join("|");
  for (const key of ["anyOf", "oneOf"]) {
    const options: unknown = Reflect.get(schema, key);
    if (Array.isArray(options)) return options.map(schemaType).join("|");
  }
  return "any";
}

/** `name: type, other?: type` for a tool's input schema. */
export function paramsSummary(tool: Pick<Tool, "inputSchema">): string {
  const properties = tool.inputSchema.properties ?? {};
  const required = new Set(tool.inputSchema.required ?? []);
  return Object.entries(properties)
    .map(([name, schema]) => `${name}${required.has(name) ? "" : "?"}: ${schemaType(schema)}`)
    .join(", ");
}

const TASK_NOTE = "(needs MCP tasks; not callable through the bridge)";

/**
 * `tools NAME [--json]`. Tools that can only run as MCP tasks are listed last, marked as not
 * callable; `--json` puts them under `taskRequiredTools`, apart from the callable `tools`.
 */
export async function toolsCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "pool">>,
): Promise<number> {
  const args = parseArgs(argv, { json: { type: "boolean" } }, "tools");
  const name = args.positionals[0];
  if (name === undefined) {
    throw new UsageError("which server? Give its name (see `mcps`).", "tools");
  }
  noExtraPositionals(args.positionals, 1, "tools");
  const pool = await ctx.app.pool();
  const notes: string[] = [];
  const all = await pool.listTools(name, {
    signal: ctx.signal,
    includeTaskRequired: true,
    onNote: (note) => notes.push(note),
  });
  const tools = all.filter((t) => !needsMcpTasks(t));
  const taskTools = all.filter(needsMcpTasks);
  if (flag(args, "json")) {
    ctx.out.stdout(
      JSON.stringify({ server: name, tools, taskRequiredTools: taskTools, notes }, null, 2) + "\n",
    );
    return 0;
  }
  const more = taskTools.length === 0
    ? ""
    : ` (and ${taskTools.length} that need${taskTools.length === 1 ? "s" : ""} MCP tasks)`;
  const lines = [`${name}: ${plural(tools.length, "tool")}${more}`];
  for (const tool of [...tools, ...taskTools]) {
    const note = needsMcpTasks(tool) ? `  ${TASK_NOTE}` : "";
    lines.push("", `${tool.name}(${paramsSummary(tool)})${note}`);
    const description = firstLine(tool.description);
    if (description !== "") lines.push(`  ${description}`);
  }
  // Tools the server declared wrongly: what was repaired or left out.
  if (notes.length > 0) lines.push("", ...notes.map((note) => `note: ${note}`));
  ctx.out.stdout(lines.join("\n") + "\n");
  return 0;
}

function parseToolArgs(raw: string | undefined): Record<string, unknown> {
  if (raw === undefined) return {};
  const parsed = tryParseJson(raw);
  if (!parsed.ok) {
    throw new UsageError(
      `--args is not valid JSON (${parsed.error}). ` +
        `Quote it for the shell, e.g. --args '{"path": "/tmp"}'.`,
      "call",
    );
  }
  if (!isRecord(parsed.value)) {
    throw new UsageError(
      `--args must be a JSON object like '{"key": "value"}', got ${raw.slice(0, 80)}.`,
      "call",
    );
  }
  return parsed.value;
}

/** `call NAME TOOL [--args JSON] [--timeout SECONDS] [--json]` */
export async function callCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "pool">>,
): Promise<number> {
  const args = parseArgs(argv, {
    args: { type: "string", short: "a" },
    timeout: { type: "string" },
    json: { type: "boolean" },
  }, "call");
  const [server, tool] = args.positionals;
  if (server === undefined || tool === undefined) {
    throw new UsageError(
      "give the server name and the tool name (see `mcps` and `tools`).",
      "call",
    );
  }
  noExtraPositionals(args.positionals, 2, "call");
  const toolArgs = parseToolArgs(stringOption(args, "args"));
  const timeoutS = integerOption(args, "timeout", { min: 1, max: 86_400 });
  const { out } = ctx;
  const pool = await ctx.app.pool();
  const result = await pool.callTool(server, tool, toolArgs, {
    signal: ctx.signal,
    timeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000,
    onProgress: (p) => {
      const of = p.total !== undefined ? `/${p.total}` : "";
      out.status(`${server}.${tool}: ${p.progress}${of}${p.message ? ` ${p.message}` : ""}`);
    },
  });
  out.status("");
  if (flag(args, "json")) {
    out.stdout(JSON.stringify(result, null, 2) + "\n");
    return result.isError === true ? 1 : 0;
  }
  const text = contentText(result);
  if (result.isError === true) {
    out.stderr(`Tool "${tool}" on MCP server "${server}" returned an error:`);
    out.stderr(text === "" ? "(no details)" : text);
    return 1;
  }
  if (text !== "") out.stdout(text.endsWith("\n") ? text : text + "\n");
  return 0;
}
