/**
 * The catalog of MCP tools offered to the model in the autonomous loop: which tools `allowed_tools`
 * lets through (glob patterns), the OpenAI tool definitions sent to the model (schemas cleaned by
 * lib/tool_schema.ts), and the way back from a name the model used to a server and tool.
 *
 * The names the model sees are sanitised to what OpenAI-compatible servers accept, namespaced as
 * `server__tool` when several servers take part, and kept unique and within 64 characters with
 * short stable hashes.
 *
 * A server that offers resources gets the bridge's resource tools after its own
 * (`list_resources`, `read_resource`, agent_resources.ts), named and filtered like its tools; a
 * tool of its own by the same name keeps the name, and the bridge's gets a hash suffix.
 */
import type { OpenAiTool } from "./lmstudio_types.ts";
import type { Tool } from "./sdk.ts";
import { cleanToolSchema } from "./tool_schema.ts";
import { type ResourceTool, resourceTools } from "./agent_resources.ts";

/** OpenAI-compatible servers accept function names matching this. */
export const TOOL_NAME_PATTERN: RegExp = /^[a-zA-Z0-9_-]{1,64}$/;
/** Separator between server and tool in namespaced names. */
const NAMESPACE_SEPARATOR = "__";

/** FNV-1a, 32 bit, base 36: a short stable suffix for disambiguating truncated names. */
function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(36).padStart(7, "0").slice(-6);
}

/** Replaces characters outside `[a-zA-Z0-9_-]` with `_`; never empty. (Length is handled by the catalog.) */
export function sanitizeToolName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_-]/g, "_");
  return cleaned === "" ? "tool" : cleaned;
}

/** The longest name OpenAI-compatible servers accept. */
const MAX_NAME = 64;
/**
 * What a namespaced name keeps of a long server name at the least (5 characters, `_` and a hash)
 * when a long tool name needs the room.
 */
const MIN_SERVER_PART = 12;

/**
 * Sanitised labels for distinct `names`, still distinct: a name that sanitising changed gets a hash
 * suffix when its sanitised form is also another name's (`my server.v2` beside `my_server_v2`
 * becomes `my_server_v2_<hash>`), so the name that needed no change keeps its clean label and the
 * outcome does not depend on order.
 */
function distinctLabels(names: readonly string[]): string[] {
  const clean = names.map(sanitizeToolName);
  const count = new Map<string, number>();
  for (const c of clean) count.set(c, (count.get(c) ?? 0) + 1);
  return names.map((name, i) => {
    const c = clean[i]!;
    return c !== name && (count.get(c) ?? 0) > 1 ? `${c}_${shortHash(name)}` : c;
  });
}

/** `label` cut to `room` characters, ending in a hash of `original` when it had to be cut. */
function fitLabel(label: string, original: string, room: number): string {
  if (label.length <= room) return label;
  const suffix = `_${shortHash(original)}`;
  return label.slice(0, Math.max(1, room - suffix.length)) + suffix;
}

/**
 * The names the model sees for the tools of `servers` (same shape as the input): the raw tool
 * names, or `server__tool` when `namespaced`, sanitised to {@linkcode TOOL_NAME_PATTERN} and unique.
 * A long server name is shortened first (its start and a hash, the same prefix for all its tools)
 * so that tool names stay whole; a tool name is cut (start and hash) only when it is too long even
 * beside a 12-character server part. Names that sanitise alike get hash suffixes on the ones that
 * sanitising changed (see {@linkcode distinctLabels}).
 */
function toolNames(
  servers: readonly { server: string; tools: readonly string[] }[],
  namespaced: boolean,
): string[][] {
  const used = new Set<string>();
  // Last resort for what the rules above cannot tell apart (a server "a" with a tool "b__c" beside
  // a server "a__b" with a tool "c", a server listing a tool twice, a hash collision).
  const unique = (name: string, full: string): string => {
    let candidate = name;
    for (let n = 1; used.has(candidate); n++) {
      const suffix = `_${shortHash(`${full}#${n}`)}`;
      candidate = name.slice(0, MAX_NAME - suffix.length) + suffix;
    }
    used.add(candidate);
    return candidate;
  };
  const serverLabels = distinctLabels(servers.map((s) => s.server));
  const sep = NAMESPACE_SEPARATOR;
  return servers.map(({ server, tools }, s) => {
    const toolLabels = distinctLabels(tools);
    const full = (tool: string) => `${server}${sep}${tool}`;
    if (!namespaced) {
      return tools.map((tool, t) =>
        unique(fitLabel(toolLabels[t]!, full(tool), MAX_NAME), full(tool))
      );
    }
    const longest = Math.max(0, ...toolLabels.map((l) => l.length));
    const room = MAX_NAME - sep.length -
      Math.min(longest, MAX_NAME - sep.length - MIN_SERVER_PART);
    const prefix = fitLabel(serverLabels[s]!, server, room) + sep;
    return tools.map((tool, t) =>
      unique(prefix + fitLabel(toolLabels[t]!, full(tool), MAX_NAME - prefix.length), full(tool))
    );
  });
}

/** Turns `*` / `?` glob patterns into one anchored regular expression. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split("")
    .map((c) => c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\/]/g, "\\$&"))
    .join("");
  return new RegExp(`^${body}$`);
}

/**
 * The OpenAI definitions made of each tool, by the name it had: the pool keeps a server's `Tool`
 * objects until the server says its list changed, so a definition is made once per tool-list
 * version (and name), not once per task. Definitions are shared: never change one.
 */
const definitions = new WeakMap<
  Tool,
  { parameters: Record<string, unknown>; byName: Map<string, OpenAiTool> }
>();

/** The OpenAI definition of `tool` under `name`, made once (see {@linkcode definitions}). */
function openaiDefinition(tool: Tool, name: string): OpenAiTool {
  let made = definitions.get(tool);
  if (made === undefined) {
    made = { parameters: cleanToolSchema(tool.inputSchema), byName: new Map() };
    definitions.set(tool, made);
  }
  let definition = made.byName.get(name);
  if (definition === undefined) {
    const description = [tool.description ?? tool.title ?? tool.annotations?.title]
      .filter((d): d is string => typeof d === "string" && d.trim() !== "")
      .join("");
    definition = {
      type: "function",
      function: { name, ...(description ? { description } : {}), parameters: made.parameters },
    };
    made.byName.set(name, definition);
  }
  return definition;
}

/** One tool as the model sees it, mapped back to its server. */
export interface CatalogEntry {
  /** The name sent to the model (sanitised, unique, at most 64 characters). */
  name: string;
  server: string;
  /** The tool's real name on its server. */
  tool: string;
  /** The tool's input schema as the server published it. */
  inputSchema: unknown;
  /** The tool's MCP annotations say it does not change anything (readOnlyHint). */
  readOnly: boolean;
  /**
   * The tool may destroy data (destructiveHint; true when the annotations do not say, as MCP
   * defines it; false for a read-only tool).
   */
  destructive: boolean;
  /** The OpenAI tool definition sent to the model. */
  openai: OpenAiTool;
  /** One of the bridge's resource tools for the server (not a tool of the server). */
  resourceTool?: ResourceTool;
}

/** Tools of one server, as listed by it. */
export interface ServerTools {
  server: string;
  tools: readonly Tool[];
  /** The server offers resources: the bridge's resource tools are added for it. */
  resources?: boolean;
}

/** Options for {@linkcode ToolCatalog.build}. */
export interface CatalogOptions {
  /** `server__tool` names (several servers) instead of raw tool names (one server). */
  namespaced: boolean;
  /** Glob patterns over raw (`read_*`) or namespaced (`filesystem__read_*`) names; empty = all. */
  allowed?: readonly string[];
}

/** The bridge's resource tools for `server` when it offers resources, each noted in `added`. */
function resourceEntries(server: string, offered: boolean, added: Map<Tool, ResourceTool>): Tool[] {
  if (!offered) return [];
  const tools = resourceTools(server);
  return (["list_resources", "read_resource"] as const).map((kind) => {
    added.set(tools[kind], kind);
    return tools[kind];
  });
}

/** A catalog built before, with what it was built of. */
interface BuiltCatalog {
  servers: { server: string; tools: readonly Tool[]; resources: boolean }[];
  namespaced: boolean;
  allowed: readonly string[];
  catalog: ToolCatalog;
}

/** Catalogs kept per first server's tool list, most recent first. */
const KEPT_CATALOGS = 4;

/**
 * The catalogs built, by the tool list of their first server: the pool hands out the same array
 * while a server's list stays the same, so a task with the same servers and options reuses the
 * catalog of the one before (catalogs are never changed once built).
 */
const builtCatalogs = new WeakMap<readonly Tool[], BuiltCatalog[]>();

function sameInputs(
  built: BuiltCatalog,
  servers: readonly ServerTools[],
  namespaced: boolean,
  allowed: readonly string[],
): boolean {
  return built.namespaced === namespaced && built.servers.length === servers.length &&
    built.allowed.length === allowed.length && built.allowed.every((a, i) => a === allowed[i]) &&
    built.servers.every((b, i) =>
      b.server === servers[i]!.server && b.tools === servers[i]!.tools &&
      b.resources === (servers[i]!.resources === true)
    );
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
    const allowed = options.allowed ?? [];
    const key = servers[0]?.tools;
    const kept = key === undefined ? undefined : builtCatalogs.get(key);
    const found = kept?.find((b) => sameInputs(b, servers, options.namespaced, allowed));
    if (found !== undefined) return found.catalog;
    const catalog = ToolCatalog.#build(servers, options);
    if (key !== undefined) {
      const list = [{
        servers: servers.map((s) => ({
          server: s.server,
          tools: s.tools,
          resources: s.resources === true,
        })),
        namespaced: options.namespaced,
        allowed: [...allowed],
        catalog,
      }, ...(kept ?? [])];
      builtCatalogs.set(key, list.slice(0, KEPT_CATALOGS));
    }
    return catalog;
  }

  static #build(servers: readonly ServerTools[], options: CatalogOptions): ToolCatalog {
    const patterns = (options.allowed ?? []).map(globToRegExp);
    const excluded: string[] = [];
    const added = new Map<Tool, ResourceTool>();
    const kept = servers.map(({ server, tools, resources }) => ({
      server,
      tools: [...tools, ...resourceEntries(server, resources === true, added)].filter((tool) => {
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
        entries.push({
          name,
          server,
          tool: tool.name,
          inputSchema: tool.inputSchema,
          readOnly: tool.annotations?.readOnlyHint === true,
          destructive: tool.annotations?.readOnlyHint !== true &&
            tool.annotations?.destructiveHint !== false,
          openai: openaiDefinition(tool, name),
          ...(added.has(tool) ? { resourceTool: added.get(tool) } : {}),
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
