/**
 * Streamed replies of LM Studio (or any OpenAI-compatible server): the server-sent events of
 * `/v1/chat/completions`, `/v1/completions` and `/v1/responses` asked with `stream: true`, read
 * as they arrive ({@linkcode SseParser}), assembled into the very body the endpoint answers
 * without streaming (so the normalisers of lmstudio_wire.ts give identical results), and the
 * progress of one generation ({@linkcode GenerationTracker}): silence before the first token,
 * each piece of the reply, and the figures at the end.
 *
 * What the assembly relies on (OpenAI's streaming format, which LM Studio, Ollama, llama.cpp and
 * vLLM follow; quirks from LMSTUDIO_API.md and LM Studio's changelog):
 * - chat: `data: {chat.completion.chunk}` events ending with `data: [DONE]`; text in
 *   `choices[0].delta.content`, reasoning in `delta.reasoning_content` (DeepSeek style) or
 *   `delta.reasoning` (gpt-oss), or inline as `<think>...</think>` in the content; tool calls as
 *   `delta.tool_calls[{index, id?, function: {name?, arguments?}}]` fragments accumulated per
 *   `index` (several calls may interleave; a name is taken once, since some servers repeat it or
 *   send `""` after the first fragment; a fragment without an index joins the call its id names,
 *   else the last one); usage in any chunk (`stream_options.include_usage` adds a last chunk with
 *   `choices: []`; llama.cpp has put it on the finishing chunk).
 * - completions: the same with `choices[0].text`.
 * - responses: named events (`response.output_text.delta`, `response.function_call_arguments.delta`,
 *   ...) and `response.completed` (or `response.incomplete`) carrying the whole response, which is
 *   the result; `response.failed` and `error` are errors.
 * - errors mid-stream: `data: {"error": ...}` (OpenAI, LM Studio 0.3.18+), an `event: error`, or
 *   llama.cpp's `error: {...}` line; each ends the request with the server's message.
 */
import type { z } from "zod";
import type { ChatStreamEvent, GenerationStats } from "./lmstudio_types.ts";
import {
  ChatChunkWire,
  CompletionChunkWire,
  ResponseEventWire,
  type ToolCallDelta,
} from "./lmstudio_wire.ts";
import { BridgeError, errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { clip, plural, shorten } from "./text.ts";

// ---------------------------------------------------------------------------------------------
// Server-sent events

/** One server-sent event: its name ("message" when it has none) and its data lines, joined. */
export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Reads server-sent events from text as it arrives, in pieces cut anywhere (lines end with LF,
 * CRLF or CR). Comments (`: keep-alive`) are skipped; llama.cpp's `error: {...}` line is read as
 * an `error` event.
 */
export class SseParser {
  #buffer = "";
  #data: string[] = [];
  #event = "";

  /** Takes the next piece of text; the events it completes are pushed to `out`. */
  feed(text: string, out: SseEvent[]): void {
    const buffer = this.#buffer + text;
    let start = 0;
    let lf = buffer.indexOf("\n");
    let cr = buffer.indexOf("\r");
    for (;;) {
      if (lf !== -1 && lf < start) lf = buffer.indexOf("\n", start);
      if (cr !== -1 && cr < start) cr = buffer.indexOf("\r", start);
      if (lf === -1 && cr === -1) break;
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF: wait for the next piece.
        if (cr === buffer.length - 1) break;
        end = cr;
        next = buffer.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.#line(buffer.slice(start, end), out);
      start = next;
    }
    this.#buffer = buffer.slice(start);
  }

  /** The stream has ended: an event left without its closing blank line still counts. */
  end(out: SseEvent[]): void {
    if (this.#buffer !== "") this.#line(this.#buffer.replace(/\r$/, ""), out);
    this.#buffer = "";
    this.#dispatch(out);
  }

  #line(line: string, out: SseEvent[]): void {
    if (line === "") return this.#dispatch(out);
    if (line.charCodeAt(0) === 58 /* ":" */) return; // a comment, e.g. a keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* " " */) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "error") {
      // llama.cpp's server writes a failure in a stream as "error: {json}".
      this.#event = "error";
      this.#data.push(value);
    }
  }

  #dispatch(out: SseEvent[]): void {
    if (this.#data.length > 0) {
      out.push({
        event: this.#event === "" ? "message" : this.#event,
        data: this.#data.join("\n"),
      });
    }
    this.#data = [];
    this.#event = "";
  }
}

// ---------------------------------------------------------------------------------------------
// Inline reasoning

/**
 * Splits streamed text into answer and reasoning at inline `<think>` / `</think>` tags, which may
 * be cut across pieces (a tail that could be the start of a tag is held back until the next
 * piece). For live progress only: the result is split from the whole text, as without streaming.
 */
export class ThinkSplitter {
  #inside = false;
  #held = "";

  /** The answer and reasoning text of the next piece. */
  take(piece: string): { content: string; reasoning: string } {
    let text = this.#held + piece;
    this.#held = "";
    let content = "";
    let reasoning = "";
    while (text !== "") {
      const tag = this.#inside ? "</think>" : "<think>";
      const at = text.toLowerCase().indexOf(tag);
      if (at === -1) {
        const keep = partialTag(text, tag);
        const out = text.slice(0, text.length - keep);
        this.#held = text.slice(text.length - keep);
        if (this.#inside) reasoning += out;
        else content += out;
        break;
      }
      if (this.#inside) reasoning += text.slice(0, at);
      else content += text.slice(0, at);
      this.#inside = !this.#inside;
      text = text.slice(at + tag.length);
    }
    return { content, reasoning };
  }
}

/** The length of the longest end of `text` that begins `tag` (case-insensitively). */
function partialTag(text: string, tag: string): number {
  for (let k = Math.min(tag.length - 1, text.length); k > 0; k--) {
    if (text.slice(-k).toLowerCase() === tag.slice(0, k)) return k;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Assembly

/** What one event added to the reply. */
export interface StreamPiece {
  content?: string;
  reasoning?: string;
  /** Tool call text (names and arguments). */
  toolText?: string;
  /**
   * What the server says it is doing before the reply (LM Studio's native chat stream): loading
   * the model or reading the prompt, with the share done (0..1) where it tells.
   */
  phase?: { kind: "loading" | "prompt"; progress?: number };
}

/** An event the client cannot take: the server reported an error, or sent something unreadable. */
export class StreamEventError extends BridgeError<"stream_error" | "stream_data"> {
  override name = "StreamEventError";
  /** The error as the server sent it (JSON text), or what was wrong with the event. */
  readonly detail: string;
  constructor(kind: "stream_error" | "stream_data", detail: string) {
    super(kind, kind === "stream_error" ? `the server reported: ${detail}` : detail);
    this.detail = detail;
  }
}

/** Assembles the events of one streamed reply into the body the endpoint sends without `stream`. */
export interface StreamAssembler {
  /**
   * Takes one event: what it added to the reply, "end" for the stream's last event, or nothing.
   * Throws {@linkcode StreamEventError} for an error event or one that cannot be read.
   */
  take(event: SseEvent): StreamPiece | "end" | undefined;
  /** Tool calls begun so far. */
  readonly toolCalls: number;
  /** True once the reply is known to be whole (a finish reason, or the stream's end event). */
  readonly complete: boolean;
  /** The body as the endpoint answers it without streaming; undefined when nothing came. */
  body(): unknown;
}

/** Which assembler reads the stream of an endpoint. */
export type StreamKind = "chat" | "completion" | "response";

/** A fresh assembler for one streamed reply of `kind`. */
export function streamAssembler(kind: StreamKind): StreamAssembler {
  switch (kind) {
    case "chat":
      return new ChatAssembler();
    case "completion":
      return new CompletionAssembler();
    case "response":
      return new ResponseAssembler();
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The JSON values of an event's data: one, or one per line from a server that put several in one. */
function parseData(data: string): unknown[] {
  try {
    return [JSON.parse(data)];
  } catch (error: unknown) {
    if (data.includes("\n")) {
      try {
        return data.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
      } catch {
        // the whole data is reported below
      }
    }
    throw new StreamEventError(
      "stream_data",
      `a streamed event is not JSON (${errorMessage(error)}): ${clip(data.trim(), 120)}`,
    );
  }
}

/** A chunk read with `schema`, or the StreamEventError saying what does not fit. */
function chunkOf<T>(json: unknown, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 3).map((i) =>
    `${i.path.length > 0 ? i.path.join(".") : "event"}: ${i.message}`
  ).join("; ");
  throw new StreamEventError("stream_data", `a streamed event does not fit (${issues})`);
}

/** The error of an error event, as JSON text for the error reader. */
function failure(json: unknown): StreamEventError {
  return new StreamEventError("stream_error", JSON.stringify(json));
}

/** An `{"error": ...}` object, as OpenAI, LM Studio and Ollama send a failure in a stream. */
function isErrorChunk(json: unknown): boolean {
  if (!isRecord(json)) return false;
  const error = json.error;
  return (typeof error === "string" && error !== "") || isRecord(error);
}

function joined(a: StreamPiece | undefined, b: StreamPiece): StreamPiece {
  if (a === undefined) return b;
  const add = (x?: string, y?: string) => (x ?? "") + (y ?? "") || undefined;
  const content = add(a.content, b.content);
  const reasoning = add(a.reasoning, b.reasoning);
  const toolText = add(a.toolText, b.toolText);
  return {
    ...(content !== undefined ? { content } : {}),
    ...(reasoning !== undefined ? { reasoning } : {}),
    ...(toolText !== undefined ? { toolText } : {}),
  };
}

/** The pieces of a text delta: answer and inline reasoning split apart. */
function textPiece(split: ThinkSplitter, text: string, reasoning = ""): StreamPiece | undefined {
  const parts = text === "" ? { content: "", reasoning: "" } : split.take(text);
  const thought = parts.reasoning + reasoning;
  if (parts.content === "" && thought === "") return undefined;
  return {
    ...(parts.content !== "" ? { content: parts.content } : {}),
    ...(thought !== "" ? { reasoning: thought } : {}),
  };
}

/** Common to the assemblers of chunked replies: `[DONE]`, error chunks, id, model and usage. */
abstract class ChunkAssembler<C extends { id?: unknown; model?: unknown; usage?: unknown }>
  implements StreamAssembler {
  protected id: unknown;
  protected model: unknown;
  protected usage: unknown;
  protected finish: unknown;
  protected answered = false;
  protected readonly split = new ThinkSplitter();
  #done = false;

  constructor(readonly schema: z.ZodType<C>) {}

  abstract get toolCalls(): number;
  abstract body(): unknown;
  protected abstract choice(chunk: C): StreamPiece | undefined;

  get complete(): boolean {
    return this.#done || this.finish !== undefined;
  }

  take(event: SseEvent): StreamPiece | "end" | undefined {
    if (event.data.trim() === "[DONE]") {
      this.#done = true;
      return "end";
    }
    let piece: StreamPiece | undefined;
    for (const json of parseData(event.data)) {
      if (event.event === "error" || isErrorChunk(json)) throw failure(json);
      const chunk = chunkOf(json, this.schema);
      if (this.id === undefined && chunk.id !== null) this.id = chunk.id;
      if (this.model === undefined && chunk.model !== null) this.model = chunk.model;
      if (chunk.usage !== undefined && chunk.usage !== null) this.usage = chunk.usage;
      const got = this.choice(chunk);
      if (got !== undefined) piece = joined(piece, got);
    }
    return piece;
  }

  /** The first choice of a chunk (index 0, or none given); others are not asked for. */
  protected first<T extends { index?: unknown; finish_reason?: unknown }>(
    choices: T[] | null | undefined,
  ): T | undefined {
    const choice = choices?.find((c) => c.index === undefined || c.index === null || c.index === 0);
    if (choice === undefined) return undefined;
    this.answered = true;
    if (choice.finish_reason !== undefined && choice.finish_reason !== null) {
      this.finish = choice.finish_reason;
    }
    return choice;
  }

  /** id, model and usage as the reply had them, for the body. */
  protected common(): Record<string, unknown> {
    return {
      ...(this.id !== undefined ? { id: this.id } : {}),
      ...(this.model !== undefined ? { model: this.model } : {}),
      ...(this.usage !== undefined ? { usage: this.usage } : {}),
    };
  }
}

/** One tool call as its fragments arrive. */
interface CallParts {
  id?: unknown;
  name: string;
  /** Argument text so far; undefined while no fragment carried any. */
  args?: string;
  /** Arguments sent as an object (a quirk), kept as such like an unstreamed reply keeps them. */
  object?: Record<string, unknown>;
}

type ChatChunk = z.infer<typeof ChatChunkWire>;

/** Assembles a streamed `/v1/chat/completions` reply. */
class ChatAssembler extends ChunkAssembler<ChatChunk> {
  #content = "";
  /** A `content` that was neither text nor null: kept, so the reply fails as it would unstreamed. */
  #badContent: unknown = undefined;
  #reasoningContent = "";
  #reasoning = "";
  readonly #calls = new Map<number, CallParts>();
  #lastCall = -1;

  constructor() {
    super(ChatChunkWire);
  }

  get toolCalls(): number {
    return this.#calls.size;
  }

  protected choice(chunk: ChatChunk): StreamPiece | undefined {
    const delta = this.first(chunk.choices)?.delta;
    if (delta === undefined || delta === null) return undefined;
    const content = typeof delta.content === "string" ? delta.content : "";
    if (
      delta.content !== undefined && delta.content !== null && typeof delta.content !== "string"
    ) {
      this.#badContent ??= delta.content;
    }
    this.#content += content;
    let thought = "";
    if (typeof delta.reasoning_content === "string") {
      this.#reasoningContent += delta.reasoning_content;
      thought += delta.reasoning_content;
    }
    if (typeof delta.reasoning === "string") {
      this.#reasoning += delta.reasoning;
      thought += delta.reasoning;
    }
    let piece = textPiece(this.split, content, thought);
    const calls = delta.tool_calls ?? [];
    calls.forEach((fragment, position) => {
      const text = this.#fragment(fragment, calls.length > 1 ? position : undefined);
      if (text !== undefined) piece = joined(piece, { toolText: text });
    });
    return piece;
  }

  /** Adds one tool call fragment; the text it carried ("" for a new call without any). */
  #fragment(fragment: ToolCallDelta, position: number | undefined): string | undefined {
    const id = fragment.id !== undefined && fragment.id !== null && fragment.id !== ""
      ? fragment.id
      : undefined;
    let index: number;
    if (typeof fragment.index === "number" && Number.isInteger(fragment.index)) {
      index = fragment.index;
    } else {
      // No index: the call its id names, a new one for a new id, else the position or the last.
      const named = id === undefined
        ? undefined
        : [...this.#calls].find(([, c]) => c.id === id)?.[0];
      index = named ??
        (id !== undefined || this.#lastCall < 0
          ? Math.max(-1, ...this.#calls.keys()) + 1
          : position ?? this.#lastCall);
    }
    this.#lastCall = index;
    let call = this.#calls.get(index);
    const fresh = call === undefined;
    if (call === undefined) {
      call = { name: "" };
      this.#calls.set(index, call);
    }
    if (call.id === undefined && id !== undefined) call.id = id;
    let text = "";
    const name = fragment.function?.name;
    if (call.name === "" && typeof name === "string" && name !== "") {
      call.name = name;
      text += name;
    }
    const args = fragment.function?.arguments;
    if (typeof args === "string") {
      if (call.object !== undefined) {
        call.args = JSON.stringify(call.object);
        delete call.object;
      }
      call.args = (call.args ?? "") + args;
      text += args;
    } else if (isRecord(args)) {
      if (call.args === undefined || call.args === "") call.object = args;
      else call.args += JSON.stringify(args);
      text += JSON.stringify(args);
    }
    return text !== "" || fresh ? text : undefined;
  }

  body(): unknown {
    if (!this.answered) return undefined;
    const toolCalls = [...this.#calls].sort(([a], [b]) => a - b).map(([, c]) => ({
      ...(c.id !== undefined ? { id: c.id } : {}),
      type: "function",
      function: {
        name: c.name,
        ...(c.object !== undefined
          ? { arguments: c.object }
          : c.args !== undefined
          ? { arguments: c.args }
          : {}),
      },
    }));
    const message: Record<string, unknown> = {
      role: "assistant",
      content: this.#badContent ?? this.#content,
    };
    if (this.#reasoningContent !== "") message.reasoning_content = this.#reasoningContent;
    if (this.#reasoning !== "") message.reasoning = this.#reasoning;
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return {
      ...this.common(),
      choices: [{
        index: 0,
        ...(this.finish !== undefined ? { finish_reason: this.finish } : {}),
        message,
      }],
    };
  }
}

type CompletionChunk = z.infer<typeof CompletionChunkWire>;

/** Assembles a streamed `/v1/completions` reply. */
class CompletionAssembler extends ChunkAssembler<CompletionChunk> {
  #text = "";

  constructor() {
    super(CompletionChunkWire);
  }

  get toolCalls(): number {
    return 0;
  }

  protected choice(chunk: CompletionChunk): StreamPiece | undefined {
    const choice = this.first(chunk.choices);
    if (choice === undefined || typeof choice.text !== "string" || choice.text === "") {
      return undefined;
    }
    this.#text += choice.text;
    // Raw completions have no reasoning: the text is the answer, tags and all.
    return { content: choice.text };
  }

  body(): unknown {
    if (!this.answered) return undefined;
    return {
      ...this.common(),
      choices: [{
        index: 0,
        text: this.#text,
        ...(this.finish !== undefined ? { finish_reason: this.finish } : {}),
      }],
    };
  }
}

/** Assembles a streamed `/v1/responses` reply: the response its end event carries. */
class ResponseAssembler implements StreamAssembler {
  #created: Record<string, unknown> | undefined;
  #final: unknown;
  #text = "";
  #calls = 0;
  #done = false;
  readonly #split = new ThinkSplitter();

  get toolCalls(): number {
    return this.#calls;
  }

  get complete(): boolean {
    return this.#done;
  }

  take(event: SseEvent): StreamPiece | "end" | undefined {
    if (event.data.trim() === "[DONE]") {
      this.#done = true;
      return "end";
    }
    let piece: StreamPiece | undefined;
    for (const json of parseData(event.data)) {
      const got = this.#event(json, event.event);
      if (got === "end") return got;
      if (got !== undefined) piece = joined(piece, got);
    }
    return piece;
  }

  #event(json: unknown, name: string): StreamPiece | "end" | undefined {
    if (isErrorChunk(json)) throw failure(json);
    const e = chunkOf(json, ResponseEventWire);
    const type = typeof e.type === "string" ? e.type : name;
    const delta = typeof e.delta === "string" ? e.delta : "";
    switch (type) {
      case "error":
        // {"type":"error","code":...,"message":...}: the error reader takes that shape too.
        throw failure(json);
      case "response.failed": {
        const error = isRecord(e.response) ? e.response.error : undefined;
        throw failure({ error: error ?? "the response failed" });
      }
      case "response.created":
      case "response.in_progress":
        if (isRecord(e.response)) this.#created = e.response;
        return undefined;
      case "response.output_text.delta":
        this.#text += delta;
        return textPiece(this.#split, delta);
      case "response.reasoning_text.delta":
      case "response.reasoning_summary_text.delta":
        return delta !== "" ? { reasoning: delta } : undefined;
      case "response.output_item.added":
        if (e.item?.type !== "function_call") return undefined;
        this.#calls++;
        return { toolText: "" };
      case "response.function_call_arguments.delta":
        return delta !== "" ? { toolText: delta } : undefined;
      case "response.completed":
      case "response.incomplete":
        this.#final = e.response;
        this.#done = true;
        return "end";
      default:
        return undefined;
    }
  }

  body(): unknown {
    if (this.#final !== undefined) return this.#final;
    // No end event carried the response (a `[DONE]` instead): what the deltas said, under the
    // id the stream began with.
    if (this.#created === undefined) return undefined;
    return {
      ...this.#created,
      output: [{ type: "message", content: [{ type: "output_text", text: this.#text }] }],
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Progress of one generation

/** How often "waiting" events go out while nothing has arrived. */
export const WAITING_EVERY_MS = 1000;

/** What was last seen of a request, for the messages of one that stalled or ended early. */
type Phase =
  | { kind: "sent" }
  | { kind: "headers" }
  | { kind: "loading"; progress?: number }
  | { kind: "prompt"; progress?: number }
  | { kind: "answer" };

function percent(progress: number | undefined): string {
  return progress === undefined || !Number.isFinite(progress)
    ? ""
    : ` (${Math.round(Math.min(1, Math.max(0, progress)) * 100)}%)`;
}

/**
 * One generation as it goes: sends its stream events to `onEvent` ("waiting" about once a second
 * while nothing has come, "delta" for each piece with the reply's tokens so far, "done" with the
 * figures), remembers what was seen last (for a stall), and works out the figures at the end:
 * the server's usage, else the pieces counted as tokens (`estimated`).
 */
export class GenerationTracker {
  /** When the request was made (the tracker's clock). */
  readonly started: number;
  readonly #model: string;
  readonly #onEvent: ((event: ChatStreamEvent) => void) | undefined;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  #phase: Phase = { kind: "sent" };
  #tokens = 0;
  #toolCalls = 0;
  #firstAt: number | undefined;
  #lastAt: number | undefined;
  #tail = "";
  #ticker: ReturnType<typeof setTimeout> | undefined;
  #heard = false;
  #ended = false;

  constructor(o: {
    model: string;
    onEvent?: (event: ChatStreamEvent) => void;
    now?: () => number;
    log?: Logger;
  }) {
    this.#model = o.model;
    this.#onEvent = o.onEvent;
    this.#now = o.now ?? (() => performance.now());
    this.#log = o.log;
    this.started = this.#now();
    if (this.#onEvent !== undefined) this.#wait();
  }

  /** The reply's tokens so far (pieces counted). */
  get tokens(): number {
    return this.#tokens;
  }

  /** The reply's headers arrived. */
  headers(): void {
    if (this.#phase.kind === "sent") this.#phase = { kind: "headers" };
  }

  /** The server says the model is loading (`progress` 0..1 where it tells). */
  loading(progress?: number): void {
    this.#phase = { kind: "loading", ...(progress !== undefined ? { progress } : {}) };
    this.#send({
      type: "loading",
      model: this.#model,
      ...(progress !== undefined ? { progress } : {}),
    });
  }

  /** The server says it is reading the prompt (`progress` 0..1 where it tells). */
  prompt(progress?: number): void {
    this.#phase = { kind: "prompt", ...(progress !== undefined ? { progress } : {}) };
    this.#send({ type: "prompt", ...(progress !== undefined ? { progress } : {}) });
  }

  /** A piece of the reply; `toolCalls` is how many tool calls the reply has begun. */
  piece(p: StreamPiece, toolCalls: number): void {
    const now = this.#now();
    this.#firstAt ??= now;
    this.#lastAt = now;
    this.#tokens++;
    this.#toolCalls = toolCalls;
    this.#phase = { kind: "answer" };
    this.#tail = (this.#tail + (p.content ?? "") + (p.reasoning ?? "") + (p.toolText ?? ""))
      .slice(-60);
    if (this.#onEvent === undefined) return;
    clearTimeout(this.#ticker);
    this.#send({
      type: "delta",
      ...(p.content !== undefined ? { content: p.content } : {}),
      ...(p.reasoning !== undefined ? { reasoning: p.reasoning } : {}),
      ...(toolCalls > 0 ? { toolCalls } : {}),
      tokens: this.#tokens,
    });
  }

  /** Stops the "waiting" events (the request ended, whichever way). */
  end(): void {
    this.#ended = true;
    clearTimeout(this.#ticker);
  }

  /**
   * The figures of the generation, sent as its "done" event: the server's usage where it gave
   * one, else the pieces counted as tokens (`estimated`).
   */
  finish(usage: { prompt?: number; completion?: number } | undefined): GenerationStats {
    this.end();
    const now = this.#now();
    const completion = usage?.completion ?? (this.#tokens > 0 ? this.#tokens : undefined);
    const generating = this.#firstAt !== undefined && this.#lastAt !== undefined
      ? this.#lastAt - this.#firstAt
      : 0;
    const perSecond = completion !== undefined && this.#tokens > 1 && generating > 0
      ? Math.round(completion / (generating / 1000) * 10) / 10
      : undefined;
    const stats: GenerationStats = {
      ...(this.#firstAt !== undefined ? { ttftMs: Math.round(this.#firstAt - this.started) } : {}),
      ...(perSecond !== undefined ? { tokensPerSecond: perSecond } : {}),
      ...(usage?.prompt !== undefined ? { promptTokens: usage.prompt } : {}),
      ...(completion !== undefined ? { completionTokens: completion } : {}),
      estimated: usage?.prompt === undefined || usage.completion === undefined,
      totalMs: Math.round(now - this.started),
    };
    this.#send({ type: "done", stats });
    return stats;
  }

  /** What was seen last, as the end of a sentence: "before the first token", "after 312 tokens". */
  seen(): string {
    const p = this.#phase;
    switch (p.kind) {
      case "sent":
        return "before any reply (not even its headers)";
      case "headers":
        return "after the reply's headers, before the first token (the model may still be " +
          "loading, or reading a long prompt)";
      case "loading":
        return `while loading ${this.#model}${percent(p.progress)}`;
      case "prompt":
        return `while the model was reading the prompt${percent(p.progress)}, before the ` +
          "first token (a long prompt on a slow machine can take minutes)";
      case "answer": {
        const calls = this.#toolCalls > 0 ? `, in ${plural(this.#toolCalls, "tool call")}` : "";
        return `in the middle of the reply, after ${plural(this.#tokens, "token")}${calls} ` +
          `(the last: ${JSON.stringify(shorten(this.#tail.trim(), 40))})`;
      }
    }
  }

  #wait(): void {
    this.#ticker = setTimeout(() => {
      if (this.#ended || this.#firstAt !== undefined) return;
      // Only when nothing else was said since the last tick (a load or prompt event).
      if (!this.#heard) {
        this.#send({ type: "waiting", elapsedMs: Math.round(this.#now() - this.started) }, true);
      }
      this.#heard = false;
      this.#wait();
    }, WAITING_EVERY_MS);
  }

  #send(event: ChatStreamEvent, tick = false): void {
    if (this.#onEvent === undefined) return;
    if (!tick) this.#heard = true;
    try {
      this.#onEvent(event);
    } catch (error: unknown) {
      // A broken listener must not end the request.
      this.#log?.debug("stream event listener failed", { error: errorMessage(error) });
    }
  }
}
