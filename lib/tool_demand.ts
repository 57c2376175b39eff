/**
 * Tools on demand, for small context windows: when the definitions of the tools offered would
 * take more than a share of the model's window (lmstudio-bridge.json `tools_on_demand.share`,
 * default {@linkcode DEFAULT_TOOL_SHARE}), the model gets one tool, `load_tools`, whose
 * description is a compact catalogue (each tool's name and one line of what it does), and the
 * full definitions only of the tools it loads. Loaded tools are sent from the next request on;
 * a tool the model calls without loading it runs all the same (its arguments are checked against
 * its schema) and is loaded. The definitions loaded stay within the share: loading more unloads
 * those used least recently, and a request that alone would not fit loads what fits and says so.
 *
 * The share: 0.4 by default; 1 turns tools on demand off (every definition is sent, and a task
 * whose definitions do not fit ends with context_overflow before any model request, as without
 * this module); 0 sends every task's tools on demand, however few. The definitions loaded may
 * take up to the share (less the catalogue), so the room the budget keeps for the tools is the
 * same whatever the model loads.
 *
 * {@linkcode ToolOffer} is what the loop sends each round: every definition, or (on demand)
 * `load_tools` and those loaded; it records which tools were loaded in which round and how (a
 * `load_tools` call, or a call of a tool not loaded). Each task starts with none loaded, a
 * continued session too. Pure: no I/O.
 */
import { toolsTokens } from "./agent_budget.ts";
import type { OpenAiTool } from "./lmstudio_types.ts";
import { firstLine, listNames, plural } from "./text.ts";
import type { CatalogEntry, ToolCatalog } from "./tool_catalog.ts";
import type { ToolLoad } from "./agent_types.ts";

/** Share of the context window the tool definitions may take before they are sent on demand. */
export const DEFAULT_TOOL_SHARE = 0.4;
/** The meta-tool's name (a tool of that name in the catalog makes it `bridge__load_tools`). */
export const LOAD_TOOLS = "load_tools";
/** Characters of a tool's description the catalogue keeps. */
const SUMMARY_CHARS = 100;

/** The outcome of a `load_tools` call, as the loop records it. */
export interface LoadOutcome {
  ok: boolean;
  text: string;
  error?: string;
}

/** The `load_tools` definition for `catalog`: its description lists every tool in one line. */
function loadToolsDefinition(name: string, catalog: ToolCatalog): OpenAiTool {
  const lines = catalog.entries.map((e) => {
    const description = e.openai.function.description;
    return description ? `- ${e.name}: ${firstLine(description, SUMMARY_CHARS)}` : `- ${e.name}`;
  });
  return {
    type: "function",
    function: {
      name,
      description: "Loads the full definitions of tools so that you can call them. The context " +
        "window is small, so only the tools you load are defined; call a tool once it is " +
        `loaded (from your next reply on). The tools:\n${lines.join("\n")}`,
      parameters: {
        type: "object",
        properties: {
          names: {
            type: "array",
            items: { type: "string" },
            description: "The names of the tools to load, from the list",
          },
        },
        required: ["names"],
      },
    },
  };
}

/** The tool definitions a task sends each round (see the module's documentation). */
export class ToolOffer {
  readonly catalog: ToolCatalog;
  /** Tools are sent on demand: `load_tools` and those loaded. */
  readonly onDemand: boolean;
  /** The meta-tool's name, when on demand. */
  readonly loadName: string | undefined;
  /** Tokens all definitions take. */
  readonly allTokens: number;
  /** Tokens the definitions may take: the share of the window (the budget's tool reserve). */
  readonly limit: number;
  /** Every load and unload, in order. */
  readonly history: ToolLoad[] = [];
  readonly #loadTool: OpenAiTool | undefined;
  /** Most tokens the loaded definitions may take. */
  readonly #room: number;
  /** Loaded tools by name, least recently used first. */
  readonly #loaded = new Map<string, CatalogEntry>();

  private constructor(catalog: ToolCatalog, share: number, contextTokens: number) {
    this.catalog = catalog;
    this.allTokens = toolsTokens(catalog.openaiTools);
    const limit = Math.floor(Math.max(0, share) * contextTokens);
    this.limit = limit;
    // A share of 1 (or more) turns tools on demand off.
    this.onDemand = share < 1 && this.allTokens > limit;
    if (this.onDemand) {
      // A name the catalog would take for one of its tools gets the bridge's prefix.
      this.loadName = catalog.resolve(LOAD_TOOLS) !== undefined
        ? `bridge__${LOAD_TOOLS}`
        : LOAD_TOOLS;
      this.#loadTool = loadToolsDefinition(this.loadName, catalog);
    }
    this.#room = Math.max(0, limit - toolsTokens(this.#loadTool ? [this.#loadTool] : []));
  }

  /**
   * Every definition when they take at most `share` of `contextTokens`, else `load_tools` and
   * the tools loaded (none at first).
   */
  static plan(o: { catalog: ToolCatalog; contextTokens: number; share: number }): ToolOffer {
    return new ToolOffer(o.catalog, o.share, o.contextTokens);
  }

  /** The definitions to send now. */
  tools(): OpenAiTool[] {
    if (!this.onDemand) return this.catalog.openaiTools;
    return [this.#loadTool!, ...[...this.#loaded.values()].map((e) => e.openai)];
  }

  /** The names loaded, least recently used first. */
  get loaded(): string[] {
    return [...this.#loaded.keys()];
  }

  /** A note for the caller on why tools are sent on demand. */
  note(contextTokens: number, share: number): string {
    return `the definitions of ${plural(this.catalog.entries.length, "tool")} need about ` +
      `${this.allTokens} tokens, more than ${Math.round(share * 100)}% of the context window ` +
      `(${contextTokens} tokens): the model got a catalogue and ${this.loadName} to load the ` +
      "tools it picks (tools_on_demand.share in lmstudio-bridge.json)";
  }

  /**
   * Loads the tool of a call the model made in `round` (whether it was loaded or not), as used
   * most recently.
   */
  touch(entry: CatalogEntry, round: number): void {
    if (!this.onDemand) return;
    const before = this.#loaded.has(entry.name);
    this.#loaded.delete(entry.name);
    this.#loaded.set(entry.name, entry);
    const { unloaded } = this.#fit(new Set([entry.name]));
    // A definition larger than the whole room does not stay loaded: the call ran all the same.
    const now = !before && this.#loaded.has(entry.name) ? [entry.name] : [];
    this.#record(round, "call", now, unloaded);
  }

  /** Adds `loaded` and `unloaded` to the history. */
  #record(round: number, via: ToolLoad["via"], loaded: string[], unloaded: string[]): void {
    for (const tool of unloaded) this.history.push({ round, tool, via, unloaded: true });
    for (const tool of loaded) this.history.push({ round, tool, via });
  }

  /** Unloads the least recently used tools not in `keep` until the loaded ones fit; answers them. */
  #fit(keep: ReadonlySet<string>): { unloaded: string[]; dropped: string[] } {
    const unloaded: string[] = [];
    const dropped: string[] = [];
    const size = () => toolsTokens([...this.#loaded.values()].map((e) => e.openai));
    while (this.#loaded.size > 0 && size() > this.#room) {
      const old = [...this.#loaded.keys()].find((n) => !keep.has(n));
      if (old !== undefined) {
        this.#loaded.delete(old);
        unloaded.push(old);
      } else {
        // Only the tools asked for are left, and they do not fit: the last ones stay out.
        const last = [...this.#loaded.keys()].at(-1)!;
        this.#loaded.delete(last);
        dropped.unshift(last);
      }
    }
    return { unloaded, dropped };
  }

  /** Runs a `load_tools` call of `round`: loads the tools named in `args.names`, says what it did. */
  load(args: Record<string, unknown>, round: number): LoadOutcome {
    const raw = args.names;
    const names = (Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : [])
      .filter((n): n is string => typeof n === "string")
      .map((n) => n.trim())
      .filter((n) => n !== "");
    if (names.length === 0) {
      return {
        ok: false,
        error: "no tool names given",
        text: `Error: give the names of the tools to load, e.g. {"names": ["${
          this.catalog.entries[0]?.name ?? "tool"
        }"]}, from the list in the description of ${this.loadName}.`,
      };
    }
    const unknown: string[] = [];
    const asked = new Set<string>();
    const before = new Set(this.#loaded.keys());
    for (const name of names) {
      const entry = this.catalog.resolve(name);
      if (entry === undefined) {
        unknown.push(name);
        continue;
      }
      asked.add(entry.name);
      this.#loaded.delete(entry.name);
      this.#loaded.set(entry.name, entry);
    }
    const { unloaded, dropped } = this.#fit(asked);
    const loaded = [...asked].filter((n) => this.#loaded.has(n));
    this.#record(round, "load_tools", loaded.filter((n) => !before.has(n)), unloaded);
    const lines: string[] = [];
    if (loaded.length > 0) {
      lines.push(
        `Loaded ${listNames(loaded, 50)}: call ${loaded.length === 1 ? "it" : "them"} now.`,
      );
    }
    if (unloaded.length > 0) {
      lines.push(`Unloaded to make room: ${listNames(unloaded, 50)} (load again when needed).`);
    }
    if (dropped.length > 0) {
      lines.push(
        `Not loaded, no room left in the context window: ${listNames(dropped, 50)}. Load fewer ` +
          "tools at a time.",
      );
    }
    if (unknown.length > 0) {
      lines.push(
        `No such tools: ${listNames(unknown, 50)}. Use the names in the description of ` +
          `${this.loadName}.`,
      );
    }
    return loaded.length > 0
      ? { ok: true, text: lines.join("\n") }
      : { ok: false, error: "no tool loaded", text: `Error: ${lines.join("\n")}` };
  }
}
