/**
 * Running a program to completion as a seam: the request and result shapes, and the production
 * spawn over `Deno.Command`. Code that runs programs takes a {@linkcode SpawnFn} so tests can give
 * it a fake or a real script.
 */

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
