/**
 * LM Studio's native chat, `POST /api/v1/chat` (LM Studio 0.4+), for the one kind of request it
 * can take in place of `/v1/chat/completions`: a single user turn of text, with optional system
 * text, no tools and no output format (the native endpoint takes no custom tools and no earlier
 * assistant turns). Its stream is the only place LM Studio tells how far a model load and the
 * reading of the prompt have got (`model_load.progress`, `prompt_processing.progress`), so a
 * caller who watches the progress of such a request hears "loading qwen3-8b 60%" and "reading the
 * prompt 35%" instead of silence.
 *
 * The stream (LM Studio's docs, "Streaming events"): named events whose data carries the same
 * `type`; `chat.start`, `model_load.start|progress|end` (only when the request loads the model),
 * `prompt_processing.start|progress|end`, `reasoning.start|delta|end`, `message.start|delta|end`,
 * `tool_call.*` (only with integrations, which are never sent), `error` (the final payload still
 * follows), and `chat.end` whose `result` is the whole reply as the endpoint answers without
 * streaming: `output` items (`message`, `reasoning`), `stats` (`input_tokens`,
 * `total_output_tokens`, ...) and `model_instance_id`. The reply is turned into the body
 * `/v1/chat/completions` would have answered, so the chat normaliser gives the same result.
 */
import { z } from "zod";
import type { ChatMessage, ChatRequest } from "./lmstudio_types.ts";
import {
  type SseEvent,
  type StreamAssembler,
  StreamEventError,
  type StreamPiece,
  ThinkSplitter,
} from "./lmstudio_stream.ts";
import { clip } from "./text.ts";

/** The path of LM Studio's native chat. */
export const NATIVE_CHAT_PATH = "/api/v1/chat";

/** The text of a message that holds only text; undefined for images or anything else. */
function textOnly(content: ChatMessage["content"]): string | undefined {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return undefined;
  const texts: string[] = [];
  for (const part of content) {
    if (part.type !== "text") return undefined;
    texts.push(part.text);
  }
  return texts.join("\n");
}

/**
 * The native chat request for `req`, or undefined when `req` does not fit it: anything but system
 * text followed by one user text message, tools, a tool choice, an output format, stop sequences,
 * or a temperature the native endpoint does not take (it allows 0..1). Sent with `store: false`,
 * so the chat is not kept in LM Studio, and `stream: true`; `contextLength` is the context length
 * for a model the request loads.
 */
export function nativeChatBody(
  req: ChatRequest,
  contextLength?: number,
): Record<string, unknown> | undefined {
  if ((req.tools?.length ?? 0) > 0 || req.tool_choice !== undefined) return undefined;
  if (req.response_format !== undefined || (req.stop?.length ?? 0) > 0) return undefined;
  if (req.temperature !== undefined && !(req.temperature >= 0 && req.temperature <= 1)) {
    return undefined;
  }
  const system: string[] = [];
  let input: string | undefined;
  for (const [i, message] of req.messages.entries()) {
    const text = textOnly(message.content);
    if (text === undefined || message.tool_calls !== undefined) return undefined;
    if (message.role === "system") system.push(text);
    else if (message.role === "user" && i === req.messages.length - 1) input = text;
    else return undefined;
  }
  if (input === undefined) return undefined;
  return {
    model: req.model,
    input,
    ...(system.length > 0 ? { system_prompt: system.join("\n\n") } : {}),
    ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
    ...(req.max_tokens !== undefined ? { max_output_tokens: req.max_tokens } : {}),
    ...(contextLength !== undefined ? { context_length: contextLength } : {}),
    stream: true,
    store: false,
  };
}

const Count = z.number().finite().nonnegative().nullish();

/** The reply of the native chat (`chat.end`'s `result`, or the body without streaming). */
export const NativeResultWire = z.looseObject({
  model_instance_id: z.string().nullish(),
  output: z.array(z.looseObject({ type: z.string(), content: z.unknown().optional() })),
  stats: z.looseObject({
    input_tokens: Count,
    total_output_tokens: Count,
    reasoning_output_tokens: Count,
    tokens_per_second: Count,
    time_to_first_token_seconds: Count,
    model_load_time_seconds: Count,
  }).nullish(),
  response_id: z.string().nullish(),
});

/** One event of the native stream, as far as it is read. */
const NativeEventWire = z.looseObject({
  type: z.string().optional(),
  progress: z.number().nullish(),
  content: z.unknown().optional(),
  model_instance_id: z.string().nullish(),
  error: z.unknown().optional(),
  result: z.unknown().optional(),
});

/**
 * The native reply as the body `/v1/chat/completions` answers: its messages' text as the content,
 * its reasoning as `reasoning_content`, its stats as `usage`, and a finish reason: "length" when
 * the reply used every token `maxTokens` allowed, else "stop" (the native reply does not say).
 */
export function chatBodyOf(
  result: z.infer<typeof NativeResultWire>,
  maxTokens: number | undefined,
): Record<string, unknown> {
  const texts = (type: string) =>
    result.output.filter((o) => o.type === type && typeof o.content === "string")
      .map((o) => o.content as string);
  // A message item whose content is not text fails as a chat reply with such content would.
  const odd = result.output.find((o) => o.type === "message" && typeof o.content !== "string");
  const content = odd !== undefined ? odd.content : texts("message").join("");
  const reasoning = texts("reasoning").join("");
  const stats = result.stats;
  const prompt = stats?.input_tokens ?? undefined;
  const completion = stats?.total_output_tokens ?? undefined;
  const length = maxTokens !== undefined && completion !== undefined && completion >= maxTokens;
  return {
    ...(result.response_id ? { id: result.response_id } : {}),
    ...(result.model_instance_id ? { model: result.model_instance_id } : {}),
    object: "chat.completion",
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content,
        ...(reasoning !== "" ? { reasoning_content: reasoning } : {}),
      },
      finish_reason: length ? "length" : "stop",
    }],
    ...(prompt !== undefined && completion !== undefined
      ? {
        usage: {
          prompt_tokens: prompt,
          completion_tokens: completion,
          total_tokens: prompt + completion,
        },
      }
      : {}),
  };
}

/** A native reply given in one body, as the chat body; undefined when it is not one. */
export function nativeReplyAsChat(json: unknown, maxTokens: number | undefined): unknown {
  const parsed = NativeResultWire.safeParse(json);
  return parsed.success ? chatBodyOf(parsed.data, maxTokens) : undefined;
}

function progressOf(value: number | null | undefined): number | undefined {
  return typeof value === "number" && Number.isFinite(value)
    ? Math.min(1, Math.max(0, value))
    : undefined;
}

/** Assembles LM Studio's native chat stream into the body `/v1/chat/completions` answers. */
export class NativeChatAssembler implements StreamAssembler {
  readonly #maxTokens: number | undefined;
  readonly #split = new ThinkSplitter();
  #result: z.infer<typeof NativeResultWire> | undefined;
  #begun = false;

  constructor(o: { maxTokens?: number } = {}) {
    this.#maxTokens = o.maxTokens;
  }

  get toolCalls(): number {
    return 0;
  }

  get complete(): boolean {
    return this.#result !== undefined;
  }

  /** True once an event of the stream has come: from then on the server has taken the request. */
  get begun(): boolean {
    return this.#begun;
  }

  take(event: SseEvent): StreamPiece | "end" | undefined {
    this.#begun = true;
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      throw new StreamEventError(
        "stream_data",
        `a streamed event is not JSON: ${clip(event.data.trim(), 120)}`,
      );
    }
    const parsed = NativeEventWire.safeParse(json);
    if (!parsed.success) {
      throw new StreamEventError("stream_data", "a streamed event is not an object");
    }
    const data = parsed.data;
    const type = event.event !== "message" ? event.event : data.type ?? "";
    const progress = progressOf(data.progress);
    switch (type) {
      case "model_load.start":
        return { phase: { kind: "loading" } };
      case "model_load.progress":
        return { phase: { kind: "loading", ...(progress !== undefined ? { progress } : {}) } };
      case "model_load.end":
        return { phase: { kind: "loading", progress: 1 } };
      case "prompt_processing.start":
        return { phase: { kind: "prompt" } };
      case "prompt_processing.progress":
        return { phase: { kind: "prompt", ...(progress !== undefined ? { progress } : {}) } };
      case "reasoning.delta":
        return typeof data.content === "string" && data.content !== ""
          ? { reasoning: data.content }
          : undefined;
      case "message.delta": {
        if (typeof data.content !== "string" || data.content === "") return undefined;
        // A model whose reasoning LM Studio does not parse writes it inline as <think>...</think>.
        const parts = this.#split.take(data.content);
        if (parts.content === "" && parts.reasoning === "") return undefined;
        return {
          ...(parts.content !== "" ? { content: parts.content } : {}),
          ...(parts.reasoning !== "" ? { reasoning: parts.reasoning } : {}),
        };
      }
      case "error":
        throw new StreamEventError("stream_error", JSON.stringify({ error: data.error ?? json }));
      case "chat.end": {
        const result = NativeResultWire.safeParse(data.result);
        if (!result.success) {
          const issue = result.error.issues[0];
          throw new StreamEventError(
            "stream_data",
            `the stream's chat.end does not hold a reply (${
              issue ? `${["result", ...issue.path].join(".")}: ${issue.message}` : "no result"
            })`,
          );
        }
        this.#result = result.data;
        return "end";
      }
      default:
        // chat.start, the start and end of a message or of reasoning, events of later versions.
        return undefined;
    }
  }

  body(): unknown {
    return this.#result === undefined ? undefined : chatBodyOf(this.#result, this.#maxTokens);
  }
}
