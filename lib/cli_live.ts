/**
 * The model's reply as it streams, for `run` and `chat` on a terminal: each piece of the answer
 * goes to stdout as it comes, the model's reasoning dimmed before it (`--reasoning`) or not shown,
 * and the one status line stays below the text (output.ts holds it back while a line is
 * unfinished). Piped stdout and `--json` get none of this: the commands print the answer at the
 * end, as they always have.
 *
 * {@linkcode LiveReply} takes the stream events of model requests ({@linkcode liveClient} passes
 * it those of every chat request of a client, besides the caller's own `onEvent`), and tells the
 * command whether the answer is already on the screen, so that it is not printed twice. A client
 * that does not stream sends no events: nothing is shown live, and the command prints the answer
 * at the end.
 */
import type { AgentLmClient } from "./agent_types.ts";
import type { ChatStreamEvent } from "./lmstudio_types.ts";
import type { Output } from "./output.ts";

/** Shows the replies of model requests as they stream (see the module documentation). */
export class LiveReply {
  readonly #out: Output;
  readonly #reasoning: boolean;
  /** The answer text the current reply has shown. */
  #content = "";
  /** The answer text the last finished reply showed. */
  #shown = "";
  /** What was written last: reasoning, answer text, or nothing yet in this reply. */
  #last: "reasoning" | "content" | undefined;
  /** The text written so far ended its line (or nothing was written). */
  #lineEnded = true;

  /** `reasoning`: show the model's reasoning, dimmed (otherwise it is not shown). */
  constructor(out: Output, o: { reasoning: boolean }) {
    this.#out = out;
    this.#reasoning = o.reasoning;
  }

  /** Takes one stream event of the current request. */
  readonly onEvent = (event: ChatStreamEvent): void => {
    if (event.type !== "delta") return;
    if (event.reasoning && this.#reasoning) {
      const piece = this.#last === undefined ? event.reasoning.trimStart() : event.reasoning;
      if (piece !== "") {
        this.#write(piece, "dim");
        this.#last = "reasoning";
      }
    }
    if (event.content) {
      // The answer as the client returns it is trimmed: so is what is shown of it.
      const piece = this.#content === "" ? event.content.trimStart() : event.content;
      if (piece === "") return;
      if (this.#last === "reasoning") this.#write(this.#lineEnded ? "\n" : "\n\n");
      this.#write(piece);
      this.#content += piece;
      this.#last = "content";
    }
  };

  /** The current request has ended (answered or failed): its text's line is ended. */
  endReply(): void {
    if (!this.#lineEnded) this.#write("\n");
    this.#shown = this.#content;
    this.#content = "";
    this.#last = undefined;
  }

  /** Whether `answer` is on the screen already: the last reply showed it as it streamed. */
  shows(answer: string): boolean {
    return this.#shown.trim() !== "" && this.#shown.trim() === answer.trim();
  }

  #write(text: string, style?: "dim"): void {
    if (text === "") return;
    this.#out.stdout(text, style);
    this.#lineEnded = text.endsWith("\n");
  }
}

/** `client`, whose chat requests also show their stream on `live`. */
export function liveClient(client: AgentLmClient, live: LiveReply): AgentLmClient {
  return {
    baseUrl: client.baseUrl,
    resolveModel: (...args) => client.resolveModel(...args),
    listModels: (...args) => client.listModels(...args),
    chat: async (request, options) => {
      try {
        return await client.chat(request, {
          ...options,
          onEvent: (event) => {
            options?.onEvent?.(event);
            live.onEvent(event);
          },
        });
      } finally {
        live.endReply();
      }
    },
  };
}
