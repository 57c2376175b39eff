/**
 * LM Studio's `lms` command-line tool, run as a subprocess: `ps`, `ls`, `load`, `unload` and
 * `server status`, and whether `lms` manages the server the bridge talks to (installed, a loopback
 * base URL, and `lms server status` reporting a running server on the same port: only then do
 * `lms ps` and `lms load` speak about that server). Output is parsed with zod (lib/lms_output.ts);
 * every failure is an {@linkcode LmsError} (lib/lms_errors.ts) that says which command failed, what
 * it printed and what to do next.
 *
 * `lms` is looked for on PATH first, then where LM Studio installs it (`~/.lmstudio/bin/lms`, older
 * versions `~/.cache/lm-studio/bin/lms`); see lib/lms_locate.ts. The lookup is a few `stat` calls,
 * cached; a negative answer is re-checked after a while and any spawn failure clears the cache.
 */
import type { z } from "zod";
import { badOutputError, exitError, LmsError } from "./lms_errors.ts";
import { type LmsLocateOptions, type LmsLocation, LmsLocator } from "./lms_locate.ts";
import {
  type DownloadedModel,
  type LmsServerStatus,
  type LoadedInstance,
  lsOutput,
  parseJsonOutput,
  psOutput,
  serverStatusOutput,
  stripAnsi,
  tail,
} from "./lms_output.ts";
import { log as rootLog, type Logger } from "./log.ts";
import { denoSpawn, type SpawnFn, type SpawnResult } from "./spawn.ts";
import { errorMessage, isSandboxDenial } from "./errors.ts";
import { formatSeconds } from "./text.ts";

/** How to get `lms`, in words that fit every surface (errors from here reach the CLI and tools). */
export const LMS_INSTALL_HINT =
  "Install LM Studio's CLI with `npx lmstudio install-cli`, or run `~/.lmstudio/bin/lms bootstrap` " +
  "once (LM Studio puts `lms` there).";

/**
 * {@linkcode LMS_INSTALL_HINT} with the step after it for the program that says it: the running
 * MCP server (`"server"`) only gets `lms` on its PATH when restarted; a CLI run (`"cli"`) when run
 * from a new terminal.
 */
export function lmsInstallAdvice(surface: "server" | "cli"): string {
  return surface === "server"
    ? `${LMS_INSTALL_HINT} Then restart the bridge (reconnect the MCP server) so it finds \`lms\`.`
    : `${LMS_INSTALL_HINT} Then open a new terminal so \`lms\` is on PATH.`;
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
export interface LmsOptions extends LmsLocateOptions {
  spawn?: SpawnFn;
  /** Timeout for quick commands (ps, ls, status, unload); default 30 s. */
  timeoutMs?: number;
  /** Timeout for `lms load`; default 10 minutes (big models from disk are slow). */
  loadTimeoutMs?: number;
  /**
   * Told when a command that may change the server's models starts, and again when it has ended
   * (a load or an unload changes what the server lists at some moment in between): every command
   * but those that only read (`ps`, `ls`, `status`, `version`, `server status`).
   */
  onModelsChange?: () => void;
}

/** LM Studio's `lms` CLI. Constructing it does no I/O. */
export class Lms {
  readonly #options: LmsOptions;
  readonly #spawn: SpawnFn;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #locator: LmsLocator;

  constructor(options: LmsOptions = {}) {
    this.#options = options;
    this.#spawn = options.spawn ?? denoSpawn;
    this.#now = options.now ?? (() => Date.now());
    this.#log = options.log ?? rootLog.child("lms");
    this.#locator = new LmsLocator(options);
  }

  /** Where `lms` is, or undefined when it is not installed. Cached (see {@linkcode LmsOptions.recheckMs}). */
  locate(): Promise<LmsLocation | undefined> {
    return this.#locator.locate();
  }

  /** Whether `lms` is installed (cheap after the first call). */
  async available(): Promise<boolean> {
    return (await this.locate()) !== undefined;
  }

  /** Forgets where `lms` is, so the next call looks again. */
  forget(): void {
    this.#locator.forget();
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
    const changes = mayChangeModels(args);
    if (changes) this.#options.onModelsChange?.();
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
      if (changes) this.#options.onModelsChange?.();
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
    if (result.code !== 0) throw exitError(command, result);
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
    if (isSandboxDenial(error)) {
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
      throw badOutputError({ command, result, cause: error });
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw badOutputError({ command, result, cause: parsed.error });
    return parsed.data;
  }

  /** Loaded instances (`lms ps --json`). Entries without an identifier or model key are skipped. */
  ps(options: LmsCallOptions = {}): Promise<LoadedInstance[]> {
    return this.#json(["ps", "--json"], psOutput, options);
  }

  /** Downloaded models (`lms ls --json`), optionally only LLMs or only embedding models. */
  async ls(
    options: LmsCallOptions & { kind?: "llm" | "embedding" } = {},
  ): Promise<DownloadedModel[]> {
    const args = ["ls", "--json", ...(options.kind ? [`--${options.kind}`] : [])];
    const models = await this.#json(args, lsOutput, options);
    // Older lms versions ignore the filter flags; filter here as well.
    const kind = options.kind;
    return kind ? models.filter((m) => m.type.startsWith(kind)) : models;
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
    const text = stripAnsi(result.stderr + "\n" + result.stdout);
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
  serverStatus(options: LmsCallOptions = {}): Promise<LmsServerStatus> {
    return this.#json(["server", "status", "--json"], serverStatusOutput, options);
  }
}

/** The `lms` commands that only read. */
const READING = new Set(["ps", "ls", "status", "version"]);

/** Whether `lms ARGS` may change the server's models (anything but a command that only reads). */
function mayChangeModels(args: readonly string[]): boolean {
  const [first, second] = args;
  if (first !== undefined && READING.has(first)) return false;
  return !(first === "server" && second === "status");
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** Whether to use `lms`, and why (a sentence for status reports and logs). */
export interface LmsDecision {
  useLms: boolean;
  reason: string;
  /** What `lms server status` said, when the decision asked it (installed, loopback URL). */
  server?: LmsServerStatus;
  /** Why `lms server status` failed, when it was asked. */
  serverError?: string;
}

/** Decides whether `lms` applies to the server at `baseUrl`; a failing `lms` just means no. */
export async function lmsManages(
  { lms, baseUrl }: { lms: Lms; baseUrl: string },
): Promise<LmsDecision> {
  const decide = (useLms: boolean, reason: string, server?: LmsServerStatus): LmsDecision =>
    server === undefined ? { useLms, reason } : { useLms, reason, server };
  const location = await lms.locate();
  if (!location) return decide(false, "`lms` is not installed.");
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return decide(false, `The base URL ${baseUrl} is not a URL.`);
  }
  if (!LOOPBACK.has(url.hostname)) {
    return decide(
      false,
      `\`lms\` manages this machine's LM Studio, not the server at ${url.origin}.`,
    );
  }
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  let status: LmsServerStatus;
  try {
    status = await lms.serverStatus({ timeoutMs: 15_000 });
  } catch (error: unknown) {
    const serverError = errorMessage(error);
    return { useLms: false, reason: `\`lms server status\` failed: ${serverError}`, serverError };
  }
  if (!status.running) {
    // `lms ps` / `lms load` would only fail or wake LM Studio without its server: the bridge's
    // requests go to the server, so use its REST API once it answers.
    return decide(
      false,
      "`lms` reports that LM Studio's server is not running, so `lms` is not used; start it " +
        "with `lms server start`.",
      status,
    );
  }
  if (status.port !== undefined && status.port !== port) {
    return decide(
      false,
      `\`lms\` manages the LM Studio server on port ${status.port}, but the bridge uses ` +
        `${url.origin}.`,
      status,
    );
  }
  return decide(true, `\`lms\` (${location.path}) manages the server at ${url.origin}.`, status);
}
