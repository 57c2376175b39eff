/**
 * Picking a model when a call names none: for chat, DEFAULT_MODEL, else the first loaded LLM of
 * the model list, else its first non-embedding model; for embeddings, the loaded embedding model,
 * else any embedding model, never the chat model. The list is the caller's (one server's, or the
 * merged list of several), read only when a pick needs it.
 */
import { LmStudioError, NOTHING_LISTED } from "./lmstudio_errors.ts";
import type { ModelList } from "./lmstudio_types.ts";

/** What a model is chosen with: its kind, DEFAULT_MODEL, and the model list if the caller has it. */
export interface ModelChoice {
  kind?: "llm" | "embedding";
  defaultModel?: string;
  list?: ModelList;
}

/**
 * The model to use: `explicit`, else (for chat) `defaultModel`, else one picked from the list
 * ({@linkcode pickModel}), which is `o.list` or else read with `read`.
 */
export async function chooseModelName(
  explicit: string | undefined,
  o: ModelChoice,
  read: () => Promise<ModelList>,
  site: { where: string; url: string },
): Promise<string> {
  const named = explicit?.trim();
  if (named) return named;
  const kind = o.kind ?? "llm";
  const fallback = o.defaultModel?.trim();
  if (kind === "llm" && fallback) return fallback;
  return pickModel(o.list ?? await read(), { kind, ...site });
}

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
