/**
 * Elicitation in the CLI: a downstream server that asks for the user's input while `run` works is
 * asked about on the terminal (stderr for the questions, stdin for the answers, as `run`'s
 * approvals are), field by field of its form: text, numbers (within their bounds), yes/no, one
 * or several of a list of choices (by number or value). Enter keeps a field's default or leaves
 * an optional field out; three answers that do not fit a field, or the end of input, cancel. A
 * URL request shows the URL and asks whether the user is done there. Without a terminal the
 * request is declined with why.
 */
import { declined } from "./agent_elicitation.ts";
import { isRecord } from "./json.ts";
import type { Output } from "./output.ts";
import type { ElicitResult } from "./sdk.ts";
import { type Elicitor } from "./agent_types.ts";

/** Reads one line of the terminal (null at its end); aborting stops waiting. */
export type LineReader = (signal: AbortSignal) => Promise<string | null>;

/** A value of an elicitation form, as MCP allows them. */
type FieldValue = string | number | boolean | string[];

/** Runs its tasks one at a time, in order: one question on the terminal at a time. */
export function oneAtATime(): <T>(task: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>) => {
    const next = last.then(task, task);
    // The next waits for this one however it ends.
    last = next.catch(() => undefined);
    return next;
  };
}

/** The choices of a field: values and what they are called (enum, enumNames, oneOf, anyOf). */
function choicesOf(schema: Record<string, unknown>): { value: string; label: string }[] {
  const titled = Array.isArray(schema.oneOf) ? schema.oneOf : schema.anyOf;
  if (Array.isArray(titled)) {
    return titled.filter(isRecord).filter((c) => typeof c.const === "string").map((c) => ({
      value: String(c.const),
      label: typeof c.title === "string" ? c.title : String(c.const),
    }));
  }
  if (Array.isArray(schema.enum)) {
    const names = Array.isArray(schema.enumNames) ? schema.enumNames : [];
    return schema.enum.filter((v): v is string => typeof v === "string").map((value, i) => ({
      value,
      label: typeof names[i] === "string" ? names[i] : value,
    }));
  }
  return [];
}

/** The choice `word` names: its number, value or label (ignoring case). */
function pick(choices: { value: string; label: string }[], word: string): string | undefined {
  const w = word.trim();
  const n = Number(w);
  if (Number.isInteger(n) && n >= 1 && n <= choices.length) return choices[n - 1]!.value;
  const lower = w.toLowerCase();
  return choices.find((c) => c.value.toLowerCase() === lower || c.label.toLowerCase() === lower)
    ?.value;
}

/**
 * The value typed for a field of schema `schema` (a non-empty line), or why it does not fit.
 * Pure: what {@linkcode terminalElicitor} checks each answer with.
 */
export function fieldValue(
  schema: Record<string, unknown>,
  line: string,
): { value: FieldValue } | { error: string } {
  const text = line.trim();
  if (schema.type === "boolean") {
    if (/^(y|yes|true|1)$/i.test(text)) return { value: true };
    if (/^(n|no|false|0)$/i.test(text)) return { value: false };
    return { error: "answer yes or no" };
  }
  if (schema.type === "number" || schema.type === "integer") {
    const n = Number(text);
    if (text === "" || !Number.isFinite(n)) return { error: "give a number" };
    if (schema.type === "integer" && !Number.isInteger(n)) return { error: "give a whole number" };
    if (typeof schema.minimum === "number" && n < schema.minimum) {
      return { error: `give at least ${schema.minimum}` };
    }
    if (typeof schema.maximum === "number" && n > schema.maximum) {
      return { error: `give at most ${schema.maximum}` };
    }
    return { value: n };
  }
  if (schema.type === "array") {
    const choices = choicesOf(isRecord(schema.items) ? schema.items : {});
    const picked = text.split(",").map((w) => pick(choices, w));
    if (picked.some((p) => p === undefined)) {
      return { error: "give numbers or values from the list, separated by commas" };
    }
    const values = [...new Set(picked as string[])];
    if (typeof schema.minItems === "number" && values.length < schema.minItems) {
      return { error: `choose at least ${schema.minItems}` };
    }
    if (typeof schema.maxItems === "number" && values.length > schema.maxItems) {
      return { error: `choose at most ${schema.maxItems}` };
    }
    return { value: values };
  }
  const choices = choicesOf(schema);
  if (choices.length > 0) {
    const value = pick(choices, text);
    return value === undefined ? { error: "give a number or a value from the list" } : { value };
  }
  if (typeof schema.minLength === "number" && text.length < schema.minLength) {
    return { error: `give at least ${schema.minLength} characters` };
  }
  if (typeof schema.maxLength === "number" && text.length > schema.maxLength) {
    return { error: `give at most ${schema.maxLength} characters` };
  }
  if (schema.format === "email" && !/^[^@\s]+@[^@\s]+$/.test(text)) {
    return { error: "give an email address" };
  }
  if (schema.format === "uri" && !URL.canParse(text)) return { error: "give a URL" };
  if (schema.format === "date" && !/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    return { error: "give a date as YYYY-MM-DD" };
  }
  return { value: text };
}

/** The question of one field: its title, whether it is needed, its description, its choices. */
function fieldQuestion(key: string, schema: Record<string, unknown>, required: boolean): string[] {
  const title = typeof schema.title === "string" ? `${schema.title} (${key})` : key;
  const description = typeof schema.description === "string" ? ` - ${schema.description}` : "";
  const lines = [`${title}${required ? ", required" : ""}${description}`];
  const choices = choicesOf(
    schema.type === "array" && isRecord(schema.items) ? schema.items : schema,
  );
  if (choices.length > 0) {
    lines.push(`  ${choices.map((c, i) => `${i + 1}) ${c.label}`).join("  ")}`);
  }
  const hint = schema.type === "boolean"
    ? "yes or no"
    : schema.type === "array"
    ? "numbers, separated by commas"
    : choices.length > 0
    ? "a number"
    : schema.type === "number" || schema.type === "integer"
    ? "a number"
    : "text";
  const fallback = schema.default !== undefined
    ? `Enter keeps ${JSON.stringify(schema.default)}`
    : required
    ? ""
    : "Enter leaves it out";
  lines.push(`  Your answer (${hint}${fallback ? `; ${fallback}` : ""}):`);
  return lines;
}

/**
 * An {@linkcode Elicitor} that asks on the terminal: the server's message and each field of its
 * form on stderr, the answers typed on stdin.
 */
export function terminalElicitor(out: Output, readLine: LineReader): Elicitor {
  return async (req, signal): Promise<ElicitResult> => {
    const { params } = req;
    out.status("");
    out.stderr("");
    out.stderr(
      `MCP server "${req.server}" asks you (its tool ${req.tool} runs for the local model's task):`,
    );
    for (const line of params.message.split("\n")) out.stderr(`  ${line}`);
    if (params.mode === "url") {
      out.stderr(`  Open: ${params.url}`);
      out.stderr("Done there? [y]es, or [n]o to decline (Enter declines):");
      const line = await readLine(signal);
      if (line === null) return { action: "cancel" };
      return /^(y|yes)$/i.test(line.trim()) ? { action: "accept" } : { action: "decline" };
    }
    out.stderr("Answer it? [y]es, [n]o to decline, [c]ancel (Enter declines):");
    const first = await readLine(signal);
    if (first === null) return { action: "cancel" };
    if (/^(c|cancel)$/i.test(first.trim())) return { action: "cancel" };
    if (!/^(y|yes)$/i.test(first.trim())) return { action: "decline" };
    const required = new Set(params.requestedSchema.required ?? []);
    const content: Record<string, FieldValue> = {};
    for (const [key, field] of Object.entries(params.requestedSchema.properties)) {
      const schema: Record<string, unknown> = { ...field };
      for (const line of fieldQuestion(key, schema, required.has(key))) out.stderr(line);
      let answered = false;
      for (let attempt = 0; attempt < 3 && !answered; attempt++) {
        const line = await readLine(signal);
        if (line === null) return { action: "cancel" };
        if (line.trim() === "") {
          if (schema.default !== undefined) {
            content[key] = schema.default as FieldValue;
            answered = true;
          } else if (!required.has(key)) answered = true;
          else out.stderr("  This one is required.");
          continue;
        }
        const typed = fieldValue(schema, line);
        if ("value" in typed) {
          content[key] = typed.value;
          answered = true;
        } else out.stderr(`  That does not fit: ${typed.error}.`);
      }
      if (!answered) {
        out.stderr("Cancelled: three answers did not fit.");
        return { action: "cancel" };
      }
    }
    return { action: "accept", content };
  };
}

/**
 * How `run` answers elicitation: on a terminal the user is asked; otherwise the request is
 * declined, saying why.
 */
export function cliElicitor(
  o: { stdinIsTerminal: boolean; out: Output; readLine: LineReader },
): Elicitor {
  if (o.stdinIsTerminal) return terminalElicitor(o.out, o.readLine);
  return () =>
    Promise.resolve(
      declined("standard input is not a terminal, so nobody can be asked"),
    );
}
