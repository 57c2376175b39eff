/**
 * The names the model sees for MCP tools: sanitised to what OpenAI-compatible servers accept,
 * namespaced as `server__tool` when several servers take part, kept unique and within 64
 * characters with short stable hashes, and `allowed_tools` glob patterns.
 */

/** OpenAI-compatible servers accept function names matching this. */
export const TOOL_NAME_PATTERN: RegExp = /^[a-zA-Z0-9_-]{1,64}$/;
/** Separator between server and tool in namespaced names. */
export const NAMESPACE_SEPARATOR = "__";

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
export function toolNames(
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
