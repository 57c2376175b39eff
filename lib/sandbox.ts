/**
 * Telling Deno's permission sandbox apart from the operating system. Deno reports both a sandbox
 * refusal (`NotCapable`, or a `PermissionDenied` without an errno code) and an OS refusal (a
 * `PermissionDenied` with an errno code such as EACCES: a file that is not executable). Only the
 * first is fixed by a permission flag, so only the first may be answered with one.
 */

/** The string `code` of a Node-style system error ("ENOENT"), if it has one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code: unknown = Reflect.get(error, "code");
  return typeof code === "string" ? code : undefined;
}

/** True when Deno's permission sandbox refused the operation (not the operating system). */
export function isSandboxDenial(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable ||
    (error instanceof Deno.errors.PermissionDenied && errnoCode(error) === undefined);
}
