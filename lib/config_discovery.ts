/**
 * Where an MCP config file may be: {@linkcode candidatePaths} generates the candidates in search
 * order (`--config` or `$MCP_JSON_PATH` alone, else the project, LM Studio's, the home and the
 * parent directory's file); the reader in config.ts takes the first that exists.
 */
import type { Env } from "./config_vars.ts";
import { dirname, join, resolve } from "./path.ts";

/** Where a candidate path came from. */
export type CandidateSource =
  | "--config"
  | "MCP_JSON_PATH"
  | "project"
  | "lmstudio"
  | "home"
  | "parent";

/** A place a config file may be. Explicit candidates must exist; the others are skipped if absent. */
export interface Candidate {
  path: string;
  source: CandidateSource;
  explicit: boolean;
}

/** Inputs of {@linkcode candidatePaths}. */
export interface CandidateOptions {
  /** `--config FILE`; wins over `MCP_JSON_PATH`. */
  explicitPath?: string;
  env: Env;
  cwd: string;
  home?: string;
}

/** `~` and `~/...` (or `~\...`) against `home`; any other path, or no home, is returned as is. */
export function expandTilde(path: string, home: string | undefined): string {
  if (home === undefined) return path;
  if (path === "~") return home;
  if (path.startsWith("~/") || path.startsWith("~\\")) return join(home, path.slice(2));
  return path;
}

/**
 * The config search order. `--config` or `$MCP_JSON_PATH` alone when given (they must exist);
 * otherwise `./.mcp.json`, `~/.lmstudio/mcp.json`, `~/.mcp.json`, `../.mcp.json` (duplicates
 * removed). The project file deliberately wins over LM Studio's own file.
 */
export function* candidatePaths(options: CandidateOptions): Generator<Candidate> {
  const { env, cwd, home } = options;
  const explicit = options.explicitPath?.trim();
  const fromEnv = env["MCP_JSON_PATH"]?.trim();
  if (explicit) {
    yield { path: resolve(cwd, expandTilde(explicit, home)), source: "--config", explicit: true };
    return;
  }
  if (fromEnv) {
    yield {
      path: resolve(cwd, expandTilde(fromEnv, home)),
      source: "MCP_JSON_PATH",
      explicit: true,
    };
    return;
  }
  const seen = new Set<string>();
  const all: Candidate[] = [{ path: join(cwd, ".mcp.json"), source: "project", explicit: false }];
  if (home !== undefined) {
    all.push({ path: join(home, ".lmstudio", "mcp.json"), source: "lmstudio", explicit: false });
    all.push({ path: join(home, ".mcp.json"), source: "home", explicit: false });
  }
  all.push({ path: join(dirname(cwd), ".mcp.json"), source: "parent", explicit: false });
  for (const candidate of all) {
    const path = resolve(candidate.path);
    if (seen.has(path)) continue;
    seen.add(path);
    yield { ...candidate, path };
  }
}
