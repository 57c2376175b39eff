/**
 * {@linkcode ModelError}, for what cannot be done about a model (not downloaded, not loaded, still
 * loading after the wait, not supported by the server), and the pieces of the manager's messages.
 */
import { LmStudioError } from "./lmstudio_errors.ts";
import type { ModelSource } from "./model_types.ts";

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

/** `names` for a message: the first `max`, and how many more there are; "none" for none. */
export function listNames(names: string[], max = 12): string {
  if (names.length === 0) return "none";
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
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

/** "1 model", "2 models". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
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
