/**
 * What the model manager speaks in: how a model was made ready, the loaded and downloaded models,
 * which mechanism manages models, the status of the server and `lms`, and the client calls it
 * needs; {@linkcode ModelError} for what cannot be done about a model (not downloaded, not loaded,
 * not supported by the server); and the words its reports share
 * (where model state came from, whether a failed listing means an unreadable list).
 *
 * The reports that leave the bridge as JSON (`lms … --json`, the `structuredContent` of the
 * `lms_*` tools) have a fixed set of keys: a value that is not known is `null`, never a missing
 * key, so scripts can read them without guessing.
 */
import { BridgeError } from "./errors.ts";
import type { LmStudioClient } from "./lmstudio.ts";
import { LmStudioError } from "./lmstudio_errors.ts";
import type { ModelList } from "./lmstudio_types.ts";
import type { LmsLocation } from "./lms_locate.ts";

/**
 * Where a report's model state came from, the same words in every report: `lms` (the CLI),
 * `rest-v1` / `rest-v0` (LM Studio's REST API `/api/v1/models` or `/api/v0/models`), `openai` (only
 * the OpenAI-compatible `/v1/models`, which lists ids: Ollama, llama.cpp, vLLM).
 */
export type ModelSource = "lms" | "rest-v1" | "rest-v0" | "openai";

/** How `ModelManager.ensureLoaded` made sure a model is ready. */
export interface EnsureResult {
  /** The name to send in requests (the loaded identifier when the request named it loosely). */
  model: string;
  via: "already-loaded" | "lms" | "rest" | "jit";
  /** Where the model's state was read; null when the server's model list could not be read. */
  source: ModelSource | null;
  /** The context length it is loaded (or was asked to load) with; null when not known. */
  contextLength: number | null;
  waitedMs: number;
  note?: string;
  /**
   * The server's model list read after the model was loaded (`via` "lms" or "rest"), when the
   * caller passed the list it had: a load changes what the list says about the model.
   */
  list?: ModelList;
  /** The endpoint that has the model, when the bridge talks to several (LMSTUDIO_ENDPOINTS). */
  endpoint?: string;
}

/** {@linkcode EnsureResult} as JSON: the same keys every time, `note` null when there is none. */
export interface EnsureReport extends Omit<EnsureResult, "note"> {
  note: string | null;
}

/** A loaded model as `ModelManager.currentModels` reports it. */
export interface CurrentModel {
  id: string;
  /** "llm", "vlm", "embedding" ("unknown" in the rare case a server does not say). */
  type: string;
  /**
   * Processing status from `lms ps` (idle, processingPrompt, generating, computingEmbedding;
   * "loaded" when lms does not say); "loaded" from REST.
   */
  status: string | null;
  contextLength: number | null;
  /** The endpoint it is loaded on, when the bridge talks to several (LMSTUDIO_ENDPOINTS). */
  endpoint?: string;
}

/** What `ModelManager.currentModels` reports. */
export interface CurrentModels {
  models: CurrentModel[];
  source: ModelSource;
  note: string | null;
}

/** A downloaded model as `ModelManager.downloadedModels` reports it. */
export interface DownloadedSummary {
  id: string;
  /** "llm", "vlm", "embedding"; null when the server does not say. */
  type: string | null;
  loaded: boolean | null;
  displayName: string | null;
  sizeBytes: number | null;
  maxContextLength: number | null;
  vision: boolean | null;
  toolUse: boolean | null;
  /** The endpoint that has it, when the bridge talks to several (LMSTUDIO_ENDPOINTS). */
  endpoint?: string;
}

/** What `ModelManager.downloadedModels` reports. */
export interface DownloadedModels {
  models: DownloadedSummary[];
  source: ModelSource;
  note: string | null;
}

/** What `ModelManager.unload` reports. */
export interface UnloadReport {
  /** The name asked for. */
  model: string;
  /** The instance identifiers unloaded. */
  unloaded: string[];
  source: "lms" | "rest-v1";
  /** The endpoint it was unloaded on, when the bridge talks to several (LMSTUDIO_ENDPOINTS). */
  endpoint?: string;
}

/**
 * Which mechanism manages models for the configured server: `lms`, LM Studio's REST API, loading
 * on first request (`jit`), or nothing while the server does not answer (`none`).
 */
export type Management = "lms" | "rest" | "jit" | "none";

/** The client calls the manager uses. */
export type ModelClient = Pick<
  LmStudioClient,
  "baseUrl" | "listModels" | "loadModel" | "unloadModel" | "health"
>;

/** What `ModelManager.status` reports. */
export interface ServerStatusReport {
  baseUrl: string;
  reachable: boolean;
  latencyMs: number;
  modelCount: number | null;
  error: string | null;
  lms: {
    installed: boolean;
    path: string | null;
    foundVia: LmsLocation["via"] | null;
    server: { running: boolean; port: number | null } | null;
    error: string | null;
  };
  management: Management;
  managementReason: string;
  /** Where model state is read from; null while the server does not answer. */
  source: ModelSource | null;
  ttlSeconds: number;
  /** The context length loads ask for when the caller names none; null: LM Studio's default. */
  defaultContextLength: number | null;
  /**
   * With several endpoints (LMSTUDIO_ENDPOINTS): each one's state; the fields above are then
   * those of the endpoint `lms` manages, else of the first.
   */
  endpoints?: EndpointStatus[];
}

/** One endpoint's part of a {@linkcode ServerStatusReport}. */
export interface EndpointStatus {
  name: string;
  baseUrl: string;
  reachable: boolean;
  latencyMs: number;
  modelCount: number | null;
  error: string | null;
  management: Management;
  managementReason: string;
  source: ModelSource | null;
}

/** Why something about models cannot be done; the message says what to do. */
export class ModelError extends BridgeError<"not_found" | "not_loaded" | "unsupported"> {
  override name = "ModelError";
  readonly model: string;
  constructor(
    message: string,
    details: { kind: ModelError["kind"]; model: string; cause?: unknown },
  ) {
    super(details.kind, message, details);
    this.model = details.model;
  }
}

/**
 * Whether a failed model listing means "the server answers but gives no readable model list"
 * (404, another HTTP error, a reply that is not a model list), as opposed to a server that does
 * not answer, refuses the token, or a cancelled call.
 */
export function modelListUnreadable(error: unknown): boolean {
  return error instanceof LmStudioError &&
    (error.kind === "not_found" || error.kind === "http" || error.kind === "bad_response");
}

/** Where a report came from, in words: "lms", "LM Studio's REST API", "/v1/models". */
export function sourceLabel(source: ModelSource | null): string {
  switch (source) {
    case "lms":
      return "lms";
    case "rest-v1":
      return "LM Studio's REST API";
    case "rest-v0":
      return "LM Studio's REST API (v0)";
    case "openai":
      return "/v1/models";
    case null:
      return "no model list";
  }
}
