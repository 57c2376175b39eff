/**
 * Where LM Studio's `lms` command is: an explicit path, else on PATH, else where LM Studio installs
 * it (`~/.lmstudio/bin/lms`, older versions `~/.cache/lm-studio/bin/lms`). The lookup is a few
 * `stat` calls, cached; a negative answer is re-checked after a while, and {@linkcode
 * LmsLocator.forget} makes the next call look again (after a spawn failure). The PATH lookup
 * itself ({@linkcode pathCandidates}, {@linkcode isFile}) also tells `doctor` which launchers exist.
 */
import { log as rootLog, type Logger } from "./log.ts";
import { homeDir, join } from "./path.ts";

/** Options for {@linkcode LmsLocator}; every field has a production default. */
export interface LmsLocateOptions {
  /** Path to `lms`, skipping the lookup (tests point it at a fake). */
  command?: string;
  /** The PATH to search; default: the process's PATH (none without --allow-env). */
  searchPath?: string;
  /** The home directory LM Studio installs `lms` under; default {@linkcode homeDir}. */
  home?: string;
  /** Whether a path is an existing file; default `Deno.stat`. */
  isFile?: (path: string) => Promise<boolean>;
  /** How long a "not installed" answer is trusted before looking again; default 30 s. */
  recheckMs?: number;
  now?: () => number;
  log?: Logger;
}

/** Where `lms` was found. */
export interface LmsLocation {
  path: string;
  /** "path": on PATH (allowed by `--allow-run=lms`); "home": LM Studio's own bin directory. */
  via: "explicit" | "path" | "home";
}

/** Whether `path` is an existing file; any failure (not found, not allowed to look) means no. */
export function isFile(path: string): Promise<boolean> {
  // Not found, a sandbox or OS denial, or a malformed PATH entry: all mean "not here".
  return Deno.stat(path).then((info) => info.isFile, () => false);
}

/** The process's PATH; undefined without --allow-env (then only the home directory is searched). */
function processPath(): string | undefined {
  try {
    return Deno.env.get("PATH");
  } catch {
    return undefined;
  }
}

/** The names an executable may have: on Windows `NAME.exe`, `NAME.cmd` and `NAME`. */
function executableNames(command: string): string[] {
  return Deno.build.os === "windows" ? [`${command}.exe`, `${command}.cmd`, command] : [command];
}

/**
 * `command` in every directory of `searchPath`, in search order (on Windows also with `.exe` and
 * `.cmd`). `searchPath` defaults to the process's PATH (none without --allow-env).
 */
export function pathCandidates(
  command: string,
  searchPath: string | undefined = processPath(),
): string[] {
  const sep = Deno.build.os === "windows" ? ";" : ":";
  return (searchPath ?? "").split(sep).filter((dir) => dir.trim() !== "")
    .flatMap((dir) => executableNames(command).map((name) => join(dir, name)));
}

/** Finds `lms` and remembers where. Constructing it does no I/O. */
export class LmsLocator {
  readonly #options: LmsLocateOptions;
  readonly #isFile: (path: string) => Promise<boolean>;
  readonly #now: () => number;
  readonly #log: Logger;
  #located: { at: number; location: LmsLocation | undefined } | undefined;

  constructor(options: LmsLocateOptions = {}) {
    this.#options = options;
    this.#isFile = options.isFile ?? isFile;
    this.#now = options.now ?? (() => Date.now());
    this.#log = options.log ?? rootLog.child("lms");
  }

  /** The candidate paths, in search order. */
  candidates(): LmsLocation[] {
    if (this.#options.command) return [{ path: this.#options.command, via: "explicit" }];
    const out: LmsLocation[] = pathCandidates("lms", this.#options.searchPath)
      .map((path) => ({ path, via: "path" }));
    const home = this.#options.home ?? homeDir();
    if (home) {
      for (
        const dir of [join(home, ".lmstudio", "bin"), join(home, ".cache", "lm-studio", "bin")]
      ) {
        for (const name of executableNames("lms")) out.push({ path: join(dir, name), via: "home" });
      }
    }
    return out;
  }

  /** Where `lms` is, or undefined when it is not installed. Cached (see {@linkcode LmsLocateOptions.recheckMs}). */
  async locate(): Promise<LmsLocation | undefined> {
    const now = this.#now();
    const cached = this.#located;
    if (cached) {
      if (cached.location !== undefined) return cached.location;
      if (now - cached.at < (this.#options.recheckMs ?? 30_000)) return undefined;
    }
    let found: LmsLocation | undefined;
    if (this.#options.command) {
      found = { path: this.#options.command, via: "explicit" };
    } else {
      for (const candidate of this.candidates()) {
        if (await this.#isFile(candidate.path)) {
          found = candidate;
          break;
        }
      }
    }
    this.#located = { at: now, location: found };
    this.#log.debug(found ? "found lms" : "lms not found", { path: found?.path });
    return found;
  }

  /** Forgets where `lms` is, so the next call looks again. */
  forget(): void {
    this.#located = undefined;
  }
}
