/**
 * One chat request for a caller who asks a model once (the `chat_completion` tool, the `chat`
 * command): the model picked and made ready as {@linkcode chooseModel} does, then asked. When the
 * caller watches the progress (`watch`), the request goes to LM Studio's native chat where it fits
 * ({@linkcode GenerateOptions.native}), and a model that LM Studio 0.4+ lists as not loaded is
 * left to that request to load: its stream then tells how far the load has got ("loading
 * qwen3-8b 60%"), where a load by the bridge beforehand would be silent. The load asks for the
 * context length the bridge would load with (LMSTUDIO_CONTEXT_LENGTH, capped at the model's
 * maximum). Should LM Studio not load it for the request (just-in-time loading off), the model is
 * loaded as without progress and asked again.
 */
import { LmStudioError } from "./lmstudio_errors.ts";
import type { GenerateOptions } from "./lmstudio.ts";
import type { ChatRequest, ChatResult, GenerationStats } from "./lmstudio_types.ts";
import { findModel } from "./model_names.ts";
import { chooseModel, type ModelChoiceDeps } from "./models.ts";
import type { Settings } from "./settings.ts";

/** What {@linkcode chatOnce} needs: the client, the model manager, DEFAULT_MODEL and the context length. */
export interface ChatOnceDeps extends ModelChoiceDeps {
  client: ModelChoiceDeps["client"] & {
    chat(req: ChatRequest, o?: GenerateOptions): Promise<ChatResult & { stats?: GenerationStats }>;
  };
  settings: Pick<Settings, "defaultModel" | "defaultContextLength">;
}

/** The model a watched chat request uses, and whether it is left to the request to load. */
interface Choice {
  model: string;
  /** Set when the request loads the model: the context length to load it with. */
  loadsOnRequest?: { contextLength: number };
}

/** The model for a watched request that fits the native chat; see the module docs. */
async function choose(
  deps: ChatOnceDeps,
  explicit: string | undefined,
  signal: AbortSignal | undefined,
): Promise<Choice> {
  const list = await deps.client.listModels({ signal }).catch(() => undefined);
  // Without a list the usual choice says what is wrong.
  if (list === undefined) return { model: await chooseModel(deps, explicit, { signal }) };
  const model = await deps.client.resolveModel(explicit, {
    kind: "llm",
    defaultModel: deps.settings.defaultModel,
    signal,
    list,
  });
  const info = findModel(model, list.models);
  if (list.source === "api/v1" && info?.state === "not-loaded") {
    const fallback = deps.settings.defaultContextLength;
    const max = info.maxContextLength;
    return {
      model: info.id,
      loadsOnRequest: { contextLength: max !== undefined ? Math.min(fallback, max) : fallback },
    };
  }
  const named = explicit?.trim() || deps.settings.defaultModel?.trim();
  if (!named && info?.state !== "not-loaded") return { model };
  return { model: (await deps.models.ensureLoaded(model, { signal, list })).model };
}

/**
 * Asks the model `explicit` names (else DEFAULT_MODEL, else the first loaded LLM) once, made
 * ready first; with `o.watch`, the native chat and a load on request as the module docs say.
 */
export async function chatOnce(
  deps: ChatOnceDeps,
  explicit: string | undefined,
  req: Omit<ChatRequest, "model">,
  o: Omit<GenerateOptions, "native" | "loadContextLength"> & {
    watch: boolean;
    /** Told the model once it is chosen, before it is asked. */
    onModel?: (model: string) => void;
  },
): Promise<{ model: string; result: ChatResult & { stats?: GenerationStats } }> {
  const { watch, onModel, ...call } = o;
  const signal = call.signal;
  if (!watch) {
    const model = await chooseModel(deps, explicit, { signal });
    onModel?.(model);
    return { model, result: await deps.client.chat({ ...req, model }, call) };
  }
  const choice = await choose(deps, explicit, signal);
  onModel?.(choice.model);
  const contextLength = choice.loadsOnRequest?.contextLength;
  try {
    const result = await deps.client.chat({ ...req, model: choice.model }, {
      ...call,
      native: true,
      ...(contextLength !== undefined ? { loadContextLength: contextLength } : {}),
    });
    return { model: choice.model, result };
  } catch (error: unknown) {
    const unloaded = choice.loadsOnRequest !== undefined && error instanceof LmStudioError &&
      error.kind === "not_found" && !signal?.aborted;
    if (!unloaded) throw error;
    // LM Studio did not load it for the request: load it the usual way, then ask again.
    const model = (await deps.models.ensureLoaded(choice.model, { signal })).model;
    return { model, result: await deps.client.chat({ ...req, model }, call) };
  }
}
