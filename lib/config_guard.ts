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
import { existsSync } from "node:fs";
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
  /** The wall clock that file times are compared with (tests). Default `Date.now`. */
  now?: () => number;
}

/** `path` with symbolic links resolved as far as it exists; dangling links are followed. */
export function canonicalPath(path: string, depth = 0): string {
  return realPath(path) ?? canonicalMissing(path, depth);
}

/**
 * The real path of `path` when something is there. Asked of a stat first, which says "nothing"
 * without an error: a failed `realPathSync` costs an error object, three times the stat.
 */
function realPath(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return Deno.realPathSync(path);
  } catch {
    // Gone meanwhile, or not readable.
    return undefined;
  }
}

/** {@linkcode canonicalPath} of a path that does not resolve: a dangling link, or nothing. */
function canonicalMissing(path: string, depth: number): string {
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

/**
 * {@linkcode canonicalPath} of a call's path, or undefined when it cannot be any of the files
 * whose canonical names (lower case) are `names`: nothing is there, not even a link, and its
 * own name is none of them (the canonical path of a missing file ends in its name). A call's
 * strings are mostly no paths at all (a search, a text): one lstat says so.
 */
function candidatePath(path: string, names: ReadonlySet<string>): string | undefined {
  try {
    Deno.lstatSync(path);
  } catch {
    // Nothing there, not even a link.
    return names.has(basename(path).toLowerCase()) ? canonicalMissing(path, 0) : undefined;
  }
  try {
    return Deno.realPathSync(path);
  } catch {
    // A dangling link, or not readable.
    return canonicalMissing(path, 0);
  }
}

/**
 * How old a directory's modification (or status change) time must be for its listing to be kept:
 * file times are coarse (some file systems count seconds), so an entry made in the same tick as
 * the listing could leave both times as they were. Any later change sets both to its own time,
 * which differs from one that was already this old.
 */
const SETTLED_MS = 2000;
/**
 * The same for a directory whose modification time has a fraction of a second: its file system
 * keeps times finer than a second, which on Linux means to the kernel's clock tick (10 ms at
 * most), so a later change gives it another modification time. An editor's save in a project
 * then keeps its listing unused for this long, not for seconds. (Deno reports the status change
 * time in whole seconds, so it cannot tell.)
 */
const SETTLED_FINE_MS = 100;

/** Whether a directory with these times has been unchanged long enough to keep its listing. */
function settled(mtime: number, ctime: number, now: number): boolean {
  return (mtime % 1000 !== 0 && now - mtime >= SETTLED_FINE_MS) ||
    now - Math.min(mtime, ctime) >= SETTLED_MS;
}

/** Largest directory whose listing is kept (a listing is read whole). */
const MAX_LISTED_ENTRIES = 4096;

/** A directory's entry names (folded, see {@linkcode foldName}), with the stat they go with. */
interface Listing {
  dev: number;
  ino: number | null;
  mtime: number;
  ctime: number;
  names: Set<string>;
}

const listings = new Map<string, Listing>();

/** A name as any file system here could match it: lower case, composed. */
function foldName(name: string): string {
  return name.normalize("NFC").toLowerCase();
}

/**
 * Whether `dir` certainly has no entry named `name`, not even a link: by its kept listing while
 * the directory is unchanged (same inode, same modification and status change times), else by a
 * new listing when one of those times is old enough to keep it ({@linkcode settled}). False
 * when that cannot be known, and off Linux (other systems' lookups fold case and Unicode in ways
 * not modelled here).
 */
function absentFrom(dir: string, name: string, now: () => number): boolean {
  if (Deno.build.os !== "linux" || name === "" || name === "." || name === "..") return false;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch {
    return false;
  }
  const kept = listings.get(dir);
  if (kept !== undefined && same(kept, info)) return !kept.names.has(foldName(name));
  listings.delete(dir);
  const mtime = info.mtime?.getTime();
  const ctime = info.ctime?.getTime();
  if (!info.isDirectory || mtime === undefined || ctime === undefined) return false;
  if (!settled(mtime, ctime, now())) return false;
  const names = new Set<string>();
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (names.size >= MAX_LISTED_ENTRIES) return false;
      names.add(foldName(entry.name));
    }
  } catch {
    return false;
  }
  const listing: Listing = { dev: info.dev, ino: info.ino, mtime, ctime, names };
  // Read while nothing changed: then it is the whole directory.
  try {
    if (!same(listing, Deno.statSync(dir))) return false;
  } catch {
    return false;
  }
  if (listings.size >= 64) listings.clear();
  listings.set(dir, listing);
  return !names.has(foldName(name));
}

/** Whether `info` is the directory `listing` was read from, as it was then. */
function same(listing: Listing, info: Deno.FileInfo): boolean {
  return listing.dev === info.dev && listing.ino === info.ino &&
    listing.mtime === info.mtime?.getTime() && listing.ctime === info.ctime?.getTime();
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

/** Every string in `value` (object values, array items, nested), depth-first, added to `out`. */
function stringsIn(value: unknown, out: string[], depth = 0): string[] {
  if (typeof value === "string") {
    out.push(value);
  } else if (depth < 32 && Array.isArray(value)) {
    for (const item of value) stringsIn(item, out, depth + 1);
  } else if (depth < 32 && typeof value === "object" && value !== null) {
    for (const key in value) {
      if (Object.hasOwn(value, key)) {
        stringsIn((value as Record<string, unknown>)[key], out, depth + 1);
      }
    }
  }
  return out;
}

/**
 * The protected file that `args` (a call's arguments) name, if any (as the protected list gives
 * it, the first of them when a path could name several); see the module docs for how paths are
 * resolved.
 */
export function configPathNamed(args: unknown, o: GuardContext): string | undefined {
  const fold = (p: string, insensitive: boolean) => insensitive ? p.toLowerCase() : p;
  const { targets, names, nameList, canonicalNames, roots } = planFor(o);
  const now = o.now ?? Date.now;
  const check = (candidate: string): string | undefined => {
    let canonical: string[];
    if (isAbsolute(candidate)) {
      const path = candidatePath(resolve(candidate), canonicalNames);
      canonical = path === undefined ? [] : [path];
    } else {
      // A word (no separator) relative to a root is an entry of that root: most strings (a
      // search, a name) are found absent from its kept listing, which costs one stat of the root
      // (a stat that succeeds costs a third of one that fails).
      const word = !/[\\/]/.test(candidate);
      canonical = [];
      for (const root of roots) {
        const path = word && absentFrom(root, candidate, now)
          ? (canonicalNames.has(candidate.toLowerCase())
            ? canonicalMissing(join(root, candidate), 0)
            : undefined)
          : candidatePath(resolve(root, candidate), canonicalNames);
        if (path !== undefined) canonical.push(path);
      }
    }
    if (canonical.length === 0) return undefined;
    // In the order given: the files in use come first, so the message names the one that counts.
    return targets.find((t) => canonical.some((c) => fold(c, t.insensitive) === t.canonical))
      ?.path;
  };
  for (const value of stringsIn(args, [])) {
    const whole = asPath(value, o.home);
    const found = whole === undefined ? undefined : check(whole);
    if (found !== undefined) return found;
    // Words of a command line (one line: file contents, which have many, are not read for
    // words) that end in a protected file's name.
    if (value.length > MAX_COMMAND_CHARS || value.includes("\n")) continue;
    const lower = value.toLowerCase();
    if (!nameList.some((n) => lower.includes(n))) continue;
    for (const word of value.split(/[\s"'`;&|<>()=,]+/)) {
      if (!names.has(basename(word).toLowerCase())) continue;
      const path = asPath(word, o.home);
      const hit = path === undefined ? undefined : check(path);
      if (hit !== undefined) return hit;
    }
  }
  return undefined;
}

/** What calls on one server are checked against: the protected files and the roots of paths. */
interface GuardPlan {
  targets: Target[];
  /** The protected files' names, lower case (the words of a command line are matched on them). */
  names: Set<string>;
  /** The same names as a list. */
  nameList: string[];
  /** The names of the protected files' canonical paths, lower case. */
  canonicalNames: Set<string>;
  /** The directories a relative path may be relative to: the working directory, then its roots. */
  roots: string[];
}

/**
 * The plan of the last call with the same protected list and server arguments (the same arrays:
 * the pool keeps them while the config is unchanged), reused for {@linkcode TARGET_TTL_MS}.
 */
const plans = new WeakMap<readonly string[], {
  context: GuardContext;
  at: number;
  plan: GuardPlan;
}>();

function planFor(o: GuardContext): GuardPlan {
  const now = performance.now();
  const kept = plans.get(o.args);
  if (
    kept !== undefined && now - kept.at < TARGET_TTL_MS && kept.context.protected === o.protected &&
    kept.context.cwd === o.cwd && kept.context.home === o.home &&
    kept.context.caseInsensitive === o.caseInsensitive
  ) {
    return kept.plan;
  }
  const targets = o.protected.map((path) => protectedTarget(path, o.caseInsensitive));
  const names = new Set(targets.map((t) => basename(t.path).toLowerCase()));
  const plan: GuardPlan = {
    targets,
    names,
    nameList: [...names],
    canonicalNames: new Set(targets.map((t) => basename(t.canonical).toLowerCase())),
    roots: [
      resolve(o.cwd),
      ...o.args.map((a) => asPath(a, o.home)).filter((a): a is string => a !== undefined)
        .map((a) => resolve(o.cwd, a)).filter(isKnownDirectory),
    ],
  };
  plans.set(o.args, {
    context: {
      protected: o.protected,
      cwd: o.cwd,
      args: o.args,
      ...(o.home !== undefined ? { home: o.home } : {}),
      ...(o.caseInsensitive !== undefined ? { caseInsensitive: o.caseInsensitive } : {}),
    },
    at: now,
    plan,
  });
  return plan;
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
