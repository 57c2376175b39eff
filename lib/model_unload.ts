/**
 * Unloading a model, with `lms` or LM Studio's REST API: every loaded instance of the model, or
 * only the one an exact instance identifier (`qwen3-8b:2`) names; a model that is not loaded is a
 * {@linkcode ModelError} naming the ones that are.
 */
import { type Lms, LMS_INSTALL_HINT } from "./lms.ts";
import { listNames, ModelError } from "./model_errors.ts";
import { findInstances, namesModel } from "./model_names.ts";
import type { ModelClient } from "./model_types.ts";

/** One model to unload. */
export interface UnloadRequest {
  model: string;
  signal?: AbortSignal;
}

/** Unloads with `lms unload`, one instance at a time. */
export async function unloadWithLms(
  lms: Lms,
  { model, signal }: UnloadRequest,
): Promise<{ unloaded: string[]; via: "lms" }> {
  const instances = await lms.ps({ signal });
  const targets = pickTargets(
    model,
    instances.map((i) => i.identifier),
    findInstances(model, instances).map((i) => i.identifier),
  );
  if (targets.length === 0) throw notLoaded(model, instances.map((i) => i.identifier));
  for (const identifier of targets) await lms.unload(identifier, { signal });
  return { unloaded: targets, via: "lms" };
}

/** Unloads over LM Studio's REST API (0.4+); older servers and other servers cannot. */
export async function unloadWithRest(
  ctx: { client: ModelClient; ttlSeconds: number },
  { model, signal }: UnloadRequest,
): Promise<{ unloaded: string[]; via: "rest" }> {
  const list = await ctx.client.listModels({ signal });
  if (list.source !== "api/v1") {
    throw new ModelError(
      `Cannot unload "${model}": ${ctx.client.baseUrl} has no unload API (${
        list.source === "api/v0" ? "LM Studio before 0.4" : "not LM Studio's REST API"
      }) and \`lms\` is not usable. ${LMS_INSTALL_HINT} Or unload it in LM Studio's UI; ` +
        `JIT-loaded models are unloaded after ${ctx.ttlSeconds || "their"} idle seconds anyway.`,
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
  return { unloaded: targets, via: "rest" };
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
