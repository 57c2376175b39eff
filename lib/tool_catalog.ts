/**
 * The catalog of MCP tools offered to the model in the autonomous loop: which tools `allowed_tools`
 * lets through, the OpenAI tool definitions sent to the model (named by lib/tool_names.ts, schemas
 * cleaned by lib/tool_schema.ts), and the way back from a name the model used to a server and tool.
 */
import type { OpenAiTool } from "./lmstudio_types.ts";
import type { Tool } from "./sdk.ts";
import { cleanToolSchema } from "./tool_schema.ts";
import { globToRegExp, NAMESPACE_SEPARATOR, sanitizeToolName, toolNames } from "./tool_names.ts";

/** One tool as the model sees it, mapped back to its server. */
export interface CatalogEntry {
  /** The name sent to the model (sanitised, unique, at most 64 characters). */
  name: string;
  server: string;
  /** The tool's real name on its server. */
  tool: string;
  /** The tool's input schema as the server published it. */
  inputSchema: unknown;
  /** The OpenAI tool definition sent to the model. */
  openai: OpenAiTool;
}

/** Tools of one server, as listed by it. */
export interface ServerTools {
  server: string;
  tools: Tool[];
}

/** Options for {@linkcode ToolCatalog.build}. */
export interface CatalogOptions {
  /** `server__tool` names (several servers) instead of raw tool names (one server). */
  namespaced: boolean;
  /** Glob patterns over raw (`read_*`) or namespaced (`filesystem__read_*`) names; empty = all. */
  allowed?: readonly string[];
}

/** The tools offered to the model and how their names map back to servers. */
export class ToolCatalog {
  readonly entries: readonly CatalogEntry[];
  /** Tools that `allowed` filtered out, as `server__tool`. */
  readonly excluded: readonly string[];
  #byName: Map<string, CatalogEntry>;

  private constructor(entries: CatalogEntry[], excluded: string[]) {
    this.entries = entries;
    this.excluded = excluded;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** Builds the catalog: filters by `allowed`, names (see {@linkcode toolNames}), cleans schemas. */
  static build(servers: readonly ServerTools[], options: CatalogOptions): ToolCatalog {
    const patterns = (options.allowed ?? []).map(globToRegExp);
    const excluded: string[] = [];
    const kept = servers.map(({ server, tools }) => ({
      server,
      tools: tools.filter((tool) => {
        const full = `${server}${NAMESPACE_SEPARATOR}${tool.name}`;
        if (patterns.length === 0 || patterns.some((p) => p.test(tool.name) || p.test(full))) {
          return true;
        }
        excluded.push(full);
        return false;
      }),
    }));
    const names = toolNames(
      kept.map(({ server, tools }) => ({ server, tools: tools.map((t) => t.name) })),
      options.namespaced,
    );
    const entries: CatalogEntry[] = [];
    kept.forEach(({ server, tools }, s) => {
      tools.forEach((tool, t) => {
        const name = names[s]![t]!;
        const description = [tool.description ?? tool.title ?? tool.annotations?.title]
          .filter((d): d is string => typeof d === "string" && d.trim() !== "")
          .join("");
        entries.push({
          name,
          server,
          tool: tool.name,
          inputSchema: tool.inputSchema,
          openai: {
            type: "function",
            function: {
              name,
              ...(description ? { description } : {}),
              parameters: cleanToolSchema(tool.inputSchema),
            },
          },
        });
      });
    });
    return new ToolCatalog(entries, excluded);
  }

  /** The OpenAI tool definitions, in catalog order. */
  get openaiTools(): OpenAiTool[] {
    return this.entries.map((e) => e.openai);
  }

  /** The names the model may call. */
  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /**
   * Maps a name the model used back to a tool: the exact name first, then forgiving variants
   * (a raw tool name that is unique across servers, `server.tool` / `server/tool` / `server:tool`,
   * a name that differs only in case or sanitising).
   */
  resolve(name: string): CatalogEntry | undefined {
    const exact = this.#byName.get(name);
    if (exact) return exact;
    const trimmed = name.trim();
    const sanitized = sanitizeToolName(trimmed);
    const direct = this.#byName.get(sanitized);
    if (direct) return direct;
    const sep = /^(.+?)(?:\.|\/|:|__)(.+)$/.exec(trimmed);
    if (sep) {
      const [, server, tool] = sep;
      const hit = this.entries.find((e) => e.server === server && e.tool === tool);
      if (hit) return hit;
    }
    const raw = this.entries.filter((e) => e.tool === trimmed || e.tool === sanitized);
    if (raw.length === 1) return raw[0];
    const lower = sanitized.toLowerCase();
    const ci = this.entries.filter((e) => e.name.toLowerCase() === lower);
    return ci.length === 1 ? ci[0] : undefined;
  }
}
