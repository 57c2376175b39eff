/**
 * Keeping the local model away from the bridge's own configuration. A model that can write files
 * (server-filesystem rooted at the project, as the README sets it up) could otherwise add an
 * entry to `.mcp.json`, or change a command, and the next call would start it: any command.
 *
 * {@linkcode configPathNamed} finds, in the arguments of a call made for the local model, a
 * string that names one of the protected files (the `.mcp.json` candidates, `lmstudio-bridge.json`
 * beside each, the files in use), resolved as the server could resolve it: absolute, relative to
 * the server's working directory or to a directory among its arguments (server-filesystem's
 * roots), through `..` and `~`, `file://` URLs, symbolic links (the real path of the longest
 * existing prefix, dangling links followed), and without regard to case where the file system
 * ignores it. The words of a one-line string (a shell command) are checked too when they end in
 * a protected file's name; file contents (several lines) are not. The pool refuses such a call
 * before it reaches the server.
 *
 * What this cannot see (a shell tool writing the file under another name, a server that writes
 * it on its own) is caught later: a config version first seen while a local model works is held
 * (config.ts).
 */
import { basename, dirname, expandTilde, isAbsolute, join, resolve } from "./path.ts";

/** Longest string argument read as a path (file contents are not paths). */
const MAX_PATH_CHARS = 4096;
/** Longest one-line string argument read for words that name a protected file (a command). */
const MAX_COMMAND_CHARS = 16 * 1024;

/** What {@linkcode configPathNamed} resolves paths against. */
export interface GuardContext {
  /** The files the local model may not name (absolute). */
  protected: readonly string[];
  /** The server's working directory. */
  cwd: string;
  /** The server's arguments: those naming existing directories are roots paths may be relative to. */
  args: readonly string[];
  home?: string;
  /** Compare paths ignoring case. Default: probed on the file system (case-insensitive on macOS and Windows by default). */
  caseInsensitive?: boolean;
}

/** `path` with symbolic links resolved as far as it exists; dangling links are followed. */
export function canonicalPath(path: string, depth = 0): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    // Does not exist (yet), or not readable: look at what it is and at its parent.
  }
  if (depth < 32) {
    try {
      if (Deno.lstatSync(path).isSymlink) {
        // A link to a file that does not exist yet: writing through it creates its target.
        return canonicalPath(resolve(dirname(path), Deno.readLinkSync(path)), depth + 1);
      }
    } catch {
      // Not there at all.
    }
  }
  const parent = dirname(path);
  if (parent === path) return path;
  return join(canonicalPath(parent, depth + 1), basename(path));
}

/** Whether the file system holding `path` (or its nearest existing ancestor) ignores case. */
function ignoresCase(path: string): boolean {
  for (let dir = dirname(path);; dir = dirname(dir)) {
    const name = basename(dir);
    const swapped = [...name].map((c) => c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())
      .join("");
    if (swapped !== name) {
      try {
        const a = Deno.statSync(dir);
        const b = Deno.statSync(join(dirname(dir), swapped));
        return a.ino === b.ino && a.dev === b.dev;
      } catch {
        // The swapped name does not exist: case matters here (or `dir` does not exist; go up).
        try {
          Deno.statSync(dir);
          return false;
        } catch {
          // Keep going up to an existing directory.
        }
      }
    }
    if (dirname(dir) === dir) return Deno.build.os === "darwin" || Deno.build.os === "windows";
  }
}

/** A string argument as a path: `file://` URLs decoded, `~` expanded; undefined when it cannot be one. */
function asPath(value: string, home: string | undefined): string | undefined {
  const text = value.trim();
  if (text === "" || text.length > MAX_PATH_CHARS || /[\0\n\r]/.test(text)) return undefined;
  if (text.startsWith("file://")) {
    try {
      return decodeURIComponent(new URL(text).pathname);
    } catch {
      return undefined;
    }
  }
  return expandTilde(text, home);
}

/** Every string in `value` (object values, array items, nested), depth-first. */
function* stringsIn(value: unknown, depth = 0): Generator<string> {
  if (typeof value === "string") {
    yield value;
  } else if (depth < 32 && Array.isArray(value)) {
    for (const item of value) yield* stringsIn(item, depth + 1);
  } else if (depth < 32 && typeof value === "object" && value !== null) {
    for (const item of Object.values(value)) yield* stringsIn(item, depth + 1);
  }
}

/**
 * The protected file that `args` (a call's arguments) name, if any (as the protected list gives
 * it, the first of them when a path could name several); see the module docs for how paths are
 * resolved.
 */
export function configPathNamed(args: unknown, o: GuardContext): string | undefined {
  const fold = (p: string, insensitive: boolean) => insensitive ? p.toLowerCase() : p;
  const targets = o.protected.map((path) => protectedTarget(path, o.caseInsensitive));
  const names = new Set(targets.map((t) => basename(t.path).toLowerCase()));
  const roots = [
    o.cwd,
    ...o.args.map((a) => asPath(a, o.home)).filter((a): a is string => a !== undefined)
      .map((a) => resolve(o.cwd, a)).filter(isKnownDirectory),
  ];
  const check = (candidate: string): string | undefined => {
    const paths = isAbsolute(candidate) ? [candidate] : roots.map((r) => resolve(r, candidate));
    const canonical = paths.map((path) => canonicalPath(resolve(path)));
    // In the order given: the files in use come first, so the message names the one that counts.
    return targets.find((t) => canonical.some((c) => fold(c, t.insensitive) === t.canonical))
      ?.path;
  };
  for (const value of stringsIn(args)) {
    const whole = asPath(value, o.home);
    const found = whole === undefined ? undefined : check(whole);
    if (found !== undefined) return found;
    // Words of a command line (one line: file contents, which have many, are not read for
    // words) that end in a protected file's name.
    if (value.length > MAX_COMMAND_CHARS || value.includes("\n")) continue;
    if (![...names].some((n) => value.toLowerCase().includes(n))) continue;
    for (const word of value.split(/[\s"'`;&|<>()=,]+/)) {
      if (!names.has(basename(word).toLowerCase())) continue;
      const path = asPath(word, o.home);
      const hit = path === undefined ? undefined : check(path);
      if (hit !== undefined) return hit;
    }
  }
  return undefined;
}

/** A protected file as calls are compared with it: its canonical path, folded where case is ignored. */
interface Target {
  path: string;
  insensitive: boolean;
  canonical: string;
}

/**
 * How long a protected file's canonical path is reused. Working it out takes a dozen system calls
 * (most of them failing, for the candidate files that do not exist) on every tool call otherwise;
 * the paths of the calls themselves are resolved afresh every time, so a link a model makes to a
 * config file is seen at once.
 */
const TARGET_TTL_MS = 1000;

/** Values worked out from the file system, each reused for {@linkcode TARGET_TTL_MS}. */
class Recent<T> {
  readonly #kept = new Map<string, { at: number; value: T }>();

  get(key: string, compute: () => T): T {
    const now = performance.now();
    const kept = this.#kept.get(key);
    if (kept !== undefined && now - kept.at < TARGET_TTL_MS) return kept.value;
    const value = compute();
    if (this.#kept.size >= 256) this.#kept.clear();
    this.#kept.set(key, { at: now, value });
    return value;
  }
}

const targets = new Recent<Target>();
/** Whether a server's argument is a directory: the same arguments come with every call. */
const directories = new Recent<boolean>();

function protectedTarget(path: string, caseInsensitive: boolean | undefined): Target {
  return targets.get(`${caseInsensitive ?? "?"}\0${path}`, () => {
    const insensitive = caseInsensitive ?? ignoresCase(path);
    const canonical = canonicalPath(resolve(path));
    return { path, insensitive, canonical: insensitive ? canonical.toLowerCase() : canonical };
  });
}

function isKnownDirectory(path: string): boolean {
  return directories.get(path, () => isDirectory(path));
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
