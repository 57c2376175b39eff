/**
 * Watching the config files' directories (file-system events), so that
 * {@linkcode ConfigSource.current} can say "unchanged" without a stat. config.ts's module doc
 * says when that answer is trusted; this module only keeps one watcher on the right directories
 * and counts the events that matter.
 *
 * - The directories of the files of interest are watched, not the files: an editor that saves by
 *   writing a new file and renaming it over the old one replaces the file (a watch on the file
 *   would stay on the old inode), and a file that does not exist yet can only be seen appearing
 *   from its directory. A directory that does not exist either (`~/.lmstudio`) is watched through
 *   its nearest existing ancestor, and the watch is rebuilt when it appears.
 * - An event counts when it names one of the files or directories of interest, compared by name
 *   (platforms report paths canonicalised differently, e.g. /private/var on macOS; a false match
 *   only costs a stat). Reads (`access`) never count; an event without paths, or saying the
 *   watcher lost track ("rescan"), always counts.
 * - Watching is given up (and the caller falls back to a stat per call) when it cannot be
 *   started or stops: no read permission for a directory (never prompted for), no watchers left
 *   (Linux `fs.inotify.max_user_watches`/instances), an unsupported platform. Why is logged once.
 */
import type { Logger } from "./log.ts";
import { basename, dirname } from "./path.ts";
import { errorMessage } from "./errors.ts";

/** A file-system watcher as {@linkcode ConfigWatch} uses it: `Deno.FsWatcher`'s shape. */
export interface ConfigWatcher extends AsyncIterable<Deno.FsEvent> {
  close(): void;
}

/** Starts a watcher on `dirs` (not recursive); throws when it cannot. */
export type WatchFactory = (dirs: string[]) => ConfigWatcher;

/** The real watcher: `Deno.watchFs` on the directories, not recursive. */
export function watchDirs(dirs: string[]): ConfigWatcher {
  return Deno.watchFs(dirs, { recursive: false });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

function readable(dir: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "read", path: dir }).state === "granted";
  } catch {
    return false;
  }
}

/** One watcher over the directories of a set of files; see the module docs. */
export class ConfigWatch {
  readonly #factory: WatchFactory;
  readonly #log: Logger;
  readonly #onEvent: () => void;
  #handle?: ConfigWatcher;
  /** The files the watch was planned for, and the directories it watches. */
  #filesKey?: string;
  #dirsKey?: string;
  /** Names (last path component) of the files and directories whose events count. */
  #names = new Set<string>();
  /** Directories whose events mean the watch must be planned again (appeared, moved, removed). */
  #dirNames = new Set<string>();
  /** An event touched a directory on the way: plan again before trusting the watch. */
  #replan = false;
  #failed?: string;
  #closed = false;
  /** Events that counted, since the start. */
  events = 0;

  constructor(o: { factory: WatchFactory; log: Logger; onEvent: () => void }) {
    this.#factory = o.factory;
    this.#log = o.log;
    this.#onEvent = o.onEvent;
  }

  /** Why watching was given up, once it was. */
  get failed(): string | undefined {
    return this.#failed;
  }

  /**
   * Watches the directories of `files` (reopening the watcher when they changed, the new one
   * before the old one closes, so no change falls in between). True while watching works.
   */
  async ensure(files: readonly string[]): Promise<boolean> {
    if (this.#failed !== undefined || this.#closed) return false;
    const filesKey = files.join("\0");
    if (this.#handle !== undefined && filesKey === this.#filesKey && !this.#replan) return true;
    this.#replan = false;
    const names = new Set<string>();
    const dirNames = new Set<string>();
    const dirs = new Set<string>();
    for (const file of files) {
      names.add(basename(file));
      let dir = dirname(file);
      while (!(await isDirectory(dir))) {
        names.add(basename(dir));
        dirNames.add(basename(dir));
        const parent = dirname(dir);
        if (parent === dir) break;
        dir = parent;
      }
      dirs.add(dir);
      dirNames.add(basename(dir));
    }
    const list = [...dirs];
    const denied = list.find((d) => !readable(d));
    if (denied !== undefined) {
      return this.#fail(`no read permission for ${denied}`);
    }
    this.#names = new Set([...names, ...dirNames]);
    this.#dirNames = dirNames;
    this.#filesKey = filesKey;
    const dirsKey = list.join("\0");
    if (this.#handle !== undefined && dirsKey === this.#dirsKey) return true;
    let handle: ConfigWatcher;
    try {
      handle = this.#factory(list);
    } catch (error) {
      return this.#fail(`cannot watch ${list.join(", ")}: ${errorMessage(error)}`);
    }
    const old = this.#handle;
    this.#handle = handle;
    this.#dirsKey = dirsKey;
    old?.close();
    this.#pump(handle);
    return true;
  }

  /** Stops watching; safe to call more than once. */
  close(): void {
    this.#closed = true;
    const handle = this.#handle;
    this.#handle = undefined;
    handle?.close();
  }

  async #pump(handle: ConfigWatcher): Promise<void> {
    try {
      for await (const event of handle) {
        if (handle !== this.#handle) return;
        if (event.kind === "access") continue;
        const named = event.paths.map((p) => basename(p));
        // `flag` is null (not undefined) on ordinary events.
        const rescan = event.flag === "rescan";
        const counts = rescan || named.length === 0 || named.some((n) => this.#names.has(n));
        if (!counts) continue;
        if (rescan || named.some((n) => this.#dirNames.has(n))) {
          this.#replan = true;
        }
        this.events++;
        this.#onEvent();
      }
      if (handle === this.#handle) this.#fail("the watcher stopped");
    } catch (error) {
      if (handle === this.#handle) this.#fail(`the watcher failed: ${errorMessage(error)}`);
    }
  }

  #fail(reason: string): false {
    if (this.#failed !== undefined || this.#closed) return false;
    this.#failed = reason;
    const handle = this.#handle;
    this.#handle = undefined;
    try {
      handle?.close();
    } catch {
      // Already closed.
    }
    this.#log.info(
      `config changes are checked with a stat on every call (${reason}); watching the config ` +
        "directories is not possible here",
    );
    this.#onEvent();
    return false;
  }
}
