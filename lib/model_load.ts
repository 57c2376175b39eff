/**
 * Making one model ready to answer, and unloading it, the two ways the manager has: with `lms` (use
 * a loaded instance, whatever its status, else `lms load` the exact downloaded key with a TTL;
 * `lms unload` each instance) and with LM Studio's REST API (state from the model list, load and
 * unload over `/api/v1`, or rely on loading on first request where the server cannot load on
 * demand). Which way applies is the manager's call.
 *
 * Nothing here polls for a load in progress: `lms ps` never says that an instance is loading (its
 * statuses are idle, processingPrompt, generating and computingEmbedding, all of a loaded
 * instance). A load the bridge started itself is waited for by sharing it (the manager's
 * concurrent callers wait for the same `lms load` or REST load, each of which returns once the
 * model is loaded), and a server that answers 503 while it loads is retried by the client.
 *
 * A load asks for the caller's context length, else the manager's default (capped at the model's
 * maximum when that is known), so the model is loaded with the window the bridge budgets for. An
 * unload takes every loaded instance of the model, or only the one an exact instance identifier
 * (`qwen3-8b:2`) names; a model that is not loaded is a {@linkcode ModelError} naming the ones that
 * are.
 */
import { LmStudioError, unknownModelMessage } from "./lmstudio_errors.ts";
import type { ModelList } from "./lmstudio_types.ts";
import { type Lms, LMS_INSTALL_HINT } from "./lms.ts";
import { type DownloadedModel, type LoadedInstance, pickInstance } from "./lms_output.ts";
import { findInstances, findModel, namesModel, sameModel } from "./model_names.ts";
import {
  type EnsureResult,
  type ModelClient,
  ModelError,
  modelListUnreadable,
  type ModelSource,
  type UnloadReport,
} from "./model_types.ts";
import { errorMessage } from "./errors.ts";
import { listNames } from "./text.ts";

/** What loading and unloading need from the manager: its client, `lms`, clock and limits. */
export interface LoadContext {
  client: ModelClient;
  lms: Lms;
  now: () => number;
  /** Idle TTL in seconds for a request that names none; 0 means none. */
  ttlSeconds: number;
  /** Context length for a load that names none; undefined: LM Studio's default for the model. */
  defaultContextLength?: number;
}

/** One model to make ready. */
export interface LoadRequest {
  model: string;
  /** When the manager started on it (by the context's clock), for `waitedMs`. */
  started: number;
  signal?: AbortSignal;
  /** Context length to load with; default: the context's `defaultContextLength`. */
  contextLength?: number;
  /** Idle TTL in seconds for this load; default: the context's. */
  ttlSeconds?: number;
  /** The server's model list as the caller already has it; read when absent. */
  list?: ModelList;
}

/** The report's word for where a model list came from. */
export function listSource(source: ModelList["source"]): ModelSource {
  return source === "api/v1" ? "rest-v1" : source === "api/v0" ? "rest-v0" : "openai";
}

/**
 * The context length to load with: what the request asks for, else the default capped at the
 * model's maximum (a default must never make a load fail); undefined leaves it to LM Studio.
 */
function loadContextLength(
  ctx: Pick<LoadContext, "defaultContextLength">,
  o: Pick<LoadRequest, "contextLength">,
  maxContextLength: number | undefined,
): number | undefined {
  if (o.contextLength !== undefined) return o.contextLength;
  const fallback = ctx.defaultContextLength;
  if (fallback === undefined || maxContextLength === undefined) return fallback;
  return Math.min(fallback, maxContextLength);
}

/**
 * Makes `model` ready with `lms`: a listed instance is used whatever its status (a busy one
 * queues the request; loading it again would only make a `:2` copy), else the model is loaded.
 * Failures of `lms` itself are `LmsError`s the caller may fall back on.
 */
export async function ensureWithLms(ctx: LoadContext, o: LoadRequest): Promise<EnsureResult> {
  const { model, started } = o;
  const usable = pickInstance(findInstances(model, await ctx.lms.ps({ signal: o.signal })));
  if (usable) {
    const note = contextNote(usable.identifier, usable.contextLength, o.contextLength);
    return {
      model: chosenName(model, usable),
      via: "already-loaded",
      source: "lms",
      contextLength: usable.contextLength ?? null,
      waitedMs: ctx.now() - started,
      ...(note ? { note } : {}),
    };
  }
  const downloaded = await downloadedModel(ctx.lms, o);
  const key = downloaded.modelKey;
  const ttlSeconds = o.ttlSeconds ?? ctx.ttlSeconds;
  const contextLength = loadContextLength(ctx, o, downloaded.maxContextLength);
  const loaded = await ctx.lms.load(key, {
    signal: o.signal,
    ttlSeconds,
    ...(contextLength !== undefined ? { contextLength } : {}),
  });
  return {
    model: loaded.identifier ?? (key === model ? model : key),
    via: "lms",
    source: "lms",
    contextLength: contextLength ?? null,
    waitedMs: ctx.now() - started,
    ...(ttlSeconds > 0 ? {} : { note: "Loaded without a TTL: it stays until unloaded." }),
  };
}

/**
 * The downloaded model to `lms load` by its exact key, so lms's fuzzy matching picks no other. A
 * variant key (`qwen/qwen3-8b@q8_0`) is not a row of `lms ls` but one of a row's `variants`: it is
 * loaded by that key.
 */
async function downloadedModel(
  lms: Lms,
  { model, signal }: Pick<LoadRequest, "model" | "signal">,
): Promise<DownloadedModel> {
  const downloaded = await lms.ls({ signal });
  const variantOf = (match: (key: string) => boolean): DownloadedModel | undefined => {
    for (const row of downloaded) {
      const key = row.variants?.find(match);
      if (key !== undefined) return { ...row, modelKey: key };
    }
    return undefined;
  };
  const exact = downloaded.find((m) => m.modelKey === model) ??
    variantOf((key) => key === model) ??
    downloaded.find((m) => sameModel(model, m.modelKey)) ??
    variantOf((key) => sameModel(model, key));
  if (exact) return exact;
  throw new ModelError(
    unknownModelMessage({
      model,
      where: "LM Studio on this machine",
      what: "downloaded model",
      available: downloaded.flatMap((m) => [
        m.modelKey,
        ...(m.variants ?? []).filter((v) => v !== m.modelKey),
      ]),
      advice: `Download it with \`lms get ${model}\`, or name one of these.`,
      adviceWhenNone: `Download it with \`lms get ${model}\`.`,
    }),
    { kind: "not_found", model },
  );
}

/**
 * Makes `model` ready over LM Studio's REST API. On a server that loads models on demand (JIT) a
 * listed model is left to its first request; a model the server's list does not have is a
 * {@linkcode ModelError}. Only when the server gives no readable list is JIT assumed unchecked.
 */
export async function ensureWithRest(
  ctx: Pick<LoadContext, "client" | "now" | "ttlSeconds" | "defaultContextLength">,
  o: LoadRequest,
): Promise<EnsureResult> {
  const { model, started } = o;
  const baseUrl = ctx.client.baseUrl;
  // Left to the server to load on `name`'s first request, for the reason `note` gives.
  const jit = (name: string, source: ModelSource | null, note: string): EnsureResult => ({
    model: name,
    via: "jit",
    source,
    contextLength: null,
    waitedMs: ctx.now() - started,
    note,
  });
  let list: ModelList;
  try {
    list = o.list ?? await ctx.client.listModels({ signal: o.signal });
  } catch (error: unknown) {
    if (!modelListUnreadable(error)) throw error;
    return jit(
      model,
      null,
      `${baseUrl} gave no readable model list (${errorMessage(error)}), so "${model}" could ` +
        "not be checked: it loads on its first request (JIT), if the server has it.",
    );
  }
  const source = listSource(list.source);
  const match = findModel(model, list.models);
  const ttl = o.ttlSeconds ?? ctx.ttlSeconds;
  if (!match) throw notListed({ model, baseUrl, list });
  if (list.source === "openai") {
    return jit(
      match.id,
      source,
      `${baseUrl} has no model-management API (Ollama, llama.cpp, vLLM...): ` +
        `it loads ${match.id} when a request names it (JIT).`,
    );
  }
  if (match.state === "loaded") {
    const note = contextNote(match.id, match.loadedContextLength, o.contextLength);
    return {
      model: match.id === model ? model : match.id,
      via: "already-loaded",
      source,
      contextLength: match.loadedContextLength ?? null,
      waitedMs: ctx.now() - started,
      ...(note ? { note } : {}),
    };
  }
  if (list.source === "api/v0") {
    return jit(
      match.id,
      source,
      `This LM Studio (before 0.4) has no load endpoint and \`lms\` is not usable: ` +
        `${match.id} loads on its first request (JIT${ttl > 0 ? `, TTL ${ttl} s` : ""}) with ` +
        "LM Studio's own context length for it.",
    );
  }
  const contextLength = loadContextLength(ctx, o, match.maxContextLength);
  try {
    await ctx.client.loadModel(match.id, {
      signal: o.signal,
      ...(contextLength !== undefined ? { contextLength } : {}),
    });
  } catch (error: unknown) {
    if (error instanceof LmStudioError && error.kind === "not_found" && !error.code) {
      return jit(
        match.id,
        source,
        `LM Studio's load endpoint is missing (${error.message}); ${match.id} loads on its ` +
          "first request (JIT).",
      );
    }
    throw error;
  }
  return {
    model: match.id,
    via: "rest",
    source,
    contextLength: contextLength ?? null,
    waitedMs: ctx.now() - started,
    note: "LM Studio's REST API has no idle TTL: the model stays loaded until it is unloaded or " +
      "LM Studio evicts it.",
  };
}

/** The error for a model the server's list does not have, naming the ones it has. */
function notListed(
  { model, baseUrl, list }: { model: string; baseUrl: string; list: ModelList },
): ModelError {
  const available = list.models.map((m) => m.id);
  const message = list.source === "openai"
    ? unknownModelMessage({
      model,
      where: `The server at ${baseUrl}`,
      available,
      advice: "Name one of these, or add the model to that server first (Ollama: " +
        `\`ollama pull ${model}\`).`,
      adviceWhenNone: `Add the model to that server first (Ollama: \`ollama pull ${model}\`).`,
    })
    : unknownModelMessage({
      model,
      where: `LM Studio at ${baseUrl}`,
      available,
      advice: `Download it in LM Studio or with \`lms get ${model}\`.`,
    });
  return new ModelError(message, { kind: "not_found", model });
}

/** The name to send: what was asked when it names the instance exactly, else the identifier. */
function chosenName(model: string, instance: LoadedInstance): string {
  return model === instance.identifier || model === instance.modelKey ? model : instance.identifier;
}

function contextNote(id: string, loaded: number | undefined, wanted: number | undefined) {
  if (wanted === undefined || loaded === undefined || loaded >= wanted) return undefined;
  return `${id} is loaded with a context of ${loaded} tokens, less than the ${wanted} asked for; ` +
    "unload it and load it again to change that.";
}

/** One model to unload. */
export interface UnloadRequest {
  model: string;
  signal?: AbortSignal;
}

/** Unloads with `lms unload`, one instance at a time. */
export async function unloadWithLms(
  lms: Lms,
  { model, signal }: UnloadRequest,
): Promise<UnloadReport> {
  const instances = await lms.ps({ signal });
  const targets = pickTargets(
    model,
    instances.map((i) => i.identifier),
    findInstances(model, instances).map((i) => i.identifier),
  );
  if (targets.length === 0) throw notLoaded(model, instances.map((i) => i.identifier));
  for (const identifier of targets) await lms.unload(identifier, { signal });
  return { model, unloaded: targets, source: "lms" };
}

/** Unloads over LM Studio's REST API (0.4+); older servers and other servers cannot. */
export async function unloadWithRest(
  ctx: Pick<LoadContext, "client" | "ttlSeconds">,
  { model, signal }: UnloadRequest,
): Promise<UnloadReport> {
  const list = await ctx.client.listModels({ signal });
  if (list.source === "openai") {
    throw new ModelError(
      `Cannot unload "${model}": ${ctx.client.baseUrl} is not LM Studio (it has no ` +
        "model-management API, and `lms` only manages LM Studio). Unload it with that server's " +
        `own tools (Ollama: \`ollama stop ${model}\`); most such servers also unload idle models ` +
        "by themselves.",
      { kind: "unsupported", model },
    );
  }
  if (list.source === "api/v0") {
    throw new ModelError(
      `Cannot unload "${model}": LM Studio at ${ctx.client.baseUrl} is older than 0.4 and has ` +
        `no unload API, and \`lms\` is not usable here. Unload it in LM Studio's UI or with ` +
        `\`lms unload ${model}\`; models loaded on first request are unloaded after ` +
        `${ctx.ttlSeconds || "their"} idle seconds anyway. If \`lms\` is not installed: ` +
        LMS_INSTALL_HINT,
      { kind: "unsupported", model },
    );
  }
  const allIds = list.models.flatMap((m) => m.instanceIds ?? []);
  const loose = list.models.filter((m) => m.state === "loaded" && namesModel(model, m)).flatMap((
    m,
  ) => m.instanceIds?.length ? m.instanceIds : [m.id]);
  const targets = pickTargets(model, allIds, loose);
  if (targets.length === 0) {
    throw notLoaded(model, list.models.filter((m) => m.state === "loaded").map((m) => m.id));
  }
  for (const id of targets) await ctx.client.unloadModel(id, { signal });
  return { model, unloaded: targets, source: "rest-v1" };
}

/** An exact identifier (e.g. `qwen:2`) names one instance; a model name names all of them. */
function pickTargets(model: string, allIds: string[], loose: string[]): string[] {
  if (allIds.includes(model) && /:\d+$/.test(model)) return [model];
  return [...new Set(loose)];
}

function notLoaded(model: string, loaded: string[]): ModelError {
  return new ModelError(
    `"${model}" is not loaded, so there is nothing to unload. Loaded: ${listNames(loaded)}.`,
    { kind: "not_loaded", model },
  );
}
