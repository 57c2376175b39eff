/**
 * The model lists of LM Studio's REST API (`/api/v1/models` on LM Studio 0.4+, `/api/v0/models`
 * before) and how they enrich the plain `/v1/models` id list into {@linkcode ModelList}: type,
 * loaded state, context lengths and capabilities, with notes on what could not be known.
 */
import { z } from "zod";
import { LmStudioError } from "./lmstudio_errors.ts";
import type { ModelInfo, ModelList } from "./lmstudio_types.ts";

/** An `/api/v0/models` reply. */
export const V0ModelsWire = z.looseObject({
  data: z.array(z.looseObject({
    id: z.string(),
    type: z.string().nullish(),
    publisher: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.string().nullish(),
    state: z.string().nullish(),
    max_context_length: z.number().nullish(),
    loaded_context_length: z.number().nullish(),
    capabilities: z.unknown().optional(),
  })),
});

/** An `/api/v1/models` reply. */
export const V1ModelsWire = z.looseObject({
  models: z.array(z.looseObject({
    type: z.string().nullish(),
    key: z.string().nullish(),
    id: z.string().nullish(),
    publisher: z.string().nullish(),
    architecture: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.unknown().optional(),
    max_context_length: z.number().nullish(),
    loaded_instances: z.array(z.looseObject({
      id: z.string().nullish(),
      config: z.looseObject({ context_length: z.number().nullish() }).nullish(),
    })).nullish(),
    capabilities: z.looseObject({
      vision: z.boolean().nullish(),
      trained_for_tool_use: z.boolean().nullish(),
      reasoning: z.unknown().optional(),
    }).nullish(),
  })),
});

const QuantizationWire = z.looseObject({ name: z.string() });

/**
 * The models of a server: the ids of `/v1/models` (`ids`) with the details of the REST list that
 * answered (`v1` preferred over `v0`); without one, types guessed from the ids and a note why.
 */
export function mergeModelLists(o: {
  ids: string[];
  v1: PromiseSettledResult<z.infer<typeof V1ModelsWire>>;
  v0: PromiseSettledResult<z.infer<typeof V0ModelsWire>>;
}): ModelList {
  const { ids, v1, v0 } = o;
  const notes: string[] = [];
  let rest: ModelInfo[] | undefined;
  let source: ModelList["source"] = "openai";
  if (v1.status === "fulfilled") {
    rest = v1.value.models.flatMap((m) => fromV1(m));
    source = "api/v1";
  } else if (v0.status === "fulfilled") {
    rest = v0.value.data.map(fromV0);
    source = "api/v0";
  }
  if (rest === undefined) {
    const reasons = [v1, v0].map((r) =>
      r.status === "rejected" &&
        !(r.reason instanceof LmStudioError && r.reason.kind === "not_found")
        ? (r.reason instanceof Error ? r.reason.message : String(r.reason))
        : undefined
    ).filter((r): r is string => r !== undefined);
    if (reasons.length > 0) {
      notes.push(`Could not read LM Studio's REST model list: ${reasons[0]}`);
    } else {
      notes.push(
        "This server has no LM Studio REST API (/api/v1/models and /api/v0/models answered " +
          "404), so loaded state, context lengths and capabilities are unknown; model types " +
          'are guessed from their ids (ids containing "embed" are taken as embedding models).',
      );
    }
    return {
      models: ids.map((id) => ({ id, type: /embed/i.test(id) ? "embedding" : "unknown" })),
      source,
      notes,
    };
  }
  const byId = new Map(rest.map((m) => [m.id, m]));
  const models: ModelInfo[] = ids.map((id) =>
    byId.get(id) ?? { id, type: /embed/i.test(id) ? "embedding" : "unknown" }
  );
  const listed = new Set(ids);
  for (const m of rest) if (!listed.has(m.id)) models.push(m);
  const unknown = ids.filter((id) => !byId.has(id));
  if (unknown.length > 0) {
    notes.push(`No details from ${source} for: ${unknown.join(", ")}.`);
  }
  return { models, source, notes };
}

function fromV1(m: z.infer<typeof V1ModelsWire>["models"][number]): ModelInfo[] {
  const id = m.key ?? m.id;
  if (!id) return [];
  const instances = m.loaded_instances ?? [];
  const vision = m.capabilities?.vision ?? undefined;
  const type: ModelInfo["type"] = m.type === "embedding" || m.type === "embeddings"
    ? "embedding"
    : m.type === "vlm" || (m.type === "llm" && vision === true)
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const reasoning = m.capabilities?.reasoning;
  const quantization = typeof m.quantization === "string"
    ? m.quantization
    : QuantizationWire.safeParse(m.quantization).data?.name ?? undefined;
  const loadedContext = instances[0]?.config?.context_length ?? undefined;
  const instanceIds = instances.map((i) => i.id).filter((i): i is string => !!i);
  return [{
    id,
    type,
    state: instances.length > 0 ? "loaded" : "not-loaded",
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(loadedContext ? { loadedContextLength: loadedContext } : {}),
    ...(typeof vision === "boolean" ? { vision } : type === "vlm" ? { vision: true } : {}),
    ...(typeof m.capabilities?.trained_for_tool_use === "boolean"
      ? { toolUse: m.capabilities.trained_for_tool_use }
      : {}),
    ...(reasoning !== undefined && reasoning !== null
      ? { reasoning: typeof reasoning === "boolean" ? reasoning : true }
      : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...((m.architecture ?? m.arch) ? { arch: (m.architecture ?? m.arch)! } : {}),
    ...(quantization ? { quantization } : {}),
    ...(instanceIds.length > 0 ? { instanceIds } : {}),
  }];
}

function fromV0(m: z.infer<typeof V0ModelsWire>["data"][number]): ModelInfo {
  const type: ModelInfo["type"] = m.type === "embeddings" || m.type === "embedding"
    ? "embedding"
    : m.type === "vlm"
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const capabilities = z.array(z.string()).safeParse(m.capabilities).data;
  const state = m.state === "loaded" ? "loaded" : m.state ? "not-loaded" : undefined;
  return {
    id: m.id,
    type,
    ...(state ? { state } : {}),
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(m.loaded_context_length ? { loadedContextLength: m.loaded_context_length } : {}),
    ...(type === "vlm" ? { vision: true } : type === "llm" ? { vision: false } : {}),
    ...(capabilities ? { toolUse: capabilities.includes("tool_use") } : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...(m.arch ? { arch: m.arch } : {}),
    ...(m.quantization ? { quantization: m.quantization } : {}),
  };
}
