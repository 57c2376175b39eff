/**
 * LM Studio's `lms` command-line tool, run as a subprocess: `ps`, `ls`, `load`, `unload` and
 * `server status`. Output is parsed with zod; every failure is an {@linkcode LmsError} that says
 * which command failed, what it printed and what to do next.
 *
 * `lms` is looked for on PATH first, then where LM Studio installs it (`~/.lmstudio/bin/lms`, older
 * versions `~/.cache/lm-studio/bin/lms`). The lookup is a few `stat` calls, cached; a negative
 * answer is re-checked after a while and any spawn failure clears the cache.
 */
import { z } from "zod";
import { log as rootLog, type Logger } from "./log.ts";
import { join } from "./path.ts";

/** What went wrong with an `lms` command. */
export type LmsErrorKind =
  | "not_installed"
  | "not_permitted"
  | "not_running"
  | "not_found"
  | "out_of_memory"
  | "timeout"
  | "aborted"
  | "bad_output"
  | "failed";

/** Fields of an {@linkcode LmsError}. */
export interface LmsErrorDetails {
  kind: LmsErrorKind;
  /** The command line that failed (`["lms", "load", ...]`). */
  command: string[];
  exitCode?: number;
  /** The last lines `lms` printed on stderr (and stdout when stderr was empty). */
  stderrTail?: string[];
  /** For `out_of_memory`: the amount `lms` said the model needs, e.g. "15.89 GB". */
  memoryRequired?: string;
  cause?: unknown;
}

/** A failed `lms` command; the message says what failed, why, and what to do. */
export class LmsError extends Error {
  override name = "LmsError";
  readonly kind: LmsErrorKind;
  readonly command: string[];
  readonly exitCode?: number;
  readonly stderrTail: string[];
  readonly memoryRequired?: string;

  constructor(message: string, details: LmsErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = details.kind;
    this.command = details.command;
    this.exitCode = details.exitCode;
    this.stderrTail = details.stderrTail ?? [];
    this.memoryRequired = details.memoryRequired;
  }
}

/** How to get `lms`; shared by messages here and in the tools. */
export const LMS_INSTALL_HINT =
  "Install LM Studio's CLI with `npx lmstudio install-cli`, or run `~/.lmstudio/bin/lms bootstrap` " +
  "once (LM Studio puts `lms` there), then restart the bridge.";

/** One subprocess run, as the spawn function receives it. */
export interface SpawnRequest {
  command: string;
  args: string[];
  /** Aborted on timeout or cancellation; the process must then be stopped. */
  signal: AbortSignal;
}

/** What a finished subprocess produced. */
export interface SpawnResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion. Throws Deno's errors (NotFound, NotCapable...) when it cannot start. */
export type SpawnFn = (request: SpawnRequest) => Promise<SpawnResult>;

/** The production spawn: `Deno.Command`, no stdin (so `lms` never waits on a prompt), piped output. */
export async function denoSpawn(request: SpawnRequest): Promise<SpawnResult> {
  const output = await new Deno.Command(request.command, {
    args: request.args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: request.signal,
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** One loaded model instance, from `lms ps --json`. */
export interface LoadedInstance {
  /** The API identifier; a second instance of a model gets a suffix such as `:2`. */
  identifier: string;
  modelKey: string;
  type: string;
  /** Lower-case processing state ("loaded", "idle", "loading", "generating"...); "loaded" when lms does not say. */
  status: string;
  displayName?: string;
  contextLength?: number;
  maxContextLength?: number;
  sizeBytes?: number;
  vision?: boolean;
  toolUse?: boolean;
  /** Idle time after which LM Studio unloads the instance, when set. */
  ttlMs?: number;
}

/** One downloaded model, from `lms ls --json`. */
export interface DownloadedModel {
  modelKey: string;
  type: string;
  displayName?: string;
  sizeBytes?: number;
  maxContextLength?: number;
  paramsString?: string;
  architecture?: string;
  vision?: boolean;
  toolUse?: boolean;
}

/** `lms server status --json`. */
export interface LmsServerStatus {
  running: boolean;
  port?: number;
}

/** Per-call options. */
export interface LmsCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Options of `lms load`. */
export interface LmsLoadOptions extends LmsCallOptions {
  /** Idle seconds before LM Studio unloads the model (`--ttl`); omitted when undefined or 0. */
  ttlSeconds?: number;
  /** `--context-length`. */
  contextLength?: number;
  /** `--identifier`. */
  identifier?: string;
}

/** Options for {@linkcode Lms}; every field has a production default. */
export interface LmsOptions {
  /** Path to `lms`, skipping the lookup (e.g. from a `LMS_PATH` setting). */
  command?: string;
  /** Where PATH and HOME are read for the lookup; default: the process environment. */
  env?: Record<string, string | undefined>;
  spawn?: SpawnFn;
  /** Whether a path is an existing file; default `Deno.stat`. */
  isFile?: (path: string) => Promise<boolean>;
  /** Timeout for quick commands (ps, ls, status, unload); default 30 s. */
  timeoutMs?: number;
  /** Timeout for `lms load`; default 10 minutes (big models from disk are slow). */
  loadTimeoutMs?: number;
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

const num = z.number().finite().optional().nullable().catch(undefined);
const bool = z.boolean().optional().nullable().catch(undefined);
const str = z.string().optional().nullable().catch(undefined);

const psEntry = z.object({
  identifier: z.string().optional(),
  modelKey: z.string().optional(),
  path: str,
  type: str,
  status: str,
  displayName: str,
  contextLength: num,
  maxContextLength: num,
  sizeBytes: num,
  vision: bool,
  trainedForToolUse: bool,
  ttlMs: num,
});
const lsEntry = z.object({
  modelKey: z.string().optional(),
  path: str,
  type: str,
  displayName: str,
  sizeBytes: num,
  maxContextLength: num,
  paramsString: str,
  architecture: str,
  vision: bool,
  trainedForToolUse: bool,
});
const statusSchema = z.object({ running: z.boolean(), port: num });

// Colour codes lms prints when it thinks it is on a terminal.
const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;?]*[A-Za-z]", "g");

/** The last non-empty lines of some output, without colour codes. */
export function tail(text: string, lines = 12): string[] {
  return text.replace(ANSI, "").split(/\r?\n/).map((l) => l.trimEnd()).filter((l) => l.trim())
    .slice(-lines);
}

/**
 * Parses the JSON document a command printed on stdout. `lms` logs to stderr, but a warning may
 * still precede the JSON on stdout, so the first line that starts a JSON value is tried too.
 */
export function parseJsonOutput(stdout: string): unknown {
  const text = stdout.replace(ANSI, "").trim();
  try {
    return JSON.parse(text);
  } catch {
    const start = text.search(/^[[{]/m);
    if (start <= 0) throw new SyntaxError(`not JSON: ${JSON.stringify(text.slice(0, 120))}`);
    return JSON.parse(text.slice(start));
  }
}

/**
 * The amount of memory an `lms load` failure says the model needs ("15.89 GB"), or undefined when
 * the message is not about memory at all. Returns "" for a memory failure without a figure.
 */
export function memoryRequirement(text: string): string | undefined {
  const clean = text.replace(ANSI, "");
  if (
    !/insufficient system resources|not enough (memory|resources)|out of memory|requires approximately/i
      .test(clean)
  ) return undefined;
  const figure = clean.match(/requires approximately\s+([\d.,]+\s*[KMGT]i?B)/i) ??
    clean.match(/(\d+(?:[.,]\d+)?\s*[KMGT]i?B)\s+of memory/i);
  return figure?.[1]?.replace(/\s+/, " ") ?? "";
}

/** Lower-case name without an instance suffix such as `:2`. */
export function normalizeModelName(name: string): string {
  return name.trim().toLowerCase().replace(/:\d+$/, "");
}

/**
 * Whether `requested` names `candidate` (an identifier or model key): case-insensitive, ignoring
 * instance suffixes (`qwen3-8b:2`), and ignoring a publisher prefix present on only one side
 * (`qwen/qwen3-8b` matches `qwen3-8b`). Two different publishers never match.
 */
export function sameModel(requested: string, candidate: string): boolean {
  const a = normalizeModelName(requested);
  const b = normalizeModelName(candidate);
  if (a === "" || b === "") return false;
  if (a === b) return true;
  const aSlash = a.includes("/");
  const bSlash = b.includes("/");
  if (aSlash === bSlash) return false;
  const last = (s: string) => s.slice(s.lastIndexOf("/") + 1);
  return last(a) === last(b);
}

/** The loaded instances that are `model`, exact identifier matches first. */
export function findInstances(model: string, instances: LoadedInstance[]): LoadedInstance[] {
  const exact = instances.filter((i) => i.identifier === model);
  const rest = instances.filter((i) =>
    i.identifier !== model && (sameModel(model, i.identifier) || sameModel(model, i.modelKey))
  );
  return [...exact, ...rest];
}

/** Statuses in which an instance answers requests ("idle" wakes on the next one). */
const USABLE = new Set([
  "loaded",
  "idle",
  "generating",
  "processingprompt",
  "processing",
  "busy",
  "queued",
]);

/** What to do with an instance in `status`: use it, wait for it, or load the model again. */
export function statusAction(status: string): "use" | "wait" | "reload" {
  const s = status.toLowerCase().replace(/[\s_-]/g, "");
  if (USABLE.has(s)) return "use";
  if (s === "loading") return "wait";
  return "reload";
}

function defaultIsFile(path: string): Promise<boolean> {
  return Deno.stat(path).then((info) => info.isFile, (error: unknown) => {
    if (error instanceof Deno.errors.NotFound) return false;
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return false;
    }
    // Anything else (e.g. a malformed PATH entry) just means "not here".
    return false;
  });
}

function processEnv(): Record<string, string | undefined> {
  try {
    return Deno.env.toObject();
  } catch {
    // Without --allow-env only the explicit command path can be used.
    return {};
  }
}

/** LM Studio's `lms` CLI. Constructing it does no I/O. */
export class Lms {
  readonly #options: LmsOptions;
  readonly #spawn: SpawnFn;
  readonly #isFile: (path: string) => Promise<boolean>;
  readonly #now: () => number;
  readonly #log: Logger;
  #located: { at: number; location: LmsLocation | undefined } | undefined;

  constructor(options: LmsOptions = {}) {
    this.#options = options;
    this.#spawn = options.spawn ?? denoSpawn;
    this.#isFile = options.isFile ?? defaultIsFile;
    this.#now = options.now ?? (() => Date.now());
    this.#log = options.log ?? rootLog.child("lms");
  }

  /** The candidate paths, in search order. */
  candidates(): LmsLocation[] {
    if (this.#options.command) return [{ path: this.#options.command, via: "explicit" }];
    const env = this.#options.env ?? processEnv();
    const windows = Deno.build.os === "windows";
    const names = windows ? ["lms.exe", "lms.cmd", "lms"] : ["lms"];
    const sep = windows ? ";" : ":";
    const out: LmsLocation[] = [];
    for (const dir of (env.PATH ?? env.Path ?? "").split(sep)) {
      if (dir.trim() === "") continue;
      for (const name of names) out.push({ path: join(dir, name), via: "path" });
    }
    const home = env.HOME ?? env.USERPROFILE;
    if (home) {
      for (
        const dir of [join(home, ".lmstudio", "bin"), join(home, ".cache", "lm-studio", "bin")]
      ) {
        for (const name of names) out.push({ path: join(dir, name), via: "home" });
      }
    }
    return out;
  }

  /** Where `lms` is, or undefined when it is not installed. Cached (see {@linkcode LmsOptions.recheckMs}). */
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

  /** Whether `lms` is installed (cheap after the first call). */
  async available(): Promise<boolean> {
    return (await this.locate()) !== undefined;
  }

  /** Forgets where `lms` is, so the next call looks again. */
  forget(): void {
    this.#located = undefined;
  }

  /**
   * Runs `lms ARGS` and returns its output; a non-zero exit, a timeout or a spawn failure is an
   * {@linkcode LmsError}.
   */
  async run(args: string[], options: LmsCallOptions = {}): Promise<SpawnResult> {
    const location = await this.locate();
    const command = ["lms", ...args];
    if (!location) {
      throw new LmsError(
        "LM Studio's `lms` command is not installed (looked on PATH and in ~/.lmstudio/bin). " +
          LMS_INSTALL_HINT,
        { kind: "not_installed", command },
      );
    }
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? 30_000;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = () => controller.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) controller.abort();
    const started = this.#now();
    let result: SpawnResult;
    try {
      if (controller.signal.aborted) throw new DOMException("aborted", "AbortError");
      result = await this.#spawn({ command: location.path, args, signal: controller.signal });
    } catch (error: unknown) {
      throw this.#spawnError(error, location, command, timedOut);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
    this.#log.debug("ran lms", {
      args: args.join(" "),
      code: result.code,
      ms: this.#now() - started,
    });
    if (timedOut) {
      throw new LmsError(
        `\`${command.join(" ")}\` did not finish within ${
          formatSeconds(timeoutMs)
        } and was stopped. ` +
          "LM Studio may be busy or stuck; check it with `lms ps` in a terminal, or restart LM Studio.",
        { kind: "timeout", command, stderrTail: tail(result.stderr) },
      );
    }
    if (options.signal?.aborted) {
      throw new LmsError(`\`${command.join(" ")}\` was cancelled.`, {
        kind: "aborted",
        command,
        cause: options.signal.reason,
      });
    }
    if (result.code !== 0) throw failure(command, result);
    return result;
  }

  #spawnError(
    error: unknown,
    location: LmsLocation,
    command: string[],
    timedOut: boolean,
  ): LmsError {
    if (error instanceof LmsError) return error;
    if (error instanceof Deno.errors.NotFound) {
      this.forget();
      return new LmsError(
        `Cannot run \`lms\` at ${location.path}: it is gone. ${LMS_INSTALL_HINT}`,
        { kind: "not_installed", command, cause: error },
      );
    }
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      this.forget();
      const advice = location.via === "path"
        ? `Allow it with --allow-run=${location.path} (the bridge permission set allows \`lms\` only ` +
          "if it was on PATH when the bridge started)."
        : `The sandbox allows \`lms\` only when it is on PATH at start-up: add ${
          location.path.replace(/[/\\][^/\\]+$/, "")
        } to PATH before starting the bridge, or allow it with --allow-run=${location.path}.`;
      return new LmsError(`Not allowed to run ${location.path}. ${advice}`, {
        kind: "not_permitted",
        command,
        cause: error,
      });
    }
    if (timedOut) {
      return new LmsError(`\`${command.join(" ")}\` timed out and was stopped.`, {
        kind: "timeout",
        command,
        cause: error,
      });
    }
    if (error instanceof DOMException && error.name === "AbortError") {
      return new LmsError(`\`${command.join(" ")}\` was cancelled.`, {
        kind: "aborted",
        command,
        cause: error,
      });
    }
    this.forget();
    const message = error instanceof Error ? error.message : String(error);
    return new LmsError(`Cannot run ${location.path}: ${message}. ${LMS_INSTALL_HINT}`, {
      kind: "failed",
      command,
      cause: error,
    });
  }

  async #json<T>(args: string[], schema: z.ZodType<T>, options: LmsCallOptions): Promise<T> {
    const result = await this.run(args, options);
    const command = ["lms", ...args];
    let raw: unknown;
    try {
      raw = parseJsonOutput(result.stdout);
    } catch (error: unknown) {
      throw badOutput(command, result, error);
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw badOutput(command, result, parsed.error);
    return parsed.data;
  }

  /** Loaded instances (`lms ps --json`). Entries without an identifier or model key are skipped. */
  async ps(options: LmsCallOptions = {}): Promise<LoadedInstance[]> {
    const rows = await this.#json(["ps", "--json"], z.array(z.unknown()), options);
    const out: LoadedInstance[] = [];
    for (const row of rows) {
      const e = psEntry.safeParse(row);
      if (!e.success) continue;
      const d = e.data;
      const identifier = d.identifier ?? d.modelKey;
      const modelKey = d.modelKey ?? d.identifier;
      if (identifier === undefined || modelKey === undefined) continue;
      out.push(clean({
        identifier,
        modelKey,
        type: d.type ?? "llm",
        status: (d.status ?? "loaded").toLowerCase(),
        displayName: d.displayName ?? undefined,
        contextLength: d.contextLength ?? undefined,
        maxContextLength: d.maxContextLength ?? undefined,
        sizeBytes: d.sizeBytes ?? undefined,
        vision: d.vision ?? undefined,
        toolUse: d.trainedForToolUse ?? undefined,
        ttlMs: d.ttlMs ?? undefined,
      }));
    }
    return out;
  }

  /** Downloaded models (`lms ls --json`), optionally only LLMs or only embedding models. */
  async ls(
    options: LmsCallOptions & { kind?: "llm" | "embedding" } = {},
  ): Promise<DownloadedModel[]> {
    const args = ["ls", "--json", ...(options.kind ? [`--${options.kind}`] : [])];
    const rows = await this.#json(args, z.array(z.unknown()), options);
    const out: DownloadedModel[] = [];
    for (const row of rows) {
      const e = lsEntry.safeParse(row);
      if (!e.success) continue;
      const d = e.data;
      const modelKey = d.modelKey ?? d.path ?? undefined;
      if (modelKey === undefined) continue;
      const type = d.type ?? "llm";
      // Older lms versions ignore the filter flags; filter here as well.
      if (options.kind && !type.startsWith(options.kind)) continue;
      out.push(clean({
        modelKey,
        type,
        displayName: d.displayName ?? undefined,
        sizeBytes: d.sizeBytes ?? undefined,
        maxContextLength: d.maxContextLength ?? undefined,
        paramsString: d.paramsString ?? undefined,
        architecture: d.architecture ?? undefined,
        vision: d.vision ?? undefined,
        toolUse: d.trainedForToolUse ?? undefined,
      }));
    }
    return out;
  }

  /**
   * Loads a model (`lms load KEY -y [--ttl S] [--context-length N] [--identifier ID]`). Returns the
   * API identifier lms reports for the new instance, when it says.
   */
  async load(
    model: string,
    options: LmsLoadOptions = {},
  ): Promise<{ identifier?: string; output: string[] }> {
    const args = ["load", model, "-y"];
    if (options.ttlSeconds !== undefined && options.ttlSeconds > 0) {
      args.push("--ttl", String(Math.round(options.ttlSeconds)));
    }
    if (options.contextLength !== undefined) {
      args.push("--context-length", String(options.contextLength));
    }
    if (options.identifier !== undefined) args.push("--identifier", options.identifier);
    const result = await this.run(args, {
      signal: options.signal,
      timeoutMs: options.timeoutMs ?? this.#options.loadTimeoutMs ?? 600_000,
    });
    const text = (result.stderr + "\n" + result.stdout).replace(ANSI, "");
    const identifier = text.match(/use the identifier "([^"]+)"/i)?.[1];
    return { ...(identifier ? { identifier } : {}), output: tail(text, 6) };
  }

  /**
   * Unloads one instance by its exact identifier. `lms unload` exits 0 when nothing matches, so
   * its "Cannot find a model" message is turned into a `not_found` error here.
   */
  async unload(identifier: string, options: LmsCallOptions = {}): Promise<void> {
    const result = await this.run(["unload", identifier], options);
    const text = result.stderr + "\n" + result.stdout;
    if (/cannot find a model|no model found|model not found/i.test(text)) {
      throw new LmsError(
        `\`lms unload ${identifier}\`: no loaded model has that identifier. ` +
          "Run `lms ps` to see the loaded models and their identifiers.",
        { kind: "not_found", command: ["lms", "unload", identifier], stderrTail: tail(text) },
      );
    }
  }

  /** Unloads every model (`lms unload --all`). */
  async unloadAll(options: LmsCallOptions = {}): Promise<void> {
    await this.run(["unload", "--all"], options);
  }

  /** Whether LM Studio's server is running and on which port (`lms server status --json`). */
  async serverStatus(options: LmsCallOptions = {}): Promise<LmsServerStatus> {
    const status = await this.#json(["server", "status", "--json"], statusSchema, options);
    return clean({ running: status.running, port: status.port ?? undefined });
  }
}

/** Drops undefined fields so results compare and serialise cleanly. */
function clean<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function badOutput(command: string[], result: SpawnResult, cause: unknown): LmsError {
  const detail = cause instanceof Error ? cause.message.split("\n")[0] : String(cause);
  return new LmsError(
    `\`${command.join(" ")}\` printed output the bridge cannot read (${detail}). ` +
      "This lms version may be too old or too new; update LM Studio, or report the output.",
    { kind: "bad_output", command, stderrTail: tail(result.stdout + "\n" + result.stderr), cause },
  );
}

/** Turns a non-zero exit into an error with the right kind and advice. */
function failure(command: string[], result: SpawnResult): LmsError {
  const both = `${result.stderr}\n${result.stdout}`;
  const stderrTail = tail(result.stderr).length ? tail(result.stderr) : tail(result.stdout);
  const said = stderrTail.filter((l) => !/^\s*(waking up|llmster started)/i.test(l)).slice(-3)
    .join(" ").replace(/\s+/g, " ").trim();
  const head = `\`${command.join(" ")}\` failed (exit ${result.code})${said ? `: ${said}` : ""}`;
  const details = { command, exitCode: result.code, stderrTail };
  const memory = memoryRequirement(both);
  if (memory !== undefined) {
    const model = command[2] ?? "the model";
    const need = memory ? `needs about ${memory} of memory` : "does not fit in free memory";
    return new LmsError(
      `Cannot load ${model}: it ${need}, more than LM Studio will use right now ` +
        `(\`${command.join(" ")}\` exit ${result.code}). Unload other models ` +
        "(`lms unload --all`), use a smaller context length or a smaller quantization, or relax " +
        "the model loading guardrails in LM Studio's settings.",
      { ...details, kind: "out_of_memory", memoryRequired: memory || undefined },
    );
  }
  if (
    /failed to (start or )?connect|not (appear to be )?running|ECONNREFUSED|could not connect|failed to start lm studio/i
      .test(both)
  ) {
    return new LmsError(
      `${head}. LM Studio is not running: start the LM Studio app, or run \`lms server start\` ` +
        "(`lms daemon up` on a headless machine).",
      { ...details, kind: "not_running" },
    );
  }
  if (/model not found|no model found|cannot find a model|not downloaded/i.test(both)) {
    const model = command[2];
    return new LmsError(
      `${head}. ${model ? `No downloaded model matches "${model}". ` : ""}` +
        "Run `lms ls` to see downloaded models, or download one with `lms get <name>`.",
      { ...details, kind: "not_found" },
    );
  }
  return new LmsError(`${head}. Run the same command in a terminal to see the full output.`, {
    ...details,
    kind: "failed",
  });
}
