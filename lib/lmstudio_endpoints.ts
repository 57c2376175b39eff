/**
 * Several model servers behind one client (LMSTUDIO_ENDPOINTS: LM Studio on a laptop and on a GPU
 * box, or LM Studio plus Ollama). {@linkcode EndpointRouter} holds one LmStudioClient per endpoint
 * and offers the calls the app makes of a client:
 *
 * - Model lists are merged, in the configured order, each model tagged with its endpoint
 *   (`ModelInfo.endpoint`); the list says what each endpoint answered (`ModelList.endpoints`).
 * - A request for model M goes to the endpoint whose list has M (exact ids before loose names,
 *   see findModel). A model on two endpoints is served by the first configured. The mapping is
 *   kept (for `mappingMs`) and read again on a miss; a model no list has goes to an endpoint that
 *   cannot list its models (it may load it anyway), else fails naming what each endpoint has.
 * - An endpoint that does not answer (connection refused, timed out, blocked by the sandbox) is
 *   skipped with a note ("gpu at http://...: not answering (connection refused), retried in 30 s")
 *   and tried again after a back-off (30 s, doubling up to 5 min); any answer clears it. A call
 *   whose endpoint refused the connection goes to the next endpoint that has the model, if any.
 *   When every endpoint is down, all are tried.
 * - `health` checks every endpoint and reports each (`endpoints`).
 *
 * The bridge does not balance load between servers: for many GPUs, put an OpenAI-compatible router
 * (LiteLLM proxy, vLLM's router) behind one endpoint. Which endpoint loads models, and how, is the
 * model manager's business (model_endpoints.ts).
 */
import { widenCommand } from "./launch.ts";
import type { CallOptions, ListOptions, LmStudioClient } from "./lmstudio.ts";
import { LmStudioError } from "./lmstudio_errors.ts";
import type {
  ChatRequest,
  CompletionRequest,
  EmbeddingRequest,
  ModelList,
  ModelListEndpoint,
  ResponseRequest,
} from "./lmstudio_types.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { findModel } from "./model_names.ts";
import { chooseModelName } from "./model_pick.ts";
import { causeChain, errorMessage, isSandboxDenial, networkFailure } from "./errors.ts";
import { clause, listNames } from "./text.ts";

/** The calls of one endpoint's client that the router uses; LmStudioClient has them all. */
export type EndpointClient = Pick<
  LmStudioClient,
  | "baseUrl"
  | "listModels"
  | "resolveModel"
  | "chat"
  | "complete"
  | "embed"
  | "respond"
  | "health"
  | "loadModel"
  | "unloadModel"
  | "forgetModelList"
>;

/** What `health` tells about one server. */
export type Health = Awaited<ReturnType<LmStudioClient["health"]>>;

/** One endpoint's health, named. */
export interface EndpointHealth extends Health {
  name: string;
}

/**
 * The client the app's tools, loop and commands use: one LmStudioClient, or an
 * {@linkcode EndpointRouter} over several, whose health also reports each endpoint.
 */
export type LmClient = Omit<EndpointClient, "health"> & {
  health(o?: CallOptions): Promise<Health & { endpoints?: EndpointHealth[] }>;
};

/** One model server the router sends requests to. */
export interface Endpoint {
  readonly name: string;
  readonly baseUrl: string;
  readonly client: EndpointClient;
}

/** Options of {@linkcode EndpointRouter}. */
export interface EndpointRouterOptions {
  /** In the configured order: the first that lists a model serves it. */
  endpoints: readonly Endpoint[];
  /** Clock for back-offs and the mapping's age; default Date.now. */
  now?: () => number;
  /** First wait before a down endpoint is tried again; default 30 s, doubling per failure. */
  backoffMs?: number;
  /** Longest wait; default 5 min. */
  maxBackoffMs?: number;
  /** How long the model-to-endpoint mapping is used without reading the lists; default 60 s. */
  mappingMs?: number;
  /** Time limit of each endpoint's model list read by the router; default 10 s. */
  listTimeoutMs?: number;
  /** The hosts among `hosts` that the sandbox does not let the bridge reach; default: asks Deno. */
  blockedHosts?: (hosts: string[]) => string[];
  log?: Logger;
}

/** Why an endpoint is skipped, and until when. */
interface Down {
  until: number;
  failures: number;
  reason: string;
  sandbox: boolean;
}

/** What one endpoint answered to a model-list read. */
type Answer =
  | { endpoint: Endpoint; list: ModelList }
  | { endpoint: Endpoint; error: unknown; down: boolean }
  | { endpoint: Endpoint; skipped: true };

/** The lists read from every endpoint, merged, and when. */
interface Listing {
  at: number;
  answers: Answer[];
  merged: ModelList;
}

/** Options of a call that names a model; the router reads only its signal. */
type ModelCallOptions = { signal?: AbortSignal } | undefined;

/** The hosts of `hosts` that Deno's sandbox does not allow this process to reach. */
export function sandboxBlockedHosts(hosts: string[]): string[] {
  return hosts.filter((host) =>
    Deno.permissions.querySync({ name: "net", host }).state !== "granted"
  );
}

/** The host (with port) of a URL, as Deno's --allow-net takes it. */
function hostOf(baseUrl: string): string {
  return new URL(baseUrl).host;
}

/** Whether a failed request means the server is not answering (nothing answered at all). */
function notAnswering(error: unknown, listing: boolean): boolean {
  if (!(error instanceof LmStudioError)) return false;
  return error.kind === "unreachable" || (listing && error.kind === "timeout");
}

/** Whether the request never reached the server, so sending it elsewhere repeats nothing. */
function neverReached(error: unknown): boolean {
  if (!(error instanceof LmStudioError) || error.kind !== "unreachable") return false;
  if (causeChain(error).some(isSandboxDenial)) return true;
  return ["refused", "dns", "unreachable"].includes(networkFailure(error).kind);
}

/** A short reason for a note: "connection refused", "timed out", "blocked by the sandbox". */
function downReason(error: unknown): string {
  if (error instanceof LmStudioError && error.kind === "timeout") return "timed out";
  if (causeChain(error).some(isSandboxDenial)) return "blocked by the sandbox";
  return networkFailure(error).reason;
}

function seconds(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))} s`;
}

/**
 * `merged` with the models of endpoint `name` replaced by those of `fresh` (that endpoint's own
 * list, read again after a load changed it).
 */
export function withEndpointList(merged: ModelList, name: string, fresh: ModelList): ModelList {
  const order = merged.endpoints?.map((e) => e.name) ??
    [...new Set(merged.models.flatMap((m) => m.endpoint === undefined ? [] : [m.endpoint]))];
  if (!order.includes(name)) order.push(name);
  const models = order.flatMap((n) =>
    n === name
      ? fresh.models.map((m) => ({ ...m, endpoint: name }))
      : merged.models.filter((m) => m.endpoint === n)
  );
  const endpoints = merged.endpoints?.map((e) =>
    e.name === name
      ? { ...e, source: fresh.source, modelCount: fresh.models.length, error: null, down: false }
      : e
  );
  return { ...merged, models, ...(endpoints ? { endpoints } : {}) };
}

/**
 * The part of a merged list that endpoint `name` answered, as its own list (for the model manager
 * of that endpoint); undefined when the merged list does not say what it answered.
 */
export function endpointList(merged: ModelList, name: string): ModelList | undefined {
  const part = merged.endpoints?.find((e) => e.name === name);
  if (part === undefined || part.source === null) return undefined;
  return {
    models: merged.models.filter((m) => m.endpoint === name),
    source: part.source,
    notes: [],
  };
}

/** Requests for a model go to the endpoint that has it; see the module doc. */
export class EndpointRouter implements LmClient {
  /** The endpoints for messages: "laptop (http://127.0.0.1:1234), gpu (http://10.0.0.5:1234)". */
  readonly baseUrl: string;
  readonly endpoints: readonly Endpoint[];
  readonly #now: () => number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #mappingMs: number;
  readonly #listTimeoutMs: number;
  readonly #blockedHosts: (hosts: string[]) => string[];
  readonly #log: Logger;
  readonly #down = new Map<string, Down>();
  #last: Listing | undefined;

  constructor(options: EndpointRouterOptions) {
    if (options.endpoints.length === 0) throw new Error("EndpointRouter needs an endpoint");
    this.endpoints = options.endpoints;
    this.baseUrl = options.endpoints.map((e) => `${e.name} (${e.baseUrl})`).join(", ");
    this.#now = options.now ?? (() => Date.now());
    this.#backoffMs = options.backoffMs ?? 30_000;
    this.#maxBackoffMs = options.maxBackoffMs ?? 300_000;
    this.#mappingMs = options.mappingMs ?? 60_000;
    this.#listTimeoutMs = options.listTimeoutMs ?? 10_000;
    this.#blockedHosts = options.blockedHosts ?? sandboxBlockedHosts;
    this.#log = options.log ?? rootLog.child("endpoints");
  }

  /** The endpoint called `name`. */
  endpoint(name: string): Endpoint | undefined {
    return this.endpoints.find((e) => e.name === name);
  }

  /**
   * The note for an endpoint that is skipped now ("gpu at http://...: not answering (connection
   * refused), retried in 30 s"), or undefined when it is tried.
   */
  skipNote(name: string): string | undefined {
    const down = this.#down.get(name);
    const endpoint = this.endpoint(name);
    if (down === undefined || endpoint === undefined) return undefined;
    const left = down.until - this.#now();
    if (left <= 0) return undefined;
    return this.#downNote(endpoint, down, left);
  }

  /**
   * Records a failed request to endpoint `name`: one that got no answer (for a model list, also
   * one that timed out) makes it skipped; any other failure is an answer.
   */
  failed(name: string, error: unknown, o: { listing?: boolean } = {}): void {
    const endpoint = this.endpoint(name);
    if (endpoint === undefined) return;
    if (!notAnswering(error, o.listing ?? false)) return this.answered(name);
    const failures = (this.#down.get(name)?.failures ?? 0) + 1;
    const wait = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (failures - 1));
    const down: Down = {
      until: this.#now() + wait,
      failures,
      reason: downReason(error),
      sandbox: causeChain(error).some(isSandboxDenial),
    };
    const first = !this.#down.has(name);
    this.#down.set(name, down);
    if (first) this.#log.debug(this.#downNote(endpoint, down, wait));
  }

  /** Records that endpoint `name` answered: it is no longer skipped. */
  answered(name: string): void {
    if (this.#down.delete(name)) this.#log.debug(`endpoint ${name} answers again`);
  }

  #downNote(endpoint: Endpoint, down: Down, left: number): string {
    const where = `${endpoint.name} at ${endpoint.baseUrl}`;
    if (down.sandbox) {
      return `${where}: blocked by the sandbox, retried in ${seconds(left)}; ${
        this.#sandboxAdvice(endpoint)
      }`;
    }
    return `${where}: not answering (${down.reason}), retried in ${seconds(left)}`;
  }

  /** How to let the sandbox reach every configured endpoint it blocks. */
  #sandboxAdvice(endpoint: Endpoint): string {
    const hosts = [...new Set(this.endpoints.map((e) => hostOf(e.baseUrl)))];
    const blocked = this.#blockedHosts(hosts);
    const wanted = blocked.length > 0 ? blocked : [hostOf(endpoint.baseUrl)];
    return `the bridge's sandbox allows loopback only unless its install allows more: allow ` +
      `the configured ${wanted.length === 1 ? "host" : "hosts"} with: ${
        widenCommand({ net: wanted })
      } (or remove ${endpoint.name} from LMSTUDIO_ENDPOINTS)`;
  }

  /** `error` of a request to `endpoint`, explained where the router knows more (the sandbox). */
  #explain(endpoint: Endpoint, error: unknown): unknown {
    if (!(error instanceof LmStudioError) || !causeChain(error).some(isSandboxDenial)) {
      return error;
    }
    return new LmStudioError({
      kind: "unreachable",
      url: error.url,
      message: `The sandbox blocked the connection to ${endpoint.name} at ${endpoint.baseUrl}: ` +
        `${this.#sandboxAdvice(endpoint)}.`,
      cause: error,
    });
  }

  /**
   * Reads every endpoint's model list (those in their back-off skipped, unless `all` or every
   * endpoint is), and merges them.
   */
  async #read(o: ListOptions | undefined, all: boolean): Promise<Listing> {
    const now = this.#now();
    const waiting = (e: Endpoint) => (this.#down.get(e.name)?.until ?? 0) > now;
    const skipAll = this.endpoints.every(waiting);
    const timeoutMs = Math.min(o?.timeoutMs ?? this.#listTimeoutMs, this.#listTimeoutMs);
    const answers = await Promise.all(this.endpoints.map(async (endpoint): Promise<Answer> => {
      if (!all && !skipAll && waiting(endpoint)) return { endpoint, skipped: true };
      try {
        const list = await endpoint.client.listModels({
          ...(o?.signal ? { signal: o.signal } : {}),
          ...(o?.reuse !== undefined ? { reuse: o.reuse } : {}),
          timeoutMs,
        });
        this.answered(endpoint.name);
        return { endpoint, list };
      } catch (error: unknown) {
        if (o?.signal?.aborted) throw error;
        this.failed(endpoint.name, error, { listing: true });
        return { endpoint, error, down: notAnswering(error, true) };
      }
    }));
    const listing = { at: this.#now(), answers, merged: this.#merge(answers) };
    if (answers.some((a) => "list" in a)) this.#last = listing;
    return listing;
  }

  /** One list from every endpoint's answer: models in endpoint order, notes naming endpoints. */
  #merge(answers: Answer[]): ModelList {
    const models: ModelList["models"] = [];
    const notes: string[] = [];
    const parts: ModelListEndpoint[] = [];
    let source: ModelList["source"] | undefined;
    for (const answer of answers) {
      const { name, baseUrl } = answer.endpoint;
      if ("list" in answer) {
        source ??= answer.list.source;
        models.push(...answer.list.models.map((m) => ({ ...m, endpoint: name })));
        notes.push(...answer.list.notes.map((n) => `${name}: ${n}`));
        parts.push({
          name,
          baseUrl,
          source: answer.list.source,
          modelCount: answer.list.models.length,
          error: null,
          down: false,
        });
        continue;
      }
      const note = "error" in answer && !answer.down
        ? `${name} at ${baseUrl}: ${
          clause(errorMessage(this.#explain(answer.endpoint, answer.error)))
        }`
        : this.skipNote(name) ?? `${name} at ${baseUrl}: not answering`;
      notes.push(note);
      parts.push({
        name,
        baseUrl,
        source: null,
        modelCount: null,
        error: note,
        down: "skipped" in answer || answer.down,
      });
    }
    for (const id of new Set(models.map((m) => m.id))) {
      const on = models.filter((m) => m.id === id).map((m) => m.endpoint ?? "");
      if (on.length < 2) continue;
      notes.push(
        `${id} is on ${on.slice(0, -1).join(", ")} and ${on.at(-1)}: requests for it go to ${
          on[0]
        } (the first in LMSTUDIO_ENDPOINTS)`,
      );
    }
    return { models, source: source ?? "openai", notes, endpoints: parts };
  }

  /**
   * The merged model list, read afresh (with `reuse`, each endpoint's recent one, see
   * LmStudioClient.listModels); fails only when no endpoint gives one.
   */
  async listModels(o?: ListOptions): Promise<ModelList> {
    const listing = await this.#read(o, false);
    if (listing.answers.some((a) => "list" in a)) return listing.merged;
    throw this.#noList(listing);
  }

  /** The error when no endpoint gave a model list: each one's reason. */
  #noList(listing: Listing): unknown {
    const failed = listing.answers.flatMap((a) => "error" in a ? [a] : []);
    const only = failed.length === 1 && this.endpoints.length === 1 ? failed[0] : undefined;
    if (only !== undefined) return this.#explain(only.endpoint, only.error);
    const first = failed[0]?.error;
    const kind = first instanceof LmStudioError ? first.kind : "unreachable";
    return new LmStudioError({
      kind,
      url: first instanceof LmStudioError ? first.url : `${this.endpoints[0]!.baseUrl}/v1/models`,
      message: `No model server gave its model list: ${
        (listing.merged.endpoints ?? []).map((e) => clause(e.error ?? e.name)).join("; ")
      }. Start the servers (LM Studio: Developer tab, or \`lms server start\`), or fix ` +
        "LMSTUDIO_ENDPOINTS.",
      ...(first !== undefined ? { cause: first } : {}),
    });
  }

  /** The endpoint of `model` in a listing: the first endpoint's exact id, then loose names. */
  #lookup(model: string, listing: Listing): Endpoint | undefined {
    const info = findModel(model, listing.merged.models);
    return info?.endpoint === undefined ? undefined : this.endpoint(info.endpoint);
  }

  /**
   * The endpoint that serves `model`: from the mapping while it is fresh (and nothing skipped in
   * it is due for a retry), else from the lists read again; see the module doc.
   */
  async endpointFor(model: string, o?: ModelCallOptions): Promise<Endpoint> {
    if (this.endpoints.length === 1) return this.endpoints[0]!;
    const call = o?.signal ? { signal: o.signal } : undefined;
    const last = this.#last;
    if (last !== undefined && this.#fresh(last)) {
      const cached = this.#lookup(model, last);
      if (cached !== undefined && this.skipNote(cached.name) === undefined) return cached;
    }
    let listing = await this.#read(call, false);
    let found = this.#lookup(model, listing);
    if (found === undefined && listing.answers.some((a) => "skipped" in a)) {
      // Perhaps on an endpoint in its back-off: try them too before giving up.
      listing = await this.#read(call, true);
      found = this.#lookup(model, listing);
    }
    if (found !== undefined) return found;
    // A server that cannot list its models may still serve this one (it loads what it is asked).
    const unlisted = listing.answers.find((a) =>
      ("error" in a && !a.down) ||
      ("list" in a && a.list.source === "openai" && a.list.models.length === 0)
    );
    if (unlisted !== undefined) return unlisted.endpoint;
    throw this.#notAnywhere(model, listing);
  }

  /** Whether a listing still answers for the mapping: young, and nothing skipped in it is due. */
  #fresh(listing: Listing): boolean {
    if (this.#now() - listing.at >= this.#mappingMs) return false;
    return listing.answers.every((a) =>
      "list" in a || this.skipNote(a.endpoint.name) !== undefined
    );
  }

  #notAnywhere(model: string, listing: Listing): LmStudioError {
    const parts = listing.answers.map((a) => {
      const where = `${a.endpoint.name} (${a.endpoint.baseUrl})`;
      if ("list" in a) {
        return `${where} has ${
          a.list.models.length === 0 ? "none" : listNames(a.list.models.map((m) => m.id), 20)
        }`;
      }
      return listing.merged.endpoints?.find((e) => e.name === a.endpoint.name)?.error ?? where;
    });
    return new LmStudioError({
      kind: "not_found",
      url: `${this.endpoints[0]!.baseUrl}/v1/models`,
      message: `No endpoint has model "${model}": ${parts.map(clause).join("; ")}. Name one of ` +
        `these, or download it on the server that should run it (\`lms get ${model}\`, Ollama: ` +
        `\`ollama pull ${model}\`).`,
    });
  }

  /**
   * Sends a call for `model` to its endpoint. A call that did not reach it (connection refused)
   * goes once to the next endpoint that has the model.
   */
  async #routed<T>(
    model: string,
    o: ModelCallOptions,
    call: (client: EndpointClient) => Promise<T>,
  ): Promise<T> {
    const endpoint = await this.endpointFor(model, o);
    try {
      const result = await call(endpoint.client);
      this.answered(endpoint.name);
      return result;
    } catch (error: unknown) {
      this.failed(endpoint.name, error);
      // The model may have gone from that server: read the lists again next time.
      if (error instanceof LmStudioError && error.kind === "not_found") this.#last = undefined;
      if (this.endpoints.length === 1 || !neverReached(error) || o?.signal?.aborted) {
        throw this.#explain(endpoint, error);
      }
      const listing = await this.#read(o?.signal ? { signal: o.signal } : undefined, false);
      const next = this.#lookup(model, listing);
      if (next === undefined || next === endpoint) throw this.#explain(endpoint, error);
      this.#log.warn(`${model}: ${endpoint.name} did not answer, sending it to ${next.name}`);
      try {
        const result = await call(next.client);
        this.answered(next.name);
        return result;
      } catch (again: unknown) {
        this.failed(next.name, again);
        throw this.#explain(next, again);
      }
    }
  }

  /** Picks a model from the merged list, as LmStudioClient.resolveModel does from one server's. */
  async resolveModel(
    explicit: string | undefined,
    o?: Parameters<LmStudioClient["resolveModel"]>[1],
  ): Promise<string> {
    return await chooseModelName(explicit, o ?? {}, () => this.listModels(o), {
      where: this.baseUrl,
      url: `${this.endpoints[0]!.baseUrl}/v1/models`,
    });
  }

  chat(
    req: ChatRequest,
    o?: Parameters<LmStudioClient["chat"]>[1],
  ): ReturnType<LmStudioClient["chat"]> {
    return this.#routed(req.model, o, (c) => c.chat(req, o));
  }

  complete(
    req: CompletionRequest,
    o?: Parameters<LmStudioClient["complete"]>[1],
  ): ReturnType<LmStudioClient["complete"]> {
    return this.#routed(req.model, o, (c) => c.complete(req, o));
  }

  embed(
    req: EmbeddingRequest,
    o?: Parameters<LmStudioClient["embed"]>[1],
  ): ReturnType<LmStudioClient["embed"]> {
    return this.#routed(req.model, o, (c) => c.embed(req, o));
  }

  respond(
    req: ResponseRequest,
    o?: Parameters<LmStudioClient["respond"]>[1],
  ): ReturnType<LmStudioClient["respond"]> {
    return this.#routed(req.model, o, (c) => c.respond(req, o));
  }

  loadModel(
    model: string,
    o?: Parameters<LmStudioClient["loadModel"]>[1],
  ): ReturnType<LmStudioClient["loadModel"]> {
    return this.#routed(model, o, (c) => c.loadModel(model, o));
  }

  unloadModel(
    instanceId: string,
    o?: Parameters<LmStudioClient["unloadModel"]>[1],
  ): ReturnType<LmStudioClient["unloadModel"]> {
    return this.#routed(instanceId, o, (c) => c.unloadModel(instanceId, o));
  }

  /** Has every endpoint's next model list read afresh (LmStudioClient.forgetModelList). */
  forgetModelList(): void {
    for (const endpoint of this.endpoints) endpoint.client.forgetModelList();
  }

  /**
   * Every endpoint's health (`endpoints`) and the sum: ok when every endpoint is, the models of
   * all, the slowest latency, each unhealthy endpoint's error and each note, named. An endpoint
   * that answers is no longer skipped. Never throws.
   */
  async health(o?: CallOptions): Promise<Health & { endpoints: EndpointHealth[] }> {
    const endpoints = await Promise.all(this.endpoints.map(async (e) => {
      const health = await e.client.health(o);
      if (health.ok) this.answered(e.name);
      // The client's advice names one host; the install command should allow every blocked one.
      const blocked = !health.ok && health.modelCount === undefined &&
        this.#blockedHosts([hostOf(e.baseUrl)]).length > 0;
      const error = blocked
        ? `The sandbox blocked the connection to ${e.name} at ${e.baseUrl}: ${
          this.#sandboxAdvice(e)
        }.`
        : health.error;
      return { name: e.name, ...health, ...(error !== undefined ? { error } : {}) };
    }));
    const named = (h: EndpointHealth, text: string) => `${h.name} at ${h.baseUrl}: ${clause(text)}`;
    const errors = endpoints.flatMap((h) => h.ok ? [] : [named(h, h.error ?? "not healthy")]);
    const notes = endpoints.flatMap((h) => h.note ? [named(h, h.note)] : []);
    const counts = endpoints.flatMap((h) => h.modelCount === undefined ? [] : [h.modelCount]);
    const auths = endpoints.flatMap((h) => h.auth ? [h.auth] : []);
    const auth = auths.includes("refused")
      ? "refused"
      : auths.includes("unchecked")
      ? "unchecked"
      : auths.length > 0
      ? "ok"
      : undefined;
    return {
      ok: errors.length === 0,
      baseUrl: this.baseUrl,
      latencyMs: Math.max(...endpoints.map((h) => h.latencyMs)),
      ...(counts.length > 0 ? { modelCount: counts.reduce((a, b) => a + b, 0) } : {}),
      ...(errors.length > 0 ? { error: errors.join("; ") } : {}),
      ...(auth !== undefined ? { auth } : {}),
      ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
      endpoints,
    };
  }
}
