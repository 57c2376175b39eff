/**
 * What a 404 (or a 400 blaming the model) from LM Studio means for the call that got it: a model
 * the server does not know (the message names the ones it has), an endpoint or REST API the server
 * lacks, or a `previous_response_id` it forgot. Each function turns the generic error into one
 * that says what to do next.
 */
import { carried, LmStudioError } from "./lmstudio_errors.ts";
import { listNames } from "./text.ts";

/** How many model ids an error message lists before "and N more". */
export const MAX_LISTED_MODELS = 20;

/** A 404, or a 400 whose message blames the model (some servers answer an unknown model so). */
export function mayBeUnknownModel(error: LmStudioError): boolean {
  if (error.kind === "not_found") return true;
  const said = error.serverMessage ?? "";
  return error.status === 400 && /model/i.test(said) &&
    /not (found|exist)|invalid|unknown|no such/i.test(said);
}

/**
 * What a call naming `model` should throw after `error` (see {@linkcode mayBeUnknownModel}),
 * knowing the model `ids` the server lists: an error naming the models that exist, `error` itself
 * when the model exists and the failure was about something else, or an error saying the server
 * lacks the endpoint.
 */
export function unknownModelError(
  error: LmStudioError,
  o: { baseUrl: string; model: string; ids: string[] },
): LmStudioError {
  const { baseUrl, model, ids } = o;
  const path = new URL(error.url).pathname;
  const common = carried(error);
  if (!ids.includes(model)) {
    return new LmStudioError({
      kind: "not_found",
      ...common,
      message: `Model "${model}" was not found at ${baseUrl}. ` +
        (ids.length > 0
          ? `Models available: ${
            listNames(ids, MAX_LISTED_MODELS)
          }. Pass one of these (or set DEFAULT_MODEL).`
          : "The server lists no models: download one in LM Studio or with `lms get <model>`."),
    });
  }
  // The model exists, so a 400 was about something else: the server's own message says what.
  if (error.kind !== "not_found") return error;
  return new LmStudioError({
    kind: "not_found",
    ...common,
    message:
      `${baseUrl} has no ${path} endpoint (404${
        error.serverMessage ? `: ${error.serverMessage}` : ""
      }). It may be an older LM Studio or a server that does not offer it; update LM Studio ` +
      `or use another tool.`,
  });
}

/**
 * A REST 404 is either "no such model/instance" or "no REST API here"; returns an error saying
 * which (`what` is "METHOD /path", `name` the model or instance asked for), or `error` unchanged
 * when it is not a 404.
 */
export function restNotFoundError(
  error: unknown,
  o: { baseUrl: string; what: string; name: string },
): unknown {
  if (!(error instanceof LmStudioError) || error.kind !== "not_found") return error;
  const { baseUrl, what, name } = o;
  const common = { kind: "not_found" as const, ...carried(error) };
  const aboutModel = error.code === "model_not_found" ||
    (error.serverMessage !== undefined && error.serverMessage.includes(name));
  if (aboutModel) {
    return new LmStudioError({
      ...common,
      message: `LM Studio at ${baseUrl} does not know "${name}"${
        error.serverMessage ? ` (${error.serverMessage})` : ""
      }. List models with \`lmstudio-bridge models\` or \`lms ls\`.`,
    });
  }
  return new LmStudioError({
    ...common,
    message: `${baseUrl} does not offer LM Studio's REST API (${what} answered 404). ` +
      "Loading models over HTTP needs LM Studio 0.4 or later; use `lms load` instead, " +
      "or rely on just-in-time loading (name the model in a request).",
  });
}

/**
 * For a `/v1/responses` call that continued `previousResponseId`: an error explaining that the
 * server does not know that id when `error` says so, else `error` unchanged.
 */
export function previousResponseError(error: unknown, previousResponseId?: string): unknown {
  if (
    error instanceof LmStudioError && previousResponseId !== undefined &&
    (error.code === "previous_response_not_found" ||
      /previous.?response/i.test(error.serverMessage ?? ""))
  ) {
    return new LmStudioError({
      kind: error.kind,
      ...carried(error),
      message: `LM Studio does not know previous_response_id "${previousResponseId}" ` +
        `(it forgets responses when it restarts, and ids from another server never match). ` +
        `Start a new conversation by leaving previous_response_id out.`,
    });
  }
  return error;
}
