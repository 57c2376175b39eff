/**
 * The bridge's own MCP tools as a calling model sees them: for each tool its title, description,
 * input schema (zod, as the SDK validates calls with it) and annotations, all in one table; and
 * the `tools/list` answer built from it once per choice of tools.
 *
 * A client such as Claude Code puts every tool's name, description and input schema into its
 * model's context with every request, so they are written for that model: what the tool is for and
 * what a call needs, in a sentence or two; the rest belongs in parameter descriptions, and what a
 * result means in the result. The listing leaves out what says nothing to a model: `$schema`, and
 * integer bounds that are only the safe-integer range. tests/server_tools_test.ts keeps the whole
 * list within {@linkcode TOOL_CONTEXT_BUDGET}.
 *
 * Light on purpose (zod and constants only): `serve` registers its tools from here, and the
 * modules that run them (server_*.ts) load what the calls need when a call comes.
 */
import { z } from "zod";
import { DEFAULT_MAX_ROUNDS } from "./agent_types.ts";
import { MAX_IMAGE_BYTES, MAX_IMAGES, SUPPORTED_IMAGE_TYPES } from "./image_type.ts";
import type { McpServer, Tool } from "./sdk.ts";
import { READ_ONLY } from "./server_result.ts";
import { formatBytes } from "./text.ts";
import { CHARS_PER_TOKEN } from "./tool_output.ts";
import { ALL_TOOLS, type ToolName } from "./tool_groups.ts";

/** Most tokens (characters / CHARS_PER_TOKEN) the definitions of every tool may take in a model's context. */
export const TOOL_CONTEXT_BUDGET = 2500;

/** MCP tool annotations (hints for the client, not shown to its model). */
interface Annotations {
  readonly readOnlyHint: boolean;
  readonly destructiveHint: boolean;
  readonly idempotentHint: boolean;
  readonly openWorldHint: boolean;
}

/** One tool's definition, as `McpServer.registerTool` takes it. */
export interface ToolDefinition {
  readonly title: string;
  readonly description: string;
  readonly inputSchema?: z.ZodRawShape;
  readonly annotations: Annotations;
  /**
   * For a listing that shows `tool` before this one: the parameters this tool shares with `tool`
   * (the same schema) are described there only, and `description`, when given, replaces this
   * tool's own (it may refer to `tool`).
   */
  readonly after?: { readonly tool: ToolName; readonly description?: string };
}

/** A tool that runs the local model: reads nothing of the user's, answers differently each time. */
const GENERATES: Annotations = {
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: false,
  openWorldHint: false,
};

/** The autonomous tools: the local model calls other servers' tools, which may change anything. */
const AUTONOMOUS: Annotations = {
  readOnlyHint: false,
  destructiveHint: true,
  idempotentHint: false,
  openWorldHint: true,
};

/** Loads or unloads a model: changes LM Studio's state, the same way each time. */
function managesModels(destructive: boolean): Annotations {
  return {
    readOnlyHint: false,
    destructiveHint: destructive,
    idempotentHint: true,
    openWorldHint: false,
  };
}

const model = z.string().min(1).optional().describe(
  "Model id (list_models); default: DEFAULT_MODEL or the loaded model.",
);
const temperature = z.number().min(0).max(2);
/** Answer length of the LM Studio tools (the loop's own limit is per reply, see `common`). */
const answerTokens = z.number().int().min(1).max(1_000_000).default(1024);

const modelName = z.string().trim().min(1).describe(
  "Model key, e.g. qwen/qwen3-8b (case and publisher prefix do not matter).",
);
const contextLength = z.number().int().min(256).max(10_000_000).optional().describe(
  contextLengthText(undefined),
);

/** What `context_length` says a load without it uses: `fallback`, or LM Studio's setting. */
function contextLengthText(fallback: number | undefined): string {
  return "Context tokens if it must load; default " +
    (fallback === undefined
      ? "LM Studio's setting for the model."
      : `${fallback} (the bridge's LMSTUDIO_CONTEXT_LENGTH), capped at the model's.`);
}

/** What the definitions state of the running bridge (its defaults). */
export interface ListingFacts {
  /** LMSTUDIO_CONTEXT_LENGTH: the context a model loads with. */
  readonly defaultContextLength?: number;
}

const contextLengths = new Map<number, typeof contextLength>();

/**
 * The `context_length` parameter stating the load default `fallback` (the same object for the
 * same default, so the tools that share it in a listing still do).
 */
export function contextLengthParam(fallback: number | undefined): typeof contextLength {
  if (fallback === undefined) return contextLength;
  let described = contextLengths.get(fallback);
  if (described === undefined) {
    described = contextLength.describe(contextLengthText(fallback));
    contextLengths.set(fallback, described);
  }
  return described;
}

/** The definition of `name` stating `facts`. */
export function toolDefinition(name: ToolName, facts: ListingFacts = {}): ToolDefinition {
  const definition: ToolDefinition = TOOL_DEFINITIONS[name];
  const shape = definition.inputSchema;
  if (shape?.context_length === undefined) return definition;
  const described = contextLengthParam(facts.defaultContextLength);
  return { ...definition, inputSchema: { ...shape, context_length: described } };
}

/** Parameters of the three autonomous tools. */
const common = {
  task: z.string().min(1).describe(
    "Self-contained: the local model sees only this and the tools, not your conversation.",
  ),
  model,
  max_rounds: z.number().int().min(1).max(1000).optional().describe(
    `Most model turns (default ${DEFAULT_MAX_ROUNDS}).`,
  ),
  max_tokens: z.number().int().min(1).optional().describe(
    "Token limit per reply; reasoning models need thousands.",
  ),
  allowed_tools: z.union([z.array(z.string()), z.string()]).optional().describe(
    "Offer only these: globs (* ?) over tool or server__tool names; a list or comma-separated.",
  ),
  time_budget_seconds: z.number().positive().optional().describe(
    "Stop, unfinished, after this many seconds.",
  ),
  prompt: z.string().min(1).optional().describe(
    "An MCP prompt to start from: NAME, or SERVER/NAME with several servers.",
  ),
  prompt_arguments: z.record(z.string(), z.string()).optional(),
  trace_path: z.string().min(1).optional().describe(
    "Write a JSONL trace of the requests, replies and tool calls to this file.",
  ),
  session_id: z.string().min(1).optional().describe(
    "From an earlier result: continue that conversation (its servers and model).",
  ),
};

/** Every tool's definition. */
export const TOOL_DEFINITIONS = {
  health_check: {
    title: "Check LM Studio",
    description: "Is the local LLM server (each, if several) up and the token accepted? URL, " +
      "latency, model count. Call it first when another tool fails.",
    annotations: READ_ONLY,
  },
  list_models: {
    title: "List models",
    description: "Models the local server offers: id, type (llm, vlm = vision, embedding), " +
      "loaded or not, context length, server (if several). The ids go in `model`.",
    annotations: READ_ONLY,
  },
  get_current_model: {
    title: "Current model",
    description: "Which model(s) are loaded now, and which one a call without `model` uses. " +
      "Runs no model.",
    annotations: READ_ONLY,
  },
  chat_completion: {
    title: "Chat with the local model",
    description: "One prompt to the local model, its answer back (reasoning apart): drafting, " +
      "summarising, classifying; local, free, private.",
    inputSchema: {
      prompt: z.string().min(1).describe("The user message."),
      system_prompt: z.string().optional().describe("System instructions."),
      model,
      temperature: temperature.default(0.7),
      max_tokens: answerTokens.describe("Answer token limit; reasoning models need more."),
      response_format: z.union([
        z.enum(["text", "json_object"]),
        z.object({
          type: z.literal("json_schema"),
          json_schema: z.object({
            name: z.string().optional(),
            schema: z.record(z.string(), z.unknown()),
            strict: z.boolean().optional(),
          }),
        }),
      ]).optional().describe("Default text; json_schema: the answer follows that JSON Schema."),
    },
    annotations: GENERATES,
  },
  text_completion: {
    title: "Raw text completion",
    description: "Continues raw text with the local model, no chat template: code or fill-in " +
      "completion, base models.",
    after: { tool: "chat_completion" },
    inputSchema: {
      prompt: z.string().min(1).describe("Text to continue."),
      model,
      temperature: temperature.default(0.7),
      max_tokens: answerTokens,
      stop_sequences: z.array(z.string()).max(16).optional().describe("Strings that end it."),
    },
    annotations: GENERATES,
  },
  generate_embeddings: {
    title: "Embeddings",
    description: "Embedding vectors for a text or a list of texts, from a local embedding model.",
    inputSchema: {
      text: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2048)]),
      model: z.string().min(1).optional().describe(
        "Embedding model id; default: one the server has.",
      ),
    },
    annotations: READ_ONLY,
  },
  create_response: {
    title: "Stateful response",
    description: "Stateful chat (LM Studio 0.3.29+ Responses API): pass the returned " +
      "response_id as previous_response_id to continue without resending.",
    after: { tool: "chat_completion" },
    inputSchema: {
      input_text: z.string().min(1).describe("The new user input."),
      previous_response_id: z.string().min(1).optional(),
      model,
    },
    annotations: GENERATES,
  },
  analyze_image: {
    title: "Analyze images with a local vision model",
    description: "Shows images to a local vision model and answers `prompt` about them: " +
      "describe, compare (Image 1, 2... in order), OCR, screenshots, charts, UI.",
    inputSchema: {
      images: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).describe(
        `File paths (absolute or ~/), data URIs or http(s) URLs; up to ${MAX_IMAGES} of ` +
          `${formatBytes(MAX_IMAGE_BYTES)}; ${SUPPORTED_IMAGE_TYPES}.`,
      ),
      prompt: z.string().min(1).describe('What to do, e.g. "Extract all text verbatim".'),
      model: z.string().min(1).optional().describe(
        "Vision model id (vlm in list_models); default: DEFAULT_MODEL or a loaded vision model.",
      ),
      detail: z.enum(["auto", "low", "high"]).optional().describe(
        "low = faster, high = small text.",
      ),
      max_tokens: answerTokens,
      temperature: temperature.optional().describe("Low (0) for extraction."),
    },
    annotations: { ...READ_ONLY, idempotentHint: false, openWorldHint: true },
  },
  list_available_mcps: {
    title: "List configured MCP servers",
    description: "The configured MCP servers (names for mcp_name/mcp_names): transport, command " +
      "or URL, state (why, if failed), env names, confinement, resources and prompts; and the " +
      "config files in force. " +
      "Starts nothing.",
    inputSchema: {},
    annotations: READ_ONLY,
  },
  autonomous_with_mcp: {
    title: "Local model task with one MCP server",
    description: "The local model does a self-contained task alone with the tools of ONE " +
      "configured MCP server (run here, with the user's permissions) and returns its answer: " +
      "multi-step work on files, a knowledge graph, a database...",
    inputSchema: {
      mcp_name: z.string().min(1).describe("Server name (list_available_mcps)."),
      ...common,
    },
    annotations: AUTONOMOUS,
  },
  autonomous_with_multiple_mcps: {
    title: "Local model task with several MCP servers",
    description: "Hands a self-contained task to the local model, which works on it alone with " +
      "the tools of SEVERAL configured MCP servers (named server__tool), for tasks that combine " +
      "them, and returns its final answer. An unknown or disabled name fails before any work.",
    after: {
      tool: "autonomous_with_mcp",
      description: "Like autonomous_with_mcp (same parameters), with the tools of SEVERAL " +
        "servers (named server__tool) for tasks that combine them.",
    },
    inputSchema: {
      mcp_names: z.array(z.string().min(1)).min(1).describe("Server names (list_available_mcps)."),
      ...common,
    },
    annotations: AUTONOMOUS,
  },
  autonomous_discover_and_execute: {
    title: "Local model task with all MCP servers",
    description: "Hands a self-contained task to the local model, which works on it alone with " +
      "the tools of EVERY enabled MCP server of the config (those failing to start are skipped " +
      "and noted) and returns its final answer. Naming the server you need is faster.",
    after: {
      tool: "autonomous_with_mcp",
      description: "Like autonomous_with_mcp (same parameters), with the tools of EVERY enabled " +
        "server (those failing to start are skipped). Knowing the server? autonomous_with_mcp " +
        "is faster.",
    },
    inputSchema: common,
    annotations: AUTONOMOUS,
  },
  list_sessions: {
    title: "List autonomous sessions",
    description:
      "Sessions of earlier autonomous_* tasks that a new task can continue (session_id).",
    annotations: READ_ONLY,
  },
  close_session: {
    title: "Close an autonomous session",
    description: "Forgets an autonomous session and its conversation.",
    inputSchema: { session_id: z.string().min(1) },
    annotations: {
      readOnlyHint: false,
      destructiveHint: true,
      idempotentHint: false,
      openWorldHint: false,
    },
  },
  lms_list_loaded_models: {
    title: "Loaded models",
    description: "Models loaded in LM Studio now: status (idle, loading, generating), context " +
      "length. Runs no model.",
    inputSchema: {},
    annotations: READ_ONLY,
  },
  lms_list_downloaded_models: {
    title: "Downloaded models",
    description: "Models downloaded here: type, size, context limit, loaded or not. Gives the " +
      "keys for lms_load_model.",
    inputSchema: { kind: z.enum(["llm", "embedding"]).optional().describe("Omit for all.") },
    annotations: READ_ONLY,
  },
  lms_load_model: {
    title: "Load a model",
    description: "Loads a downloaded model (no-op if loaded) so requests do not wait; unloaded " +
      "after `ttl` idle seconds.",
    inputSchema: {
      model_name: modelName,
      ttl: z.number().int().min(0).max(604_800).optional().describe(
        "Idle seconds before unload (default LMSTUDIO_MODEL_TTL); 0 = never. lms only.",
      ),
      context_length: contextLength,
    },
    annotations: managesModels(false),
  },
  lms_unload_model: {
    title: "Unload a model",
    description: "Unloads a model: every instance, or one named with a suffix " +
      "(qwen2.5-7b-instruct:2). Later requests reload it.",
    after: { tool: "lms_load_model" },
    inputSchema: { model_name: modelName },
    annotations: managesModels(true),
  },
  lms_ensure_model_loaded: {
    title: "Ensure a model is loaded",
    description: "Makes a model ready: returns if loaded, waits if loading, else loads it. Says " +
      "how, and the name to send in requests.",
    after: { tool: "lms_load_model" },
    inputSchema: { model_name: modelName, context_length: contextLength },
    annotations: managesModels(false),
  },
  lms_server_status: {
    title: "LM Studio server status",
    description: "LM Studio's state (URL, latency, models), whether `lms` is installed, and how " +
      "models load here (lms, REST, just-in-time), with fixes.",
    inputSchema: {},
    annotations: READ_ONLY,
  },
} as const satisfies Record<ToolName, ToolDefinition>;

/**
 * `schema` without what tells a model nothing: `$schema`, integer bounds that are only the
 * safe-integer range, `minLength: 1` and `propertyNames` that only say keys are strings (the call
 * is still validated against all of it; an empty string fails with a message that says so).
 */
function lean(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(lean);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "$schema") continue;
    if (key === "maximum" && value === Number.MAX_SAFE_INTEGER) continue;
    if (key === "minimum" && value === Number.MIN_SAFE_INTEGER) continue;
    if (key === "minLength" && value === 1) continue;
    // Keys of a JSON object are always strings.
    if (key === "propertyNames" && JSON.stringify(value) === '{"type":"string"}') continue;
    out[key] = lean(value);
  }
  return out;
}

/** The JSON Schema of an input shape, as the SDK would list it but {@linkcode lean}. */
function inputJsonSchema(shape: z.ZodRawShape | undefined): Tool["inputSchema"] {
  if (shape === undefined) return { type: "object", properties: {} };
  const schema = lean(z.toJSONSchema(z.object(shape), { target: "draft-7", io: "input" }));
  const parsed = z.looseObject({ type: z.literal("object") }).parse(schema);
  return parsed;
}

/**
 * The listing of `name` in a listing of `tools`: with its shorter description, and without the
 * descriptions of the parameters it shares, when the tool it refers to comes first.
 */
function listed(name: ToolName, tools: readonly ToolName[], facts: ListingFacts): Tool {
  const definition = toolDefinition(name, facts);
  const inputSchema = inputJsonSchema(definition.inputSchema);
  const after = definition.after;
  let description = definition.description;
  if (
    after !== undefined && tools.indexOf(after.tool) >= 0 &&
    tools.indexOf(after.tool) < tools.indexOf(name)
  ) {
    description = after.description ?? description;
    const other = toolDefinition(after.tool, facts);
    const theirs = other.inputSchema ?? {};
    const properties = z.record(z.string(), z.record(z.string(), z.unknown()))
      .parse(inputSchema.properties ?? {});
    for (const [key, schema] of Object.entries(definition.inputSchema ?? {})) {
      if (theirs[key] === schema) delete properties[key]?.description;
    }
    inputSchema.properties = properties;
  }
  return {
    name,
    title: definition.title,
    description,
    inputSchema,
    annotations: definition.annotations,
  };
}

const listings = new Map<string, Tool[]>();

/** The `tools/list` answer for `tools` (built once per choice of tools and facts). */
export function toolListing(tools: readonly ToolName[], facts: ListingFacts = {}): Tool[] {
  const key = `${tools.join(",")} ${facts.defaultContextLength ?? ""}`;
  let listing = listings.get(key);
  if (listing === undefined) {
    listing = tools.map((name) => listed(name, tools, facts));
    listings.set(key, listing);
  }
  return listing;
}

/**
 * What the definitions of `tools` take in a calling model's context, in characters of the JSON
 * of what a client like Claude Code gives its model (name, description, input schema; the title
 * and annotations are for the client), and in tokens as the loop estimates them (CHARS_PER_TOKEN).
 */
export function toolContextSize(
  tools: readonly ToolName[],
  facts: ListingFacts = {},
): { chars: number; tokens: number } {
  const chars = JSON.stringify(
    toolListing(tools, facts).map((t) => ({
      name: t.name,
      description: t.description,
      inputSchema: t.inputSchema,
    })),
  ).length;
  return { chars, tokens: Math.ceil(chars / CHARS_PER_TOKEN) };
}

/** How a tool group module registers each of its tools. */
export type ToolRegistrations<A> = Partial<Record<ToolName, (server: McpServer, app: A) => void>>;

/**
 * Registers the tools of `table` that `chosen` includes (all of them without `chosen`), in the
 * table's order.
 */
export function registerChosen<A>(
  table: ToolRegistrations<A>,
  server: McpServer,
  app: A,
  chosen?: readonly ToolName[],
): void {
  for (const name of ALL_TOOLS) {
    const register = table[name];
    if (register !== undefined && (chosen === undefined || chosen.includes(name))) {
      register(server, app);
    }
  }
}
