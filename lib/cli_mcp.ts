/**
 * CLI commands for the downstream MCP servers: `mcps` (what is configured and its state),
 * `tools NAME` (what a server offers) and `call NAME TOOL` (one direct call, no LLM).
 */
import type { App, CommandContext } from "./app.ts";
import {
  flag,
  integerOption,
  parseArgs,
  stringListOption,
  stringOption,
  UsageError,
} from "./args.ts";
import { parseConfigText } from "./config.ts";
import { addServer, ConfigEditError, removeServer } from "./config_edit.ts";
import { launcherProblem, WriteError, writeFileNarrowly } from "./launch.ts";
import { join } from "./path.ts";
import { NAME } from "./version.ts";
import { isRecord, tryParseJson } from "./json.ts";
import { needsMcpTasks } from "./pool_connection.ts";
import type { Prompt, Resource, ResourceTemplate, Tool } from "./sdk.ts";
import { formatPoolReport, poolReportJson, withLaunchProblems } from "./server_mcp.ts";
import { firstLine, plural, shellWord } from "./text.ts";
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
  const report = await withLaunchProblems(await (await ctx.app.pool()).status());
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
 * `tools NAME [--json]`: the server's tools, then what it offers beyond them (resources,
 * resource templates, prompts with their arguments). Tools that can only run as MCP tasks are
 * listed last, marked as not callable; `--json` puts them under `taskRequiredTools`, apart from
 * the callable `tools`, and the rest under `resources`, `resourceTemplates` and `prompts`.
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
    onProgress: (p) => ctx.out.status(p.message ?? ""),
  });
  ctx.out.status("");
  const request = { signal: ctx.signal };
  const [resources, resourceTemplates, prompts] = await Promise.all([
    pool.listResources(name, request),
    pool.listResourceTemplates(name, request),
    pool.listPrompts(name, request),
  ]);
  const tools = all.filter((t) => !needsMcpTasks(t));
  const taskTools = all.filter(needsMcpTasks);
  if (flag(args, "json")) {
    const doc = {
      server: name,
      tools,
      taskRequiredTools: taskTools,
      resources,
      resourceTemplates,
      prompts,
      notes,
    };
    ctx.out.stdout(JSON.stringify(doc, null, 2) + "\n");
    return 0;
  }
  const more = taskTools.length === 0
    ? ""
    : ` (and ${taskTools.length} that need${taskTools.length === 1 ? "s" : ""} MCP tasks)`;
  const beyond = [
    resources.length > 0 ? plural(resources.length, "resource") : "",
    resourceTemplates.length > 0 ? plural(resourceTemplates.length, "resource template") : "",
    prompts.length > 0 ? plural(prompts.length, "prompt") : "",
  ].filter((x) => x !== "");
  const lines = [
    `${name}: ${plural(tools.length, "tool")}${more}${beyond.map((b) => `, ${b}`).join("")}`,
  ];
  for (const tool of [...tools, ...taskTools]) {
    const note = needsMcpTasks(tool) ? `  ${TASK_NOTE}` : "";
    lines.push("", `${tool.name}(${paramsSummary(tool)})${note}`);
    const description = firstLine(tool.description);
    if (description !== "") lines.push(`  ${description}`);
  }
  lines.push(...offersLines({ resources, resourceTemplates, prompts }));
  // Tools the server declared wrongly: what was repaired or left out.
  if (notes.length > 0) lines.push("", ...notes.map((note) => `note: ${note}`));
  ctx.out.stdout(lines.join("\n") + "\n");
  return 0;
}

/** "  uri  (mime type)  name: description" for a resource or a resource template. */
function resourceLine(
  address: string,
  r: { name: string; title?: string; mimeType?: string; description?: string },
): string {
  const label = r.title ?? r.name;
  const description = firstLine(r.description);
  return `  ${address}${r.mimeType === undefined ? "" : `  (${r.mimeType})`}` +
    `${label === "" || label === address ? "" : `  ${label}`}` +
    `${description === "" ? "" : `: ${description}`}`;
}

/** The resources, resource templates and prompts sections of `tools NAME`, each when not empty. */
function offersLines(o: {
  resources: readonly Resource[];
  resourceTemplates: readonly ResourceTemplate[];
  prompts: readonly Prompt[];
}): string[] {
  const lines: string[] = [];
  if (o.resources.length > 0) {
    lines.push("", "Resources (read them with their URI):");
    for (const r of o.resources) lines.push(resourceLine(r.uri, r));
  }
  if (o.resourceTemplates.length > 0) {
    lines.push("", "Resource templates (fill in the {parts} to get a URI):");
    for (const t of o.resourceTemplates) lines.push(resourceLine(t.uriTemplate, t));
  }
  if (o.prompts.length > 0) {
    lines.push("", "Prompts (their arguments are strings):");
    for (const p of o.prompts) {
      const params = (p.arguments ?? []).map((a) => `${a.name}${a.required === true ? "" : "?"}`);
      lines.push(`  ${p.name}(${params.join(", ")})`);
      const description = firstLine(p.description);
      if (description !== "") lines.push(`    ${description}`);
    }
  }
  return lines;
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

const EDIT_OPTIONS = {
  env: { type: "string", short: "e", multiple: true },
  url: { type: "string" },
  type: { type: "string" },
  force: { type: "boolean" },
} as const;

/** The config file `mcps add|remove` edits: the one in force, else a new `.mcp.json` here. */
async function fileToEdit(app: Pick<App, "config" | "settings">): Promise<string> {
  const current = await app.config.current();
  return current.path ?? current.searched[0] ??
    join(app.settings.workDir ?? Deno.cwd(), ".mcp.json");
}

async function readIfThere(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

/** Writes `text` to the config file `path` (see writeFileNarrowly in launch.ts). */
async function writeConfig(path: string, text: string): Promise<void> {
  try {
    await writeFileNarrowly(path, text, { instead: "Edit the file by hand" });
  } catch (error: unknown) {
    throw error instanceof WriteError ? new ConfigEditError(error.message) : error;
  }
}

function envPairs(list: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of list) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`--env takes NAME=VALUE, got ${JSON.stringify(pair)}.`, "mcps");
    }
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/**
 * `mcps add NAME [--env K=V]... [--force] -- COMMAND [ARGS...]`, `mcps add NAME --url URL
 * [--type http|sse]` and `mcps remove NAME`: edit the config file the bridge uses, keeping its
 * formatting and comments (lib/config_edit.ts). The pool sees the change at its next use.
 */
export async function mcpsEditCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "config" | "settings">>,
): Promise<number> {
  const [action, ...rest] = argv;
  const dashes = rest.indexOf("--");
  const before = dashes === -1 ? rest : rest.slice(0, dashes);
  const commandLine = dashes === -1 ? [] : rest.slice(dashes + 1);
  const args = parseArgs(before, action === "add" ? EDIT_OPTIONS : {}, "mcps");
  const [name, ...extra] = args.positionals;
  if (name === undefined || name.trim() === "") {
    throw new UsageError(`mcps ${action} needs the server's NAME.`, "mcps");
  }
  const path = await fileToEdit(ctx.app);
  const text = await readIfThere(path);
  const { out } = ctx;
  if (action === "remove") {
    noExtraPositionals(args.positionals, 1, "mcps");
    if (commandLine.length > 0) throw new UsageError("mcps remove takes only NAME.", "mcps");
    await writeConfig(path, removeServer(text, name));
    out.stderr(`Removed server "${name}" from ${path}.`);
    return 0;
  }
  if (extra.length > 0) {
    throw new UsageError(
      `put the server's command after --: mcps add ${name} -- ${extra.join(" ")}`,
      "mcps",
    );
  }
  const url = stringOption(args, "url");
  const type = stringOption(args, "type");
  const env = envPairs(stringListOption(args, "env"));
  let entry: Record<string, unknown>;
  if (url !== undefined) {
    if (commandLine.length > 0) {
      throw new UsageError("give either --url URL or -- COMMAND ARGS, not both.", "mcps");
    }
    if (type !== undefined && type !== "http" && type !== "sse") {
      throw new UsageError(`--type is http or sse, got ${JSON.stringify(type)}.`, "mcps");
    }
    entry = { type: type ?? "http", url };
  } else {
    const [command, ...commandArgs] = commandLine;
    if (command === undefined) {
      throw new UsageError(
        `give the server's command after --, e.g. mcps add ${name} -- npx -y ` +
          "@modelcontextprotocol/server-memory (or --url URL for a remote server).",
        "mcps",
      );
    }
    entry = { command, args: commandArgs, ...(Object.keys(env).length > 0 ? { env } : {}) };
  }
  const edited = addServer(text, name, entry, { replace: flag(args, "force") });
  // What the bridge will make of it, before it is written.
  const parsed = parseConfigText(edited, { path, env: Deno.env.toObject() })
    .find((e) => e.name === name);
  if (parsed?.problem !== undefined) throw new UsageError(parsed.problem, "mcps");
  await writeConfig(path, edited);
  out.stderr(`Added server "${name}" to ${path}.`);
  const problem = parsed?.transport === "stdio" && parsed.command !== undefined
    ? await launcherProblem(parsed.command)
    : undefined;
  if (problem !== undefined) out.stderr(`note: it cannot start yet: ${problem}`);
  else out.stderr(`Check it with: ${NAME} tools ${shellWord(name)}`);
  return 0;
}
