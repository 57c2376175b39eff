/**
 * Running the real program in tests: `deno run` with the same permission set as `deno task start`
 * and the compiled binary, so a test fails when the sandbox would block a user.
 */

import { childrenCached, UNCONFINED_BY_DEFAULT } from "./fixtures/pool_support.ts";

// A child runs from the cache only: fill it first, with this process's full environment.
await childrenCached();

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const MAIN = `${REPO}/main.ts`;

/** The argv that runs main.ts under the project's "bridge" permission set. */
export function bridgeCommand(args: string[]): { command: string; args: string[] } {
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "-P=bridge",
      "--no-prompt",
      "--quiet",
      "--cached-only",
      "--frozen",
      `--config=${REPO}/deno.json`,
      MAIN,
      ...args,
    ],
  };
}

/** What a finished CLI run printed, separately, with its exit code. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion with a clean environment plus `env`. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<CliRun> {
  const { command, args: argv } = bridgeCommand(args);
  const child = new Deno.Command(command, {
    args: argv,
    cwd: options.cwd ?? REPO,
    env: baseEnv(options.env),
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** A minimal environment: PATH, HOME (a temp dir unless given), no colour, plus `extra`. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
    NO_COLOR: "1",
    ...UNCONFINED_BY_DEFAULT,
    ...extra,
  };
}

/** A shell command line running on a pseudo-terminal (util-linux `script`), as a user's shell. */
export interface Terminal {
  readonly pid: number;
  /** Types `text` into the terminal (`"\x03"` is Ctrl-C: SIGINT to the foreground group). */
  type(text: string): Promise<void>;
  /** Reads the screen until `pattern` shows (true) or the session ends (false). */
  waitFor(pattern: RegExp): Promise<boolean>;
  /** Everything shown so far, carriage returns removed. */
  readonly screen: string;
  /** Ends the input and waits for the session to end; answers its exit code. */
  close(): Promise<number>;
}

/** Starts `command` (a shell command line) on a pseudo-terminal with `env` only. */
export function terminal(
  command: string,
  options: { env: Record<string, string>; cwd?: string },
): Terminal {
  const child = new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    cwd: options.cwd,
    env: { TERM: "dumb", ...options.env },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let screen = "";
  const waitFor = async (pattern: RegExp) => {
    while (!pattern.test(screen)) {
      const { value, done } = await reader.read();
      if (done) return false;
      screen += value;
    }
    return true;
  };
  return {
    pid: child.pid,
    type: (text) => writer.write(new TextEncoder().encode(text)),
    waitFor,
    get screen() {
      return screen.replace(/\r/g, "");
    },
    async close() {
      // script ends once its input ends too.
      await writer.close().catch(() => undefined);
      await waitFor(/$^/);
      return (await child.status).code;
    },
  };
}
