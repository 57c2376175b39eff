/**
 * Path helpers. The one module that imports `node:path`, so a later switch to `@std/path` is a
 * one-file change.
 */
export { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";

/** The user's home directory, or undefined when it cannot be known. */
export function homeDir(): string | undefined {
  try {
    return Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? undefined;
  } catch {
    return undefined;
  }
}
