/**
 * The groups of the bridge's own MCP tools, and the choice of which of them `serve` exposes
 * (LMSTUDIO_BRIDGE_TOOLS, `serve --tools`): a comma-separated list of group names and tool names.
 * Names only, no schemas: settings.ts reads it at start-up, before anything heavier is loaded.
 */
import { UsageError } from "./errors.ts";
import { closestName, listNames } from "./text.ts";

/** Each group and its tools, in the order `tools/list` shows them. */
export const TOOL_GROUPS = {
  lmstudio: [
    "health_check",
    "list_models",
    "get_current_model",
    "chat_completion",
    "text_completion",
    "generate_embeddings",
    "create_response",
  ],
  vision: ["analyze_image"],
  mcp: ["list_available_mcps"],
  autonomous: [
    "autonomous_with_mcp",
    "autonomous_with_multiple_mcps",
    "autonomous_discover_and_execute",
  ],
  sessions: ["list_sessions", "close_session"],
  lms: [
    "lms_list_loaded_models",
    "lms_list_downloaded_models",
    "lms_load_model",
    "lms_unload_model",
    "lms_ensure_model_loaded",
    "lms_server_status",
  ],
} as const;

/** A group of tools: lmstudio, vision, mcp, autonomous, sessions, lms. */
export type ToolGroup = keyof typeof TOOL_GROUPS;

/** The name of one of the bridge's own tools. */
export type ToolName = (typeof TOOL_GROUPS)[ToolGroup][number];

/** The groups in their order. */
export const GROUP_NAMES: readonly ToolGroup[] = [
  "lmstudio",
  "vision",
  "mcp",
  "autonomous",
  "sessions",
  "lms",
];

/** Every tool, in the order of its group. */
export const ALL_TOOLS: readonly ToolName[] = GROUP_NAMES.flatMap((g) => TOOL_GROUPS[g]);

function isGroup(name: string): name is ToolGroup {
  return (GROUP_NAMES as readonly string[]).includes(name);
}

function isTool(name: string): name is ToolName {
  return (ALL_TOOLS as readonly string[]).includes(name);
}

/** The group `tool` belongs to. */
export function groupOf(tool: ToolName): ToolGroup {
  return GROUP_NAMES.find((g) => (TOOL_GROUPS[g] as readonly string[]).includes(tool))!;
}

/** The groups with at least one tool in `tools`, in their order. */
export function groupsOf(tools: readonly ToolName[]): ToolGroup[] {
  return GROUP_NAMES.filter((g) => TOOL_GROUPS[g].some((t) => tools.includes(t)));
}

/**
 * The tools `text` names (groups and tool names, separated by commas; blanks ignored), in the
 * table's order; or, for an unknown name (the valid ones listed) or an empty choice, the problem,
 * naming `source` (where the text came from).
 */
export function chooseTools(text: string, source: string): { tools: ToolName[] } | {
  problem: string;
} {
  const names = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (names.length === 0) {
    return {
      problem: `${source} names no tools; name groups (${GROUP_NAMES.join(", ")}) or tools, or ` +
        "leave it out for all of them.",
    };
  }
  const chosen = new Set<ToolName>();
  for (const name of names) {
    const lower = name.toLowerCase();
    if (isGroup(lower)) { for (const tool of TOOL_GROUPS[lower]) chosen.add(tool); }
    else if (isTool(lower)) chosen.add(lower);
    else {
      const near = closestName(name, [...GROUP_NAMES, ...ALL_TOOLS]);
      return {
        problem: `${source} names "${name}", which is neither a tool group nor a tool` +
          `${near === undefined ? "" : ` (did you mean ${near}?)`}. Groups: ` +
          `${GROUP_NAMES.map((g) => `${g} (${listNames(TOOL_GROUPS[g], 3)})`).join("; ")}. ` +
          `Tools: ${ALL_TOOLS.join(", ")}.`,
      };
    }
  }
  return { tools: ALL_TOOLS.filter((t) => chosen.has(t)) };
}

/**
 * `serve`'s arguments without `--tools LIST` (or `--tools=LIST`), and the tools LIST chooses
 * (undefined without the option). A missing list or an unknown name is a usage error.
 */
export function serveToolsOption(argv: readonly string[]): {
  tools?: ToolName[];
  rest: string[];
} {
  const rest: string[] = [];
  let list: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--tools") {
      list = argv[++i];
      if (list === undefined || list.startsWith("--")) {
        throw new UsageError(
          `--tools needs a list of tool groups (${GROUP_NAMES.join(", ")}) or tool names.`,
          "serve",
        );
      }
    } else if (arg.startsWith("--tools=")) list = arg.slice("--tools=".length);
    else rest.push(arg);
  }
  if (list === undefined) return { rest };
  const choice = chooseTools(list, `--tools ${JSON.stringify(list)}`);
  if ("problem" in choice) throw new UsageError(choice.problem, "serve");
  return { tools: choice.tools, rest };
}
