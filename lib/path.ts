/**
 * Path helpers. The one module that imports `node:path`, so a later switch to `@std/path` is a
 * one-file change.
 */
import { join } from "node:path";

export { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";

/** The process's working directory, or "." when it cannot be read (no permission for it). */
export function currentDir(): string {
  try {
    return Deno.cwd();
  } catch {
    return ".";
  }
}

/** The user's home directory, or undefined when it cannot be known. */
export function homeDir(): string | undefined {
  try {
    return Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? undefined;
  } catch {
    return undefined;
  }
}

/** `~` and `~/...` (or `~\...`) against `home`; any other path, or no home, is returned as is. */
export function expandTilde(path: string, home: string | undefined): string {
  if (home === undefined) return path;
  if (path === "~") return home;
  if (path.startsWith("~/") || path.startsWith("~\\")) return join(home, path.slice(2));
  return path;
}
