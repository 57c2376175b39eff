/**
 * Command-line parsing. The one module that imports `node:util` parseArgs, so a later switch to
 * `@std/cli` is a one-file change.
 */
import { parseArgs as nodeParseArgs } from "node:util";
import { UsageError } from "./errors.ts";

export { UsageError };

/** One option of a command. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
}

/** The parsed values of a command line. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/**
 * Parses `argv` strictly: unknown options and missing option values are a {@linkcode UsageError}
 * naming the command, so the user sees the help of the command they meant.
 */
export function parseArgs(
  argv: readonly string[],
  options: Record<string, OptionSpec>,
  command?: string,
): ParsedArgs {
  try {
    const { values, positionals } = nodeParseArgs({
      args: [...argv],
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedArgs["values"], positionals };
  } catch (error: unknown) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/s, "."), command);
  }
}

/** A string option, or undefined. */
export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable string option (also accepts comma-separated lists). */
export function stringListOption(args: ParsedArgs, name: string): string[] {
  const v = args.values[name];
  const list = Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  if (typeof v === "string") list.push(v);
  return list.flatMap((x) => x.split(",")).map((x) => x.trim()).filter((x) => x !== "");
}

/** A boolean flag. */
export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

/** A positive whole-number option, or undefined; anything else is a usage error. */
export function integerOption(
  args: ParsedArgs,
  name: string,
  range: { min: number; max: number },
): number | undefined {
  const raw = stringOption(args, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < range.min || n > range.max) {
    throw new UsageError(
      `--${name} must be a whole number from ${range.min} to ${range.max}, got ${
        JSON.stringify(raw)
      }.`,
    );
  }
  return n;
}

/** `--temperature`: a number from 0 to 2, or undefined; anything else is a usage error. */
export function temperatureOption(args: ParsedArgs, command: string): number | undefined {
  const raw = stringOption(args, "temperature");
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 2) {
    throw new UsageError(`--temperature must be a number from 0 to 2, got ${raw}.`, command);
  }
  return value;
}
