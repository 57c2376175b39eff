/**
 * Why an `lms` command failed: {@linkcode LmsError} and its kinds, and the reading of what `lms`
 * printed when it exited non-zero (not enough memory, and how much the model needs; LM Studio not
 * running; no such model) or printed output the bridge cannot read. Each message says what to do.
 */
import { stripAnsi, tail } from "./lms_output.ts";
import type { SpawnResult } from "./spawn.ts";
import { BridgeError } from "./errors.ts";

/** What went wrong with an `lms` command. */
export type LmsErrorKind =
  | "not_installed"
  | "not_permitted"
  | "not_running"
  | "not_found"
  | "out_of_memory"
  | "timeout"
  | "aborted"
  | "bad_output"
  | "failed";

/** Fields of an {@linkcode LmsError}. */
export interface LmsErrorDetails {
  kind: LmsErrorKind;
  /** The command line that failed (`["lms", "load", ...]`). */
  command: string[];
  exitCode?: number;
  /** The last lines `lms` printed on stderr (and stdout when stderr was empty). */
  stderrTail?: string[];
  /** For `out_of_memory`: the amount `lms` said the model needs, e.g. "15.89 GB". */
  memoryRequired?: string;
  cause?: unknown;
}

/** A failed `lms` command; the message says what failed, why, and what to do. */
export class LmsError extends BridgeError<LmsErrorKind> {
  override name = "LmsError";
  readonly command: string[];
  readonly exitCode?: number;
  readonly stderrTail: string[];
  readonly memoryRequired?: string;

  constructor(message: string, details: LmsErrorDetails) {
    super(details.kind, message, details);
    this.command = details.command;
    this.exitCode = details.exitCode;
    this.stderrTail = details.stderrTail ?? [];
    this.memoryRequired = details.memoryRequired;
  }
}

/**
 * The amount of memory an `lms load` failure says the model needs ("15.89 GB"), or undefined when
 * the message is not about memory at all. Returns "" for a memory failure without a figure.
 */
export function memoryRequirement(text: string): string | undefined {
  const clean = stripAnsi(text);
  if (
    !/insufficient system resources|not enough (memory|resources)|out of memory|requires approximately/i
      .test(clean)
  ) return undefined;
  const figure = clean.match(/requires approximately\s+([\d.,]+\s*[KMGT]i?B)/i) ??
    clean.match(/(\d+(?:[.,]\d+)?\s*[KMGT]i?B)\s+of memory/i);
  return figure?.[1]?.replace(/\s+/, " ") ?? "";
}

/** What a command printed that the bridge cannot read, and why (the parse or schema error). */
export interface BadOutput {
  command: string[];
  result: SpawnResult;
  cause: unknown;
}

/** The error for output the bridge cannot read: probably an `lms` version it does not know. */
export function badOutputError({ command, result, cause }: BadOutput): LmsError {
  const detail = cause instanceof Error ? cause.message.split("\n")[0] : String(cause);
  return new LmsError(
    `\`${command.join(" ")}\` printed output the bridge cannot read (${detail}). ` +
      "This lms version may be too old or too new; update LM Studio, or report the output.",
    { kind: "bad_output", command, stderrTail: tail(result.stdout + "\n" + result.stderr), cause },
  );
}

/** Turns a non-zero exit into an error with the right kind and advice. */
export function exitError(command: string[], result: SpawnResult): LmsError {
  const both = `${result.stderr}\n${result.stdout}`;
  const stderrTail = tail(result.stderr).length ? tail(result.stderr) : tail(result.stdout);
  const said = stderrTail.filter((l) => !/^\s*(waking up|llmster started)/i.test(l)).slice(-3)
    .join(" ").replace(/\s+/g, " ").trim();
  const head = `\`${command.join(" ")}\` failed (exit ${result.code})${said ? `: ${said}` : ""}`;
  const details = { command, exitCode: result.code, stderrTail };
  const memory = memoryRequirement(both);
  if (memory !== undefined) {
    const model = command[2] ?? "the model";
    const need = memory ? `needs about ${memory} of memory` : "does not fit in free memory";
    return new LmsError(
      `Cannot load ${model}: it ${need}, more than LM Studio will use right now ` +
        `(\`${command.join(" ")}\` exit ${result.code}). Unload other models ` +
        "(`lms unload --all`), use a smaller context length or a smaller quantization, or relax " +
        "the model loading guardrails in LM Studio's settings.",
      { ...details, kind: "out_of_memory", memoryRequired: memory || undefined },
    );
  }
  if (
    /failed to (start or )?connect|not (appear to be )?running|ECONNREFUSED|could not connect|failed to start lm studio/i
      .test(both)
  ) {
    return new LmsError(
      `${head}. LM Studio is not running: start the LM Studio app, or run \`lms server start\` ` +
        "(`lms daemon up` on a headless machine).",
      { ...details, kind: "not_running" },
    );
  }
  if (/model not found|no model found|cannot find a model|not downloaded/i.test(both)) {
    const model = command[2];
    return new LmsError(
      `${head}. ${model ? `No downloaded model matches "${model}". ` : ""}` +
        "Run `lms ls` to see downloaded models, or download one with `lms get <name>`.",
      { ...details, kind: "not_found" },
    );
  }
  return new LmsError(`${head}. Run the same command in a terminal to see the full output.`, {
    ...details,
    kind: "failed",
  });
}
