/**
 * Picking a model from a server's model list when a call names none: for chat, the first loaded
 * LLM, else the first non-embedding model; for embeddings, the loaded embedding model, else any
 * embedding model, never the chat model. Pure: the list is read by the caller (one server's, or the
 * merged list of several).
 */
import { LmStudioError, NOTHING_LISTED } from "./lmstudio_errors.ts";
import type { ModelList } from "./lmstudio_types.ts";

/**
 * The model of `kind` to use from `list`; a list without one is an LmStudioError ("not_found")
 * saying what is there and what to do, `where` naming the server(s) ("http://127.0.0.1:1234") and
 * `url` the request the list came from.
 */
export function pickModel(
  list: ModelList,
  o: { kind: "llm" | "embedding"; where: string; url: string },
): string {
  const describe = () =>
    list.models.length === 0
      ? `The server lists no models. ${NOTHING_LISTED}`
      : `Models available: ${list.models.map((m) => `${m.id} (${m.type})`).join(", ")}.`;
  const empty = list.models.length === 0;
  if (o.kind === "embedding") {
    const embeddings = list.models.filter((m) => m.type === "embedding");
    const picked = embeddings.find((m) => m.state === "loaded") ?? embeddings[0];
    if (picked) return picked.id;
    throw new LmStudioError({
      kind: "not_found",
      url: o.url,
      message: `No embedding model at ${o.where}. ${describe()} ` +
        (empty ? "Or" : "Download one (e.g. `lms get nomic-embed-text-v1.5`), or") +
        " pass the model explicitly.",
    });
  }
  const chat = list.models.filter((m) => m.type !== "embedding");
  const picked = chat.find((m) => m.state === "loaded") ?? chat[0];
  if (picked) return picked.id;
  throw new LmStudioError({
    kind: "not_found",
    url: o.url,
    message: `No chat model at ${o.where}. ${describe()} ` +
      (empty ? "Or" : "Download one (e.g. `lms get qwen2.5-7b-instruct`), or") +
      " pass the model explicitly (or set DEFAULT_MODEL).",
  });
}
