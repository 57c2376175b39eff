/**
 * Model management over several endpoints (LMSTUDIO_ENDPOINTS): one {@linkcode ModelManager} per
 * endpoint, each over that endpoint's own client, all sharing the one `lms`. Each manager decides
 * for its server as it does alone: `lms` applies only to the LM Studio on this machine that `lms`
 * manages (loopback, the port `lms server status` reports); a remote LM Studio 0.4+ loads over its
 * REST API; Ollama, llama.cpp, vLLM, a LiteLLM front and LM Studio before 0.4 load on first
 * request (JIT).
 *
 * {@linkcode EndpointModels} offers what the app uses of a ModelManager: a call naming a model goes
 * to the manager of the endpoint that has it (the router's choice, the same one its requests go
 * to); the listings (loaded, downloaded) are merged, each entry tagged with its endpoint, a
 * down endpoint skipped with a note; the status is that of the endpoint `lms` manages (else the
 * first) plus each endpoint's.
 */
import {
  type Endpoint,
  endpointList,
  EndpointRouter,
  withEndpointList,
} from "./lmstudio_endpoints.ts";
import { LmStudioClient } from "./lmstudio.ts";
import type { Lms } from "./lms.ts";
import type { Logger } from "./log.ts";
import { ModelManager, type Models } from "./models.ts";
import type {
  CurrentModels,
  DownloadedModels,
  EndpointStatus,
  EnsureResult,
  Management,
  ModelSource,
  ServerStatusReport,
  UnloadReport,
} from "./model_types.ts";
import type { Settings } from "./settings.ts";
import { errorMessage } from "./errors.ts";
import { clause } from "./text.ts";

type EnsureOptions = Parameters<ModelManager["ensureLoaded"]>[1];
type LoadOptions = Parameters<ModelManager["load"]>[1];

/** Options of {@linkcode EndpointModels}. */
export interface EndpointModelsOptions {
  router: EndpointRouter;
  /** The manager of each endpoint, by endpoint name. */
  managers: ReadonlyMap<string, Models>;
}

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

/** Model management per endpoint; see the module doc. */
export class EndpointModels implements Models {
  readonly #router: EndpointRouter;
  readonly #managers: ReadonlyMap<string, Models>;

  constructor(options: EndpointModelsOptions) {
    this.#router = options.router;
    this.#managers = options.managers;
    for (const e of this.#router.endpoints) {
      if (!this.#managers.has(e.name)) throw new Error(`no model manager for endpoint ${e.name}`);
    }
  }

  #manager(endpoint: Endpoint): Models {
    return this.#managers.get(endpoint.name)!;
  }

  #first(): Models {
    return this.#manager(this.#router.endpoints[0]!);
  }

  get ttlSeconds(): number {
    return this.#first().ttlSeconds;
  }

  get defaultContextLength(): number | undefined {
    return this.#first().defaultContextLength;
  }

  invalidate(): void {
    for (const manager of this.#managers.values()) manager.invalidate();
  }

  /**
   * Runs `call` on the manager of the endpoint that has `model`, handing it that endpoint's part
   * of the caller's merged list; the result names the endpoint, and a fresh list it brings back
   * is merged into the caller's.
   */
  async #forModel(
    model: string,
    o: EnsureOptions & LoadOptions,
    call: (manager: Models, o: EnsureOptions & LoadOptions) => Promise<EnsureResult>,
  ): Promise<EnsureResult> {
    const endpoint = await this.#router.endpointFor(model, { signal: o?.signal });
    const { list: merged, ...rest } = o ?? {};
    const own = merged ? endpointList(merged, endpoint.name) : undefined;
    const result = await call(this.#manager(endpoint), { ...rest, ...(own ? { list: own } : {}) });
    const { list: fresh, ...report } = result;
    return {
      ...report,
      endpoint: endpoint.name,
      ...(fresh && merged ? { list: withEndpointList(merged, endpoint.name, fresh) } : {}),
    };
  }

  ensureLoaded(model: string, o: EnsureOptions = {}): Promise<EnsureResult> {
    return this.#forModel(model, o, (m, own) => m.ensureLoaded(model, own));
  }

  load(model: string, o: LoadOptions = {}): Promise<EnsureResult> {
    return this.#forModel(model, o, (m, own) => m.load(model, own));
  }

  async unload(model: string, o: { signal?: AbortSignal } = {}): Promise<UnloadReport> {
    const endpoint = await this.#router.endpointFor(model, o);
    return { ...(await this.#manager(endpoint).unload(model, o)), endpoint: endpoint.name };
  }

  /**
   * `read` on every endpoint not in its back-off, in order: each one's result or why there is
   * none ("gpu at http://...: not answering..."). Only an abort rejects.
   */
  async #each<T>(
    signal: AbortSignal | undefined,
    read: (manager: Models) => Promise<T>,
  ): Promise<Array<{ endpoint: Endpoint; value: T } | { endpoint: Endpoint; note: string }>> {
    return await Promise.all(this.#router.endpoints.map(async (endpoint) => {
      const skipped = this.#router.skipNote(endpoint.name);
      if (skipped !== undefined) return { endpoint, note: skipped };
      try {
        const value = await read(this.#manager(endpoint));
        this.#router.answered(endpoint.name);
        return { endpoint, value };
      } catch (error: unknown) {
        if (isAbort(error) || signal?.aborted) throw error;
        this.#router.failed(endpoint.name, error, { listing: true });
        return {
          endpoint,
          note: this.#router.skipNote(endpoint.name) ??
            `${endpoint.name} at ${endpoint.baseUrl}: ${clause(errorMessage(error))}`,
        };
      }
    }));
  }

  /**
   * Merges per-endpoint listings: entries tagged with their endpoint, the first answer's source,
   * every note named; fails only when no endpoint answered.
   */
  async #merged<R extends { source: ModelSource; note: string | null; models: object[] }>(
    signal: AbortSignal | undefined,
    read: (manager: Models) => Promise<R>,
  ): Promise<R> {
    const answers = await this.#each(signal, read);
    const values = answers.flatMap((a) => "value" in a ? [a] : []);
    const first = values[0];
    if (first === undefined) {
      // Nothing answered: ask the first endpoint again, so its own error is what the caller gets.
      return await read(this.#first());
    }
    const notes = answers.flatMap((a) =>
      "note" in a ? [a.note] : a.value.note ? [`${a.endpoint.name}: ${a.value.note}`] : []
    );
    return {
      ...first.value,
      models: values.flatMap((a) =>
        a.value.models.map((m) => ({ ...m, endpoint: a.endpoint.name }))
      ),
      note: notes.length > 0 ? `${notes.map(clause).join("; ")}.` : null,
    };
  }

  currentModels(o: Parameters<ModelManager["currentModels"]>[0] = {}): Promise<CurrentModels> {
    return this.#merged(o.signal, (m) => m.currentModels(o));
  }

  downloadedModels(
    o: Parameters<ModelManager["downloadedModels"]>[0] = {},
  ): Promise<DownloadedModels> {
    return this.#merged(o.signal, (m) => m.downloadedModels(o));
  }

  /** That of the endpoint `lms` manages (else the first), with each endpoint's reason. */
  async management(
    o: { signal?: AbortSignal } = {},
  ): Promise<{ via: Management; reason: string; source: ModelSource | null }> {
    const all = await Promise.all(
      this.#router.endpoints.map(async (e) => ({ e, m: await this.#manager(e).management(o) })),
    );
    const primary = all.find((a) => a.m.via === "lms") ?? all[0]!;
    return {
      via: primary.m.via,
      source: primary.m.source,
      reason: all.map((a) => `${a.e.name} (${a.e.baseUrl}): ${a.m.via}. ${a.m.reason}`).join(" "),
    };
  }

  /** The report of the endpoint `lms` manages (else the first), and each endpoint's state. */
  async status(o: { signal?: AbortSignal } = {}): Promise<ServerStatusReport> {
    const reports = await Promise.all(
      this.#router.endpoints.map(async (e) => ({ e, s: await this.#manager(e).status(o) })),
    );
    const primary = reports.find((r) => r.s.management === "lms") ?? reports[0]!;
    const endpoints: EndpointStatus[] = reports.map(({ e, s }) => ({
      name: e.name,
      baseUrl: s.baseUrl,
      reachable: s.reachable,
      latencyMs: s.latencyMs,
      modelCount: s.modelCount,
      error: s.error,
      management: s.management,
      managementReason: s.managementReason,
      source: s.source,
    }));
    return { ...primary.s, endpoints };
  }
}

/**
 * The client and the model management of the endpoints in `settings`: an
 * {@linkcode EndpointRouter} over one LmStudioClient per endpoint (each with its own token), and
 * {@linkcode EndpointModels} over one ModelManager per endpoint sharing `lms`.
 */
export function endpointServices(
  settings: Settings,
  o: { lms: Lms; log: Logger; now?: () => number },
): { client: EndpointRouter; models: EndpointModels } {
  const endpoints: Endpoint[] = settings.endpoints.map((e) => ({
    name: e.name,
    baseUrl: e.baseUrl,
    client: new LmStudioClient({
      baseUrl: e.baseUrl,
      token: e.token,
      timeoutMs: settings.requestTimeoutMs,
      retries: settings.retries,
      maxReplyBytes: settings.maxReplyBytes,
      stream: settings.stream,
      stallMs: settings.stallMs,
      listReuseMs: settings.listReuseMs,
      log: o.log.child(`lmstudio:${e.name}`),
    }),
  }));
  const router = new EndpointRouter({
    endpoints,
    log: o.log.child("endpoints"),
    ...(o.now ? { now: o.now } : {}),
  });
  const managers = new Map<string, Models>(endpoints.map((e) => [
    e.name,
    new ModelManager({
      client: e.client,
      lms: o.lms,
      ttlSeconds: settings.modelTtlSeconds,
      defaultContextLength: settings.defaultContextLength,
      log: o.log.child(`models:${e.name}`),
    }),
  ]));
  return { client: router, models: new EndpointModels({ router, managers }) };
}
