/**
 * {@linkcode ModelError}, for what cannot be done about a model (not downloaded, not loaded, still
 * loading after the wait, not supported by the server), and the pieces of the manager's messages.
 */

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

/** The message of an error, or the thing thrown as text. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
