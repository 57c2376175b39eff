/**
 * `${VAR}` expansion in MCP config entries: `${VAR}`, `${VAR:-default}` and VS Code's
 * `${env:VAR}`, with VS Code's `${workspaceFolder}` and `${userHome}` as fallbacks when the
 * environment does not set them. Unset variables and `${input:...}` prompts are not errors here:
 * they are collected in the {@linkcode ExpandContext} and turned into the entry's problem by
 * {@linkcode expansionProblems}.
 */
import { basename, dirname } from "./path.ts";

/** Environment variables as read (an unset variable is absent or undefined). */
export type Env = Readonly<Record<string, string | undefined>>;

/** Variables with a meaning in VS Code configs, used when the environment does not set them. */
function builtinVariables(configPath: string, home: string | undefined): Record<string, string> {
  const dir = dirname(configPath);
  const workspace = basename(dir) === ".vscode" ? dirname(dir) : dir;
  const vars: Record<string, string> = { workspaceFolder: workspace };
  if (home !== undefined) vars["userHome"] = home;
  return vars;
}

/** What expansion of one entry reads, and what it found missing. */
export interface ExpandContext {
  /** The environment; it wins over the builtins. */
  env: Env;
  /** VS Code's `workspaceFolder` and `userHome`. */
  builtins: Record<string, string>;
  /** Unset variable -> the fields that use it. */
  unset: Map<string, string[]>;
  /** Names of `${input:...}` prompts met. */
  inputs: Set<string>;
}

/** A fresh context for expanding the entries of the config file at `configPath`. */
export function expandContext(
  options: { configPath: string; env: Env; home?: string },
): ExpandContext {
  return {
    env: options.env,
    builtins: builtinVariables(options.configPath, options.home),
    unset: new Map(),
    inputs: new Set(),
  };
}

const VARIABLE = /\$\{([^}]*)\}/g;
const NAME_WITH_DEFAULT = /^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

/**
 * Expands `${VAR}`, `${VAR:-default}` and VS Code's `${env:VAR}` in one value; `where` names the
 * field for the problem message. An unset variable or an `${input:...}` is left as written and
 * recorded in `ctx`.
 */
export function expand(value: string, where: string, ctx: ExpandContext): string {
  return value.replace(VARIABLE, (whole, inner: string) => {
    if (inner.startsWith("input:")) {
      ctx.inputs.add(inner.slice("input:".length));
      return whole;
    }
    const m = NAME_WITH_DEFAULT.exec(inner);
    if (!m) return whole;
    const name = m[1]!;
    const fallback = m[2];
    const set = ctx.env[name] ?? ctx.builtins[name];
    if (fallback !== undefined) return set === undefined || set === "" ? fallback : set;
    if (set !== undefined) return set;
    const places = ctx.unset.get(name) ?? [];
    places.push(where);
    ctx.unset.set(name, places);
    return whole;
  });
}

/** {@linkcode expand} on every value of a map (`env`, `headers`); keys stay as written. */
export function expandMap(
  map: Record<string, string>,
  field: string,
  ctx: ExpandContext,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) out[key] = expand(value, `${field}.${key}`, ctx);
  return out;
}

/** One problem per unset variable and per `${input:...}` prompt met, saying what to do. */
export function expansionProblems(ctx: ExpandContext): string[] {
  const problems: string[] = [];
  for (const [variable, places] of ctx.unset) {
    problems.push(
      `environment variable ${variable} is not set (used in ${places.join(", ")}); set it before ` +
        `starting the bridge, or give a default with \${${variable}:-value}`,
    );
  }
  for (const input of ctx.inputs) {
    problems.push(
      `\${input:${input}} is a VS Code prompt the bridge cannot answer; put the value or an ` +
        `environment variable (\${NAME}) there instead`,
    );
  }
  return problems;
}
