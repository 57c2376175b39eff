/**
 * Making one model ready to answer, the two ways the manager has: with `lms` (use a loaded
 * instance, wait for one that is loading, else `lms load` the exact downloaded key with a TTL) and
 * with LM Studio's REST API (state from the model list, load over `/api/v1`, or rely on loading on
 * first request where the server cannot load on demand). Which way applies is the manager's call.
 */
import { LmStudioError } from "./lmstudio_errors.ts";
import type { Lms } from "./lms.ts";
import { type LoadedInstance, statusAction } from "./lms_output.ts";
import { listNames, ModelError } from "./model_errors.ts";
import { findInstances, findModel, sameModel } from "./model_names.ts";
import type { EnsureResult, ModelClient } from "./model_types.ts";

/** What loading needs from the manager: its client, `lms`, clock and limits. */
export interface LoadContext {
  client: ModelClient;
  lms: Lms;
  now: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Idle TTL in seconds for a request that names none; 0 means none. */
  ttlSeconds: number;
  /** Longest wait for an instance that is still loading. */
  loadWaitMs: number;
  /** Interval between `lms ps` polls while waiting. */
  pollMs: number;
}

/** One model to make ready. */
export interface LoadRequest {
  model: string;
  /** When the manager started on it (by the context's clock), for `waitedMs`. */
  started: number;
  signal?: AbortSignal;
  contextLength?: number;
  /** Idle TTL in seconds for this load; default: the context's. */
  ttlSeconds?: number;
}

/** Makes `model` ready with `lms`; failures of `lms` itself are `LmsError`s the caller may fall back on. */
export async function ensureWithLms(ctx: LoadContext, o: LoadRequest): Promise<EnsureResult> {
  const { model, started } = o;
  const deadline = started + ctx.loadWaitMs;
  let waited = false;
  for (;;) {
    const matches = findInstances(model, await ctx.lms.ps({ signal: o.signal }));
    const usable = matches.find((i) => statusAction(i.status) === "use");
    if (usable) {
      const note = contextNote(usable.identifier, usable.contextLength, o.contextLength);
      return {
        model: chosenName(model, usable),
        via: "already-loaded",
        waitedMs: ctx.now() - started,
        ...(note ? { note } : waited ? { note: `Waited for ${usable.identifier} to load.` } : {}),
      };
    }
    const loading = matches.find((i) => statusAction(i.status) === "wait");
    if (!loading) break;
    if (ctx.now() >= deadline) {
      throw new ModelError(
        `${loading.identifier} is still loading after ${
          Math.round((ctx.now() - started) / 1000)
        } s. Check LM Studio (\`lms ps\`); a very large model may need more time, or ` +
          "unload it (`lms unload " + loading.identifier + "`) and try again.",
        { kind: "timeout", model },
      );
    }
    waited = true;
    await ctx.sleep(ctx.pollMs, o.signal);
  }
  const key = await downloadedKey(ctx.lms, o);
  const ttlSeconds = o.ttlSeconds ?? ctx.ttlSeconds;
  const loaded = await ctx.lms.load(key, {
    signal: o.signal,
    ttlSeconds,
    ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
  });
  return {
    model: loaded.identifier ?? (key === model ? model : key),
    via: "lms",
    waitedMs: ctx.now() - started,
    ...(ttlSeconds > 0 ? {} : { note: "Loaded without a TTL: it stays until unloaded." }),
  };
}

/** The exact model key to give `lms load`, so its fuzzy matching never picks another model. */
async function downloadedKey(
  lms: Lms,
  { model, signal }: Pick<LoadRequest, "model" | "signal">,
): Promise<string> {
  const downloaded = await lms.ls({ signal });
  const exact = downloaded.find((m) => m.modelKey === model) ??
    downloaded.find((m) => sameModel(model, m.modelKey));
  if (exact) return exact.modelKey;
  throw new ModelError(
    `"${model}" is not a downloaded model. Downloaded: ${
      listNames(downloaded.map((m) => m.modelKey))
    }. Download it with \`lms get ${model}\`, or name one of these.`,
    { kind: "not_found", model },
  );
}

/** Makes `model` ready over LM Studio's REST API, or says it will load on its first request. */
export async function ensureWithRest(
  ctx: Pick<LoadContext, "client" | "now" | "ttlSeconds">,
  o: LoadRequest,
): Promise<EnsureResult> {
  const { model, started } = o;
  const list = await ctx.client.listModels({ signal: o.signal });
  const match = findModel(model, list.models);
  const ttl = o.ttlSeconds ?? ctx.ttlSeconds;
  if (list.source === "openai") {
    const unlisted = match
      ? ""
      : ` "${model}" is not in its model list (${
        listNames(list.models.map((m) => m.id))
      }), so the request may fail.`;
    return {
      model: match?.id ?? model,
      via: "jit",
      waitedMs: ctx.now() - started,
      note: `${ctx.client.baseUrl} has no model-management API (Ollama, llama.cpp, vLLM...): ` +
        `the model loads when a request names it (JIT).${unlisted}`,
    };
  }
  if (!match) {
    throw new ModelError(
      `LM Studio at ${ctx.client.baseUrl} has no model "${model}". Models: ${
        listNames(list.models.map((m) => m.id))
      }. Download it in LM Studio or with \`lms get ${model}\`.`,
      { kind: "not_found", model },
    );
  }
  if (match.state === "loaded") {
    const note = contextNote(match.id, match.loadedContextLength, o.contextLength);
    return {
      model: match.id === model ? model : match.id,
      via: "already-loaded",
      waitedMs: ctx.now() - started,
      ...(note ? { note } : {}),
    };
  }
  if (list.source === "api/v0") {
    return {
      model: match.id,
      via: "jit",
      waitedMs: ctx.now() - started,
      note: `This LM Studio (before 0.4) has no load endpoint and \`lms\` is not usable: ` +
        `${match.id} loads on its first request (JIT${ttl > 0 ? `, TTL ${ttl} s` : ""}).`,
    };
  }
  try {
    await ctx.client.loadModel(match.id, {
      signal: o.signal,
      ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
    });
  } catch (error: unknown) {
    if (error instanceof LmStudioError && error.kind === "not_found" && !error.code) {
      return {
        model: match.id,
        via: "jit",
        waitedMs: ctx.now() - started,
        note: `LM Studio's load endpoint is missing (${error.message}); ${match.id} loads on its ` +
          "first request (JIT).",
      };
    }
    throw error;
  }
  return {
    model: match.id,
    via: "rest",
    waitedMs: ctx.now() - started,
    note: "Loaded over LM Studio's REST API, which has no idle TTL: it stays loaded until " +
      "unloaded (lms_unload_model) or LM Studio evicts it.",
  };
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
