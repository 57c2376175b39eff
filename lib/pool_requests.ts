/**
 * Requests a downstream server sends to the bridge while one of its tools runs: sampling
 * (`sampling/createMessage`, a completion from an LLM) and elicitation (`elicitation/create`,
 * questions for the user). The pool's client advertises both ({@linkcode clientCapabilities}); who
 * answers is up to the caller of each tool call, which registers {@linkcode ServerRequestHandlers}
 * for the time the call runs (`McpPool.callTool(..., { onServerRequest })`).
 *
 * A request carries nothing that names the tool call it belongs to (over stdio there is no such
 * field), so {@linkcode ServerRequests} attributes it to the oldest call in flight on that
 * connection that registered a handler of its kind. With one call at a time on a server (the
 * usual case) that is exact; with several, the oldest is the best guess, as the first call is
 * the likeliest to have reached the point where it asks. With no such call the request is
 * refused with a JSON-RPC error that says why, which the server passes on in its tool's result.
 *
 * Elicitation is for the user: the pool only ever hands it to an `elicit` handler, never to a
 * model. Roots are not offered: server-filesystem replaces the directories its command line
 * allows with the client's roots, and the bridge's own directories are not what the user granted.
 */
import {
  type ClientCapabilities,
  type CreateMessageRequestParams,
  CreateMessageRequestSchema,
  type CreateMessageResult,
  type ElicitRequestParams,
  ElicitRequestSchema,
  type ElicitResult,
  ErrorCode,
  McpError,
} from "./sdk.ts";
import type { Client } from "./sdk_client.ts";

/** Who answers a server's requests during one tool call. */
export interface ServerRequestHandlers {
  /** Answers `sampling/createMessage`; `signal` aborts when the server cancels or the call ends. */
  sample?: (
    params: CreateMessageRequestParams,
    signal: AbortSignal,
  ) => Promise<CreateMessageResult>;
  /** Answers `elicitation/create` by asking the user; never the local model. */
  elicit?: (params: ElicitRequestParams, signal: AbortSignal) => Promise<ElicitResult>;
}

/** What the pool's client tells servers it can answer. */
export interface AnswerOptions {
  /** Advertise `sampling`. Default true. */
  sampling?: boolean;
  /** Advertise elicitation in form mode (questions with a schema). Default true. */
  elicitationForm?: boolean;
  /** Advertise elicitation in URL mode (a page for the user to open). Default true. */
  elicitationUrl?: boolean;
}

/** The client capabilities for `answers`: sampling, elicitation (form, url); never roots. */
export function clientCapabilities(answers: AnswerOptions = {}): ClientCapabilities {
  const caps: ClientCapabilities = {};
  if (answers.sampling !== false) caps.sampling = {};
  const form = answers.elicitationForm !== false;
  const url = answers.elicitationUrl !== false;
  if (form || url) {
    caps.elicitation = { ...(form ? { form: {} } : {}), ...(url ? { url: {} } : {}) };
  }
  return caps;
}

/**
 * A router for `server`'s requests, installed on `client` for what `capabilities` advertise; do
 * it before the handshake, so a request sent right after it is not refused as unknown.
 */
export function answerRequests(
  client: Client,
  server: string,
  capabilities: ClientCapabilities,
): ServerRequests {
  const requests = new ServerRequests(server);
  if (capabilities.sampling !== undefined) {
    client.setRequestHandler(
      CreateMessageRequestSchema,
      (request, extra) => requests.sample(request.params, extra.signal),
    );
  }
  if (capabilities.elicitation !== undefined) {
    client.setRequestHandler(
      ElicitRequestSchema,
      (request, extra) => requests.elicit(request.params, extra.signal),
    );
  }
  return requests;
}

/** How many requests of each kind a server sent, and how many got an answer. */
export interface RequestCounts {
  sampling: number;
  elicitation: number;
  /** Requests refused because no call in flight could answer them. */
  refused: number;
}

interface Registration {
  seq: number;
  tool: string;
  handlers: ServerRequestHandlers;
  /**
   * Aborted when the call ends: an answer still under way is given up. Made by the first answer
   * (most calls get no server request: they pay for no controller and no error).
   */
  ended?: AbortController;
}

type Kind = "sample" | "elicit";

/** The calls of one connection that can answer its server's requests; see the module docs. */
export class ServerRequests {
  readonly #server: string;
  readonly #registrations: Registration[] = [];
  readonly #counts: RequestCounts = { sampling: 0, elicitation: 0, refused: 0 };
  #seq = 0;
  #answering = 0;
  readonly #onIdle = new Set<() => void>();

  constructor(server: string) {
    this.#server = server;
  }

  /** Requests seen so far. */
  get counts(): Readonly<RequestCounts> {
    return this.#counts;
  }

  /** Number of server requests being answered now (the server is waiting for the bridge). */
  get answering(): number {
    return this.#answering;
  }

  /** Calls `listener` each time the last request being answered is done; returns the remover. */
  onIdle(listener: () => void): () => void {
    this.#onIdle.add(listener);
    return () => this.#onIdle.delete(listener);
  }

  /**
   * Registers `handlers` for a call of `tool` until the returned function is called (when the
   * call ends, which also aborts what its handlers are still answering).
   */
  register(tool: string, handlers: ServerRequestHandlers): () => void {
    const registration: Registration = {
      seq: ++this.#seq,
      tool,
      handlers,
    };
    this.#registrations.push(registration);
    return () => {
      const i = this.#registrations.indexOf(registration);
      if (i !== -1) this.#registrations.splice(i, 1);
      registration.ended?.abort(
        new McpError(
          ErrorCode.InvalidRequest,
          `The call of tool "${tool}" that this request was answered for has ended.`,
        ),
      );
    };
  }

  /** Answers a `sampling/createMessage` of the server (the SDK validated `params`). */
  sample(params: CreateMessageRequestParams, signal: AbortSignal): Promise<CreateMessageResult> {
    this.#counts.sampling++;
    return this.#answer("sample", signal, (r, s) => r.handlers.sample!(params, s));
  }

  /** Answers an `elicitation/create` of the server: only ever through an `elicit` handler. */
  elicit(params: ElicitRequestParams, signal: AbortSignal): Promise<ElicitResult> {
    this.#counts.elicitation++;
    return this.#answer("elicit", signal, (r, s) => r.handlers.elicit!(params, s));
  }

  async #answer<T>(
    kind: Kind,
    signal: AbortSignal,
    run: (r: Registration, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    // The oldest call in flight with a handler of this kind (registrations are kept in order).
    const registration = this.#registrations.find((r) => r.handlers[kind] !== undefined);
    if (registration === undefined) {
      this.#counts.refused++;
      throw new McpError(ErrorCode.InvalidRequest, this.#refusal(kind));
    }
    this.#answering++;
    try {
      const ended = registration.ended ??= new AbortController();
      return await run(registration, AbortSignal.any([signal, ended.signal]));
    } finally {
      this.#answering--;
      if (this.#answering === 0) { for (const listener of [...this.#onIdle]) listener(); }
    }
  }

  #refusal(kind: Kind): string {
    const server = `MCP server "${this.#server}"`;
    if (kind === "sample") {
      return `The bridge cannot answer this sampling request of ${server}: no task is running ` +
        "that could answer it. The local model answers sampling only for the calls an " +
        "autonomous task makes to the server; run the tool from one (autonomous_* tools, " +
        "`lmstudio-bridge run`).";
    }
    return `The bridge declined this elicitation request of ${server}: the caller cannot answer ` +
      "elicitation (no call running on the server came from a caller that can ask a person: an " +
      "MCP client that supports elicitation, or the bridge's terminal). The local model never " +
      "answers elicitation.";
  }
}
