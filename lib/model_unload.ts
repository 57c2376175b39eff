/**
 * Unloading a model, with `lms` or LM Studio's REST API: every loaded instance of the model, or
 * only the one an exact instance identifier (`qwen3-8b:2`) names; a model that is not loaded is a
 * {@linkcode ModelError} naming the ones that are.
 */
import { type Lms, LMS_INSTALL_HINT } from "./lms.ts";
import { ModelError } from "./model_errors.ts";
import { findInstances, namesModel } from "./model_names.ts";
import type { ModelClient, UnloadReport } from "./model_types.ts";
import { listNames } from "./text.ts";

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
  ctx: { client: ModelClient; ttlSeconds: number },
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
