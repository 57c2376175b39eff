/**
 * The bridge's own settings file, `lmstudio-bridge.json` (JSONC), next to the MCP config file in
 * use or named by LMSTUDIO_BRIDGE_CONFIG. The bridge's settings stay out of `.mcp.json`, which
 * other clients validate and rewrite (Claude Code, VS Code, LM Studio).
 *
 * - {@linkcode BridgeSettings}: the sections, each optional. `servers.<name>.sandbox` (how a
 *   server is confined), `servers.<name>.tools` and `tools` (approval rules: glob -> allow, ask or
 *   deny), `sampling` (limits of sampling requests from servers), `tools_on_demand` (when tool
 *   definitions are sent on demand).
 * - {@linkcode parseBridgeSettings}: JSONC, validated with zod. A wrong value is an error with
 *   line and column (the file is not used; ConfigSource keeps the last good settings); an unknown
 *   key is a warning with line and column, never fatal.
 *
 * Reading and hot reload are ConfigSource's (config.ts), as for the MCP config.
 */
import { z } from "zod";
import { isRecord } from "./json.ts";
import { locateJsonPath, parseJsoncFile } from "./jsonc.ts";
import { typeName } from "./config_entry.ts";

/** The settings file's name, in the directory of the MCP config file in use. */
export const BRIDGE_SETTINGS_FILE = "lmstudio-bridge.json";

/** An approval rule: run the call, ask the user first, or refuse it. */
export type ApprovalRule = "allow" | "ask" | "deny";

/** Glob (`write_*`, or `server/tool` globally) -> rule. */
export type RuleMap = Record<string, ApprovalRule>;

/** The settings of one server. */
export interface ServerSettings {
  sandbox?: SandboxSetting;
  /** Approval rules for this server's tools (globs over its tool names). */
  tools?: RuleMap;
}

/** What `lmstudio-bridge.json` says; every section is optional. */
export interface BridgeSettings {
  servers?: Record<string, ServerSettings>;
  /** Global approval rules, `server/tool` globs. */
  tools?: RuleMap;
  sampling?: { max_tokens?: number; per_task?: number };
  /**
   * Tool definitions taking more than `share` (0 to 1) of the model's context window are sent
   * on demand: a catalogue and a load_tools tool instead (tool_demand.ts).
   */
  tools_on_demand?: { share?: number };
}

const Rule = z.enum(["allow", "ask", "deny"], { error: 'must be "allow", "ask" or "deny"' });
const Rules = z.record(z.string(), Rule, {
  error: 'must be an object of glob -> rule, e.g. {"write_*": "ask"}',
});
const Names = z.array(z.string(), { error: 'must be a list of strings, e.g. ["./data"]' });
/** A grant: true (all), false (none) or a list; false reads as the empty list. */
const NamesOrAll = z.union([z.boolean(), Names], {
  error: 'must be true, false or a list of strings, e.g. ["./data"]',
}).transform((v) => v === false ? [] : v);
const SANDBOX_MODES = ["auto", "deno", "os", "none"] as const;

/** The object form of `servers.<name>.sandbox`: what to allow beyond the derived defaults. */
export const SandboxRulesSchema = z.strictObject({
  /** Which sandbox (default "auto"); "none" is only the string form. */
  mode: z.enum(["auto", "deno", "os"], { error: 'must be "auto", "deno" or "os"' }).optional(),
  /** Paths it may read (directories include what is below them); true: anywhere. */
  read: NamesOrAll.optional(),
  /** Paths it may write (and read). */
  write: NamesOrAll.optional(),
  /** Hosts (`host`, `host:port`) it may connect to; true: any. */
  net: NamesOrAll.optional(),
  /** Variables of the bridge's environment passed on to it. */
  env: Names.optional(),
  /** Commands it may run (they run outside Deno's sandbox, inside bubblewrap when there is one). */
  run: NamesOrAll.optional(),
  /** System information it may read (`hostname`, `osRelease`...); true: all. */
  sys: NamesOrAll.optional(),
}, { error: "must be an object" });
const SANDBOX_ERROR =
  'must be "auto", "deno", "os", "none" or an object {mode, read, write, net, env, run, sys}';

/**
 * `servers.<name>.sandbox`: "auto" (the default), "deno", "os" (bubblewrap only), "none"
 * (unconfined), or {@linkcode SandboxRulesSchema} widening the defaults.
 */
export const SandboxSettingSchema = z.union([
  z.enum(SANDBOX_MODES, { error: SANDBOX_ERROR }),
  SandboxRulesSchema,
], { error: SANDBOX_ERROR });
export type SandboxSetting = z.infer<typeof SandboxSettingSchema>;
export type SandboxRules = z.infer<typeof SandboxRulesSchema>;
const Sandbox = SandboxSettingSchema;
const Server = z.strictObject({ sandbox: Sandbox.optional(), tools: Rules.optional() }, {
  error: 'must be an object like {"sandbox": "auto", "tools": {...}}',
});
const Sampling = z.strictObject({
  max_tokens: z.number({ error: "must be a whole number of 1 or more" }).int().min(1).optional(),
  per_task: z.number({ error: "must be a whole number of 0 or more" }).int().min(0).optional(),
}, { error: 'must be an object like {"max_tokens": 1024, "per_task": 10}' });
const OnDemand = z.strictObject({
  share: z.number({ error: "must be a number from 0 to 1" }).min(0).max(1).optional(),
}, { error: 'must be an object like {"share": 0.4}' });
const Settings = z.strictObject({
  $schema: z.string().optional(),
  tools_on_demand: OnDemand.optional(),
  servers: z.record(z.string(), Server, { error: "must be an object of server name -> settings" })
    .optional(),
  tools: Rules.optional(),
  sampling: Sampling.optional(),
});

/** The settings and what was not understood in them, or why the file cannot be used. */
export type ParsedBridgeSettings =
  | {
    ok: true;
    settings: BridgeSettings;
    /** Unknown keys (ignored), each with its position: "path:3:5: unknown key ...". */
    warnings: string[];
  }
  | {
    ok: false;
    /** What is wrong, where (path:line:column) and what to do. */
    error: string;
    line?: number;
    column?: number;
  };

/** An issue, with a union's issues replaced by those of the option that got furthest. */
function flatten(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return [issue];
  const depth = (issues: z.core.$ZodIssue[]) =>
    Math.max(...issues.map((i) => i.path.length + (i.code === "invalid_type" ? 0 : 0.5)));
  const best = issue.errors.reduce((a, b) => (depth(b) > depth(a) ? b : a));
  // Only an option that got past the type of the value itself says more than the union.
  if (depth(best) === 0) return [issue];
  return best.flatMap((i) => flatten({ ...i, path: [...issue.path, ...i.path] }));
}

function pathText(path: readonly PropertyKey[]): string {
  return path.map(String).join(".") || "the file";
}

/**
 * Parses the settings file's text: a syntax error or a wrong value makes it unusable (the error
 * says where, with line and column); unknown keys come back as warnings. Never throws.
 */
export function parseBridgeSettings(text: string, path: string): ParsedBridgeSettings {
  const read = parseJsoncFile(text, path);
  if (!read.ok) return { ok: false, error: read.error, line: read.line, column: read.column };
  const data = read.value;
  if (!isRecord(data)) {
    return {
      ok: false,
      error: `${path}: the bridge settings must be an object like {"servers": {...}, ` +
        `"tools": {...}}, not ${typeName(data)}.`,
    };
  }
  const at = (where: readonly PropertyKey[]) => {
    const position = locateJsonPath(text, where);
    return position === undefined ? path : `${path}:${position.line}:${position.column}`;
  };
  const parsed = Settings.safeParse(data);
  if (parsed.success) return { ok: true, settings: withoutSchema(parsed.data), warnings: [] };
  const issues = parsed.error.issues.flatMap(flatten);
  const unknown = issues.filter((i) => i.code === "unrecognized_keys");
  const wrong = issues.filter((i) => i.code !== "unrecognized_keys");
  if (wrong.length > 0) {
    const first = wrong[0]!;
    const more = wrong.length > 1 ? ` (and ${wrong.length - 1} more)` : "";
    return {
      ok: false,
      error: `${at(first.path)}: ${pathText(first.path)} ${first.message}${more}. Fix the ` +
        "file; it is re-read on the next use.",
      ...locateJsonPath(text, first.path),
    };
  }
  // Only unknown keys: drop them (with a warning each) and read the rest.
  const warnings: string[] = [];
  const copy: unknown = structuredClone(data);
  for (const issue of unknown) {
    if (issue.code !== "unrecognized_keys") continue;
    let holder: unknown = copy;
    for (const key of issue.path) holder = isRecord(holder) ? holder[String(key)] : undefined;
    for (const key of issue.keys) {
      if (isRecord(holder)) delete holder[key];
      const where = [...issue.path, key];
      warnings.push(
        `${at(where)}: unknown key "${pathText(where)}" is ignored (check its spelling; known ` +
          `keys there: ${knownKeys(issue.path)}).`,
      );
    }
  }
  const again = Settings.safeParse(copy);
  if (!again.success) {
    return { ok: false, error: `${path}: ${again.error.issues[0]?.message ?? "invalid"}.` };
  }
  return { ok: true, settings: withoutSchema(again.data), warnings };
}

/** The keys the schema knows at `path` (of an unknown key's parent), for the warning. */
function knownKeys(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "servers, tools, sampling, tools_on_demand";
  if (path[0] === "sampling") return "max_tokens, per_task";
  if (path[0] === "tools_on_demand") return "share";
  if (path[0] === "servers" && path.length === 2) return "sandbox, tools";
  if (path[0] === "servers" && path.length === 3) return "read, write, net, env, run";
  return "none";
}

function withoutSchema(data: z.infer<typeof Settings>): BridgeSettings {
  const { $schema: _schema, ...settings } = data;
  return settings;
}
