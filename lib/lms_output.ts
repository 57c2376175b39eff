/**
 * What `lms` prints and how the bridge reads it: the JSON of `lms ps`, `lms ls` and
 * `lms server status` (read leniently with zod: a row without a name is skipped, a field of an
 * unexpected type is left out), the JSON document among stray lines, colour codes, the last lines
 * worth quoting in a message, and what an instance's status means.
 */
import { z } from "zod";

/** One loaded model instance, from `lms ps --json`. */
export interface LoadedInstance {
  /** The API identifier; a second instance of a model gets a suffix such as `:2`. */
  identifier: string;
  modelKey: string;
  type: string;
  /**
   * The processing status as lms prints it: "idle", "processingPrompt", "generating" or
   * "computingEmbedding" (lmstudio-js `ModelProcessingStatus`); "loaded" when lms does not say
   * (before 0.3.27). Whatever it says, a listed instance is loaded and usable.
   */
  status: string;
  displayName?: string;
  contextLength?: number;
  maxContextLength?: number;
  sizeBytes?: number;
  vision?: boolean;
  toolUse?: boolean;
  /** Idle time after which LM Studio unloads the instance, when set. */
  ttlMs?: number;
  /** The variant key loaded (`qwen/qwen3-8b@q8_0`), when lms says (`selectedVariant`). */
  variant?: string;
}

/** One downloaded model, from `lms ls --json`. */
export interface DownloadedModel {
  modelKey: string;
  type: string;
  displayName?: string;
  sizeBytes?: number;
  maxContextLength?: number;
  paramsString?: string;
  architecture?: string;
  vision?: boolean;
  toolUse?: boolean;
  /**
   * The keys of this model's variants (`qwen/qwen3-8b@q8_0`, other quantizations or formats):
   * each loads with `lms load <variant key>`. Absent when the model has none.
   */
  variants?: string[];
  /** The variant a plain `lms load <modelKey>` loads. */
  selectedVariant?: string;
}

/** `lms server status --json`. */
export interface LmsServerStatus {
  running: boolean;
  port?: number;
}

// Lenient fields: absent, null or of another type all read as undefined.
const num = z.number().finite().nullish().catch(undefined).transform((v) => v ?? undefined);
const bool = z.boolean().nullish().catch(undefined).transform((v) => v ?? undefined);
const str = z.string().nullish().catch(undefined).transform((v) => v ?? undefined);
const strings = z.array(z.string()).nullish().catch(undefined).transform((v) => v ?? undefined);

/** The fields a row of `lms ps` and of `lms ls` share. */
const modelRow = z.object({
  modelKey: z.string().optional(),
  path: str,
  type: str,
  displayName: str,
  sizeBytes: num,
  maxContextLength: num,
  vision: bool,
  trainedForToolUse: bool,
});
const psEntry = modelRow.extend({
  identifier: z.string().optional(),
  status: str,
  contextLength: num,
  ttlMs: num,
  selectedVariant: str,
});
const lsEntry = modelRow.extend({
  paramsString: str,
  architecture: str,
  variants: strings,
  selectedVariant: str,
});
const statusSchema = z.object({ running: z.boolean(), port: num });

/** Drops undefined fields so results compare and serialise cleanly. */
function clean<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * A JSON list read row by row: each row that `row` accepts becomes what `convert` makes of it
 * (without undefined fields); rows it rejects, or that `convert` returns undefined for, are skipped.
 */
function rows<S extends z.ZodType, T extends object>(
  row: S,
  convert: (entry: z.output<S>) => T | undefined,
): z.ZodType<T[]> {
  return z.array(z.unknown()).transform((list) =>
    list.flatMap((raw) => {
      const parsed = row.safeParse(raw);
      const value = parsed.success ? convert(parsed.data) : undefined;
      return value === undefined ? [] : [clean(value)];
    })
  );
}

/** What a row of either list says about its model: the type ("llm" when not said) and details. */
function modelDetails(row: z.output<typeof modelRow>) {
  const { type, displayName, sizeBytes, maxContextLength, vision, trainedForToolUse } = row;
  return {
    type: type ?? "llm",
    displayName,
    sizeBytes,
    maxContextLength,
    vision,
    toolUse: trainedForToolUse,
  };
}

/** `lms ps --json`: loaded instances. Entries without an identifier or model key are skipped. */
export const psOutput: z.ZodType<LoadedInstance[]> = rows(psEntry, (d) => {
  const identifier = d.identifier ?? d.modelKey;
  const modelKey = d.modelKey ?? d.identifier;
  if (identifier === undefined || modelKey === undefined) return undefined;
  return {
    identifier,
    modelKey,
    ...modelDetails(d),
    status: d.status ?? "loaded",
    contextLength: d.contextLength,
    ttlMs: d.ttlMs,
    variant: d.selectedVariant,
  };
});

/** `lms ls --json`: downloaded models. Entries without a model key or path are skipped. */
export const lsOutput: z.ZodType<DownloadedModel[]> = rows(lsEntry, (d) => {
  const modelKey = d.modelKey ?? d.path;
  if (modelKey === undefined) return undefined;
  return {
    modelKey,
    ...modelDetails(d),
    paramsString: d.paramsString,
    architecture: d.architecture,
    variants: d.variants,
    selectedVariant: d.selectedVariant,
  };
});

/** `lms server status --json`. */
export const serverStatusOutput: z.ZodType<LmsServerStatus> = statusSchema.transform((status) =>
  clean({ running: status.running, port: status.port })
);

const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;?]*[A-Za-z]", "g");

/** `text` without the colour codes `lms` prints when it thinks it is on a terminal. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/** The last non-empty lines of some output, without colour codes. */
export function tail(text: string, lines = 12): string[] {
  return stripAnsi(text).split(/\r?\n/).map((l) => l.trimEnd()).filter((l) => l.trim())
    .slice(-lines);
}

/**
 * Parses the JSON document a command printed on stdout. `lms` logs to stderr, but a warning may
 * still precede the JSON on stdout, so the first line that starts a JSON value is tried too.
 */
export function parseJsonOutput(stdout: string): unknown {
  const text = stripAnsi(stdout).trim();
  try {
    return JSON.parse(text);
  } catch {
    const start = text.search(/^[[{]/m);
    if (start <= 0) throw new SyntaxError(`not JSON: ${JSON.stringify(text.slice(0, 120))}`);
    return JSON.parse(text.slice(start));
  }
}

/**
 * The instance to use among those of one model: an idle one, else the first. Every instance
 * `lms ps` lists is loaded, whatever its status (busy ones queue requests), so none is a reason
 * to load the model again.
 */
export function pickInstance(instances: readonly LoadedInstance[]): LoadedInstance | undefined {
  return instances.find((i) => i.status.toLowerCase() === "idle") ?? instances[0];
}
