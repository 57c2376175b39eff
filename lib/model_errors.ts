/**
 * {@linkcode ModelError}, for what cannot be done about a model (not downloaded, not loaded, still
 * loading after the wait, not supported by the server), and the pieces of the manager's messages.
 */
import { LmStudioError } from "./lmstudio_errors.ts";
import type { ModelSource } from "./model_types.ts";
import { BridgeError } from "./errors.ts";

/** Why something about models cannot be done; the message says what to do. */
export class ModelError
  extends BridgeError<"not_found" | "not_loaded" | "timeout" | "unsupported"> {
  override name = "ModelError";
  readonly model: string;
  constructor(
    message: string,
    details: { kind: ModelError["kind"]; model: string; cause?: unknown },
  ) {
    super(details.kind, message, details);
    this.model = details.model;
  }
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
