/**
 * Conversations kept so that a later task can continue one (the loop's side of sessions: every
 * result carries an {@linkcode AgentSession}; `runAgent({ session })` continues it).
 *
 * {@linkcode SessionStore} keeps sessions in memory under random ids, bounded in number (the
 * least recently used one is closed to make room) and in size (a session larger than the limit is
 * condensed like the conversation, oldest tool results first, and refused if it still does not
 * fit), and forgets a session idle for longer than the idle time. An id it does not have is a
 * {@linkcode SessionError} that says why (never known, expired, closed, closed to make room),
 * never a silent new session. A session runs one task at a time ({@linkcode SessionStore.begin}
 * and {@linkcode SessionStore.end}).
 *
 * {@linkcode sessionToJson} and {@linkcode sessionFromJson} write a session as JSON and read it
 * back (validated with zod), so a session can be kept in a file between runs.
 *
 * Defaults: at most {@linkcode DEFAULT_MAX_SESSIONS} sessions of at most
 * {@linkcode DEFAULT_MAX_SESSION_BYTES} bytes each (as JSON), forgotten after
 * {@linkcode DEFAULT_SESSION_IDLE_MS} without use. Expiry is checked whenever the store is used:
 * no timers.
 */
import { z } from "zod";
import { fitConversation } from "./agent_budget.ts";
import type { AgentSession } from "./agent_types.ts";
import { BridgeError, errorMessage } from "./errors.ts";
import type { ChatMessage } from "./lmstudio_types.ts";
import { CHARS_PER_TOKEN } from "./tool_output.ts";
import { formatBytes, plural } from "./text.ts";

/** Sessions kept at most when not configured. */
export const DEFAULT_MAX_SESSIONS = 32;
/** Largest session, as JSON, when not configured: 2 MiB. */
export const DEFAULT_MAX_SESSION_BYTES: number = 2 * 1024 * 1024;
/** A session unused this long is forgotten, when not configured: 30 minutes. */
export const DEFAULT_SESSION_IDLE_MS: number = 30 * 60_000;
/** How many forgotten ids the store remembers, to say why they are gone. */
const REMEMBERED_GONE = 256;

/** Why a session cannot be used: its id is unknown, expired or closed, it is busy, or invalid. */
export class SessionError
  extends BridgeError<"unknown" | "expired" | "closed" | "busy" | "invalid" | "too_large"> {
  override name = "SessionError";
}

/** What {@linkcode SessionStore.list} tells about a session. */
export interface SessionInfo {
  id: string;
  model: string;
  servers: string[];
  tasks: number;
  rounds: number;
  messages: number;
  /** Size as JSON. */
  bytes: number;
  /** A task is running in it. */
  busy: boolean;
  /** Since its last use. */
  idle_ms: number;
  /** Until it is forgotten, unless used. */
  expires_in_ms: number;
}

/** Options of {@linkcode SessionStore}. */
export interface SessionStoreOptions {
  /** Default {@linkcode DEFAULT_MAX_SESSIONS}. */
  maxSessions?: number;
  /** Default {@linkcode DEFAULT_MAX_SESSION_BYTES}. */
  maxBytes?: number;
  /** Default {@linkcode DEFAULT_SESSION_IDLE_MS}. */
  idleMs?: number;
  /** Clock in milliseconds (default Date.now). */
  now?: () => number;
}

interface Entry {
  session: AgentSession;
  /** Its size as JSON; written only when asked for ({@linkcode SessionStore.list}). */
  bytes: number | undefined;
  usedAt: number;
  busy: boolean;
}

const encoder = new TextEncoder();

function jsonBytes(session: AgentSession): number {
  return encoder.encode(sessionToJson(session)).length;
}

/** Bytes of the longest JSON text of a number ("-1.7976931348623157e+308"). */
const NUMBER_BYTES = 24;

/**
 * At least as many bytes as `JSON.stringify(value)` takes, without writing it: each UTF-16 unit
 * of a string takes at most 6 (a control character or a lone surrogate, escaped as \uXXXX). A
 * session's messages nest a few levels deep, so the recursion stays shallow.
 */
function jsonBytesAtMost(value: unknown): number {
  if (typeof value === "string") return 2 + 6 * value.length;
  if (typeof value !== "object" || value === null) return NUMBER_BYTES;
  let bytes = 2;
  if (Array.isArray(value)) {
    for (const item of value) bytes += 1 + jsonBytesAtMost(item);
    return bytes;
  }
  for (const key in value) {
    bytes += 2 + jsonBytesAtMost(key) + jsonBytesAtMost((value as Record<string, unknown>)[key]);
  }
  return bytes;
}

/** "2 h 5 min", "30 min", "45 s". */
function duration(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return `${Math.round(ms / 1000)} s`;
  if (minutes < 60) return `${minutes} min`;
  const rest = minutes % 60;
  return `${Math.floor(minutes / 60)} h${rest ? ` ${rest} min` : ""}`;
}

const START_NEW = "Start a new task without a session id; its result carries a new session.";

/** Sessions in memory: see the module documentation. */
export class SessionStore {
  readonly maxSessions: number;
  readonly maxBytes: number;
  readonly idleMs: number;
  readonly #now: () => number;
  /** The sessions, least recently used first (a use moves its entry to the end). */
  readonly #entries = new Map<string, Entry>();
  /** Ids that are gone, and why, oldest first. */
  readonly #gone = new Map<string, string>();

  constructor(options: SessionStoreOptions = {}) {
    this.maxSessions = Math.max(1, Math.floor(options.maxSessions ?? DEFAULT_MAX_SESSIONS));
    this.maxBytes = Math.max(1024, Math.floor(options.maxBytes ?? DEFAULT_MAX_SESSION_BYTES));
    this.idleMs = Math.max(1, options.idleMs ?? DEFAULT_SESSION_IDLE_MS);
    this.#now = options.now ?? Date.now;
  }

  /**
   * Keeps `session` under a new id and answers the id. When the store is full, the least recently
   * used session that runs no task is closed to make room. Throws {@linkcode SessionError}
   * "too_large" when the session does not fit {@linkcode maxBytes} even condensed.
   */
  create(session: AgentSession): string {
    this.#prune();
    const entry = this.#entry(session);
    if (this.#entries.size >= this.maxSessions) {
      for (const [id, e] of this.#entries) {
        if (e.busy) continue;
        this.#forget(
          id,
          `it was closed to make room: at most ${plural(this.maxSessions, "session")} are ` +
            "kept, and it was the one unused the longest",
        );
        if (this.#entries.size < this.maxSessions) break;
      }
    }
    const id = `s_${crypto.randomUUID().replaceAll("-", "")}`;
    this.#entries.set(id, entry);
    return id;
  }

  /** The session `id` (its use keeps it from expiring). Throws {@linkcode SessionError}. */
  get(id: string): AgentSession {
    const entry = this.#find(id);
    this.#used(id, entry);
    return entry.session;
  }

  /**
   * The session `id`, to continue it: marked busy until {@linkcode end}, so that a second task
   * cannot continue it at the same time. Throws {@linkcode SessionError} ("busy" when a task runs).
   */
  begin(id: string): AgentSession {
    const entry = this.#find(id);
    if (entry.busy) {
      throw new SessionError(
        "busy",
        `Session "${id}" is running a task: continue it when that task has finished.`,
      );
    }
    entry.busy = true;
    this.#used(id, entry);
    return entry.session;
  }

  /**
   * Ends the task {@linkcode begin} started: keeps `session` (the result's) in place of the old
   * one, or the old one when there is none (the task failed before it had a result). A session
   * closed meanwhile stays closed. Throws {@linkcode SessionError} "too_large" (the old session is
   * kept, and no longer busy).
   */
  end(id: string, session?: AgentSession): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    entry.busy = false;
    this.#used(id, entry);
    if (session === undefined) return;
    const next = this.#entry(session);
    entry.session = next.session;
    entry.bytes = next.bytes;
  }

  /** Every session kept, the most recently used first. */
  list(): SessionInfo[] {
    this.#prune();
    const now = this.#now();
    return [...this.#entries]
      .reverse()
      .map(([id, e]) => ({
        id,
        model: e.session.model,
        servers: [...e.session.servers],
        tasks: e.session.tasks,
        rounds: e.session.rounds,
        messages: e.session.messages.length,
        bytes: e.bytes ??= jsonBytes(e.session),
        busy: e.busy,
        idle_ms: now - e.usedAt,
        expires_in_ms: Math.max(0, e.usedAt + this.idleMs - now),
      }));
  }

  /** Forgets the session `id`. Throws {@linkcode SessionError} when it is not kept. */
  close(id: string): void {
    this.#find(id);
    this.#forget(id, "it was closed");
  }

  /** The entry of `id`, or why there is none. */
  #find(id: string): Entry {
    this.#prune();
    const entry = this.#entries.get(id);
    if (entry !== undefined) return entry;
    const gone = this.#gone.get(id);
    if (gone !== undefined) {
      const kind = gone.startsWith("it expired") ? "expired" : "closed";
      throw new SessionError(kind, `Session "${id}" is gone: ${gone}. ${START_NEW}`);
    }
    throw new SessionError(
      "unknown",
      `No session "${id}": this bridge never made it, or it has restarted since (sessions live ` +
        `in memory). ${START_NEW}`,
    );
  }

  /**
   * An entry for `session`, condensed to fit {@linkcode maxBytes} if need be. Its JSON is written
   * (to measure it) only when a bound says it might not fit.
   */
  #entry(session: AgentSession): Entry {
    const usedAt = this.#now();
    if (jsonBytesAtMost({ version: SESSION_FORMAT_VERSION, ...session }) <= this.maxBytes) {
      return { session, bytes: undefined, usedAt, busy: false };
    }
    let bytes = jsonBytes(session);
    let kept = session;
    if (bytes > this.maxBytes) {
      const messages: ChatMessage[] = session.messages.map((m) => ({ ...m }));
      // JSON escapes and multi-byte characters: aim below the limit.
      fitConversation(messages, { budget: Math.floor(this.maxBytes / CHARS_PER_TOKEN * 0.8) });
      kept = { ...session, messages };
      bytes = jsonBytes(kept);
    }
    if (bytes > this.maxBytes) {
      throw new SessionError(
        "too_large",
        `The session is too large to keep: ${formatBytes(bytes)} as JSON even with its earlier ` +
          `tool results condensed, more than the ${formatBytes(this.maxBytes)} a session may ` +
          "take. Its last task's results are too long: start a new session.",
      );
    }
    return { session: kept, bytes, usedAt, busy: false };
  }

  /** Marks `entry` used now: it moves to the end of the least-recently-used order. */
  #used(id: string, entry: Entry): void {
    entry.usedAt = this.#now();
    this.#entries.delete(id);
    this.#entries.set(id, entry);
  }

  /**
   * Forgets the sessions idle for longer than {@linkcode idleMs} (never one that is busy). They
   * come first in the order of use: the walk ends at the first one used since.
   */
  #prune(): void {
    const now = this.#now();
    for (const [id, e] of this.#entries) {
      if (now - e.usedAt <= this.idleMs) break;
      if (!e.busy) this.#forget(id, `it expired after ${duration(this.idleMs)} without use`);
    }
  }

  #forget(id: string, why: string): void {
    this.#entries.delete(id);
    this.#gone.set(id, why);
    while (this.#gone.size > REMEMBERED_GONE) {
      const first = this.#gone.keys().next();
      if (first.done) break;
      this.#gone.delete(first.value);
    }
  }
}

// ---- JSON

/** The version of the session document {@linkcode sessionToJson} writes. */
export const SESSION_FORMAT_VERSION = 1;

const ContentPartSchema = z.union([
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({
    type: z.literal("image_url"),
    image_url: z.object({ url: z.string(), detail: z.enum(["auto", "low", "high"]).optional() }),
  }),
]);

const MessageSchema = z.object({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(ContentPartSchema), z.null()]),
  tool_calls: z.array(z.object({
    id: z.string(),
    type: z.literal("function"),
    function: z.object({ name: z.string(), arguments: z.string() }),
  })).optional(),
  tool_call_id: z.string().optional(),
  name: z.string().optional(),
});

// A task that ended before it began (cancelled at once) leaves a session without servers, model
// or messages: continuing it starts afresh with the options of the next task.
const SessionSchema = z.object({
  version: z.literal(SESSION_FORMAT_VERSION),
  servers: z.array(z.string().min(1)),
  model: z.string(),
  messages: z.array(MessageSchema).refine((m) => m.length === 0 || m[0]?.role === "system", {
    message: "the first message must be the system message",
  }),
  tasks: z.number().int().nonnegative(),
  rounds: z.number().int().nonnegative(),
});

/** `session` as a JSON document (with its format version), for a file. */
export function sessionToJson(session: AgentSession): string {
  return JSON.stringify({ version: SESSION_FORMAT_VERSION, ...session });
}

/**
 * The session in a JSON document {@linkcode sessionToJson} wrote. Throws {@linkcode SessionError}
 * "invalid" saying what is wrong when the text is not JSON or not such a document.
 */
export function sessionFromJson(text: string): AgentSession {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error: unknown) {
    throw new SessionError(
      "invalid",
      `Not a session: the text is not JSON (${errorMessage(error)}). ${START_NEW}`,
      { cause: error },
    );
  }
  const parsed = SessionSchema.safeParse(json);
  if (!parsed.success) {
    throw new SessionError(
      "invalid",
      `Not a session of this bridge (format version ${SESSION_FORMAT_VERSION}):\n` +
        `${z.prettifyError(parsed.error)}\n${START_NEW}`,
      { cause: parsed.error },
    );
  }
  const { version: _version, ...session } = parsed.data;
  return session;
}
