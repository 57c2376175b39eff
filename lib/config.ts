/**
 * MCP client configuration: which `.mcp.json` is in force, what it says, and whether it changed.
 *
 * - Discovery is a generator of candidate paths ({@linkcode candidatePaths}) plus a reader
 *   ({@linkcode ConfigSource}); the first existing candidate wins.
 * - Parsing accepts JSON with comments and trailing commas (JSONC, as VS Code writes it; see
 *   jsonc.ts), both the `mcpServers` (Claude Code/Desktop, Cursor, LM Studio) and the `servers`
 *   (VS Code) layouts, and reports syntax errors with line and column
 *   ({@linkcode parseConfigText}).
 * - Each entry is validated on its own (config_entry.ts): one bad entry gets a `problem` and the
 *   others still work. `${VAR}` / `${VAR:-default}` expand in command, args, env values, cwd, url
 *   and header values.
 * - Change detection is a `stat` (path, mtime, ctime, size, inode) of the candidates and the
 *   settings file; a file is re-read only when that changes, and a broken edit keeps the last good
 *   configuration in force. With `watch` (the app sets it), the directories of every candidate
 *   and settings file are watched (config_watch.ts) and an unchanged check is a clock read and
 *   a comparison, without a stat; see "When the watcher is trusted" below.
 * - Every problem is a {@linkcode ConfigError}.
 *
 * When the watcher is trusted. A file-system event arrives after the write that caused it, a
 * moment later (another thread reads it), so "no event yet" does not prove "no change". The
 * check therefore falls back to the stat in every case where a change may not have been
 * reported yet, and skips it only in the steady state:
 * - The watcher is opened before the stat that starts trusting it, so a change made before is
 *   seen by that stat and one made after gives an event.
 * - An event marks the config dirty: the next call stats (and re-reads what changed). A check
 *   during which an event arrived does not count as a clean one.
 * - For {@linkcode SETTLE_MS} after an event every call stats: edits come in bursts (an editor
 *   writes, renames, sets modes; a tool writes twice, all within milliseconds), and the events
 *   of the later steps may still be on their way when the next call comes. A write followed at
 *   once by a call in that window is seen by that call's stat, whether or not its event came.
 * - Outside it, a write is seen by the first call after its event was read, which takes well
 *   under a millisecond (inotify on Linux; measured: about half of the calls made right after
 *   `await Deno.writeTextFile` in the same process come before the event); a call in between
 *   still sees the version before the write, as it would have had it come a moment earlier.
 *   That is the price of a check without a syscall: any syscall (a stat costs 5 to 40 us) would
 *   be the check again.
 * - Coarse timestamps (the "modified too recently" rule below) need no stat of their own: an
 *   edit that keeps the stat unchanged still gives an event, and the re-read that follows
 *   compares the bytes.
 * - Even without events the config is stat-checked every {@linkcode VERIFY_MS}: a change the
 *   watcher cannot see (a network file system changed from another machine) is seen then.
 * - A call for the local model checks with a stat when it ends ({@linkcode ConfigSource.current}
 *   `verify`): what the model changed must be seen while it still counts as its work (held).
 * - Where watching is not possible (no read permission for a directory, no watchers left, an
 *   unsupported platform) every call stats, as without `watch`; why is logged once.
 */
import { existsSync } from "node:fs";
import { type Env, fnv1a64, resolveEntry, type ServerEntry, typeName } from "./config_entry.ts";
import { isRecord, stableStringify } from "./json.ts";
import { parseJsoncFile } from "./jsonc.ts";
import { log as defaultLog, type Logger } from "./log.ts";
import { currentDir, dirname, expandTilde, homeDir, join, resolve } from "./path.ts";
import { BridgeError, errorMessage } from "./errors.ts";
import { closestName, plural } from "./text.ts";
import { BRIDGE_SETTINGS_FILE, type BridgeSettings, parseBridgeSettings } from "./config_bridge.ts";
import { ConfigWatch, watchDirs, type WatchFactory } from "./config_watch.ts";

/** The configuration in force. */
export interface McpConfig {
  /** The file the servers come from (undefined: none found). */
  path: string | undefined;
  /** Candidate paths, in search order. */
  searched: string[];
  /** Every entry in file order, including disabled and problematic ones. */
  servers: ServerEntry[];
  /**
   * The newest file failed to read, parse or validate (with line:column for syntax errors);
   * `servers` (and `path`) are then the last good configuration.
   */
  error?: string;
  /** The file that `error` is about (may differ from `path` when an older file is still in force). */
  errorPath?: string;
  /** The bridge's own settings (`lmstudio-bridge.json`), read and reloaded the same way. */
  bridge: BridgeConfig;
}

/** A configuration problem: bad file, unknown server, disabled or unusable entry. */
export class ConfigError extends BridgeError<"config"> {
  override name = "ConfigError";
  /** The config file concerned, if any. */
  readonly path?: string;
  /** The server entry concerned, if any. */
  readonly server?: string;
  /** 1-based position of a syntax error. */
  readonly line?: number;
  readonly column?: number;
  constructor(
    message: string,
    options: { path?: string; server?: string; line?: number; column?: number; cause?: unknown } =
      {},
  ) {
    super("config", message, options);
    this.path = options.path;
    this.server = options.server;
    this.line = options.line;
    this.column = options.column;
  }
}

// -- where the file may be ------------------------------------------------------------------------

/** Where a candidate path came from. */
export type CandidateSource =
  | "--config"
  | "MCP_JSON_PATH"
  | "LMSTUDIO_BRIDGE_CONFIG"
  | "project"
  | "lmstudio"
  | "home"
  | "parent"
  | "next to the MCP config";

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
  /** The value of `$MCP_JSON_PATH`. */
  mcpJsonPath?: string;
  cwd: string;
  home?: string;
}

/**
 * The config search order. `--config` or `$MCP_JSON_PATH` alone when given (they must exist);
 * otherwise `./.mcp.json`, `~/.lmstudio/mcp.json`, `~/.mcp.json`, `../.mcp.json` (duplicates
 * removed). The project file deliberately wins over LM Studio's own file.
 */
export function* candidatePaths(options: CandidateOptions): Generator<Candidate> {
  const { cwd, home } = options;
  const explicit = options.explicitPath?.trim();
  const fromEnv = options.mcpJsonPath?.trim();
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

// -- what the file says ---------------------------------------------------------------------------

/**
 * Parses a config file's text into its entries. Throws {@linkcode ConfigError} for file-level
 * problems (syntax error with line:column, no `mcpServers`/`servers` object); entry-level problems
 * land in each entry's `problem`.
 */
export function parseConfigText(
  text: string,
  options: { path: string; env: Env; home?: string },
): ServerEntry[] {
  const { path } = options;
  const parsed = parseJsoncFile(text, path);
  if (!parsed.ok) {
    const { line, column, cause } = parsed;
    throw new ConfigError(parsed.error, { path, line, column, cause });
  }
  const data = parsed.value;
  const layout = 'Expected {"mcpServers": {"name": {...}}} (Claude Code, Claude Desktop, Cursor, ' +
    'LM Studio) or {"servers": {...}} (VS Code).';
  if (!isRecord(data)) {
    throw new ConfigError(`${path}: the file holds ${typeName(data)}, not an object. ${layout}`, {
      path,
    });
  }
  const key = data["mcpServers"] !== undefined ? "mcpServers" : "servers";
  const servers = data["mcpServers"] ?? data["servers"];
  if (servers === undefined) {
    throw new ConfigError(
      `${path}: no "mcpServers" or "servers" object (top-level keys: ${
        Object.keys(data).join(", ") || "none"
      }). ${layout}`,
      { path },
    );
  }
  if (!isRecord(servers)) {
    throw new ConfigError(
      `${path}: "${key}" must be an object mapping server names to entries, not ${
        typeName(servers)
      }. ${layout}`,
      { path },
    );
  }
  return Object.entries(servers).map(([name, raw]) =>
    resolveEntry(name, raw, { path, env: options.env, home: options.home })
  );
}

/** "no MCP config file found (searched ...)" and how to create one, as a sentence. */
export function noConfigFile(searched: readonly string[], name = "NAME"): string {
  return `no MCP config file found (searched ${searched.join(", ")}). Create .mcp.json with ` +
    `{"mcpServers": {"${name}": {"command": "...", "args": []}}}, or point MCP_JSON_PATH / ` +
    "--config at your file.";
}

/**
 * The usable entry `name` of `config`, or ConfigError naming the valid servers, saying it is
 * disabled or giving its problem.
 */
export function usableEntry(config: McpConfig, name: string): ServerEntry {
  const entry = config.servers.find((s) => s.name === name);
  const where = config.path ?? "the MCP config";
  const fileError = config.error ? ` (Also: ${config.error})` : "";
  if (entry === undefined) {
    if (config.path === undefined && config.servers.length === 0) {
      throw new ConfigError(
        config.error ??
          `No MCP server "${name}": ${noConfigFile(config.searched, name)}`,
        { server: name, path: config.errorPath },
      );
    }
    const usable = config.servers.filter((s) =>
      !s.disabled && s.problem === undefined && s.held === undefined
    );
    const others = config.servers.filter((s) => !usable.includes(s));
    const near = closestName(name, config.servers.map((s) => s.name));
    const hint = near ? ` Did you mean "${near}"?` : "";
    const list = usable.length > 0
      ? `Available servers: ${usable.map((s) => s.name).join(", ")}`
      : "No usable servers are configured";
    const unusable = others.length > 0
      ? ` (unusable: ${
        others.map((s) =>
          `${s.name} ${
            s.disabled ? "disabled" : s.problem !== undefined ? "has a problem" : "held"
          }`
        ).join(", ")
      })`
      : "";
    throw new ConfigError(
      `No MCP server named "${name}" in ${where}.${hint} ${list}${unusable}.${fileError}`,
      { server: name, path: config.path },
    );
  }
  if (entry.disabled) {
    throw new ConfigError(
      `MCP server "${name}" is disabled in ${where} ("disabled": true). Remove that line or set ` +
        "it to false to use it.",
      { server: name, path: config.path },
    );
  }
  if (entry.problem !== undefined) {
    throw new ConfigError(`${entry.problem} Fix it in ${where}.`, {
      server: name,
      path: config.path,
    });
  }
  if (entry.held !== undefined) {
    throw new ConfigError(`MCP server "${name}" is held: ${entry.held}.`, {
      server: name,
      path: config.path,
    });
  }
  return entry;
}

// -- the reader -----------------------------------------------------------------------------------

/** File access used by {@linkcode ConfigSource}; tests wrap the real one to count reads. */
export interface ConfigFs {
  stat(path: string): Promise<Deno.FileInfo>;
  readTextFile(path: string): Promise<string>;
  /**
   * Whether anything is at `path` (links followed), without the cost of a failed stat's error
   * (a missing file is the common case: most candidates do not exist). Without it, a check of a
   * file that was missing stats it.
   */
  exists?(path: string): boolean;
}

const realFs: ConfigFs = {
  // A synchronous stat: a few microseconds on a local disk, where the asynchronous one goes
  // through a thread pool and costs ten times that; it runs after every call made for a model.
  stat: (path) => {
    try {
      return Promise.resolve(Deno.statSync(path));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  },
  readTextFile: (path) => Deno.readTextFile(path),
  exists: (path) => existsSync(path),
};

/** Options of {@linkcode ConfigSource}; all have production defaults. */
export interface ConfigSourceOptions {
  /** `--config FILE`: the only candidate, and it must exist. */
  explicitPath?: string;
  /**
   * `$MCP_JSON_PATH` (the app passes its settings' value): the only candidate when there is no
   * `explicitPath`, and it must exist.
   */
  mcpJsonPath?: string;
  /**
   * `$LMSTUDIO_BRIDGE_CONFIG` (the app passes its settings' value): the bridge settings file to
   * use (it must exist) instead of `lmstudio-bridge.json` next to the MCP config file.
   */
  bridgeConfigPath?: string;
  /** Variables for `${VAR}` expansion. Default: the process env. */
  env?: Record<string, string | undefined>;
  /** Default: Deno.cwd(). */
  cwd?: string;
  /** Default: the user's home directory ($HOME, $USERPROFILE). */
  home?: string;
  log?: Logger;
  fs?: ConfigFs;
  /** Clock for the "modified too recently to trust the timestamp" check and the watcher's rules. */
  now?: () => number;
  /**
   * Watch the config directories so that an unchanged check needs no stat (see the module doc);
   * a function: the watcher to use (tests). Default false. Call {@linkcode ConfigSource.close}
   * when done.
   */
  watch?: boolean | WatchFactory;
}

/**
 * After a file-system event, calls stat-check the config for this long (see the module doc):
 * hundreds of times what an event takes to arrive and what an editor's save takes, on a loaded
 * machine too.
 */
export const SETTLE_MS = 250;

/** While watching, the config is still stat-checked at least this often (see the module doc). */
export const VERIFY_MS = 5_000;

/**
 * A file modified less than this long before it was read may be changed again without its
 * timestamp changing (coarse filesystem clocks, up to 2 s on FAT); such a file is re-read
 * (and compared) until it is older than this.
 */
const RACY_MS = 2_000;

/** What a file said when last read, and the stat it had. */
interface Snapshot<T> {
  signature: string;
  /** Text last read (undefined when nothing was read). */
  text?: string;
  racy: boolean;
  value: T;
}

type Found =
  | { candidate: Candidate; info: Deno.FileInfo }
  | { candidate: Candidate; error: unknown };

/** One search's outcome: the file found (or the error), and the candidates missing before it. */
interface Looked {
  found: Found | undefined;
  missing: string[];
}

/** The real paths of the files in use where they differ, and the paths they were found for. */
interface InUseReal {
  key: string;
  paths: string[];
}

/** What tells that nothing changed since `config` was made ({@linkcode ConfigSource}). */
interface UnchangedPlan {
  config: McpConfig;
  /** Paths that were missing and must still be. */
  missing: string[];
  /** Files that were there, with the stat signature they must still have. */
  files: { candidate: Candidate; signature: string }[];
}

function processEnv(): Record<string, string | undefined> {
  try {
    return Deno.env.toObject();
  } catch {
    // Without env permission there is nothing to expand from; unset variables are reported per entry.
    return {};
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

function signatureOf(found: Found | undefined): string {
  if (found === undefined) return "none";
  if ("error" in found) {
    const e = found.error;
    return `${found.candidate.path}\0error\0${e instanceof Error ? e.name : "?"}`;
  }
  const i = found.info;
  return [
    found.candidate.path,
    i.isFile ? "file" : "other",
    i.mtime?.getTime() ?? "?",
    i.ctime?.getTime() ?? "?",
    i.size,
    i.ino ?? "?",
    i.dev,
  ].join("\0");
}

const SOURCE_LABEL: Record<CandidateSource, string> = {
  "--config": "given with --config",
  "MCP_JSON_PATH": "given by MCP_JSON_PATH",
  "LMSTUDIO_BRIDGE_CONFIG": "given by LMSTUDIO_BRIDGE_CONFIG",
  project: "project",
  lmstudio: "LM Studio",
  home: "home",
  parent: "parent directory",
  "next to the MCP config": "next to the MCP config",
};

/** The outcome of looking at a file found by a stat: unchanged, its new text, or unreadable. */
type Look =
  | { kind: "same" }
  | { kind: "text"; text: string; racy: boolean }
  | { kind: "gone" }
  | { kind: "unreadable"; error: unknown };

/** The bridge settings file in force, as {@linkcode ConfigSource} reads it. */
export interface BridgeConfig {
  /** The settings file the settings come from (undefined: none; the defaults apply). */
  path: string | undefined;
  /** Where it was looked for (undefined: nowhere, as no MCP config file is in use). */
  searched: string | undefined;
  settings: BridgeSettings;
  /** Unknown keys (ignored), with line and column. */
  warnings: string[];
  /** The newest file could not be used (with line:column); `settings` are the last good ones. */
  error?: string;
  /** The file that `error` is about. */
  errorPath?: string;
  /**
   * Newer settings are held (they changed while a local model was working): why, and what to
   * do. `settings` are the accepted ones.
   */
  held?: string;
}

/** The MCP configuration as read from its file, without the bridge settings. */
type ServersConfig = Omit<McpConfig, "bridge">;

/** Why an entry (or the bridge settings) is held: what the listings show. */
export const HELD_REASON =
  "changed while a local model was working; restart the bridge (or accept it) to use it";

function isUsable(entry: ServerEntry): boolean {
  return !entry.disabled && entry.problem === undefined;
}

/**
 * The MCP configuration and the bridge settings, kept current: every {@linkcode current} call
 * stats the candidates and the settings file (cheap) and re-reads only what changed. Concurrent
 * calls share one check.
 */
export class ConfigSource {
  readonly #explicitPath?: string;
  readonly #mcpJsonPath?: string;
  readonly #bridgeConfigPath?: string;
  readonly #env: Env;
  readonly #cwd: string;
  readonly #home?: string;
  readonly #log: Logger;
  readonly #fs: ConfigFs;
  readonly #now: () => number;
  #snapshot?: Snapshot<ServersConfig>;
  #lastGood?: { path: string | undefined; servers: ServerEntry[] };
  #bridgeSnapshot?: Snapshot<BridgeConfig>;
  #bridgeLastGood?: { path: string; settings: BridgeSettings; warnings: string[] };
  #current?: McpConfig;
  #pending?: Promise<McpConfig>;
  /** Stretches of local-model work under way ({@linkcode beginModelWork}). */
  #working = 0;
  /** The entries of the last version read, before holds are marked. */
  #seenServers?: ServerEntry[];
  /** Held entries by name, with the fingerprint accepted before (undefined: none was). */
  readonly #holds = new Map<string, { accepted?: string }>();
  #holdsVersion = 0;
  #heldView?: { list: ServerEntry[]; version: number; view: ServerEntry[] };
  #seenBridge?: BridgeConfig;
  #acceptedBridge?: BridgeConfig;
  #pendingBridge?: BridgeConfig;
  #bridgeView?: BridgeConfig;
  #sandboxView?: { list: ServerEntry[]; bridge: BridgeConfig; view: ServerEntry[] };
  /** The directory watcher, when watching (it may have given up: see its `failed`). */
  #watch?: ConfigWatch;
  /** `#current` as a settled promise, for the check that needs no stat. */
  #settled?: Promise<McpConfig>;
  /** Until when `#settled` may be returned without a stat (0: not now). */
  #trustedUntil = 0;
  /** When the last file-system event that counted came. */
  #lastEventAt = -Infinity;
  /** The real paths of the files in use, where they differ (a symlinked ~/.mcp.json). */
  #inUseReal: InUseReal = { key: "", paths: [] };
  /** What the last search of the MCP config and of the bridge settings found, file by file. */
  #looked: { mcp?: Looked; bridge?: Looked } = {};
  /** What a check compares to tell that nothing changed since `config` was made (see #unchanged). */
  #unchangedPlan?: UnchangedPlan;
  /** {@linkcode #watchFiles} for the files in use it was made with (the candidates are fixed). */
  #watchList?: { inUse: InUseReal; files: string[] };

  constructor(options: ConfigSourceOptions = {}) {
    this.#explicitPath = options.explicitPath;
    this.#env = options.env ?? processEnv();
    this.#mcpJsonPath = options.mcpJsonPath;
    this.#bridgeConfigPath = options.bridgeConfigPath?.trim() || undefined;
    this.#cwd = resolve(options.cwd ?? currentDir());
    this.#home = options.home ?? homeDir();
    this.#log = options.log ?? defaultLog.child("config");
    this.#fs = options.fs ?? realFs;
    this.#now = options.now ?? Date.now;
    const watch = options.watch ?? false;
    if (watch !== false) {
      this.#watch = new ConfigWatch({
        factory: watch === true ? watchDirs : watch,
        log: this.#log,
        onEvent: () => {
          this.#trustedUntil = 0;
          this.#lastEventAt = this.#now();
        },
      });
    }
  }

  /** Stops watching the config directories; later calls stat-check. Safe to call twice. */
  close(): void {
    this.#watch?.close();
    this.#trustedUntil = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The candidate paths in search order. */
  candidates(): Candidate[] {
    return [
      ...candidatePaths({
        explicitPath: this.#explicitPath,
        mcpJsonPath: this.#mcpJsonPath,
        cwd: this.#cwd,
        home: this.#home,
      }),
    ];
  }

  /**
   * Cheap when unchanged (stat only: mtime, ctime, size, inode, and which candidate wins; no stat
   * while a watcher is trusted, see the module doc); re-reads on change. The same object while
   * nothing changed. Never throws. `verify`: stat-check even when the watcher is trusted (and
   * after a check already under way).
   */
  current(o: { verify?: boolean } = {}): Promise<McpConfig> {
    if (o.verify !== true && this.#now() < this.#trustedUntil && this.#settled !== undefined) {
      return this.#settled;
    }
    if (this.#pending) {
      return o.verify === true ? this.#pending.then(() => this.current(o)) : this.#pending;
    }
    this.#pending = this.#refreshAll().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #refreshAll(): Promise<McpConfig> {
    const watch = this.#watch;
    // Opened (or re-planned) before the stat, so a change in between gives an event.
    const watching = watch !== undefined && await watch.ensure(this.#watchFiles());
    const events = watch?.events ?? 0;
    this.#trustedUntil = 0;
    let current = await this.#unchanged();
    if (current === undefined) {
      const read = await this.#refresh();
      const bridge = this.#withBridgeHold(await this.#refreshBridge(read.path));
      const servers = {
        ...read,
        servers: this.#withSandbox(this.#withHolds(read.servers), bridge),
      };
      current = this.#current;
      if (current === undefined || !this.#isSame(current, servers, bridge)) {
        current = this.#current = { ...servers, bridge };
        this.#settled = Promise.resolve(current);
      }
      this.#unchangedPlan = this.#planUnchanged(current);
    }
    if (watching && await this.#sameFilesInUse(current.path, current.bridge.path)) {
      const now = this.#now();
      if (watch.events === events && now >= this.#lastEventAt + SETTLE_MS) {
        this.#trustedUntil = now + VERIFY_MS;
      }
    }
    return current;
  }

  /**
   * `#current` when a stat of the files the last search found, and an existence check of those
   * it found missing, show that nothing changed since it was made; undefined when something may
   * have (the search then runs again). A missing file costs no error this way (a failed stat
   * costs about four times a successful one, and most candidates do not exist).
   */
  async #unchanged(): Promise<McpConfig | undefined> {
    const plan = this.#unchangedPlan;
    const exists = this.#fs.exists;
    if (plan === undefined || plan.config !== this.#current || exists === undefined) {
      return undefined;
    }
    for (const path of plan.missing) if (exists(path)) return undefined;
    for (const { candidate, signature } of plan.files) {
      try {
        const info = await this.#fs.stat(candidate.path);
        if (signatureOf({ candidate, info }) !== signature) return undefined;
      } catch {
        return undefined;
      }
    }
    return plan.config;
  }

  /**
   * What {@linkcode #unchanged} compares for `config`: the files of the last searches with their
   * stat, the candidates found missing before them. None when a search ended on an error, or a
   * file was modified too recently for its stat to tell a change (it is read again instead).
   */
  #planUnchanged(config: McpConfig): UnchangedPlan | undefined {
    const { mcp, bridge } = this.#looked;
    const missing: string[] = [];
    const files: { candidate: Candidate; signature: string }[] = [];
    for (
      const [looked, snapshot] of [[mcp, this.#snapshot], [bridge, this.#bridgeSnapshot]] as const
    ) {
      if (looked === undefined) continue;
      const signature = signatureOf(looked.found);
      if (snapshot === undefined || snapshot.racy || snapshot.signature !== signature) {
        return undefined;
      }
      missing.push(...looked.missing);
      if (looked.found === undefined) continue;
      if ("error" in looked.found) return undefined;
      files.push({ candidate: looked.found.candidate, signature });
    }
    return { config, missing, files };
  }

  /** Every file whose change is watched for: the candidates and the settings files beside them. */
  #watchFiles(): string[] {
    const inUse = this.#inUseReal;
    if (this.#watchList?.inUse === inUse) return this.#watchList.files;
    const mcp = this.candidates().map((c) => c.path);
    const explicitBridge = this.#bridgeCandidate(undefined)?.path;
    const bridge = explicitBridge !== undefined
      ? [explicitBridge]
      : mcp.map((p) => join(dirname(p), BRIDGE_SETTINGS_FILE));
    const files = [...new Set([...mcp, ...bridge, ...inUse.paths])];
    this.#watchList = { inUse, files };
    return files;
  }

  /**
   * Whether the files in use are those the watcher was planned for. A file in use that is a
   * symlink (a ~/.mcp.json kept in a dotfiles repository) changes where its target lives: that
   * directory is watched too, from the next check on.
   */
  async #sameFilesInUse(...paths: (string | undefined)[]): Promise<boolean> {
    const inUse = paths.filter((p): p is string => p !== undefined);
    const key = inUse.join("\0");
    if (key === this.#inUseReal.key) return true;
    const real: string[] = [];
    for (const path of inUse) {
      try {
        const target = await Deno.realPath(path);
        if (target !== path) real.push(target);
      } catch {
        // Gone or unreadable: the next stat says so.
      }
    }
    const before = this.#inUseReal.paths.join("\0");
    this.#inUseReal = { key, paths: real };
    return real.join("\0") === before;
  }

  #isSame(previous: McpConfig, servers: ServersConfig, bridge: BridgeConfig): boolean {
    return previous.bridge === bridge && previous.servers === servers.servers &&
      previous.path === servers.path && previous.error === servers.error &&
      previous.errorPath === servers.errorPath && previous.searched.join("\0") ===
        servers.searched.join("\0");
  }

  // -- changes made while a local model works ------------------------------------------------

  /**
   * Marks a stretch of time in which a local model works (a call made for it, a task): a config
   * version first seen meanwhile may have been written by the model (a shell tool, a server
   * writing files), so its new or changed entries are held, and new bridge settings too (the
   * settings in force stay). Call the returned function when the work ends (once is enough).
   */
  beginModelWork(): () => void {
    this.#working++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#working--;
    };
  }

  /**
   * Accepts the held entry `name` (the user approved it): it is used from the next call on.
   * False when it is not held.
   */
  acceptServer(name: string): boolean {
    const entry = this.#seenServers?.find((e) => e.name === name);
    const hold = this.#holds.get(name);
    if (hold === undefined || entry === undefined || entry.fingerprint === hold.accepted) {
      return false;
    }
    this.#holds.delete(name);
    this.#holdsVersion++;
    this.#current = undefined;
    this.#trustedUntil = 0;
    return true;
  }

  /** Accepts held bridge settings (the user approved them). False when none are held. */
  acceptBridgeSettings(): boolean {
    if (this.#pendingBridge === undefined) return false;
    this.#acceptedBridge = this.#pendingBridge;
    this.#pendingBridge = undefined;
    this.#bridgeView = undefined;
    this.#current = undefined;
    this.#trustedUntil = 0;
    return true;
  }

  /**
   * `list` (a version's entries) with the held ones marked: an entry that appeared or changed
   * in a version first seen while a local model worked stays held, whatever versions follow,
   * until it is accepted or is back to what was accepted. Removed and disabled entries are not
   * held (they only take something away).
   */
  #withHolds(list: ServerEntry[]): ServerEntry[] {
    if (list !== this.#seenServers) {
      const previous = this.#seenServers;
      this.#seenServers = list;
      // The first version is what the user started the bridge with.
      if (previous !== undefined && this.#working > 0) {
        const before = new Map(previous.filter(isUsable).map((e) => [e.name, e.fingerprint]));
        for (const entry of list) {
          const accepted = before.get(entry.name);
          if (!isUsable(entry) || this.#holds.has(entry.name) || accepted === entry.fingerprint) {
            continue;
          }
          this.#holds.set(entry.name, { accepted });
          this.#holdsVersion++;
          this.#log.warn(
            `MCP server "${entry.name}" ${accepted === undefined ? "appeared" : "changed"} in ` +
              `the MCP config while a local model was working; it is held: not started until ` +
              "the bridge restarts or it is accepted",
          );
        }
      }
    }
    if (this.#holds.size === 0) return list;
    const cached = this.#heldView;
    if (cached?.list === list && cached.version === this.#holdsVersion) return cached.view;
    const view = list.map((entry) => {
      const hold = this.#holds.get(entry.name);
      return hold !== undefined && isUsable(entry) && entry.fingerprint !== hold.accepted
        ? { ...entry, held: HELD_REASON }
        : entry;
    });
    this.#heldView = { list, version: this.#holdsVersion, view };
    return view;
  }

  /**
   * `list` with each entry's fingerprint covering its sandbox settings too: a server whose
   * `servers.<name>.sandbox` changes restarts with the new confinement, like one whose entry
   * changed. The same list while neither changed.
   */
  #withSandbox(list: ServerEntry[], bridge: BridgeConfig): ServerEntry[] {
    const cached = this.#sandboxView;
    if (cached?.list === list && cached.bridge === bridge) return cached.view;
    const servers = bridge.settings.servers ?? {};
    const view = list.some((e) => servers[e.name]?.sandbox !== undefined)
      ? list.map((entry) => {
        const sandbox = servers[entry.name]?.sandbox;
        return sandbox === undefined ? entry : {
          ...entry,
          fingerprint: fnv1a64(JSON.stringify([entry.fingerprint, stableStringify(sandbox)])),
        };
      })
      : list;
    this.#sandboxView = { list, bridge, view };
    return view;
  }

  /**
   * The bridge settings in force: new settings first seen while a local model worked are held
   * (the accepted ones stay in force, with a note), until accepted or back to the accepted ones.
   */
  #withBridgeHold(bridge: BridgeConfig): BridgeConfig {
    if (bridge !== this.#seenBridge) {
      const first = this.#seenBridge === undefined;
      this.#seenBridge = bridge;
      const accepted = this.#acceptedBridge;
      const same = accepted !== undefined &&
        JSON.stringify(accepted.settings) === JSON.stringify(bridge.settings);
      if (first || same || (this.#working === 0 && this.#pendingBridge === undefined)) {
        this.#acceptedBridge = bridge;
        this.#pendingBridge = undefined;
      } else {
        if (this.#pendingBridge === undefined) {
          this.#log.warn(
            `The bridge settings changed while a local model was working; the new settings are ` +
              "held: not used until the bridge restarts or they are accepted",
          );
        }
        this.#pendingBridge = bridge;
      }
      this.#bridgeView = undefined;
    }
    const accepted = this.#acceptedBridge ?? bridge;
    const pending = this.#pendingBridge;
    if (pending === undefined) return accepted;
    return this.#bridgeView ??= {
      ...accepted,
      held: `the newer settings in ${
        pending.path ?? pending.errorPath ?? pending.searched ?? BRIDGE_SETTINGS_FILE
      } are held: ${HELD_REASON}`,
    };
  }

  /**
   * Every file whose change would change what the bridge runs or allows: each `.mcp.json`
   * candidate (the default search order, whatever is given explicitly), `lmstudio-bridge.json`
   * beside each, LMSTUDIO_BRIDGE_CONFIG, and the files of `config` in use. The local model may
   * not name them in a call (config_guard.ts).
   */
  protectedPaths(config?: McpConfig): string[] {
    const mcp = [
      ...candidatePaths({ cwd: this.#cwd, home: this.#home }),
      ...this.candidates().filter((c) => c.explicit),
    ].map((c) => c.path);
    const bridge = [...new Set(mcp.map(dirname))].map((d) => join(d, BRIDGE_SETTINGS_FILE));
    const explicitBridge = this.#bridgeCandidate(undefined)?.path;
    const inUse = [config?.path, config?.errorPath, config?.bridge.path, config?.bridge.errorPath];
    // The files in use first: a message names the file that counts.
    return [
      ...new Set(
        [...inUse, ...mcp, ...bridge, explicitBridge].filter((p): p is string => p !== undefined),
      ),
    ];
  }

  /** The first candidate there is; the paths found missing before it go to `missing`. */
  async #find(candidates: Candidate[], missing: string[] = []): Promise<Found | undefined> {
    for (const candidate of candidates) {
      try {
        const info = await this.#fs.stat(candidate.path);
        return { candidate, info };
      } catch (error) {
        if (isNotFound(error) && !candidate.explicit) {
          missing.push(candidate.path);
          continue;
        }
        return { candidate, error };
      }
    }
    return undefined;
  }

  /**
   * Reads the file `found` names unless it is unchanged since `previous`: the same stat (and not
   * modified too recently to trust it), or the same bytes.
   */
  async #look<T>(found: Found & { info: Deno.FileInfo }, previous?: Snapshot<T>): Promise<Look> {
    const signature = signatureOf(found);
    if (previous && previous.signature === signature && !previous.racy) return { kind: "same" };
    const mtime = found.info.mtime?.getTime();
    const racy = mtime === undefined || this.#now() - mtime < RACY_MS;
    let text: string;
    try {
      text = await this.#fs.readTextFile(found.candidate.path);
    } catch (error) {
      // Deleted or replaced between stat and read: the caller looks again (a rename-replace is
      // atomic, so the second look finds the new file).
      return isNotFound(error) ? { kind: "gone" } : { kind: "unreadable", error };
    }
    if (previous && previous.signature === signature && previous.text === text) {
      // Same stat and same bytes: nothing changed.
      previous.racy = racy;
      return { kind: "same" };
    }
    return { kind: "text", text, racy };
  }

  async #refresh(): Promise<ServersConfig> {
    const candidates = this.candidates();
    const searched = candidates.map((c) => c.path);
    for (let attempt = 0;; attempt++) {
      const missing: string[] = [];
      const found = await this.#find(candidates, missing);
      this.#looked.mcp = { found, missing };
      const signature = signatureOf(found);
      const previous = this.#snapshot;
      if (previous && previous.signature === signature && !previous.racy) return previous.value;

      if (found === undefined) {
        return this.#settle({
          signature,
          racy: false,
          value: this.#good(searched, undefined, []),
        });
      }
      const { candidate } = found;
      const fail = (message: string) =>
        this.#settle({
          signature,
          racy: false,
          value: this.#failed(searched, candidate.path, message),
        });
      if ("error" in found) return fail(this.#statMessage(candidate, found.error));
      if (!found.info.isFile) {
        return fail(
          `MCP config ${candidate.path} (${
            SOURCE_LABEL[candidate.source]
          }) is not a file. Point it at a JSON file.`,
        );
      }
      const look = await this.#look(found, previous);
      if (look.kind === "same" && previous) return previous.value;
      if (look.kind === "gone" && attempt < 3) continue;
      if (look.kind !== "text") {
        const error = look.kind === "unreadable" ? look.error : "it vanished while being read";
        return fail(`Cannot read MCP config ${candidate.path}: ${errorMessage(error)}.`);
      }
      let config: ServersConfig;
      try {
        const servers = parseConfigText(look.text, {
          path: candidate.path,
          env: this.#env,
          home: this.#home,
        });
        config = this.#good(searched, candidate.path, servers);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        config = this.#failed(searched, candidate.path, error.message);
      }
      return this.#settle({ signature, text: look.text, racy: look.racy, value: config });
    }
  }

  /** The bridge settings file for the MCP config at `configPath`: explicit, or next to it. */
  #bridgeCandidate(configPath: string | undefined): Candidate | undefined {
    if (this.#bridgeConfigPath !== undefined) {
      return {
        path: resolve(this.#cwd, expandTilde(this.#bridgeConfigPath, this.#home)),
        source: "LMSTUDIO_BRIDGE_CONFIG",
        explicit: true,
      };
    }
    if (configPath === undefined) return undefined;
    return {
      path: join(dirname(configPath), BRIDGE_SETTINGS_FILE),
      source: "next to the MCP config",
      explicit: false,
    };
  }

  async #refreshBridge(configPath: string | undefined): Promise<BridgeConfig> {
    const candidate = this.#bridgeCandidate(configPath);
    for (let attempt = 0;; attempt++) {
      const missing: string[] = [];
      const found = candidate === undefined ? undefined : await this.#find([candidate], missing);
      this.#looked.bridge = { found, missing };
      const signature = signatureOf(found);
      const previous = this.#bridgeSnapshot;
      if (previous && previous.signature === signature && !previous.racy) return previous.value;
      const searched = candidate?.path;
      if (found === undefined) {
        // No file: the defaults, and nothing wrong.
        return this.#settleBridge({
          signature,
          racy: false,
          value: { path: undefined, searched, settings: {}, warnings: [] },
        });
      }
      const fail = (message: string) =>
        this.#settleBridge({
          signature,
          racy: false,
          value: this.#bridgeFailed(searched, found.candidate.path, message),
        });
      const { path } = found.candidate;
      const label = SOURCE_LABEL[found.candidate.source];
      if ("error" in found) {
        return fail(
          isNotFound(found.error)
            ? `Bridge settings file ${path} (${label}) does not exist. Check the path, or leave ` +
              `LMSTUDIO_BRIDGE_CONFIG unset to use ${BRIDGE_SETTINGS_FILE} next to the MCP config.`
            : `Cannot read bridge settings ${path} (${label}): ${
              errorMessage(found.error)
            }. Check its permissions (the bridge needs read access).`,
        );
      }
      if (!found.info.isFile) {
        return fail(`Bridge settings ${path} (${label}) is not a file. Point it at a JSON file.`);
      }
      const look = await this.#look(found, previous);
      if (look.kind === "same" && previous) return previous.value;
      if (look.kind === "gone" && attempt < 3) continue;
      if (look.kind !== "text") {
        const error = look.kind === "unreadable" ? look.error : "it vanished while being read";
        return fail(`Cannot read bridge settings ${path}: ${errorMessage(error)}.`);
      }
      const parsed = parseBridgeSettings(look.text, path);
      let value: BridgeConfig;
      if (parsed.ok) {
        this.#bridgeLastGood = { path, settings: parsed.settings, warnings: parsed.warnings };
        value = { path, searched, settings: parsed.settings, warnings: parsed.warnings };
      } else {
        value = this.#bridgeFailed(searched, path, parsed.error);
      }
      return this.#settleBridge({ signature, text: look.text, racy: look.racy, value });
    }
  }

  #bridgeFailed(searched: string | undefined, errorPath: string, message: string): BridgeConfig {
    const good = this.#bridgeLastGood;
    if (good !== undefined) {
      return {
        path: good.path,
        searched,
        settings: good.settings,
        warnings: good.warnings,
        error: `${message} Still using the last good bridge settings from ${good.path}.`,
        errorPath,
      };
    }
    return {
      path: undefined,
      searched,
      settings: {},
      warnings: [],
      error: `${message} The default settings apply until it is fixed.`,
      errorPath,
    };
  }

  #settleBridge(snapshot: Snapshot<BridgeConfig>): BridgeConfig {
    const reloaded = this.#bridgeSnapshot !== undefined;
    this.#bridgeSnapshot = snapshot;
    const bridge = snapshot.value;
    for (const message of [...(bridge.error ? [bridge.error] : []), ...bridge.warnings]) {
      if (reloaded) this.#log.warn(message);
      else this.#log.debug(message);
    }
    if (bridge.path !== undefined && bridge.error === undefined) {
      this.#log.debug("bridge settings loaded", { path: bridge.path });
    }
    return bridge;
  }

  #statMessage(candidate: Candidate, error: unknown): string {
    if (isNotFound(error)) {
      return `MCP config file ${candidate.path} (${
        SOURCE_LABEL[candidate.source]
      }) does not exist. Check the path, or leave it unset to search ./.mcp.json, ` +
        "~/.lmstudio/mcp.json, ~/.mcp.json and ../.mcp.json.";
    }
    return `Cannot read MCP config ${candidate.path} (${SOURCE_LABEL[candidate.source]}): ${
      errorMessage(error)
    }. Check its permissions (the bridge needs read access).`;
  }

  #good(searched: string[], path: string | undefined, servers: ServerEntry[]): ServersConfig {
    this.#lastGood = { path, servers };
    return { path, searched, servers };
  }

  #failed(searched: string[], errorPath: string, message: string): ServersConfig {
    const good = this.#lastGood;
    if (good !== undefined && good.path !== undefined) {
      const n = good.servers.length;
      return {
        path: good.path,
        searched,
        servers: good.servers,
        error: `${message} Still using the last good configuration from ${good.path} ` +
          `(${plural(n, "server")}).`,
        errorPath,
      };
    }
    return {
      path: errorPath,
      searched,
      servers: [],
      error: `${message} No MCP servers are available until it is fixed.`,
      errorPath,
    };
  }

  #settle(snapshot: Snapshot<ServersConfig>): ServersConfig {
    // The first read is shown by whatever asked for it (mcps, doctor, list_available_mcps, the
    // error of the command); a change seen later, in a long-running serve, is worth a warning.
    const reloaded = this.#snapshot !== undefined;
    const warn = (message: string) => reloaded ? this.#log.warn(message) : this.#log.debug(message);
    this.#snapshot = snapshot;
    const config = snapshot.value;
    if (config.error) {
      warn(config.error);
    } else if (config.path === undefined) {
      this.#log.debug("no MCP config file found", { searched: config.searched.join(", ") });
    } else {
      this.#log.debug("MCP config loaded", { path: config.path, servers: config.servers.length });
      for (const entry of config.servers) {
        if (entry.problem !== undefined && !entry.disabled) warn(entry.problem);
      }
    }
    return config;
  }
}
