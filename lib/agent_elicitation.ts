/**
 * Elicitation requests of downstream servers: a server that asks for input from the user
 * (`elicitation/create`) while one of its tools runs for the local model is asked about by the
 * caller's {@linkcode Elicitor}, which reaches the person behind the task (the MCP client through
 * its own elicitation, the terminal in the CLI). The local model never sees the request nor
 * answers it. Without an elicitor, or when it cannot ask, the request is declined with the reason
 * in the result's `_meta` ({@linkcode DECLINE_REASON_KEY}), and a note says so once per server.
 * Every request is a trace event (`elicitation`: server, tool, action, reason).
 */
import type { TraceSink } from "./agent_trace.ts";
import { errorMessage } from "./errors.ts";
import type { ElicitRequestParams, ElicitResult } from "./sdk.ts";
import { clause } from "./text.ts";
import { isAbort } from "./abort.ts";
import type { Elicitor } from "./agent_types.ts";

/** Where a declined request's result says why it was declined. */
export const DECLINE_REASON_KEY = "lmstudio-bridge/reason";

/** A declined request, with why. */
export function declined(reason: string): ElicitResult {
  return { action: "decline", _meta: { [DECLINE_REASON_KEY]: reason } };
}

/** Why a result was declined, if it says. */
export function declineReason(result: ElicitResult): string | undefined {
  const reason = result._meta?.[DECLINE_REASON_KEY];
  return typeof reason === "string" ? reason : undefined;
}

/**
 * The elicitation of one task: hands each request to the caller's elicitor (or declines it),
 * traces it, and notes the requests nobody could answer.
 */
export class ElicitationRelay {
  readonly #elicit: Elicitor | undefined;
  readonly #task: string;
  readonly #trace: TraceSink | undefined;
  readonly #notes: string[];
  readonly #noted = new Set<string>();

  constructor(o: { elicit?: Elicitor; task: string; trace?: TraceSink; notes: string[] }) {
    this.#elicit = o.elicit;
    this.#task = o.task;
    this.#trace = o.trace;
    this.#notes = o.notes;
  }

  /** Answers one request of `server` made while its `tool` runs. Rejects only on an abort. */
  async ask(
    call: { server: string; tool: string; signal: AbortSignal },
    params: ElicitRequestParams,
    signal: AbortSignal,
  ): Promise<ElicitResult> {
    const both = AbortSignal.any([signal, call.signal]);
    let result: ElicitResult;
    if (this.#elicit === undefined) result = declined("this caller offers no way to ask its user");
    else {
      try {
        result = await this.#elicit(
          { server: call.server, tool: call.tool, task: this.#task, params },
          both,
        );
      } catch (error: unknown) {
        if (isAbort(error, both)) throw error;
        result = declined(`asking the user failed: ${clause(errorMessage(error))}`);
      }
    }
    const reason = declineReason(result);
    this.#trace?.write({
      type: "elicitation",
      server: call.server,
      tool: call.tool,
      action: result.action,
      ...(reason !== undefined ? { reason } : {}),
    });
    if (reason !== undefined && !this.#noted.has(call.server)) {
      this.#noted.add(call.server);
      this.#notes.push(
        `MCP server "${call.server}" asked for the user's input (elicitation) while its tool ` +
          `${call.tool} ran; it was declined: ${clause(reason)}`,
      );
    }
    return result;
  }
}
