/**
 * MCP tool input schemas on the way to a local model and back: cleaning them of what
 * OpenAI-compatible local servers reject, validating a model's arguments against them (ajv, shipped
 * with the SDK), and summarising their parameters in one line for error messages.
 */
import { isRecord } from "./json.ts";
import { AjvJsonSchemaValidator, type JsonSchemaType } from "./sdk.ts";

/** `format` values llama.cpp's JSON-schema grammar understands; other values are dropped. */
const GRAMMAR_FORMATS = new Set(["date", "time", "date-time", "uuid"]);
/** Keys that only annotate a schema and that some local servers choke on. */
const DROPPED_KEYS = new Set(["$schema", "$id", "$comment", "examples", "deprecated"]);
const SCHEMA_MAP_KEYS = new Set(["properties", "$defs", "definitions", "patternProperties"]);
const SCHEMA_LIST_KEYS = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);
const SCHEMA_KEYS = new Set(["items", "not", "additionalItems", "contains"]);
const MAX_SCHEMA_DEPTH = 64;

function cleanNode(node: unknown, depth: number, keepFormats: boolean): unknown {
  if (!isRecord(node)) return node;
  if (depth > MAX_SCHEMA_DEPTH) return {};
  const out: Record<string, unknown> = {};
  let formatHint: string | undefined;
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_KEYS.has(key)) continue;
    if (key === "format") {
      if (typeof value !== "string") continue;
      if (keepFormats && GRAMMAR_FORMATS.has(value)) out.format = value;
      // Keep the hint for the model even though the grammar cannot enforce it.
      else if (keepFormats) formatHint = `(format: ${value})`;
      continue;
    }
    if (SCHEMA_MAP_KEYS.has(key)) {
      if (!isRecord(value)) continue;
      out[key] = Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, cleanNode(v, depth + 1, keepFormats)]),
      );
    } else if (SCHEMA_LIST_KEYS.has(key)) {
      if (!Array.isArray(value)) continue;
      out[key] = value.map((v) => cleanNode(v, depth + 1, keepFormats));
    } else if (SCHEMA_KEYS.has(key)) {
      out[key] = Array.isArray(value)
        ? value.map((v) => cleanNode(v, depth + 1, keepFormats))
        : cleanNode(value, depth + 1, keepFormats);
    } else if (key === "additionalProperties") {
      // Booleans pass; `{}` means "anything" (some grammars reject the empty schema); other
      // schemas are cleaned; anything else is not a schema and is dropped.
      if (typeof value === "boolean") out[key] = value;
      else if (isRecord(value)) {
        out[key] = Object.keys(value).length === 0
          ? true
          : cleanNode(value, depth + 1, keepFormats);
      }
    } else if (key === "required") {
      const list = Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
      if (list.length > 0) out[key] = list;
    } else {
      out[key] = value;
    }
  }
  if (formatHint !== undefined) {
    const description = typeof out.description === "string" ? out.description : "";
    out.description = description ? `${description} ${formatHint}` : formatHint;
  }
  return out;
}

/**
 * Cleans an MCP tool input schema of what local OpenAI-compatible servers reject: drops `$schema`,
 * `$id`, `$comment`, `examples`, `format` values llama.cpp's grammar cannot express (kept as a
 * hint in the description), empty `additionalProperties` schemas and empty `required` lists, and
 * makes sure the top level is `{type: "object", properties: {...}}`.
 */
export function cleanToolSchema(schema: unknown): Record<string, unknown> {
  const cleaned = cleanNode(schema, 0, true);
  const top: Record<string, unknown> = isRecord(cleaned) ? cleaned : {};
  top.type = "object";
  if (!isRecord(top.properties)) top.properties = {};
  return top;
}

/** The schema used to validate arguments locally: cleaned, without `format` checks (servers own those). */
function validationSchema(schema: unknown): Record<string, unknown> {
  const cleaned = cleanNode(schema, 0, false);
  const top: Record<string, unknown> = isRecord(cleaned) ? cleaned : {};
  top.type = "object";
  return top;
}

/** A compiled check: the validator's message, or undefined when the arguments match. */
type Check = (input: unknown) => string | undefined;

/**
 * Compiled schemas one compiler keeps at most: ajv holds on to every schema it compiled, so past
 * this many a fresh compiler takes over (the checks already made keep working).
 */
export const MAX_COMPILED_SCHEMAS = 256;

/**
 * Validates arguments against MCP input schemas (ajv, shipped with the SDK). Compiling a schema
 * takes milliseconds, so checks are kept: by schema object (the pool keeps a server's tools until
 * it says they changed, so that is one compilation per tool-list version), and by content, so an
 * unchanged tool in a changed list, or the same schema on two servers, is compiled once. Meant to
 * be shared by every task: {@linkcode sharedArgumentValidator}.
 */
export class ArgumentValidator {
  /** Made on the first compilation: building Ajv takes milliseconds the server's start need not pay. */
  #ajv: AjvJsonSchemaValidator | undefined;
  #bySchema = new WeakMap<object, Check | null>();
  #byText = new Map<string, Check | null>();
  #compilations = 0;

  /** How many schemas this validator compiled (a schema it could not compile counts too). */
  get compilations(): number {
    return this.#compilations;
  }

  /** The check of `schema`: kept, or compiled now; null when it cannot be compiled locally. */
  #check(schema: Record<string, unknown>): Check | null {
    const kept = this.#bySchema.get(schema);
    if (kept !== undefined) return kept;
    const cleaned = validationSchema(schema);
    const text = JSON.stringify(cleaned);
    let check = this.#byText.get(text);
    if (check === undefined) {
      if (this.#byText.size >= MAX_COMPILED_SCHEMAS) {
        this.#ajv = undefined;
        this.#byText.clear();
      }
      this.#compilations += 1;
      try {
        this.#ajv ??= new AjvJsonSchemaValidator();
        const validate = this.#ajv.getValidator(cleaned as JsonSchemaType);
        check = (input) => {
          const result = validate(input);
          return result.valid ? undefined : result.errorMessage;
        };
      } catch {
        // Schemas with remote $refs or unknown dialects: leave validation to the server.
        check = null;
      }
      this.#byText.set(text, check);
    }
    this.#bySchema.set(schema, check);
    return check;
  }

  /**
   * Problems with `args` as a readable list, or [] when they match (or when the schema cannot be
   * compiled locally; the server then validates).
   */
  problems(schema: unknown, args: Record<string, unknown>): string[] {
    if (!isRecord(schema)) return [];
    const check = this.#check(schema);
    if (check === null) return [];
    const message = check(args);
    if (message === undefined) return [];
    return message
      .split(/, (?=data)/)
      .map((m) => m.replace(/^data(?=\/|\s)/, "arguments").replace(/^arguments\//, "arguments."))
      .map((m) => m.replace(/(?<=arguments\.[^ ]*)\//g, "."));
  }
}

/** The validator every task shares, so that a schema is compiled once per process. */
export const sharedArgumentValidator: ArgumentValidator = new ArgumentValidator();

/** A one-line summary of a schema's parameters: `path (string, required), depth (number)`. */
export function describeParameters(schema: unknown): string {
  if (!isRecord(schema) || !isRecord(schema.properties)) return "no parameters";
  const required = new Set(
    Array.isArray(schema.required) ? schema.required.filter((r) => typeof r === "string") : [],
  );
  const parts = Object.entries(schema.properties).map(([name, prop]) => {
    const type = isRecord(prop)
      ? Array.isArray(prop.type)
        ? prop.type.join("|")
        : typeof prop.type === "string"
        ? prop.type
        : Array.isArray(prop.enum)
        ? `one of ${prop.enum.map((v) => JSON.stringify(v)).join(", ")}`
        : "any"
      : "any";
    return `${name} (${type}${required.has(name) ? ", required" : ""})`;
  });
  return parts.length === 0 ? "no parameters" : parts.join(", ");
}
