/**
 * The sessions of the autonomous tools: every result carries a `session_id`, and passing it back
 * with a new task continues that conversation (agent_sessions.ts keeps them).
 *
 * {@linkcode SessionRegistry} (one per process, on the App) keeps one SessionStore per MCP
 * session: over stdio that is the one client; with `serve --http` each client has its own, so no
 * client sees, continues or closes another's sessions, and a client's sessions end with its MCP
 * session. {@linkcode inSession} runs a task in a session; `list_sessions` and `close_session`
 * show and forget them.
 */
import { z } from "zod";
import {
  SessionError,
  type SessionInfo,
  SessionStore,
  type SessionStoreOptions,
} from "./agent_sessions.ts";
import type { AgentResult, AgentSession } from "./agent_types.ts";
import type { McpServer } from "./sdk.ts";
import { errorResult, READ_ONLY, textResult } from "./server_result.ts";
import { formatBytes, formatDuration, plural } from "./text.ts";

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

/** The description of the autonomous tools' `session_id` parameter. */
export const SESSION_ID_DESCRIPTION =
  "An earlier result's session_id: continue that conversation (its servers and model).";

/** One line of `list_sessions`. */
function sessionLine(s: SessionInfo): string {
  return [
    s.id,
    `model ${s.model || "?"}`,
    s.servers.length ? `servers ${s.servers.join(", ")}` : "no servers",
    `${plural(s.tasks, "task")}, ${plural(s.rounds, "round")}`,
    formatBytes(s.bytes),
    s.busy ? "running a task" : `expires in ${formatDuration(s.expires_in_ms)} unless used`,
  ].join(" · ");
}

/** `list_sessions` and `close_session`, over the store of the caller's MCP session. */
export function registerSessionTools(server: McpServer, sessions: SessionRegistry): void {
  server.registerTool("list_sessions", {
    title: "List autonomous sessions",
    description:
      "Lists the sessions of earlier autonomous_* tasks that a new task can continue (session_id).",
    annotations: READ_ONLY,
  }, (extra) => {
    const list = sessions.store(extra.sessionId).list();
    const text = list.length === 0
      ? "No sessions: each autonomous_* result has a session_id that continues it."
      : list.map(sessionLine).join("\n");
    return textResult(text, { sessions: list });
  });
  server.registerTool("close_session", {
    title: "Close an autonomous session",
    description: "Forgets an autonomous session (session_id) and its conversation.",
    inputSchema: { session_id: z.string().min(1).describe("The session to forget.") },
    annotations: {
      readOnlyHint: false,
      destructiveHint: true,
      idempotentHint: false,
      openWorldHint: false,
    },
  }, (args, extra) => {
    try {
      sessions.store(extra.sessionId).close(args.session_id);
      return textResult(`Closed session ${args.session_id}.`, { closed: args.session_id });
    } catch (error: unknown) {
      return errorResult(error);
    }
  });
}
