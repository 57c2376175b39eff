/**
 * What the autonomous loop does before its first round: resolve the servers asked for (or every
 * usable one), list their tools and build the catalog offered to the model, and pick and pre-load
 * the model. Problems that leave nothing to work with throw {@linkcode AgentError}; lesser ones
 * become notes for the caller.
 */
import { AgentError, isAbort } from "./agent_errors.ts";
import type { AgentConfig, AgentLmClient, AgentModels, ToolHost } from "./agent_types.ts";
import type { Tool } from "./sdk.ts";
import { isBridgeEntry, type ServerEntry } from "./server_entry.ts";
import { ToolCatalog } from "./tool_calls.ts";
import { errorMessage } from "./tool_result.ts";

/** The servers to use, and notes on those skipped. */
export interface ResolvedServers {
  names: string[];
  notes: string[];
}

/**
 * The servers of `selection`: every enabled usable server except the bridge itself for "all",
 * else the names given, each checked against the config. Throws {@linkcode AgentError} when none
 * is usable or a name is unknown.
 */
export async function resolveServers(
  selection: readonly string[] | "all",
  config: AgentConfig,
): Promise<ResolvedServers> {
  if (selection === "all") {
    const current = await config.current();
    const notes: string[] = [];
    if (current.error) {
      notes.push(`MCP config problem (using the last good config): ${current.error}`);
    }
    const usable: ServerEntry[] = [];
    for (const entry of current.servers) {
      if (entry.disabled) continue;
      if (isBridgeEntry(entry)) {
        notes.push(`skipped "${entry.name}": it launches this bridge (recursion guard)`);
      } else if (entry.problem !== undefined) {
        notes.push(`skipped "${entry.name}": ${entry.problem}`);
      } else usable.push(entry);
    }
    if (usable.length === 0) {
      const where = current.path
        ? `in ${current.path}`
        : `(no MCP config file found; searched ${current.searched.join(", ")})`;
      throw new AgentError(
        "servers",
        `No usable MCP servers ${where}${notes.length ? `: ${notes.join("; ")}` : ""}. ` +
          "Add servers under mcpServers in .mcp.json (or set MCP_JSON_PATH), then try again.",
      );
    }
    return { names: usable.map((e) => e.name), notes };
  }
  const names = [...new Set(selection.map((s) => s.trim()).filter((s) => s !== ""))];
  if (names.length === 0) {
    throw new AgentError("servers", "No MCP server named: give at least one server name.");
  }
  const problems: string[] = [];
  for (const name of names) {
    try {
      await config.get(name);
    } catch (error: unknown) {
      problems.push(errorMessage(error));
    }
  }
  if (problems.length > 0) throw new AgentError("servers", problems.join("\n"));
  return { names, notes: [] };
}

/** The tools of one server, or why they could not be listed. */
export type ServerTools = { server: string; tools: Tool[] } | { server: string; error: unknown };

/** Lists the tools of every server in parallel; a failure is kept per server, an abort rejects. */
export function listServerTools(
  host: ToolHost,
  servers: readonly string[],
  signal: AbortSignal,
): Promise<ServerTools[]> {
  return Promise.all(servers.map(async (server) => {
    try {
      return { server, tools: await host.listTools(server, { signal }) };
    } catch (error: unknown) {
      if (isAbort(error, signal)) throw error;
      return { server, error };
    }
  }));
}

/**
 * The catalog of the tools listed, and the servers that answered. A server that failed is
 * skipped with a note when `discover` ("all") and another one answered; otherwise, and when no
 * tool is left after `allowedTools`, it throws {@linkcode AgentError}.
 */
export function buildCatalog(
  listed: readonly ServerTools[],
  o: { discover: boolean; allowedTools?: readonly string[]; notes: string[] },
): { servers: string[]; catalog: ToolCatalog } {
  const failed = listed.filter((l): l is { server: string; error: unknown } => "error" in l);
  if (failed.length > 0 && (!o.discover || failed.length === listed.length)) {
    throw new AgentError(
      "servers",
      failed.map((f) => `MCP server "${f.server}" is not usable: ${errorMessage(f.error)}`)
        .join("\n"),
      { cause: failed[0]?.error },
    );
  }
  for (const f of failed) o.notes.push(`skipped "${f.server}": ${errorMessage(f.error)}`);
  const ok = listed.filter((l): l is { server: string; tools: Tool[] } => "tools" in l);
  const servers = ok.map((l) => l.server);
  const catalog = ToolCatalog.build(ok, {
    namespaced: ok.length > 1,
    allowed: o.allowedTools,
  });
  if (catalog.entries.length === 0) {
    const all = ok.flatMap((l) =>
      l.tools.map((t) => ok.length > 1 ? `${l.server}__${t.name}` : t.name)
    );
    throw new AgentError(
      "tools",
      all.length === 0
        ? `The MCP server(s) ${
          servers.join(", ")
        } offer no tools, so there is nothing to work with.`
        : `allowed_tools ${JSON.stringify(o.allowedTools)} matches none of the tools of ` +
          `${servers.join(", ")}. Available: ${all.join(", ")}. Use * and ? as wildcards, ` +
          "over raw names (read_*) or server__tool names (filesystem__read_*).",
    );
  }
  return { servers, catalog };
}

/**
 * The model to use (`model`, else `defaultModel`, else one the server has) and, with a model
 * manager, pre-loaded; a failed pre-load is a note, since the chat request JIT-loads the model or
 * fails with its own clear error.
 */
export async function prepareModel(o: {
  client: AgentLmClient;
  models?: AgentModels;
  model?: string;
  defaultModel?: string;
  notes: string[];
  signal: AbortSignal;
}): Promise<string> {
  const { signal, notes } = o;
  const id = await o.client.resolveModel(o.model, {
    signal,
    kind: "llm",
    defaultModel: o.defaultModel,
  });
  if (o.models) {
    try {
      const ensured = await o.models.ensureLoaded(id, { signal });
      if (ensured.note) notes.push(ensured.note);
    } catch (error: unknown) {
      if (isAbort(error, signal)) throw error;
      // The chat request JIT-loads the model or fails with its own clear error.
      notes.push(`could not pre-load ${id}: ${errorMessage(error)}`);
    }
  }
  return id;
}
