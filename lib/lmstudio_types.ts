/**
 * The vocabulary of the LM Studio client: chat messages, tools, requests and the normalised
 * results it returns (reasoning separated, tool calls left raw, usage filled in). Types only; the
 * client is in lmstudio.ts and the wire formats it parses are in lmstudio_wire.ts.
 */

/** One model as far as the server tells. */
export interface ModelInfo {
  id: string;
  type: "llm" | "vlm" | "embedding" | "unknown";
  state?: "loaded" | "not-loaded";
  maxContextLength?: number;
  loadedContextLength?: number;
  vision?: boolean;
  toolUse?: boolean;
  reasoning?: boolean;
  publisher?: string;
  arch?: string;
  quantization?: string;
  instanceIds?: string[];
  /** The endpoint that serves it, when the bridge talks to several (LMSTUDIO_ENDPOINTS). */
  endpoint?: string;
}

/** The models of a server, where the details came from, and what could not be known. */
export interface ModelList {
  models: ModelInfo[];
  source: "api/v1" | "api/v0" | "openai";
  notes: string[];
  /** With several endpoints (LMSTUDIO_ENDPOINTS): each one's part of the merged list, in order. */
  endpoints?: ModelListEndpoint[];
}

/** One endpoint's part of a model list merged from several servers. */
export interface ModelListEndpoint {
  name: string;
  baseUrl: string;
  /** Where its models' details came from; null when its list could not be read. */
  source: ModelList["source"] | null;
  /** How many models it lists; null when its list could not be read. */
  modelCount: number | null;
  /** Why its list could not be read (not answering, token refused...), else null. */
  error: string | null;
  /** True while it is not answering: it is skipped until its retry time. */
  down: boolean;
}

/** A part of a multimodal user message. */
export type ChatContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

/** A tool call as it goes over the wire in an assistant message. */
export interface WireToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** One chat message. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | ChatContentPart[] | null;
  tool_calls?: WireToolCall[];
  tool_call_id?: string;
  name?: string;
}

/** A tool offered to the model. */
export interface OpenAiTool {
  type: "function";
  function: { name: string; description?: string; parameters: Record<string, unknown> };
}

/** A `/v1/chat/completions` request (non-streaming). */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: OpenAiTool[];
  tool_choice?: "auto" | "none" | "required";
  temperature?: number;
  max_tokens?: number;
  response_format?: unknown;
  ttl?: number;
  stop?: string[];
}

/** A tool call as the model sent it: arguments unparsed (string, possibly invalid JSON, or an object). */
export interface RawToolCall {
  id?: string;
  name: string;
  arguments: string | Record<string, unknown>;
}

/** Token usage. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** A chat answer with reasoning separated from the answer text. */
export interface ChatResult {
  id?: string;
  model?: string;
  /** Answer text with <think>...</think> blocks removed, trimmed. */
  content: string;
  /** From reasoning_content | reasoning | inline <think> text. */
  reasoning?: string;
  /** [] when none (an empty wire list means none). */
  toolCalls: RawToolCall[];
  finishReason?: string;
  usage?: Usage;
}

/** A `/v1/completions` request. */
export interface CompletionRequest {
  model: string;
  prompt: string;
  max_tokens?: number;
  temperature?: number;
  stop?: string[];
  ttl?: number;
}

/** A text completion. */
export interface CompletionResult {
  model?: string;
  text: string;
  finishReason?: string;
  usage?: Usage;
}

/** A `/v1/embeddings` request. */
export interface EmbeddingRequest {
  model: string;
  input: string | string[];
}

/** Embeddings, ordered as the inputs. */
export interface EmbeddingResult {
  model?: string;
  /** Ordered by index. */
  embeddings: number[][];
  usage?: { prompt_tokens?: number; total_tokens?: number };
}

/** A stateful `/v1/responses` request. */
export interface ResponseRequest {
  model: string;
  input: string;
  previous_response_id?: string;
  ttl?: number;
}

/** A `/v1/responses` answer. */
export interface ResponseResult {
  id: string;
  status?: string;
  model?: string;
  previousResponseId?: string | null;
  text: string;
  reasoning?: string;
  functionCalls: { callId: string; name: string; arguments: string }[];
  usage?: { input_tokens?: number; output_tokens?: number; total_tokens?: number };
}

/**
 * What a streamed model request reports as it goes: the model loading, the prompt being read,
 * silence before the first token (about once a second), each piece of the reply (`tokens`: the
 * reply's tokens so far), and the figures at the end.
 */
export type ChatStreamEvent =
  | { type: "loading"; model: string; progress?: number } // 0..1 where the server tells
  | { type: "prompt"; progress?: number } // prompt processing 0..1
  | { type: "waiting"; elapsedMs: number } // nothing received yet (about 1/s)
  | { type: "delta"; content?: string; reasoning?: string; toolCalls?: number; tokens: number }
  | { type: "done"; stats: GenerationStats };

/** The figures of one generation. */
export interface GenerationStats {
  ttftMs?: number;
  tokensPerSecond?: number;
  promptTokens?: number;
  completionTokens?: number;
  /** True when the server reported no usage and tokens were estimated. */
  estimated: boolean;
  totalMs: number;
}
