/**
 * Validation and resolution of one server entry of an MCP config file
 * ({@linkcode resolveEntry}): the fields are checked with zod, the transport is worked out
 * (`type`, Cline's `transportType`, or command vs url), `${VAR}` references are expanded and a
 * relative `cwd` is made absolute. Nothing here throws: whatever is wrong becomes the entry's
 * `problem`, so one bad entry never hides the others.
 */
import { z } from "zod";
import { expandTilde } from "./config_discovery.ts";
import { type Env, expand, expandContext, expandMap, expansionProblems } from "./config_vars.ts";
import { dirname, isAbsolute, resolve } from "./path.ts";
import { fingerprintOf, type ServerEntry } from "./server_entry.ts";
import { isRecord } from "./json.ts";

const StringMap = z.record(z.string(), z.string());

const RawEntrySchema = z.object({
  type: z.string().nullish(),
  transportType: z.string().nullish(),
  command: z.string().nullish(),
  args: z.array(z.string()).nullish(),
  env: StringMap.nullish(),
  cwd: z.string().nullish(),
  url: z.string().nullish(),
  headers: StringMap.nullish(),
  disabled: z.boolean().nullish(),
});

/** How a value reads in a message: "a list", "an object", "a string", "null"... */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return "a number";
  if (typeof value === "boolean") return "a boolean";
  return typeof value;
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

const EXPECTED: Record<string, string> = {
  args: "a list of strings",
  env: 'an object of string values, e.g. {"KEY": "value"}',
  headers: 'an object of string values, e.g. {"Authorization": "Bearer ${TOKEN}"}',
  disabled: "true or false",
};

function issueMessage(raw: unknown, issue: z.core.$ZodIssue): string {
  const where = fieldPath(issue.path);
  const actual = valueAt(raw, issue.path);
  if (issue.code === "invalid_type") {
    const top = String(issue.path[0] ?? "");
    if (issue.path.length === 1) {
      return `"${where}" must be ${EXPECTED[top] ?? issue.expected}, not ${typeName(actual)}`;
    }
    const hint = (top === "env" || top === "headers") && typeof actual === "number"
      ? ` (write it in quotes: "${String(actual)}")`
      : "";
    return `"${where}" must be a string, not ${typeName(actual)}${hint}`;
  }
  return `"${where}": ${issue.message}`;
}

const HTTP_TYPES = new Set(["http", "streamable-http", "streamablehttp", "streamable_http"]);

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function stringMapOf(value: unknown): Record<string, string> {
  if (!isRecord(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

/** The fields of one entry, with `null` read as absent. */
interface EntryFields {
  type?: string;
  transportType?: string;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  url?: string;
  headers?: Record<string, string>;
  disabled?: boolean;
}

function withoutNulls(data: z.infer<typeof RawEntrySchema>): EntryFields {
  const out: EntryFields = {};
  for (const [key, value] of Object.entries(data)) {
    if (value !== null && value !== undefined) Object.assign(out, { [key]: value });
  }
  return out;
}

/** Inputs of {@linkcode resolveEntry}. */
export interface ResolveEntryOptions {
  /** Absolute path of the config file (relative `cwd` resolves against its directory). */
  path: string;
  /** Variables for `${VAR}` expansion. */
  env: Env;
  home?: string;
}

/** Validates and resolves one raw entry. Never throws: what is wrong goes into `problem`. */
export function resolveEntry(
  name: string,
  raw: unknown,
  options: ResolveEntryOptions,
): ServerEntry {
  const problems: string[] = [];
  const ctx = expandContext({ configPath: options.path, env: options.env, home: options.home });
  if (name.trim() === "") problems.push("the server name is empty");

  let fields: EntryFields;
  if (!isRecord(raw)) {
    problems.push(
      `the entry must be an object like {"command": "npx", "args": [...]} or {"url": "..."}, not ${
        typeName(raw)
      }`,
    );
    fields = {};
  } else {
    const parsed = RawEntrySchema.safeParse(raw);
    if (parsed.success) {
      fields = withoutNulls(parsed.data);
    } else {
      for (const issue of parsed.error.issues) problems.push(issueMessage(raw, issue));
      // Keep what is readable so the entry can still be shown.
      fields = {
        type: typeof raw["type"] === "string" ? raw["type"] : undefined,
        transportType: typeof raw["transportType"] === "string" ? raw["transportType"] : undefined,
        command: typeof raw["command"] === "string" ? raw["command"] : undefined,
        args: stringsOf(raw["args"]),
        env: stringMapOf(raw["env"]),
        cwd: typeof raw["cwd"] === "string" ? raw["cwd"] : undefined,
        url: typeof raw["url"] === "string" ? raw["url"] : undefined,
        headers: stringMapOf(raw["headers"]),
        disabled: raw["disabled"] === true,
      };
    }
  }

  const declared = fields.type ?? fields.transportType;
  // Without a (known) type: a url alone means a remote server.
  let transport: ServerEntry["transport"] = fields.command === undefined && fields.url !== undefined
    ? "http"
    : "stdio";
  if (declared !== undefined) {
    const t = declared.trim().toLowerCase();
    if (t === "stdio") transport = "stdio";
    else if (t === "sse") transport = "sse";
    else if (HTTP_TYPES.has(t)) transport = "http";
    else {
      problems.push(`unknown "type": ${JSON.stringify(declared)} (use "stdio", "http" or "sse")`);
    }
  }

  const rawEnv = fields.env ?? {};
  const rawHeaders = fields.headers ?? {};
  let command: string | undefined;
  let args: string[] = [];
  let env: Record<string, string> = {};
  let cwd: string | undefined;
  let url: string | undefined;
  let headers: Record<string, string> = {};

  if (transport === "stdio") {
    if (fields.command === undefined) {
      if (fields.url === undefined) {
        problems.push(
          'it has neither "command" (a local server, e.g. "npx") nor "url" (a remote server)',
        );
      } else {
        problems.push(
          `it has "type": ${
            JSON.stringify(declared)
          } but no "command"; for a remote server use "type": "http" or "sse" with its "url"`,
        );
      }
    } else if (fields.command.trim() === "") {
      problems.push('"command" is empty');
    } else {
      command = expand(fields.command, "command", ctx);
    }
    args = (fields.args ?? []).map((a, i) => expand(a, `args[${i}]`, ctx));
    env = expandMap(rawEnv, "env", ctx);
    if (fields.cwd !== undefined && fields.cwd.trim() !== "") {
      const dir = expandTilde(expand(fields.cwd, "cwd", ctx), options.home);
      cwd = isAbsolute(dir) ? dir : resolve(dirname(options.path), dir);
    }
  } else {
    if (fields.url === undefined || fields.url.trim() === "") {
      problems.push(`it has "type": "${transport}" but no "url"`);
    } else {
      const unsetBefore = ctx.unset.size;
      url = expand(fields.url.trim(), "url", ctx);
      if (ctx.unset.size === unsetBefore && ctx.inputs.size === 0) {
        let parsedUrl: URL | undefined;
        try {
          parsedUrl = new URL(url);
        } catch {
          problems.push(`"url" ${JSON.stringify(url)} is not a valid URL`);
        }
        if (
          parsedUrl !== undefined && parsedUrl.protocol !== "http:" &&
          parsedUrl.protocol !== "https:"
        ) {
          problems.push(`"url" ${JSON.stringify(url)} must start with http:// or https://`);
        }
      }
    }
    headers = expandMap(rawHeaders, "headers", ctx);
  }

  problems.push(...expansionProblems(ctx));

  const resolved = { transport, command, args, env, cwd, url, headers };
  const entry: ServerEntry = {
    name,
    ...resolved,
    disabled: fields.disabled === true,
    envNames: Object.keys(rawEnv),
    fingerprint: fingerprintOf(resolved),
  };
  if (problems.length > 0) entry.problem = `MCP server "${name}": ${problems.join("; ")}.`;
  return entry;
}
