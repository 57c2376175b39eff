/**
 * Whether a model name someone gave means a model the server has: case, an instance suffix
 * (`qwen3-8b:2`), Ollama's default tag (`llama3` is `llama3:latest`) and a publisher prefix on only
 * one side (`qwen/qwen3-8b`) do not matter. Used to find the loaded instances (`lms ps`) or the
 * listed model (REST, `/v1/models`) that a loose name stands for.
 */
import type { LoadedInstance } from "./lms_output.ts";
import type { ModelInfo } from "./lmstudio_types.ts";

/** Lower-case name without an instance suffix such as `:2` or Ollama's default tag `:latest`. */
export function normalizeModelName(name: string): string {
  return name.trim().toLowerCase().replace(/:(\d+|latest)$/, "");
}

/**
 * Whether `requested` names `candidate` (an identifier or model key): case-insensitive, ignoring
 * instance suffixes (`qwen3-8b:2`) and Ollama's `:latest` tag, and ignoring a publisher prefix
 * present on only one side (`qwen/qwen3-8b` matches `qwen3-8b`). Two different publishers never
 * match.
 */
export function sameModel(requested: string, candidate: string): boolean {
  const a = normalizeModelName(requested);
  const b = normalizeModelName(candidate);
  if (a === "" || b === "") return false;
  if (a === b) return true;
  const aSlash = a.includes("/");
  const bSlash = b.includes("/");
  if (aSlash === bSlash) return false;
  const last = (s: string) => s.slice(s.lastIndexOf("/") + 1);
  return last(a) === last(b);
}

/**
 * The loaded instances that are `model`, exact identifier matches first. A variant key
 * (`qwen/qwen3-8b@q8_0`) is matched against the variant an instance says it loaded.
 */
export function findInstances(model: string, instances: LoadedInstance[]): LoadedInstance[] {
  const exact = instances.filter((i) => i.identifier === model);
  const rest = instances.filter((i) =>
    i.identifier !== model &&
    (sameModel(model, i.identifier) || sameModel(model, i.modelKey) ||
      (i.variant !== undefined && sameModel(model, i.variant)))
  );
  return [...exact, ...rest];
}

/** The REST model that is `model`: exact id first, then a loose name match or instance id. */
export function findModel(model: string, models: ModelInfo[]): ModelInfo | undefined {
  return models.find((m) => m.id === model) ??
    models.find((m) => (m.instanceIds ?? []).includes(model)) ??
    models.find((m) => namesModel(model, m));
}

/** Whether `model` loosely names the REST model `info`: its id or one of its instance ids. */
export function namesModel(model: string, info: ModelInfo): boolean {
  return sameModel(model, info.id) || (info.instanceIds ?? []).some((i) => sameModel(model, i));
}
