/**
 * What the autonomous loop does before its first round: resolve the servers asked for (or every
 * usable one), list their tools and build the catalog offered to the model, pick the model, check
 * that the server has it, pre-load it with the context the loop assumes, and find out how large its
 * context window is. Problems that leave nothing to work with throw {@linkcode AgentError}; lesser
 * ones become notes for the caller.
 */
import { isAbort, raceAbort } from "./abort.ts";
import {
  type AgentConfig,
  AgentError,
  type AgentLmClient,
  type AgentModels,
  ApprovalRules,
  type ModelListing,
  type SamplingLimits,
  type StartingPrompt,
  type ToolHost,
} from "./agent_types.ts";
import { promptChatMessages } from "./agent_messages.ts";
import type { ChatMessage, ModelList } from "./lmstudio_types.ts";
import { findModel } from "./model_names.ts";
import type { Tool } from "./sdk.ts";
import { isBridgeEntry, type ServerEntry } from "./config_entry.ts";
import { ToolCatalog } from "./tool_catalog.ts";
import { noConfigFile, usableEntry } from "./config.ts";
import { errorMessage } from "./errors.ts";
import { clause, closestName, listNames, plural } from "./text.ts";
import { MAX_LISTED_MODELS } from "./lmstudio_errors.ts";

/** The servers to use, and notes on those skipped. */
export interface ResolvedServers {
  names: string[];
  notes: string[];
  /** The approval rules of the bridge settings in force (lmstudio-bridge.json). */
  rules: ApprovalRules;
  /** The sampling limits of the bridge settings in force. */
  sampling: SamplingLimits;
  /** `tools_on_demand.share` of the bridge settings in force, if set. */
  toolShare?: number;
}

/**
 * The servers of `selection`: every enabled usable server except the bridge itself for "all",
 * else the names given, each checked against the config. Throws {@linkcode AgentError} when none
 * is usable or a name is unknown, saying what is wrong: the config error itself when the file is
 * broken or missing and no last good configuration is in force, else why each server was skipped.
 */
export async function resolveServers(
  selection: readonly string[] | "all",
  config: AgentConfig,
): Promise<ResolvedServers> {
  const current = await config.current();
  // A broken or missing file with no last good configuration: that is the whole story.
  if (current.error !== undefined && current.servers.length === 0) {
    throw new AgentError("servers", current.error);
  }
  const notes: string[] = [];
  const { tools, servers, sampling = {}, tools_on_demand } = current.bridge.settings;
  const rules: ApprovalRules = { tools, servers };
  const toolShare = tools_on_demand?.share;
  const settings = { rules, sampling, ...(toolShare !== undefined ? { toolShare } : {}) };
  // The error says that the last good configuration is still in force.
  if (current.error !== undefined) notes.push(`MCP config problem: ${clause(current.error)}`);
  if (selection === "all") {
    const usable: ServerEntry[] = [];
    const skipped: string[] = [];
    for (const entry of current.servers) {
      if (entry.disabled) skipped.push(`"${entry.name}" is disabled`);
      else if (isBridgeEntry(entry)) {
        notes.push(`skipped "${entry.name}": it launches this bridge (recursion guard)`);
        skipped.push(`"${entry.name}" launches this bridge (recursion guard)`);
      } else if (entry.problem !== undefined) {
        // The problem names the server already: `MCP server "b": ...`.
        const problem = clause(entry.problem).replace(`MCP server "${entry.name}": `, "");
        notes.push(`skipped "${entry.name}": ${problem}`);
        skipped.push(`"${entry.name}": ${problem}`);
      } else usable.push(entry);
    }
    if (usable.length > 0) return { names: usable.map((e) => e.name), notes, ...settings };
    if (current.path === undefined) {
      const text = noConfigFile(current.searched);
      throw new AgentError("servers", `${text[0]!.toUpperCase()}${text.slice(1)}`);
    }
    if (current.error !== undefined) {
      throw new AgentError(
        "servers",
        `${clause(current.error)}, and none of its servers is usable: ${skipped.join("; ")}.`,
      );
    }
    if (current.servers.length === 0) {
      throw new AgentError(
        "servers",
        `No MCP servers in ${current.path}: it lists none. Add servers under mcpServers, then ` +
          "try again.",
      );
    }
    const fixes = [
      ...(current.servers.some((e) => !e.disabled && e.problem !== undefined)
        ? ["fix these entries"]
        : []),
      ...(current.servers.some((e) => e.disabled) ? ['enable one (remove "disabled": true)'] : []),
      "add servers under mcpServers",
    ];
    const advice = fixes.length === 1
      ? fixes[0]!
      : `${fixes.slice(0, -1).join(", ")} or ${fixes[fixes.length - 1]}`;
    throw new AgentError(
      "servers",
      `No usable MCP servers in ${current.path}: ${skipped.join("; ")}. ` +
        `${advice[0]!.toUpperCase()}${advice.slice(1)}, then try again.`,
    );
  }
  const names = [...new Set(selection.map((s) => s.trim()).filter((s) => s !== ""))];
  if (names.length === 0) {
    throw new AgentError("servers", "No MCP server named: give at least one server name.");
  }
  const problems: string[] = [];
  for (const name of names) {
    try {
      // The configuration read above: one stat for the whole selection, not one per name.
      usableEntry(current, name);
    } catch (error: unknown) {
      problems.push(errorMessage(error));
    }
  }
  if (problems.length > 0) throw new AgentError("servers", problems.join("\n"));
  return { names, notes, ...settings };
}

/**
 * The tools of one server (and whether it offers resources, which adds the bridge's resource
 * tools), or why they could not be listed.
 */
export type ListedTools =
  | { server: string; tools: readonly Tool[]; resources?: boolean }
  | { server: string; error: unknown };

/**
 * Whether `server` offers resources: false when the host cannot tell or the question fails (the
 * server's tools are still offered); an abort rejects.
 */
async function offersResources(
  host: ToolHost,
  server: string,
  signal: AbortSignal,
): Promise<boolean> {
  if (host.offers === undefined || host.listResources === undefined) return false;
  try {
    return (await host.offers(server, { signal })).resources;
  } catch (error: unknown) {
    if (isAbort(error, signal)) throw error;
    return false;
  }
}

/**
 * Lists the tools of every server in parallel, with whether it offers resources; a failure is
 * kept per server, an abort rejects.
 */
export function listServerTools(
  host: ToolHost,
  servers: readonly string[],
  signal: AbortSignal,
  notes?: string[],
): Promise<ListedTools[]> {
  const onNote = notes === undefined ? undefined : (note: string) => {
    if (!notes.includes(note)) notes.push(note);
  };
  return Promise.all(servers.map(async (server) => {
    try {
      const tools = await host.listTools(server, { signal, onNote });
      return { server, tools, resources: await offersResources(host, server, signal) };
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
  listed: readonly ListedTools[],
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
  const ok = listed.filter((
    l,
  ): l is { server: string; tools: readonly Tool[]; resources?: boolean } => "tools" in l);
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

/** The model picked for a task, the server's model list, and the model's context window. */
export interface PreparedModel {
  /**
   * The name to send: the model manager's answer when it made the model ready, else the id the
   * server lists for the name given (`QWEN2.5-7B-Instruct` becomes `qwen2.5-7b-instruct`), else
   * the name as given.
   */
  id: string;
  /** The list as read before loading the model. */
  listing: ModelListing;
  /** The context window the budget works with ({@linkcode contextWindow}). */
  contextTokens: number;
}

/**
 * The server's model list, or why it could not be read; only an abort rejects. With `reuse`, a
 * list read a moment ago (by an earlier task) will do: LMSTUDIO_MODEL_LIST_REUSE_MS, see
 * LmStudioClient.listModels.
 */
export async function readModelListing(
  client: AgentLmClient,
  signal: AbortSignal,
  o: { reuse?: boolean } = {},
): Promise<ModelListing> {
  try {
    return { list: await client.listModels({ signal, ...(o.reuse ? { reuse: true } : {}) }) };
  } catch (error: unknown) {
    if (isAbort(error, signal)) throw error;
    return { error: errorMessage(error) };
  }
}

/**
 * Throws {@linkcode AgentError} "model" when the server's `list` is known and has no model that
 * is `id` (loosely: `qwen3-8b` is `qwen/qwen3-8b`, instance suffixes match; see findModel), naming
 * the models it has. A server without LM Studio's REST API that lists no model at all is not
 * taken at its word (it may load models it does not list).
 */
function checkModelListed(o: {
  id: string;
  list: ModelList;
  baseUrl: string;
  /** The model came from DEFAULT_MODEL rather than the request. */
  fromDefault: boolean;
}): void {
  const { id, list, baseUrl } = o;
  if (findModel(id, list.models) !== undefined) return;
  if (list.source === "openai" && list.models.length === 0) return;
  const who = o.fromDefault ? `The default model "${id}" (DEFAULT_MODEL)` : `Model "${id}"`;
  const chat = list.models.filter((m) => m.type !== "embedding").map((m) => m.id);
  const shown = listNames(chat, MAX_LISTED_MODELS);
  const fix = o.fromDefault
    ? "Set DEFAULT_MODEL to one of these (or name one for this task)"
    : "Use one of these";
  throw new AgentError(
    "model",
    chat.length > 0
      ? `${who} is not among the models of ${baseUrl}. Chat models there: ${shown}. ${fix}, ` +
        `or download it first (\`lms get ${id}\`).`
      : `${who} is not among the models of ${baseUrl}, which lists no chat model. Download ` +
        "one in LM Studio or with `lms get <model>`, then try again.",
  );
}

/**
 * The model to use (`model`, else `defaultModel`, else one the server has), checked against the
 * server's model list when it can be read ({@linkcode checkModelListed}: an unknown model fails
 * here, before any chat request), and, with a model manager, pre-loaded with `contextLength`
 * tokens of context, the window the loop's budget assumes (a model already loaded keeps its
 * own, which the budget then reads from the server). A failed pre-load is a note, since the chat
 * request JIT-loads the model or fails with its own clear error. The list is read once and handed
 * to the model choice and the manager; only a model the manager actually loaded brings a fresh
 * list (the manager's, else {@linkcode contextWindow} reads it), since the load changes what it
 * says about the model.
 */
export async function prepareModel(o: {
  client: AgentLmClient;
  /** The model list, when the caller asked for it already ({@linkcode readModelListing}). */
  listing?: Promise<ModelListing>;
  models?: AgentModels;
  model?: string;
  defaultModel?: string;
  /**
   * Context length for a model the bridge loads, and the window assumed when the server does not
   * tell (settings.defaultContextLength).
   */
  contextLength: number;
  notes: string[];
  signal: AbortSignal;
  /**
   * Told when the model is about to be loaded (the list says it is not); the function it returns
   * is called when the load has ended, whichever way. For progress: "loading qwen3-8b (12 s)".
   */
  onLoading?: (model: string) => () => void;
}): Promise<PreparedModel> {
  const { signal, notes } = o;
  // Read once and handed down. Without it the chat request tells whether the model exists; a
  // model still has to be picked then, and the pick reads the list for its own error.
  const listing = await (o.listing ?? readModelListing(o.client, signal));
  const list = "list" in listing ? listing.list : undefined;
  const asked = await o.client.resolveModel(o.model, {
    signal,
    kind: "llm",
    defaultModel: o.defaultModel,
    ...(list ? { list } : {}),
  });
  let id = asked;
  let contextLength = o.contextLength;
  let notLoaded = false;
  if ("list" in listing) {
    checkModelListed({
      id: asked,
      list: listing.list,
      baseUrl: o.client.baseUrl,
      fromDefault: !o.model?.trim() && !!o.defaultModel?.trim(),
    });
    const info = findModel(asked, listing.list.models);
    notLoaded = info?.state === "not-loaded";
    // An instance id (`qwen3-8b:2`) names one loaded instance: keep it.
    if (info !== undefined && !(info.instanceIds ?? []).includes(asked)) id = info.id;
    // A load asking for more than the model supports would fail.
    if (info?.maxContextLength) contextLength = Math.min(contextLength, info.maxContextLength);
  }
  let loaded = false;
  let after: ModelListing | undefined;
  if (o.models) {
    const loadEnded = notLoaded ? o.onLoading?.(id) : undefined;
    try {
      // The race ends the wait even for a manager that does not honour the signal.
      const ensured = await raceAbort(
        o.models.ensureLoaded(id, { signal, contextLength, ...(list ? { list } : {}) }),
        signal,
      );
      if (ensured.model?.trim()) id = ensured.model;
      loaded = ensured.via === "lms" || ensured.via === "rest";
      if (ensured.list) after = { list: ensured.list };
      if (loaded) {
        notes.push(
          `loaded ${id} with a context length of ${contextLength} tokens (LMSTUDIO_CONTEXT_LENGTH)`,
        );
      }
      if (ensured.note) notes.push(ensured.note);
    } catch (error: unknown) {
      if (isAbort(error, signal)) throw error;
      // The chat request JIT-loads the model or fails with its own clear error.
      notes.push(`could not pre-load ${id}: ${errorMessage(error)}`);
    } finally {
      loadEnded?.();
    }
  }
  const contextTokens = await contextWindow({
    client: o.client,
    model: id,
    fallback: o.contextLength,
    notes,
    signal,
    // A load changes what the list says about the model: the manager's fresh list, else read it.
    ...(after ? { listing: after } : loaded ? {} : { listing }),
  });
  return { id, listing, contextTokens };
}

/**
 * The context window of `model` in tokens: the loaded context length, else the smaller of the
 * model's maximum and `fallback`, else `fallback`; a note goes to `notes` whenever it had to be
 * assumed, saying why (the list could not be read, the model is not in it, the server does not
 * report the context length, or the model is not loaded yet and will load on its first request
 * with the server's default context length, which may be smaller). Reads the model list unless
 * `listing` is given. Only an abort rejects.
 */
export async function contextWindow(o: {
  client: AgentLmClient;
  model: string;
  fallback: number;
  notes: string[];
  signal: AbortSignal;
  listing?: ModelListing;
}): Promise<number> {
  const { model, fallback, notes, signal } = o;
  const listing = o.listing ?? await readModelListing(o.client, signal);
  const assumed = (why: string, window = fallback) => {
    notes.push(`assumed a context window of ${window} tokens for ${model} (${why})`);
    return window;
  };
  if ("error" in listing) {
    return assumed(`could not read the model list: ${clause(listing.error)}`);
  }
  const info = findModel(model, listing.list.models);
  if (info === undefined) return assumed("it is not in the server's model list");
  if (info.loadedContextLength) return info.loadedContextLength;
  const max = info.maxContextLength;
  const window = max ? Math.min(max, fallback) : fallback;
  const maximum = max ? `; its maximum is ${max}` : "";
  if (info.state === "loaded") {
    return assumed(
      `it is loaded, but the server does not report its context length${maximum}`,
      window,
    );
  }
  if (max) {
    // Loaded on its first request (JIT), with whatever context the server's defaults give it.
    return assumed(
      `it is not loaded yet and loads on its first request with the server's default context ` +
        `length, which may be smaller${maximum}; to be sure, load it first with ` +
        `\`lms load ${info.id} --context-length ${window}\``,
      window,
    );
  }
  return assumed(
    listing.list.source === "openai"
      ? `${o.client.baseUrl} does not report context lengths: it has no LM Studio REST API`
      : "the server does not report its context length",
  );
}

/**
 * The messages of the prompt a task starts from, as chat messages. The prompt is checked against
 * the server's list first when the host can list prompts: an unknown name or a missing required
 * argument fails with what the server offers. Any failure throws {@linkcode AgentError} "prompt"
 * (an abort rejects as it is); a note says what the task started from.
 */
export async function startingPrompt(
  host: ToolHost,
  prompt: StartingPrompt,
  o: { signal: AbortSignal; notes: string[] },
): Promise<ChatMessage[]> {
  const { server, name } = prompt;
  const args = prompt.arguments ?? {};
  const what = `prompt "${name}" of MCP server "${server}"`;
  const fail = (why: string, cause?: unknown): never => {
    throw new AgentError("prompt", `Cannot start from the ${what}: ${why}`, { cause });
  };
  if (host.getPrompt === undefined) return fail("this bridge cannot read prompts.");
  try {
    if (host.listPrompts !== undefined) {
      const prompts = await host.listPrompts(server, { signal: o.signal });
      const found = prompts.find((p) => p.name === name);
      if (found === undefined) {
        const names = prompts.map((p) => p.name);
        const close = closestName(name, names);
        return fail(
          prompts.length === 0
            ? "the server offers no prompts."
            : `the server has no such prompt.${close ? ` Did you mean "${close}"?` : ""} ` +
              `Its prompts: ${listNames(names, 20)}.`,
        );
      }
      const missing = (found.arguments ?? []).filter((a) => a.required && !(a.name in args));
      if (missing.length > 0) {
        const list = missing.map((a) => `${a.name}${a.description ? ` (${a.description})` : ""}`);
        return fail(
          `it needs the ${plural(missing.length, "argument")} ${list.join(", ")}. Give ` +
            "them as the prompt's arguments (`run --prompt-arg NAME=VALUE`).",
        );
      }
    }
    const result = await host.getPrompt(server, name, args, { signal: o.signal });
    const messages = promptChatMessages(result.messages);
    o.notes.push(`started from the ${what} (${plural(messages.length, "message")})`);
    return messages;
  } catch (error: unknown) {
    if (error instanceof AgentError || isAbort(error, o.signal)) throw error;
    return fail(`${clause(errorMessage(error))}.`, error);
  }
}
