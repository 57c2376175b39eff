/**
 * Session files of `run`: `--session FILE` continues the conversation kept in FILE, or starts one
 * when FILE does not exist yet, and keeps the conversation there after the task; `--continue FILE`
 * does the same but requires FILE, so that a mistyped name is an error instead of a fresh start.
 *
 * The file is JSON (agent_sessions.ts `sessionToJson`), bounded like the autonomous tools'
 * sessions (earlier tool results condensed first), created readable by its owner only, and
 * written with `writeFileNarrowly` (launch.ts): the bridge's sandbox writes nothing, so a deno
 * allowed to write that one file writes it, or the error names the exact command that allows it.
 * Whether it can be written is checked before the task starts.
 */
import { z } from "zod";
import { SessionError, sessionFromJson, SessionStore, sessionToJson } from "./agent_sessions.ts";
import type { AgentSession } from "./agent_types.ts";
import { type ParsedArgs, stringOption, UsageError } from "./args.ts";
import { errorMessage } from "./errors.ts";
import { WriteError, writeFileNarrowly, writeProblem } from "./launch.ts";
import { resolve } from "./path.ts";

/** A session file named on the command line, and the session it holds (none when new). */
export interface SessionFile {
  path: string;
  session?: AgentSession;
}

/** Reads `path`; undefined when it does not exist. */
async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new SessionError(
      "invalid",
      `Cannot read the session file ${path}: ${errorMessage(error)}`,
      {
        cause: error,
      },
    );
  }
}

/**
 * The session file of `--session FILE` or `--continue FILE` (relative to `cwd`), read, and checked
 * to be writable; undefined without either option. Throws {@linkcode UsageError} for both
 * options, {@linkcode SessionError} for a file that holds no session (or, with `--continue`, that
 * does not exist), {@linkcode WriteError} when it cannot be written (the exact command that
 * allows it).
 */
export async function openSessionFile(
  args: ParsedArgs,
  cwd: string,
): Promise<SessionFile | undefined> {
  const named = stringOption(args, "session");
  const continued = stringOption(args, "continue");
  if (named !== undefined && continued !== undefined) {
    throw new UsageError("Use either --session FILE or --continue FILE, not both.", "run");
  }
  const given = named ?? continued;
  if (given === undefined) return undefined;
  const path = resolve(cwd, given);
  const text = await readIfThere(path);
  const empty = text === undefined || text.trim() === "";
  if (empty && continued !== undefined) {
    throw new SessionError(
      "unknown",
      `No session in ${path}: --continue continues a session that an earlier run kept there. ` +
        `To start one in that file, use --session ${given}.`,
    );
  }
  const session = empty ? undefined : parseSession(path, text);
  const problem = await writeProblem(path);
  if (problem !== undefined) {
    throw new WriteError(
      "write",
      `${problem}\nThen run it again, or leave out --${named ? "session" : "continue"}.`,
    );
  }
  return session === undefined ? { path } : { path, session };
}

function parseSession(path: string, text: string): AgentSession {
  try {
    return sessionFromJson(text);
  } catch (error: unknown) {
    if (!(error instanceof SessionError)) throw error;
    const why = error.cause instanceof z.ZodError
      ? z.prettifyError(error.cause)
      : errorMessage(error.cause ?? error);
    throw new SessionError(
      "invalid",
      `${path} holds no session this bridge can continue, so it is left as it is:\n${why}\n` +
        "Name another file to start a new session.",
      { cause: error },
    );
  }
}

/**
 * Keeps `session` in the file, condensed like the autonomous tools' sessions when it is large.
 * Throws {@linkcode SessionError} "too_large", or {@linkcode WriteError}.
 */
export async function keepSession(file: SessionFile, session: AgentSession): Promise<void> {
  const store = new SessionStore();
  const bounded = store.get(store.create(session));
  await writeFileNarrowly(file.path, sessionToJson(bounded) + "\n", { mode: 0o600 });
}
