/**
 * Model state and loading. Picks the best way the machine offers, in this order:
 *
 * 1. `lms` (LM Studio's CLI), when it is installed and manages the server the bridge talks to
 *    (loopback base URL on the port `lms server status` reports): `lms ps` for state,
 *    `lms load --ttl` to load, waiting (bounded) for instances that are still loading.
 * 2. LM Studio's REST API: `/api/v1/models` (0.4+) for state and load/unload, `/api/v0/models`
 *    (0.3.6+) for state only.
 * 3. Just-in-time loading: servers without either (Ollama, llama.cpp, old LM Studio) load a model
 *    when a request names it; the callers send `ttl` with each request.
 *
 * {@linkcode ModelManager.ensureLoaded} is called before every request that names a model, so it
 * is cheap when nothing changed: results are cached briefly and concurrent calls share one load.
 */
import type { LmStudioClient } from "./lmstudio.ts";
import { LmStudioError } from "./lmstudio_errors.ts";
import { Lms, LMS_INSTALL_HINT, type LmsLocation } from "./lms.ts";
import { LmsError } from "./lms_errors.ts";
import { type DownloadedModel, type LoadedInstance, statusAction } from "./lms_output.ts";
import { findInstances, findModel, normalizeModelName, sameModel } from "./model_names.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { abortableSleep, raceAbort } from "./abort.ts";

/** How {@linkcode ModelManager.ensureLoaded} made sure a model is ready. */
export interface EnsureResult {
  /** The name to send in requests (the loaded identifier when the request named it loosely). */
  model: string;
  via: "already-loaded" | "lms" | "rest" | "jit";
  waitedMs: number;
  note?: string;
}

/** A loaded model as {@linkcode ModelManager.currentModels} reports it. */
export interface CurrentModel {
  id: string;
  type: string;
  status?: string;
  contextLength?: number;
}

/** A downloaded model as {@linkcode ModelManager.downloadedModels} reports it. */
export interface DownloadedSummary {
  id: string;
  type: string;
  loaded?: boolean;
  displayName?: string;
  sizeBytes?: number;
  maxContextLength?: number;
  vision?: boolean;
  toolUse?: boolean;
}

/** Which mechanism manages models for the configured server. */
export type Management = "lms" | "rest" | "jit";

/** Why something about models cannot be done; the message says what to do. */
export class ModelError extends Error {
  override name = "ModelError";
  readonly kind: "not_found" | "not_loaded" | "timeout" | "unsupported";
  readonly model: string;
  constructor(
    message: string,
    details: { kind: ModelError["kind"]; model: string; cause?: unknown },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = details.kind;
    this.model = details.model;
  }
}

/** The client calls the manager uses. */
export type ModelClient = Pick<
  LmStudioClient,
  "baseUrl" | "listModels" | "loadModel" | "unloadModel" | "health"
>;

/** Options of {@linkcode ModelManager}. */
export interface ModelManagerOptions {
  client: ModelClient;
  /** `lms`; default: a new {@linkcode Lms} with production defaults. */
  lms?: Lms;
  /** Idle TTL for loads and JIT requests, in seconds; 0 means none. Default 600. */
  ttlSeconds?: number;
  log?: Logger;
  now?: () => number;
  /** How long an ensured model is trusted without checking again; default 5000 ms. */
  cacheMs?: number;
  /** Longest wait for an instance that is still loading; default 120 s. */
  loadWaitMs?: number;
  /** Interval between `lms ps` polls while waiting; default 500 ms. */
  pollMs?: number;
  /** How long the decision "use lms or not" holds; default 60 s. */
  decisionMs?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

interface CallOpts {
  signal?: AbortSignal;
}

interface EnsureOpts extends CallOpts {
  contextLength?: number;
  ttlSeconds?: number;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

function listNames(names: string[], max = 12): string {
  if (names.length === 0) return "none";
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/** Model state and loading over `lms`, the REST API or JIT; see the module doc. */
export class ModelManager {
  readonly #client: ModelClient;
  readonly #lms: Lms;
  readonly #ttl: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #loadWaitMs: number;
  readonly #pollMs: number;
  readonly #decisionMs: number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #ensured = new Map<string, { at: number; result: EnsureResult }>();
  readonly #inflight = new Map<string, Promise<EnsureResult>>();
  #decision: { at: number; useLms: boolean; reason: string } | undefined;
  #deciding: Promise<{ useLms: boolean; reason: string }> | undefined;

  constructor(options: ModelManagerOptions) {
    this.#client = options.client;
    this.#lms = options.lms ?? new Lms();
    this.#ttl = options.ttlSeconds ?? 600;
    this.#log = options.log ?? rootLog.child("models");
    this.#now = options.now ?? (() => Date.now());
    this.#cacheMs = options.cacheMs ?? 5000;
    this.#loadWaitMs = options.loadWaitMs ?? 120_000;
    this.#pollMs = options.pollMs ?? 500;
    this.#decisionMs = options.decisionMs ?? 60_000;
    this.#sleep = options.sleep ?? abortableSleep;
  }

  /** The idle TTL (seconds) requests should carry so JIT-loaded models stay between rounds; 0: none. */
  get ttlSeconds(): number {
    return this.#ttl;
  }

  /** Forgets cached state (after a load or unload made elsewhere). */
  invalidate(): void {
    this.#ensured.clear();
    this.#decision = undefined;
  }

  /**
   * Makes sure `model` is loaded, or will be loaded on first use (JIT). Idempotent; within
   * `cacheMs` of a success it returns at once without any subprocess or request, and concurrent
   * calls for the same model share one check/load.
   */
  ensureLoaded(
    model: string,
    o: { signal?: AbortSignal; contextLength?: number } = {},
  ): Promise<EnsureResult> {
    const key = `${normalizeModelName(model)}|${o.contextLength ?? ""}`;
    const hit = this.#ensured.get(key);
    if (hit && this.#now() - hit.at < this.#cacheMs) {
      const { result } = hit;
      return Promise.resolve(
        result.via === "jit"
          ? { ...result, waitedMs: 0 }
          : { model: result.model, via: "already-loaded", waitedMs: 0 },
      );
    }
    const running = this.#inflight.get(key);
    if (running) return running;
    const promise = this.#ensure(model, o).then((result) => {
      this.#ensured.set(key, { at: this.#now(), result });
      return result;
    }).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, promise);
    return promise;
  }

  /**
   * Loads `model` on request (the `lms_load_model` tool): like {@linkcode ensureLoaded} but never
   * answered from the cache, and with an optional TTL of its own.
   */
  async load(model: string, o: EnsureOpts = {}): Promise<EnsureResult> {
    this.invalidate();
    const result = await this.#ensure(model, o);
    this.invalidate();
    return result;
  }

  /** Which mechanism manages models for the configured server, and why. */
  async management(o: CallOpts = {}): Promise<{ via: Management; reason: string }> {
    const decision = await this.#lmsDecision(o.signal);
    if (decision.useLms) return { via: "lms", reason: decision.reason };
    try {
      const list = await this.#client.listModels({ signal: o.signal });
      if (list.source === "api/v1") {
        return {
          via: "rest",
          reason: `${decision.reason} LM Studio's REST API (/api/v1) answers.`,
        };
      }
      return {
        via: "jit",
        reason: `${decision.reason} ${
          list.source === "api/v0"
            ? "LM Studio before 0.4 has no load endpoint"
            : "The server has no model-management API"
        }; models load on first use.`,
      };
    } catch (error: unknown) {
      return {
        via: "jit",
        reason: `${decision.reason} The server did not answer: ${errorText(error)}`,
      };
    }
  }

  async #ensure(model: string, o: EnsureOpts): Promise<EnsureResult> {
    const started = this.#now();
    if ((await this.#lmsDecision(o.signal)).useLms) {
      try {
        return await this.#ensureWithLms(model, o, started);
      } catch (error: unknown) {
        if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
        this.#log.warn("lms unusable, trying LM Studio's REST API", { error: error.message });
        this.#decision = { at: this.#now(), useLms: false, reason: error.message };
      }
    }
    return await this.#ensureWithRest(model, o, started);
  }

  /** Whether `lms` applies: installed and managing the same (local) server as the base URL. */
  #lmsDecision(signal?: AbortSignal): Promise<{ useLms: boolean; reason: string }> {
    const cached = this.#decision;
    if (cached && this.#now() - cached.at < this.#decisionMs) return Promise.resolve(cached);
    // Concurrent callers share one `lms server status` (bounded by its own 15 s timeout, so
    // one caller's cancellation does not fail the others); a cancelled caller stops waiting.
    this.#deciding ??= this.#decide().finally(() => this.#deciding = undefined);
    return signal ? raceAbort(this.#deciding, signal) : this.#deciding;
  }

  async #decide(): Promise<{ useLms: boolean; reason: string }> {
    const decide = (useLms: boolean, reason: string) => {
      this.#decision = { at: this.#now(), useLms, reason };
      this.#log.debug("model management", { useLms, reason });
      return this.#decision;
    };
    const location = await this.#lms.locate();
    if (!location) return decide(false, "`lms` is not installed.");
    let url: URL;
    try {
      url = new URL(this.#client.baseUrl);
    } catch {
      return decide(false, `The base URL ${this.#client.baseUrl} is not a URL.`);
    }
    if (!LOOPBACK.has(url.hostname)) {
      return decide(
        false,
        `\`lms\` manages this machine's LM Studio, not the server at ${url.origin}.`,
      );
    }
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    try {
      const status = await this.#lms.serverStatus({ timeoutMs: 15_000 });
      if (status.port !== undefined && status.port !== port) {
        return decide(
          false,
          `\`lms\` manages the LM Studio server on port ${status.port}, but the bridge uses ` +
            `${url.origin}.`,
        );
      }
      return decide(true, `\`lms\` (${location.path}) manages the server at ${url.origin}.`);
    } catch (error: unknown) {
      return decide(false, `\`lms server status\` failed: ${errorText(error)}`);
    }
  }

  async #ensureWithLms(model: string, o: EnsureOpts, started: number): Promise<EnsureResult> {
    const deadline = started + this.#loadWaitMs;
    let waited = false;
    for (;;) {
      const matches = findInstances(model, await this.#lms.ps({ signal: o.signal }));
      const usable = matches.find((i) => statusAction(i.status) === "use");
      if (usable) {
        const note = contextNote(usable.identifier, usable.contextLength, o.contextLength);
        return {
          model: chosenName(model, usable),
          via: "already-loaded",
          waitedMs: this.#now() - started,
          ...(note ? { note } : waited ? { note: `Waited for ${usable.identifier} to load.` } : {}),
        };
      }
      const loading = matches.find((i) => statusAction(i.status) === "wait");
      if (!loading) break;
      if (this.#now() >= deadline) {
        throw new ModelError(
          `${loading.identifier} is still loading after ${
            Math.round((this.#now() - started) / 1000)
          } s. Check LM Studio (\`lms ps\`); a very large model may need more time, or ` +
            "unload it (`lms unload " + loading.identifier + "`) and try again.",
          { kind: "timeout", model },
        );
      }
      waited = true;
      await this.#sleep(this.#pollMs, o.signal);
    }
    const key = await this.#downloadedKey(model, o.signal);
    const ttlSeconds = o.ttlSeconds ?? this.#ttl;
    const loaded = await this.#lms.load(key, {
      signal: o.signal,
      ttlSeconds,
      ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
    });
    return {
      model: loaded.identifier ?? (key === model ? model : key),
      via: "lms",
      waitedMs: this.#now() - started,
      ...(ttlSeconds > 0 ? {} : { note: "Loaded without a TTL: it stays until unloaded." }),
    };
  }

  /** The exact model key to give `lms load`, so its fuzzy matching never picks another model. */
  async #downloadedKey(model: string, signal?: AbortSignal): Promise<string> {
    const downloaded = await this.#lms.ls({ signal });
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

  async #ensureWithRest(model: string, o: EnsureOpts, started: number): Promise<EnsureResult> {
    const list = await this.#client.listModels({ signal: o.signal });
    const match = findModel(model, list.models);
    const ttl = o.ttlSeconds ?? this.#ttl;
    if (list.source === "openai") {
      const unlisted = match
        ? ""
        : ` "${model}" is not in its model list (${
          listNames(list.models.map((m) => m.id))
        }), so the request may fail.`;
      return {
        model: match?.id ?? model,
        via: "jit",
        waitedMs: this.#now() - started,
        note: `${this.#client.baseUrl} has no model-management API (Ollama, llama.cpp, vLLM...): ` +
          `the model loads when a request names it (JIT).${unlisted}`,
      };
    }
    if (!match) {
      throw new ModelError(
        `LM Studio at ${this.#client.baseUrl} has no model "${model}". Models: ${
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
        waitedMs: this.#now() - started,
        ...(note ? { note } : {}),
      };
    }
    if (list.source === "api/v0") {
      return {
        model: match.id,
        via: "jit",
        waitedMs: this.#now() - started,
        note: `This LM Studio (before 0.4) has no load endpoint and \`lms\` is not usable: ` +
          `${match.id} loads on its first request (JIT${ttl > 0 ? `, TTL ${ttl} s` : ""}).`,
      };
    }
    try {
      await this.#client.loadModel(match.id, {
        signal: o.signal,
        ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
      });
    } catch (error: unknown) {
      if (error instanceof LmStudioError && error.kind === "not_found" && !error.code) {
        return {
          model: match.id,
          via: "jit",
          waitedMs: this.#now() - started,
          note:
            `LM Studio's load endpoint is missing (${error.message}); ${match.id} loads on its ` +
            "first request (JIT).",
        };
      }
      throw error;
    }
    return {
      model: match.id,
      via: "rest",
      waitedMs: this.#now() - started,
      note: "Loaded over LM Studio's REST API, which has no idle TTL: it stays loaded until " +
        "unloaded (lms_unload_model) or LM Studio evicts it.",
    };
  }

  /**
   * The loaded models, from LM Studio's REST state or `lms ps`; never by asking a model. REST comes
   * first (no subprocess) unless `prefer: "lms"` asks for `lms ps`, which also tells the
   * processing status (idle, loading, generating) when `lms` applies.
   */
  async currentModels(
    o: CallOpts & { prefer?: "rest" | "lms" } = {},
  ): Promise<{ models: CurrentModel[]; source: string; note?: string }> {
    if (o.prefer === "lms" && (await this.#lmsDecision(o.signal)).useLms) {
      try {
        return {
          models: (await this.#lms.ps({ signal: o.signal })).map(toCurrent),
          source: "lms ps",
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
            ...(m.loadedContextLength ? { contextLength: m.loadedContextLength } : {}),
          })),
          source: list.source === "api/v1" ? "REST /api/v1/models" : "REST /api/v0/models",
        };
      }
      if (!(await this.#lmsDecision(o.signal)).useLms) {
        return {
          models: [],
          source: "/v1/models",
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
      source: "lms ps",
      ...(restError
        ? { note: `LM Studio's HTTP API did not answer: ${errorText(restError)}` }
        : {}),
    };
  }

  /**
   * Unloads every loaded instance of `model` (only the named one when it carries an instance
   * suffix such as `:2`), with `lms` or the REST API.
   */
  async unload(
    model: string,
    o: CallOpts = {},
  ): Promise<{ unloaded: string[]; via: "lms" | "rest" }> {
    this.invalidate();
    try {
      if ((await this.#lmsDecision(o.signal)).useLms) {
        try {
          return await this.#unloadWithLms(model, o);
        } catch (error: unknown) {
          if (!(error instanceof LmsError) || !fallsBack(error)) throw error;
        }
      }
      return await this.#unloadWithRest(model, o);
    } finally {
      this.invalidate();
    }
  }

  async #unloadWithLms(model: string, o: CallOpts): Promise<{ unloaded: string[]; via: "lms" }> {
    const instances = await this.#lms.ps({ signal: o.signal });
    const targets = pickTargets(
      model,
      instances.map((i) => i.identifier),
      findInstances(
        model,
        instances,
      ).map((i) => i.identifier),
    );
    if (targets.length === 0) throw notLoaded(model, instances.map((i) => i.identifier));
    for (const identifier of targets) await this.#lms.unload(identifier, { signal: o.signal });
    return { unloaded: targets, via: "lms" };
  }

  async #unloadWithRest(model: string, o: CallOpts): Promise<{ unloaded: string[]; via: "rest" }> {
    const list = await this.#client.listModels({ signal: o.signal });
    if (list.source !== "api/v1") {
      throw new ModelError(
        `Cannot unload "${model}": ${this.#client.baseUrl} has no unload API (${
          list.source === "api/v0" ? "LM Studio before 0.4" : "not LM Studio's REST API"
        }) and \`lms\` is not usable. ${LMS_INSTALL_HINT} Or unload it in LM Studio's UI; ` +
          `JIT-loaded models are unloaded after ${this.#ttl || "their"} idle seconds anyway.`,
        { kind: "unsupported", model },
      );
    }
    const allIds = list.models.flatMap((m) => m.instanceIds ?? []);
    const loose = list.models.filter((m) =>
      m.state === "loaded" && (sameModel(model, m.id) ||
        (m.instanceIds ?? []).some((i) => sameModel(model, i)))
    ).flatMap((m) => m.instanceIds?.length ? m.instanceIds : [m.id]);
    const targets = pickTargets(model, allIds, loose);
    if (targets.length === 0) {
      throw notLoaded(model, list.models.filter((m) => m.state === "loaded").map((m) => m.id));
    }
    for (const id of targets) await this.#client.unloadModel(id, { signal: o.signal });
    return { unloaded: targets, via: "rest" };
  }

  /** Downloaded models from `lms ls`, else the REST model list, else `/v1/models`. */
  async downloadedModels(
    o: CallOpts & { kind?: "llm" | "embedding" } = {},
  ): Promise<{ models: DownloadedSummary[]; source: string; note?: string }> {
    if ((await this.#lmsDecision(o.signal)).useLms) {
      try {
        const [downloaded, loaded] = await Promise.all([
          this.#lms.ls({ signal: o.signal, ...(o.kind ? { kind: o.kind } : {}) }),
          this.#lms.ps({ signal: o.signal }),
        ]);
        return { models: downloaded.map((m) => fromLs(m, loaded)), source: "lms ls" };
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
        type: m.type,
        ...(m.state ? { loaded: m.state === "loaded" } : {}),
        ...(m.maxContextLength ? { maxContextLength: m.maxContextLength } : {}),
        ...(m.vision !== undefined ? { vision: m.vision } : {}),
        ...(m.toolUse !== undefined ? { toolUse: m.toolUse } : {}),
      })),
      source: list.source === "openai" ? "/v1/models" : `REST /${list.source}/models`,
      ...(list.source === "openai"
        ? {
          note: "This server lists the models it can serve; it has no separate download list. " +
            (list.notes[0] ?? ""),
        }
        : {}),
    };
  }

  /** Reachability of the server, whether `lms` is installed and what it says, and who manages models. */
  async status(o: CallOpts = {}): Promise<ServerStatusReport> {
    const [health, location] = await Promise.all([
      this.#client.health({ signal: o.signal, timeoutMs: 5000 }),
      this.#lms.locate(),
    ]);
    let lmsServer: { running: boolean; port?: number } | undefined;
    let lmsError: string | undefined;
    if (location) {
      try {
        lmsServer = await this.#lms.serverStatus({ signal: o.signal, timeoutMs: 15_000 });
      } catch (error: unknown) {
        lmsError = errorText(error);
      }
    }
    const management = await this.management(o);
    return {
      baseUrl: health.baseUrl,
      reachable: health.ok,
      latencyMs: health.latencyMs,
      ...(health.modelCount !== undefined ? { modelCount: health.modelCount } : {}),
      ...(health.error ? { error: health.error } : {}),
      lms: {
        installed: location !== undefined,
        ...(location ? { path: location.path, foundVia: location.via } : {}),
        ...(lmsServer ? { server: lmsServer } : {}),
        ...(lmsError ? { error: lmsError } : {}),
      },
      management: management.via,
      managementReason: management.reason,
      ttlSeconds: this.#ttl,
    };
  }
}

/** What {@linkcode ModelManager.status} reports. */
export interface ServerStatusReport {
  baseUrl: string;
  reachable: boolean;
  latencyMs: number;
  modelCount?: number;
  error?: string;
  lms: {
    installed: boolean;
    path?: string;
    foundVia?: LmsLocation["via"];
    server?: { running: boolean; port?: number };
    error?: string;
  };
  management: Management;
  managementReason: string;
  ttlSeconds: number;
}

/** LmsErrors after which the REST API is worth trying instead of failing. */
function fallsBack(error: LmsError): boolean {
  return ["not_installed", "not_permitted", "not_running", "bad_output"].includes(error.kind);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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

function toCurrent(i: LoadedInstance): CurrentModel {
  return {
    id: i.identifier,
    type: i.type,
    status: i.status,
    ...(i.contextLength !== undefined ? { contextLength: i.contextLength } : {}),
  };
}

function fromLs(m: DownloadedModel, loaded: LoadedInstance[]): DownloadedSummary {
  return {
    id: m.modelKey,
    type: m.type,
    loaded: loaded.some((i) => i.modelKey === m.modelKey),
    ...(m.displayName ? { displayName: m.displayName } : {}),
    ...(m.sizeBytes !== undefined ? { sizeBytes: m.sizeBytes } : {}),
    ...(m.maxContextLength !== undefined ? { maxContextLength: m.maxContextLength } : {}),
    ...(m.vision !== undefined ? { vision: m.vision } : {}),
    ...(m.toolUse !== undefined ? { toolUse: m.toolUse } : {}),
  };
}
