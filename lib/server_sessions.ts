/**
 * The sessions of the autonomous tools: every result carries a `session_id`, and passing it back
 * with a new task continues that conversation (agent_sessions.ts keeps them).
 *
 * {@linkcode SessionRegistry} (one per process, on the App) keeps one SessionStore per MCP
 * session: over stdio that is the one client; with `serve --http` each client has its own, so no
 * client sees, continues or closes another's sessions, and a client's sessions end with its MCP
 * session. {@linkcode inSession} runs a task in a session; `list_sessions` and `close_session`
 * (server_agent.ts) show and forget them.
 */
import { SessionError, SessionStore, type SessionStoreOptions } from "./agent_sessions.ts";
import type { AgentResult, AgentSession } from "./agent_types.ts";

/** MCP sessions whose stores are kept at most (`serve --http`); the least recently used goes. */
export const MAX_SESSION_OWNERS = 64;

/** One {@linkcode SessionStore} per MCP session. */
export class SessionRegistry {
  readonly #options: SessionStoreOptions;
  readonly #maxOwners: number;
  /** By MCP session id ("" for stdio), the least recently used first. */
  readonly #stores = new Map<string, SessionStore>();

  constructor(options: SessionStoreOptions & { maxOwners?: number } = {}) {
    const { maxOwners, ...store } = options;
    this.#options = store;
    this.#maxOwners = Math.max(1, maxOwners ?? MAX_SESSION_OWNERS);
  }

  /** The sessions of the MCP session `owner` (the request's `extra.sessionId`; none over stdio). */
  store(owner: string | undefined): SessionStore {
    const key = owner ?? "";
    const found = this.#stores.get(key);
    if (found !== undefined) {
      this.#stores.delete(key);
      this.#stores.set(key, found);
      return found;
    }
    const store = new SessionStore(this.#options);
    this.#stores.set(key, store);
    while (this.#stores.size > this.#maxOwners) {
      // The least recently used MCP session without sessions goes first, else the oldest.
      const keys = [...this.#stores.keys()];
      const empty = keys.find((k) => this.#stores.get(k)?.list().length === 0);
      this.#stores.delete(empty ?? keys[0]!);
    }
    return store;
  }

  /** Forgets the sessions of the MCP session `owner`, which has ended. */
  drop(owner: string): void {
    this.#stores.delete(owner);
  }
}

/** A task's result, the session it is kept in, and why it could not be kept, if so. */
export interface SessionOutcome {
  result: AgentResult;
  sessionId?: string;
  note?: string;
}

/**
 * Runs a task in `store`: continuing the session `id` (busy until the task ends; an unknown,
 * expired or busy id throws {@linkcode SessionError} before anything runs), or keeping its
 * conversation as a new session. A conversation too large to keep is a note, not a failure.
 */
export async function inSession(
  store: SessionStore,
  id: string | undefined,
  run: (session: AgentSession | undefined) => Promise<AgentResult>,
): Promise<SessionOutcome> {
  if (id === undefined) {
    const result = await run(undefined);
    try {
      return { result, sessionId: store.create(result.session) };
    } catch (error: unknown) {
      if (!(error instanceof SessionError)) throw error;
      return { result, note: `its conversation was not kept: ${error.message}` };
    }
  }
  const session = store.begin(id);
  let result: AgentResult;
  try {
    result = await run(session);
  } catch (error: unknown) {
    store.end(id);
    throw error;
  }
  try {
    store.end(id, result.session);
    return { result, sessionId: id };
  } catch (error: unknown) {
    if (!(error instanceof SessionError)) throw error;
    return {
      result,
      sessionId: id,
      note: `session ${id} keeps its conversation from before this task: ${error.message}`,
    };
  }
}
