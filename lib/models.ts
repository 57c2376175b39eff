/**
 * Model state and loading. Picks the best way the machine offers, in this order:
 *
 * 1. `lms` (LM Studio's CLI), when it is installed and manages the server the bridge talks to
 *    (loopback base URL on the port `lms server status` reports): `lms ps` for state (every
 *    instance it lists is loaded, busy or not), `lms load --ttl` to load.
 * 2. LM Studio's REST API: `/api/v1/models` (0.4+) for state and load/unload, `/api/v0/models`
 *    (0.3.6+) for state only.
 * 3. Just-in-time loading: servers without either (Ollama, llama.cpp, old LM Studio) load a model
 *    when a request names it; the callers send `ttl` with each request. A model the server's list
 *    does not have is an error; only a server without a readable list is trusted unchecked.
 *
 * Loads ask for the caller's context length, else
 * {@linkcode ModelManagerOptions.defaultContextLength}. Reports use the same
 * {@linkcode ModelSource} words and keep every key (null when unknown).
 *
 * {@linkcode ModelManager.ensureLoaded} is called before every request that names a model, so it
 * is cheap when nothing changed: results are cached briefly and concurrent calls share one load.
 *
 * This module chooses and caches; whether `lms` applies is decided in lib/lms.ts, and the ways
 * themselves are in lib/model_load.ts. {@linkcode chooseModel} picks the model of a generation
 * call (`chat`, the LM Studio tools) and ensures it through the manager.
 */
import { raceAbort } from "./abort.ts";
import { Lms, type LmsDecision, lmsManages } from "./lms.ts";
import { LmsError } from "./lms_errors.ts";
import type { LmStudioClient } from "./lmstudio.ts";
import type { ModelInfo, ModelList } from "./lmstudio_types.ts";
import type { DownloadedModel, LoadedInstance } from "./lms_output.ts";
import { log as rootLog, type Logger } from "./log.ts";
import {
  ensureWithLms,
  ensureWithRest,
  listSource,
  type LoadContext,
  unloadWithLms,
  unloadWithRest,
} from "./model_load.ts";
import { normalizeModelName } from "./model_names.ts";
import {
  type CurrentModel,
  type CurrentModels,
  type DownloadedModels,
  type DownloadedSummary,
  type EnsureReport,
  type EnsureResult,
  type Management,
  type ModelClient,
  modelListUnreadable,
  type ModelSource,
  type ServerStatusReport,
  type UnloadReport,
} from "./model_types.ts";
import { DEFAULT_MODEL_TTL_SECONDS, type Settings } from "./settings.ts";
import { errorMessage } from "./errors.ts";
import { listNames } from "./text.ts";

/** Options of {@linkcode ModelManager}. */
export interface ModelManagerOptions {
  client: ModelClient;
  /** `lms`; default: a new {@linkcode Lms} with production defaults. */
  lms?: Lms;
  /**
   * Idle TTL for loads and JIT requests, in seconds; 0 means none. Default
   * {@linkcode DEFAULT_MODEL_TTL_SECONDS} (600).
   */
  ttlSeconds?: number;
  /**
   * Context length (tokens) loads ask for when the caller names none, through `lms`
   * (`--context-length`) and the REST API (`context_length`); capped at the model's maximum when
   * that is known. The app passes LMSTUDIO_CONTEXT_LENGTH, the window the bridge budgets for.
   * Default: none, so LM Studio picks (often 4096).
   */
  defaultContextLength?: number;
  log?: Logger;
  now?: () => number;
  /** How long an ensured model is trusted without checking again; default 5000 ms. */
  cacheMs?: number;
  /** How long the decision "use lms or not" holds; default 60 s. */
  decisionMs?: number;
}

interface CallOpts {
  signal?: AbortSignal;
}

interface EnsureOpts extends CallOpts {
  contextLength?: number;
  ttlSeconds?: number;
  /** The server's model list as the caller has it. */
  list?: ModelList;
}

/** Model state and loading over `lms`, the REST API or JIT; see the module doc. */
export class ModelManager {
  readonly #client: ModelClient;
  readonly #lms: Lms;
  readonly #ttl: number;
  readonly #defaultContextLength: number | undefined;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #decisionMs: number;
  /** What loading and unloading need: client, `lms`, clock and TTL. */
  readonly #loading: LoadContext;
  readonly #ensured = new Map<string, { at: number; result: EnsureResult }>();
  readonly #inflight = new Map<string, SharedEnsure>();
  #decision: LmsDecision & { at: number } | undefined;
  #deciding: Promise<LmsDecision> | undefined;

  constructor(options: ModelManagerOptions) {
    this.#client = options.client;
    this.#lms = options.lms ?? new Lms();
    this.#ttl = options.ttlSeconds ?? DEFAULT_MODEL_TTL_SECONDS;
    this.#defaultContextLength = options.defaultContextLength;
    this.#log = options.log ?? rootLog.child("models");
    this.#now = options.now ?? (() => Date.now());
    this.#cacheMs = options.cacheMs ?? 5000;
    this.#decisionMs = options.decisionMs ?? 60_000;
    this.#loading = {
      client: this.#client,
      lms: this.#lms,
      now: this.#now,
      ttlSeconds: this.#ttl,
      ...(this.#defaultContextLength !== undefined
        ? { defaultContextLength: this.#defaultContextLength }
        : {}),
    };
  }

  /** The idle TTL (seconds) requests should carry so JIT-loaded models stay between rounds; 0: none. */
  get ttlSeconds(): number {
    return this.#ttl;
  }

  /** The context length loads ask for when the caller names none; undefined: LM Studio's. */
  get defaultContextLength(): number | undefined {
    return this.#defaultContextLength;
  }

  /** Forgets cached state (after a load or unload made elsewhere). */
  invalidate(): void {
    this.#ensured.clear();
    this.#decision = undefined;
  }

  /**
   * Makes sure `model` is loaded, or will be loaded on first use (JIT). Idempotent; within
   * `cacheMs` of a success it returns at once without any subprocess or request, and concurrent
   * calls for the same model share one check/load. Each caller's `signal` ends only its own wait:
   * the shared load goes on for the others, and is cancelled when every caller has gone.
   *
   * A caller that has the server's model list passes it (`list`), so the state is not read again
   * over REST; the result then carries a fresh list only when a model was actually loaded.
   */
  ensureLoaded(
    model: string,
    o: { signal?: AbortSignal; contextLength?: number; list?: ModelList } = {},
  ): Promise<EnsureResult> {
    const key = `${normalizeModelName(model)}|${o.contextLength ?? ""}`;
    const hit = this.#ensured.get(key);
    if (hit && this.#now() - hit.at < this.#cacheMs) {
      const { result } = hit;
      return Promise.resolve(
        result.via === "jit" ? { ...result, waitedMs: 0 } : {
          model: result.model,
          via: "already-loaded",
          source: result.source,
          contextLength: result.contextLength,
          waitedMs: 0,
        },
      );
    }
    let shared = this.#inflight.get(key);
    if (shared === undefined) {
      const controller = new AbortController();
      const entry: SharedEnsure = {
        controller,
        waiting: 0,
        promise: this.#ensure(model, { ...o, signal: controller.signal }).then(async (result) => {
          this.#ensured.set(key, { at: this.#now(), result });
          if (o.list === undefined || (result.via !== "lms" && result.via !== "rest")) {
            return result;
          }
          const list = await this.#freshList(controller.signal);
          return list ? { ...result, list } : result;
        }).finally(() => {
          if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
        }),
      };
      this.#inflight.set(key, entry);
      shared = entry;
    }
    return this.#join(key, shared, o.signal);
  }

  /** The model list after a load, or undefined when it cannot be read (the caller reads it then). */
  async #freshList(signal: AbortSignal): Promise<ModelList | undefined> {
    try {
      return await this.#client.listModels({ signal });
    } catch (error: unknown) {
      this.#log.debug("model list not read after the load", { error: errorMessage(error) });
      return undefined;
    }
  }

  /** Waits for a shared ensure until it settles or `signal` aborts; the last caller to go cancels it. */
  async #join(key: string, shared: SharedEnsure, signal: AbortSignal | undefined) {
    shared.waiting++;
    try {
      return await raceAbort(shared.promise, signal);
    } finally {
      shared.waiting--;
      if (shared.waiting === 0 && signal?.aborted) {
        // Nobody waits any more: stop the work, and let the next caller start afresh.
        if (this.#inflight.get(key) === shared) this.#inflight.delete(key);
        shared.controller.abort(signal.reason);
      }
    }
  }

  /**
   * Loads `model` on request (the `lms_load_model` tool): like {@linkcode ensureLoaded} but never
   * answered from the cache, and with an optional TTL of its own.
   */
  async load(model: string, o: EnsureOpts = {}): Promise<EnsureResult> {
    this.invalidate();
    const result = await this.#ensure(model, o);
    this.invalidate();
    const unapplied = notApplied(result, o);
    if (unapplied === undefined) return result;
    return { ...result, note: result.note ? `${result.note} ${unapplied}` : unapplied };
  }

  /**
   * Which mechanism manages models for the configured server, why, and where model state comes
   * from: what the calls will actually do, not just whether `lms` is installed.
   */
  async management(
    o: CallOpts = {},
  ): Promise<{ via: Management; reason: string; source: ModelSource | null }> {
    const decision = await this.#lmsDecision(o.signal);
    if (decision.useLms) return { via: "lms", reason: decision.reason, source: "lms" };
    try {
      const list = await this.#client.listModels({ signal: o.signal });
      const source = listSource(list.source);
      if (list.source === "api/v1") {
        return {
          via: "rest",
          reason: `${decision.reason} LM Studio's REST API (/api/v1) answers.`,
          source,
        };
      }
      return {
        via: "jit",
        reason: `${decision.reason} ${
          list.source === "api/v0"
            ? "LM Studio before 0.4 has no load endpoint."
            : "The server has no model-management API."
        }`,
        source,
      };
    } catch (error: unknown) {
      if (error instanceof DOMException && error.name === "AbortError") throw error;
      if (modelListUnreadable(error)) {
        return {
          via: "jit",
          reason: `${decision.reason} The server gave no readable model list ` +
            `(${errorMessage(error)}).`,
          source: null,
        };
      }
      return {
        via: "none",
        reason: `${decision.reason} The server did not answer (${errorMessage(error)}), so no ` +
          "model can be loaded until it does.",
        source: null,
      };
    }
  }

  async #ensure(model: string, o: EnsureOpts): Promise<EnsureResult> {
    const request = { ...o, model, started: this.#now() };
    if ((await this.#lmsDecision(o.signal)).useLms) {
      try {
        return await ensureWithLms(this.#loading, request);
      } catch (error: unknown) {
        if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
        this.#log.warn("lms unusable, trying LM Studio's REST API", { error: error.message });
        this.#decision = { at: this.#now(), useLms: false, reason: error.message };
      }
    }
    return await ensureWithRest(this.#loading, request);
  }

  /** Whether `lms` applies: installed and managing the same (local) server as the base URL. */
  #lmsDecision(signal?: AbortSignal): Promise<LmsDecision> {
    const cached = this.#decision;
    if (cached && this.#now() - cached.at < this.#decisionMs) return Promise.resolve(cached);
    // Concurrent callers share one `lms server status` (bounded by its own 15 s timeout, so
    // one caller's cancellation does not fail the others); a cancelled caller stops waiting.
    this.#deciding ??= this.#decide().finally(() => this.#deciding = undefined);
    return signal ? raceAbort(this.#deciding, signal) : this.#deciding;
  }

  async #decide(): Promise<LmsDecision> {
    const decision = await lmsManages({ lms: this.#lms, baseUrl: this.#client.baseUrl });
    this.#decision = { at: this.#now(), ...decision };
    this.#log.debug("model management", { useLms: decision.useLms, reason: decision.reason });
    return this.#decision;
  }

  /**
   * The loaded models, from LM Studio's REST state or `lms ps`; never by asking a model. REST comes
   * first (no subprocess) unless `prefer: "lms"` asks for `lms ps`, which also tells the
   * processing status (idle, processingPrompt, generating, computingEmbedding) when `lms` applies.
   */
  async currentModels(
    o: CallOpts & { prefer?: "rest" | "lms" } = {},
  ): Promise<CurrentModels> {
    if (o.prefer === "lms" && (await this.#lmsDecision(o.signal)).useLms) {
      try {
        return {
          models: (await this.#lms.ps({ signal: o.signal })).map(toCurrent),
          source: "lms",
          note: null,
        };
      } catch (error: unknown) {
        if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
      }
    }
    let restError: unknown;
    try {
      const list = await this.#client.listModels({ signal: o.signal });
      if (list.source !== "openai") {
        return {
          models: list.models.filter((m) => m.state === "loaded").map((m) => ({
            id: m.id,
            type: m.type,
            status: "loaded",
            contextLength: m.loadedContextLength ?? null,
          })),
          source: listSource(list.source),
          note: null,
        };
      }
      if (!(await this.#lmsDecision(o.signal)).useLms) {
        return {
          models: [],
          source: "openai",
          note: `${this.#client.baseUrl} does not say which models are loaded (no LM Studio REST ` +
            `API); it loads them on demand (JIT). It serves: ${
              listNames(list.models.map((m) => m.id))
            }.`,
        };
      }
    } catch (error: unknown) {
      if (error instanceof DOMException && error.name === "AbortError") throw error;
      restError = error;
      if (!(await this.#lmsDecision(o.signal)).useLms) throw error;
    }
    const instances = await this.#lms.ps({ signal: o.signal });
    return {
      models: instances.map(toCurrent),
      source: "lms",
      note: restError ? `LM Studio's HTTP API did not answer: ${errorMessage(restError)}` : null,
    };
  }

  /**
   * Unloads every loaded instance of `model` (only the named one when it carries an instance
   * suffix such as `:2`), with `lms` or the REST API.
   */
  async unload(model: string, o: CallOpts = {}): Promise<UnloadReport> {
    this.invalidate();
    try {
      if ((await this.#lmsDecision(o.signal)).useLms) {
        try {
          return await unloadWithLms(this.#lms, { model, signal: o.signal });
        } catch (error: unknown) {
          if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
        }
      }
      return await unloadWithRest(this.#loading, { model, signal: o.signal });
    } finally {
      this.invalidate();
    }
  }

  /** Downloaded models from `lms ls`, else the REST model list, else `/v1/models`. */
  async downloadedModels(
    o: CallOpts & { kind?: "llm" | "embedding" } = {},
  ): Promise<DownloadedModels> {
    if ((await this.#lmsDecision(o.signal)).useLms) {
      try {
        const [downloaded, loaded] = await Promise.all([
          this.#lms.ls({ signal: o.signal, ...(o.kind ? { kind: o.kind } : {}) }),
          this.#lms.ps({ signal: o.signal }),
        ]);
        return {
          models: downloaded.map((m) => fromLs(m, loaded)),
          source: "lms",
          note: null,
        };
      } catch (error: unknown) {
        if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
      }
    }
    const list = await this.#client.listModels({ signal: o.signal });
    const wanted = list.models.filter((m) =>
      o.kind === undefined ||
      (o.kind === "embedding" ? m.type === "embedding" : m.type !== "embedding")
    );
    return {
      models: wanted.map((m) => ({
        id: m.id,
        type: knownType(m.type),
        loaded: m.state ? m.state === "loaded" : null,
        displayName: null,
        sizeBytes: null,
        maxContextLength: m.maxContextLength ?? null,
        vision: m.vision ?? null,
        toolUse: m.toolUse ?? null,
      })),
      source: listSource(list.source),
      note: list.source === "openai"
        ? ("This server lists the models it can serve; it has no separate download list. " +
          (list.notes[0] ?? "")).trim()
        : null,
    };
  }

  /** Reachability of the server, whether `lms` is installed and what it says, and who manages models. */
  async status(o: CallOpts = {}): Promise<ServerStatusReport> {
    // A report reads `lms` afresh, once: the decision made here is the one `management` uses.
    this.#decision = undefined;
    const [health, location, decision] = await Promise.all([
      this.#client.health({ signal: o.signal, timeoutMs: 5000 }),
      this.#lms.locate(),
      this.#lmsDecision(o.signal),
    ]);
    let server = decision.server;
    let lmsError = decision.serverError ?? null;
    if (location && server === undefined && lmsError === null) {
      // `lms` does not apply to this base URL, so the decision did not ask it; the report does.
      try {
        server = await this.#lms.serverStatus({ signal: o.signal, timeoutMs: 15_000 });
      } catch (error: unknown) {
        lmsError = errorMessage(error);
      }
    }
    const lmsServer = server ? { running: server.running, port: server.port ?? null } : null;
    const management = await this.management(o);
    return {
      baseUrl: health.baseUrl,
      reachable: health.ok,
      latencyMs: health.latencyMs,
      modelCount: health.modelCount ?? null,
      error: health.error ?? null,
      lms: {
        installed: location !== undefined,
        path: location?.path ?? null,
        foundVia: location?.via ?? null,
        server: lmsServer,
        error: lmsError,
      },
      management: management.via,
      managementReason: management.reason,
      source: management.source,
      ttlSeconds: this.#ttl,
      defaultContextLength: this.#defaultContextLength ?? null,
    };
  }
}

/**
 * What the app uses of model management: a {@linkcode ModelManager} for one server, or one per
 * endpoint behind EndpointModels (model_endpoints.ts).
 */
export type Models = Pick<
  ModelManager,
  | "ttlSeconds"
  | "defaultContextLength"
  | "invalidate"
  | "ensureLoaded"
  | "load"
  | "management"
  | "currentModels"
  | "unload"
  | "downloadedModels"
  | "status"
>;

/** One check/load that concurrent {@linkcode ModelManager.ensureLoaded} calls share. */
interface SharedEnsure {
  promise: Promise<EnsureResult>;
  /** Cancels the work; aborted when the last caller waiting for it has gone. */
  controller: AbortController;
  /** How many callers wait for it. */
  waiting: number;
}

/** LmsErrors after which the REST API is worth trying instead of failing. */
function fallsBack(error: LmsError): boolean {
  return ["not_installed", "not_permitted", "not_running", "bad_output"].includes(error.kind);
}

/** An {@linkcode EnsureResult} as JSON (`lms load --json`, tool results): fixed keys, null = none. */
export function ensureReport(result: EnsureResult): EnsureReport {
  return {
    model: result.model,
    via: result.via,
    source: result.source,
    contextLength: result.contextLength,
    waitedMs: result.waitedMs,
    note: result.note ?? null,
  };
}

/** The REST model type, null when the server did not say. */
function knownType(type: ModelInfo["type"]): string | null {
  return type === "unknown" ? null : type;
}

function toCurrent(i: LoadedInstance): CurrentModel {
  return {
    id: i.identifier,
    type: i.type,
    status: i.status,
    contextLength: i.contextLength ?? null,
  };
}

function fromLs(m: DownloadedModel, loaded: LoadedInstance[]): DownloadedSummary {
  return {
    id: m.modelKey,
    type: m.type,
    loaded: loaded.some((i) => i.modelKey === m.modelKey),
    displayName: m.displayName ?? null,
    sizeBytes: m.sizeBytes ?? null,
    maxContextLength: m.maxContextLength ?? null,
    vision: m.vision ?? null,
    toolUse: m.toolUse ?? null,
  };
}

/**
 * What an explicit load asked for but did not get because the model was already loaded (a
 * loaded model keeps its context length and TTL until it is unloaded), or undefined.
 */
function notApplied(result: EnsureResult, o: EnsureOpts): string | undefined {
  if (result.via !== "already-loaded") return undefined;
  const asked: string[] = [];
  // A smaller loaded context than asked is already explained by the load's own note.
  const loaded = result.contextLength;
  if (o.contextLength !== undefined && (loaded === null || loaded > o.contextLength)) {
    asked.push(`context length ${o.contextLength}`);
  }
  if (o.ttlSeconds !== undefined) asked.push(`TTL ${o.ttlSeconds} s`);
  if (asked.length === 0) return undefined;
  const has = result.contextLength !== null
    ? ` with a context of ${result.contextLength} tokens`
    : "";
  return `${result.model} was already loaded${has}, so the requested ${asked.join(" and ")} ` +
    "did not apply: unload it first, then load it again with them.";
}

/** What {@linkcode chooseModel} needs: the client, DEFAULT_MODEL and the model manager. */
export interface ModelChoiceDeps {
  client: Pick<LmStudioClient, "resolveModel" | "listModels">;
  settings: Pick<Settings, "defaultModel">;
  /** Makes sure a model is loaded. */
  models: Pick<ModelManager, "ensureLoaded">;
}

/**
 * Picks the model for a generation call (`chat`, the LM Studio tools) and makes sure it is loaded:
 * a model the caller (or DEFAULT_MODEL) named is ensured; one picked from the server's list is
 * ensured only when the list says it is not loaded, so that a server with just-in-time loading off
 * can answer (the manager loads it with `lms` or the REST API where it can).
 */
export async function chooseModel(
  deps: ModelChoiceDeps,
  explicit: string | undefined,
  opts: { kind?: "llm" | "embedding"; signal?: AbortSignal } = {},
): Promise<string> {
  const fallback = opts.kind === "embedding" ? undefined : deps.settings.defaultModel;
  const named = explicit?.trim() || fallback?.trim() || undefined;
  const signal = opts.signal;
  const list = named === undefined ? await deps.client.listModels({ signal }) : undefined;
  const model = await deps.client.resolveModel(explicit, {
    kind: opts.kind,
    defaultModel: deps.settings.defaultModel,
    signal,
    ...(list ? { list } : {}),
  });
  if (list === undefined) {
    // The manager answers with the identifier LM Studio knows (e.g. "qwen/qwen3-8b:2").
    return (await deps.models.ensureLoaded(model, { signal })).model;
  }
  if (list.models.find((m) => m.id === model)?.state !== "not-loaded") return model;
  return (await deps.models.ensureLoaded(model, { signal, list })).model;
}
