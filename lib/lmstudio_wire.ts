/**
 * The wire formats of LM Studio's OpenAI-compatible endpoints and REST model lists, and their
 * normalisation. Every reply is parsed as `unknown` and validated with these zod schemas, leniently
 * (every field optional, unknown fields kept), because LM Studio versions, Ollama and llama.cpp
 * differ; the normalisers turn a validated reply into the client's result types (reasoning
 * separated from the answer, tool calls left raw, usage filled in), and enrich the plain
 * `/v1/models` id list with what `/api/v1/models` (LM Studio 0.4+) or `/api/v0/models` tell: type,
 * loaded state, context lengths and capabilities, with notes on what could not be known.
 */
import { z } from "zod";
import { badResponseError, LmStudioError, type RequestSite } from "./lmstudio_errors.ts";
import type {
  ChatResult,
  CompletionResult,
  EmbeddingResult,
  ModelInfo,
  ModelList,
  RawToolCall,
  ResponseResult,
  Usage,
} from "./lmstudio_types.ts";
import { clip, shortJson } from "./text.ts";

// ---------------------------------------------------------------------------------------------
// Schemas

/**
 * A field the client can do without (ids, model names, finish reasons, usage): kept as it came
 * and read by the normalisers with {@linkcode usable}, so a value of an unexpected type (a string
 * `usage`, a numeric `finish_reason`) is ignored instead of failing the whole reply.
 */
const spare = z.unknown().optional();

/**
 * `value` as `schema` reads it, else undefined; a value that was there but did not fit is noted
 * in `ignored` ("field: value") for the caller to log.
 */
function usable<T>(
  value: unknown,
  schema: z.ZodType<T>,
  name: string,
  ignored: string[],
): T | undefined {
  if (value === undefined || value === null) return undefined;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  ignored.push(`${name}: ${shortJson(value, 60)}`);
  return undefined;
}

const Text = z.string();
const CallId = z.union([z.string(), z.number()]);
const Count = z.number().finite().nonnegative();
const AnyObject = z.looseObject({});

/**
 * `/v1/models`: the ids of the models the server offers. Ollama with no model pulled answers
 * `"data": null`, which is an empty list.
 */
export const ModelsWire = z.looseObject({
  data: z.array(z.looseObject({ id: z.string() })).nullable().transform((d) => d ?? []),
});

const ToolCallWire = z.looseObject({
  id: spare,
  function: z.looseObject({
    name: z.string().nullish(),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  }).nullish(),
});

/** A `/v1/chat/completions` reply. */
export const ChatWire = z.looseObject({
  id: spare,
  model: spare,
  choices: z.array(z.looseObject({
    finish_reason: spare,
    message: z.looseObject({
      content: z.union([z.string(), z.array(z.unknown())]).nullish(),
      reasoning_content: z.unknown().optional(),
      reasoning: z.unknown().optional(),
      tool_calls: z.array(ToolCallWire).nullish(),
    }),
  })).min(1),
  usage: spare,
});

/** A `/v1/completions` reply. */
export const CompletionWire = z.looseObject({
  model: spare,
  choices: z.array(z.looseObject({
    text: z.string().nullish(),
    finish_reason: spare,
  })).min(1),
  usage: spare,
});

/** A `/v1/embeddings` reply. */
export const EmbeddingWire = z.looseObject({
  model: spare,
  data: z.array(z.looseObject({
    index: spare,
    embedding: z.array(z.number()),
  })),
  usage: spare,
});

const TextPartWire = z.looseObject({ type: z.string().nullish(), text: z.string().nullish() });

/** A `/v1/responses` reply. */
export const ResponseWire = z.looseObject({
  id: z.string(),
  status: spare,
  model: spare,
  previous_response_id: spare,
  output_text: z.string().nullish(),
  output: z.array(z.looseObject({
    type: z.string().nullish(),
    content: z.array(TextPartWire).nullish(),
    summary: z.array(TextPartWire).nullish(),
    call_id: z.string().nullish(),
    id: z.string().nullish(),
    name: z.string().nullish(),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  })).nullish(),
  usage: spare,
});

/** A `/api/v1/models/load` reply. */
export const LoadWire = z.looseObject({
  instance_id: z.string().nullish(),
  status: z.string().nullish(),
});

/** An `/api/v0/models` reply. */
export const V0ModelsWire = z.looseObject({
  data: z.array(z.looseObject({
    id: z.string(),
    type: z.string().nullish(),
    publisher: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.string().nullish(),
    state: z.string().nullish(),
    max_context_length: z.number().nullish(),
    loaded_context_length: z.number().nullish(),
    capabilities: z.unknown().optional(),
  })),
});

/** An `/api/v1/models` reply. */
export const V1ModelsWire = z.looseObject({
  models: z.array(z.looseObject({
    type: z.string().nullish(),
    key: z.string().nullish(),
    id: z.string().nullish(),
    publisher: z.string().nullish(),
    architecture: z.string().nullish(),
    arch: z.string().nullish(),
    quantization: z.unknown().optional(),
    max_context_length: z.number().nullish(),
    loaded_instances: z.array(z.looseObject({
      id: z.string().nullish(),
      config: z.looseObject({ context_length: z.number().nullish() }).nullish(),
    })).nullish(),
    capabilities: z.looseObject({
      vision: z.boolean().nullish(),
      trained_for_tool_use: z.boolean().nullish(),
      reasoning: z.unknown().optional(),
    }).nullish(),
  })),
});

// ---------------------------------------------------------------------------------------------
// Streamed replies: one schema per server-sent event. Every field is spare (read with a type
// check by the assembler in lmstudio_stream.ts), so an odd field never fails a whole stream.

const ToolCallDeltaWire = z.looseObject({
  index: spare,
  id: spare,
  function: z.looseObject({ name: spare, arguments: spare }).nullish(),
});

/** One tool call fragment of a streamed chat reply. */
export type ToolCallDelta = z.infer<typeof ToolCallDeltaWire>;

/** One `chat.completion.chunk` of a streamed `/v1/chat/completions` reply. */
export const ChatChunkWire = z.looseObject({
  id: spare,
  model: spare,
  choices: z.array(z.looseObject({
    index: spare,
    finish_reason: spare,
    delta: z.looseObject({
      content: spare,
      reasoning_content: spare,
      reasoning: spare,
      tool_calls: z.array(ToolCallDeltaWire).nullish(),
    }).nullish(),
  })).nullish(),
  usage: spare,
});

/** One chunk of a streamed `/v1/completions` reply. */
export const CompletionChunkWire = z.looseObject({
  id: spare,
  model: spare,
  choices: z.array(z.looseObject({ index: spare, text: spare, finish_reason: spare })).nullish(),
  usage: spare,
});

/**
 * One event of a streamed `/v1/responses` reply (`response.output_text.delta`,
 * `response.completed`, ...); the full response an end event carries is read with
 * {@linkcode ResponseWire}.
 */
export const ResponseEventWire = z.looseObject({
  type: spare,
  delta: spare,
  item: z.looseObject({ type: spare }).nullish(),
  response: spare,
});

const QuantizationWire = z.looseObject({ name: z.string() });

const JsonObjectFormat = z.looseObject({ type: z.literal("json_object") });

/**
 * `response_format` as the server accepts it. LM Studio takes only `json_schema` and `text` (400
 * for anything else), so `{"type":"json_object"}` is sent as a JSON schema that allows any object,
 * which every server with structured output (LM Studio, llama.cpp, Ollama, vLLM) understands.
 */
export function wireResponseFormat(format: unknown): unknown {
  if (!JsonObjectFormat.safeParse(format).success) return format;
  return {
    type: "json_schema",
    json_schema: { name: "json_object", schema: { type: "object" } },
  };
}

/** A reply whose content does not matter. */
export const AnyWire = z.unknown();

/** Parses a reply body with `schema`; one that is not JSON or does not match is a bad_response. */
export function parseReply<T>(text: string, schema: z.ZodType<T>, site: RequestSite): T {
  let json: unknown;
  try {
    json = text.trim() === "" ? undefined : JSON.parse(text);
  } catch (cause: unknown) {
    throw badResponseError({ ...site, detail: `not JSON: ${clip(text.trim(), 120)}`, cause });
  }
  return validateReply(json, schema, site);
}

/** Validates a parsed reply (or one assembled from a stream) with `schema`, else a bad_response. */
export function validateReply<T>(json: unknown, schema: z.ZodType<T>, site: RequestSite): T {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) =>
      `${i.path.length > 0 ? i.path.join(".") : "reply"}: ${i.message}`
    ).join("; ");
    throw badResponseError({ ...site, detail: issues, cause: parsed.error });
  }
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/**
 * Separates reasoning from answer text: `<think>...</think>` blocks (also an unterminated leading
 * `<think>` when the answer ran out of tokens, and a lone `</think>` whose opening tag was part of
 * the prompt template) move to `reasoning`; the rest, trimmed, is `content`.
 */
export function splitReasoning(text: string): { content: string; reasoning?: string } {
  const thoughts: string[] = [];
  const kept: string[] = [];
  // One forward scan (every search starts where the last ended), so the time is linear in the
  // text even for thousands of unclosed tags.
  const find = (tag: RegExp, from: number): number => {
    tag.lastIndex = from;
    return tag.exec(text)?.index ?? -1;
  };
  const open = /<think>/gi;
  const close = /<\/think>/gi;
  let at = 0;
  // Opening tag in the prompt template: "reasoning...</think>answer".
  const firstClose = find(close, 0);
  if (firstClose !== -1) {
    const firstOpen = find(open, 0);
    if (firstOpen === -1 || firstOpen > firstClose) {
      thoughts.push(text.slice(0, firstClose));
      at = firstClose + "</think>".length;
    }
  }
  while (at < text.length) {
    const start = find(open, at);
    if (start === -1) {
      kept.push(text.slice(at));
      break;
    }
    kept.push(text.slice(at, start));
    const end = find(close, start + "<think>".length);
    if (end === -1) {
      // Unterminated: the model ran out of tokens while thinking.
      thoughts.push(text.slice(start + "<think>".length));
      break;
    }
    thoughts.push(text.slice(start + "<think>".length, end));
    at = end + "</think>".length;
  }
  const content = kept.join("").trim();
  const reasoning = thoughts.map((t) => t.trim()).filter((t) => t !== "").join("\n\n");
  return reasoning === "" ? { content } : { content, reasoning };
}

function textOf(content: string | unknown[] | null | undefined): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const parts: string[] = [];
  for (const part of content) {
    const parsed = TextPartWire.safeParse(part);
    if (parsed.success && typeof parsed.data.text === "string") parts.push(parsed.data.text);
  }
  return parts.join("");
}

/** The token counts of a `usage` object that are numbers; the others are noted in `ignored`. */
function counts<K extends string>(
  usage: unknown,
  keys: readonly K[],
  ignored: string[],
): Partial<Record<K, number>> | undefined {
  const object = usable(usage, AnyObject, "usage", ignored);
  if (object === undefined) return undefined;
  const found: Partial<Record<K, number>> = {};
  for (const key of keys) {
    const n = usable(object[key], Count, `usage.${key}`, ignored);
    if (n !== undefined) found[key] = n;
  }
  return found;
}

function toUsage(usage: unknown, ignored: string[]): Usage | undefined {
  const u = counts(usage, ["prompt_tokens", "completion_tokens", "total_tokens"], ignored);
  if (!u) return undefined;
  const prompt = u.prompt_tokens ?? 0;
  const completion = u.completion_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: u.total_tokens ?? prompt + completion,
  };
}

/**
 * A chat reply as a {@linkcode ChatResult}: reasoning from wherever it is, tool calls raw. Fields
 * it can do without that hold something unusable are left out and noted in `ignored`.
 */
export function chatResult(wire: z.infer<typeof ChatWire>, ignored: string[] = []): ChatResult {
  // min(1) in the schema guarantees a first choice.
  const choice = wire.choices[0]!;
  const message = choice.message;
  const split = splitReasoning(textOf(message.content));
  const reasoning = [message.reasoning_content, message.reasoning, split.reasoning]
    .filter((r): r is string => typeof r === "string" && r.trim() !== "")
    .map((r) => r.trim())
    .join("\n\n");
  const toolCalls: RawToolCall[] = (message.tool_calls ?? []).map((c, i) => {
    const id = usable(c.id, CallId, `tool_calls[${i}].id`, ignored);
    return {
      ...(id !== undefined && id !== "" ? { id: String(id) } : {}),
      name: c.function?.name ?? "",
      arguments: c.function?.arguments ?? "{}",
    };
  });
  const usage = toUsage(wire.usage, ignored);
  const id = usable(wire.id, Text, "id", ignored);
  const model = usable(wire.model, Text, "model", ignored);
  const finishReason = usable(choice.finish_reason, Text, "finish_reason", ignored);
  return {
    ...(id ? { id } : {}),
    ...(model ? { model } : {}),
    content: split.content,
    ...(reasoning !== "" ? { reasoning } : {}),
    toolCalls,
    ...(finishReason ? { finishReason } : {}),
    ...(usage ? { usage } : {}),
  };
}

/** A completion reply as a {@linkcode CompletionResult}; unusable spare fields go to `ignored`. */
export function completionResult(
  wire: z.infer<typeof CompletionWire>,
  ignored: string[] = [],
): CompletionResult {
  const choice = wire.choices[0]!;
  const usage = toUsage(wire.usage, ignored);
  const model = usable(wire.model, Text, "model", ignored);
  const finishReason = usable(choice.finish_reason, Text, "finish_reason", ignored);
  return {
    ...(model ? { model } : {}),
    text: choice.text ?? "",
    ...(finishReason ? { finishReason } : {}),
    ...(usage ? { usage } : {}),
  };
}

/**
 * An embeddings reply as an {@linkcode EmbeddingResult}, ordered by the server's `index` (the
 * position where it gives none usable); unusable spare fields go to `ignored`.
 */
export function embeddingResult(
  wire: z.infer<typeof EmbeddingWire>,
  ignored: string[] = [],
): EmbeddingResult {
  const ordered = wire.data
    .map((d, position) => ({
      index: usable(d.index, Count, `data[${position}].index`, ignored) ?? position,
      embedding: d.embedding,
    }))
    .sort((a, b) => a.index - b.index);
  const usage = counts(wire.usage, ["prompt_tokens", "total_tokens"], ignored);
  const model = usable(wire.model, Text, "model", ignored);
  return {
    ...(model ? { model } : {}),
    embeddings: ordered.map((d) => d.embedding),
    ...(usage ? { usage } : {}),
  };
}

/**
 * A `/v1/responses` reply as a {@linkcode ResponseResult}: text, reasoning and function calls
 * from the output items; unusable spare fields go to `ignored`.
 */
export function responseResult(
  wire: z.infer<typeof ResponseWire>,
  ignored: string[] = [],
): ResponseResult {
  const texts: string[] = [];
  const thoughts: string[] = [];
  const functionCalls: ResponseResult["functionCalls"] = [];
  for (const item of wire.output ?? []) {
    if (item.type === "message") {
      for (const part of item.content ?? []) {
        if (typeof part.text === "string" && part.type !== "refusal") texts.push(part.text);
      }
    } else if (item.type === "reasoning") {
      for (const part of [...(item.content ?? []), ...(item.summary ?? [])]) {
        if (typeof part.text === "string") thoughts.push(part.text);
      }
    } else if (item.type === "function_call") {
      const args = item.arguments ?? "{}";
      functionCalls.push({
        callId: item.call_id ?? item.id ?? "",
        name: item.name ?? "",
        arguments: typeof args === "string" ? args : JSON.stringify(args),
      });
    }
  }
  const joined = texts.length > 0 ? texts.join("") : wire.output_text ?? "";
  const split = splitReasoning(joined);
  if (split.reasoning) thoughts.push(split.reasoning);
  const reasoning = thoughts.map((t) => t.trim()).filter((t) => t !== "").join("\n\n");
  const usage = counts(wire.usage, ["input_tokens", "output_tokens", "total_tokens"], ignored);
  const status = usable(wire.status, Text, "status", ignored);
  const model = usable(wire.model, Text, "model", ignored);
  const previous = wire.previous_response_id === null
    ? null
    : usable(wire.previous_response_id, Text, "previous_response_id", ignored);
  return {
    id: wire.id,
    ...(status ? { status } : {}),
    ...(model ? { model } : {}),
    ...(previous !== undefined ? { previousResponseId: previous } : {}),
    text: split.content,
    ...(reasoning !== "" ? { reasoning } : {}),
    functionCalls,
    ...(usage ? { usage } : {}),
  };
}

/**
 * The models of a server: the ids of `/v1/models` (`ids`) with the details of the REST list that
 * answered (`v1` preferred over `v0`, which is not asked when `v1` answered); without one, types
 * guessed from the ids and a note why.
 */
export function mergeModelLists(o: {
  ids: string[];
  v1: PromiseSettledResult<z.infer<typeof V1ModelsWire>>;
  v0?: PromiseSettledResult<z.infer<typeof V0ModelsWire>>;
}): ModelList {
  const { ids, v1, v0 } = o;
  const notes: string[] = [];
  let rest: ModelInfo[] | undefined;
  let source: ModelList["source"] = "openai";
  if (v1.status === "fulfilled") {
    rest = v1.value.models.flatMap((m) => fromV1(m));
    source = "api/v1";
  } else if (v0?.status === "fulfilled") {
    rest = v0.value.data.map(fromV0);
    source = "api/v0";
  }
  if (rest === undefined) {
    const reasons = [v1, v0].map((r) =>
      r?.status === "rejected" &&
        !(r.reason instanceof LmStudioError && r.reason.kind === "not_found")
        ? (r.reason instanceof Error ? r.reason.message : String(r.reason))
        : undefined
    ).filter((r): r is string => r !== undefined);
    if (reasons.length > 0) {
      notes.push(`Could not read LM Studio's REST model list: ${reasons[0]}`);
    } else {
      notes.push(
        "This server has no LM Studio REST API (neither /api/v1/models nor /api/v0/models is " +
          "there), so loaded state, context lengths and capabilities are unknown; model types " +
          'are guessed from their ids (ids containing "embed" are taken as embedding models).',
      );
    }
    return {
      models: ids.map((id) => ({ id, type: /embed/i.test(id) ? "embedding" : "unknown" })),
      source,
      notes,
    };
  }
  const byId = new Map(rest.map((m) => [m.id, m]));
  const models: ModelInfo[] = ids.map((id) =>
    byId.get(id) ?? { id, type: /embed/i.test(id) ? "embedding" : "unknown" }
  );
  const listed = new Set(ids);
  for (const m of rest) if (!listed.has(m.id)) models.push(m);
  const unknown = ids.filter((id) => !byId.has(id));
  if (unknown.length > 0) {
    notes.push(`No details from ${source} for: ${unknown.join(", ")}.`);
  }
  return { models, source, notes };
}

function fromV1(m: z.infer<typeof V1ModelsWire>["models"][number]): ModelInfo[] {
  const id = m.key ?? m.id;
  if (!id) return [];
  const instances = m.loaded_instances ?? [];
  const vision = m.capabilities?.vision ?? undefined;
  const type: ModelInfo["type"] = m.type === "embedding" || m.type === "embeddings"
    ? "embedding"
    : m.type === "vlm" || (m.type === "llm" && vision === true)
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const reasoning = m.capabilities?.reasoning;
  const quantization = typeof m.quantization === "string"
    ? m.quantization
    : QuantizationWire.safeParse(m.quantization).data?.name ?? undefined;
  const loadedContext = instances[0]?.config?.context_length ?? undefined;
  const instanceIds = instances.map((i) => i.id).filter((i): i is string => !!i);
  return [{
    id,
    type,
    state: instances.length > 0 ? "loaded" : "not-loaded",
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(loadedContext ? { loadedContextLength: loadedContext } : {}),
    ...(typeof vision === "boolean" ? { vision } : type === "vlm" ? { vision: true } : {}),
    ...(typeof m.capabilities?.trained_for_tool_use === "boolean"
      ? { toolUse: m.capabilities.trained_for_tool_use }
      : {}),
    ...(reasoning !== undefined && reasoning !== null
      ? { reasoning: typeof reasoning === "boolean" ? reasoning : true }
      : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...((m.architecture ?? m.arch) ? { arch: (m.architecture ?? m.arch)! } : {}),
    ...(quantization ? { quantization } : {}),
    ...(instanceIds.length > 0 ? { instanceIds } : {}),
  }];
}

function fromV0(m: z.infer<typeof V0ModelsWire>["data"][number]): ModelInfo {
  const type: ModelInfo["type"] = m.type === "embeddings" || m.type === "embedding"
    ? "embedding"
    : m.type === "vlm"
    ? "vlm"
    : m.type === "llm"
    ? "llm"
    : "unknown";
  const capabilities = z.array(z.string()).safeParse(m.capabilities).data;
  const state = m.state === "loaded" ? "loaded" : m.state ? "not-loaded" : undefined;
  return {
    id: m.id,
    type,
    ...(state ? { state } : {}),
    ...(m.max_context_length ? { maxContextLength: m.max_context_length } : {}),
    ...(m.loaded_context_length ? { loadedContextLength: m.loaded_context_length } : {}),
    ...(type === "vlm" ? { vision: true } : type === "llm" ? { vision: false } : {}),
    ...(capabilities ? { toolUse: capabilities.includes("tool_use") } : {}),
    ...(m.publisher ? { publisher: m.publisher } : {}),
    ...(m.arch ? { arch: m.arch } : {}),
    ...(m.quantization ? { quantization: m.quantization } : {}),
  };
}
