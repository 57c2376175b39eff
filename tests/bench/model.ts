/**
 * The instant model of the loop benches: replies scripted on the fake LM Studio that work out
 * from each request alone what to answer, so any loop (the bridge, the hand-written floor, the
 * peers' SDKs) can run against them. The task text says how many tool rounds to ask for
 * (`[rounds=N]`); the reply asks for the search tool once per round, with distinct arguments
 * (no repeat guard trips), and answers "done" when the request holds N tool results.
 *
 * One scripted reply is queued per expected model turn, so {@linkcode ScriptedModel.drained}
 * proves that the loop made exactly the requests it should have: a loop that stops early, retries
 * or skips a round fails the bench instead of passing for a fast one.
 */
import { type RecordedRequest, type ScriptedReplyValue } from "../fakes/lmstudio.ts";
import { chatReply, type FakeLmStudio } from "../fakes/lmstudio.ts";
import { check } from "./support.ts";

/** The chat endpoint every loop posts to. */
export const CHAT = "/v1/chat/completions";
/** The downstream tool the model asks for: server-memory's search, instant on an empty graph. */
export const SEARCH_TOOL = "search_nodes";

/** A task that makes the scripted model ask for `rounds` tool rounds before answering. */
export function taskText(rounds: number): string {
  return `Search the knowledge graph for ${rounds} items, one search per turn, then say done. ` +
    `[rounds=${rounds}]`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function messagesOf(req: RecordedRequest): Record<string, unknown>[] {
  const messages = isRecord(req.body) ? req.body.messages : undefined;
  return Array.isArray(messages) ? messages.filter(isRecord) : [];
}

/** The text of a message's content, string or parts. */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((p) => isRecord(p) && typeof p.text === "string" ? p.text : "").join("");
}

/** The offered tool whose name ends with the search tool's (raw or `server__search_nodes`). */
function searchToolName(req: RecordedRequest): string | undefined {
  const tools = isRecord(req.body) && Array.isArray(req.body.tools) ? req.body.tools : [];
  for (const tool of tools) {
    const name = isRecord(tool) && isRecord(tool.function) ? tool.function.name : undefined;
    if (typeof name === "string" && name.endsWith(SEARCH_TOOL)) return name;
  }
  return undefined;
}

/** The scripted instant model on one fake LM Studio. */
export class ScriptedModel {
  readonly fake: FakeLmStudio;
  /** performance.now() when each scripted request arrived (this process's clock). */
  readonly arrivals: number[] = [];

  constructor(fake: FakeLmStudio) {
    this.fake = fake;
  }

  /** Queues the replies of `tasks` tasks of `rounds` tool rounds each (rounds + 1 turns each). */
  expect(rounds: number, tasks = 1): void {
    for (let i = 0; i < tasks * (rounds + 1); i++) this.fake.script(CHAT, this.#reply);
  }

  /** Throws unless every queued reply was used: the loops made exactly the turns expected. */
  drained(what: string): void {
    const left = this.fake.pending(CHAT);
    check(left === 0, `${what}: ${left} scripted model turn(s) never requested`);
  }

  /** Arrival time of the first request after `t0`, or NaN. */
  firstArrivalAfter(t0: number): number {
    return this.arrivals.find((t) => t >= t0) ?? NaN;
  }

  readonly #reply = (req: RecordedRequest): ScriptedReplyValue => {
    this.arrivals.push(performance.now());
    const messages = messagesOf(req);
    const task = contentText(messages.find((m) => m.role === "user")?.content);
    const wanted = Number(/\[rounds=(\d+)\]/.exec(task)?.[1] ?? 0);
    const done = messages.filter((m) => m.role === "tool").length;
    const model = isRecord(req.body) && typeof req.body.model === "string"
      ? req.body.model
      : undefined;
    if (done >= wanted) return { body: chatReply({ content: "done", model }) };
    const name = searchToolName(req);
    if (name === undefined) {
      return { status: 400, body: { error: { message: `no ${SEARCH_TOOL} tool offered` } } };
    }
    return {
      body: chatReply({
        model,
        toolCalls: [{
          id: `call_${done + 1}`,
          name,
          arguments: JSON.stringify({ query: `item ${done + 1}` }),
        }],
      }),
    };
  };
}
