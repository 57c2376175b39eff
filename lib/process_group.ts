/**
 * Signalling a whole process group, so that closing a stdio MCP server also stops what it started
 * (`npx` runs the server as its child; a killed `npx` leaves that child behind).
 *
 * Deno lets a program signal processes other than its own children only with unrestricted
 * `--allow-run` (`Deno.kill`), or by running `kill` when the sandbox allows that command.
 * {@linkcode groupSignaller} picks whichever is allowed, or none: a server is only put in its own
 * process group when the bridge can signal that group.
 */

/**
 * Sends `signal` to every process in the group `pgid`. Resolves true when it was delivered,
 * false when no process of the group is left (or the signal could not be sent).
 */
export type GroupSignaller = (pgid: number, signal: Deno.Signal) => Promise<boolean>;

/** `Deno.kill(-pgid)`: needs unrestricted `--allow-run`. */
export function denoKillGroup(pgid: number, signal: Deno.Signal): Promise<boolean> {
  try {
    Deno.kill(-pgid, signal);
    return Promise.resolve(true);
  } catch {
    // No such process group (all gone) or not allowed: nothing was delivered either way.
    return Promise.resolve(false);
  }
}

/** Runs `kill -s SIGNAL -- -PGID`: needs `kill` in the sandbox's run list. */
export async function killCommandGroup(pgid: number, signal: Deno.Signal): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("kill", {
      args: ["-s", signal.replace(/^SIG/, ""), "--", `-${pgid}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    // `kill` is missing or not allowed: nothing was delivered.
    return false;
  }
}

/** Whether the sandbox lets this process run `command` (any command when undefined). */
export function mayRun(command?: string): boolean {
  const descriptor: Deno.RunPermissionDescriptor = command === undefined
    ? { name: "run" }
    : { name: "run", command };
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/**
 * How this process may signal process groups: `Deno.kill` with unrestricted `--allow-run`, the
 * `kill` command when the sandbox allows running it, otherwise (and on Windows) not at all.
 */
export function groupSignaller(
  o: { mayRun?: (command?: string) => boolean; os?: typeof Deno.build.os } = {},
): GroupSignaller | undefined {
  const allowed = o.mayRun ?? mayRun;
  if ((o.os ?? Deno.build.os) === "windows") return undefined;
  if (allowed()) return denoKillGroup;
  return allowed("kill") ? killCommandGroup : undefined;
}
