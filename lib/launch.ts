/**
 * How this bridge was started and the exact command that widens its sandbox. The permission set
 * lives in deno.json ("permissions" -> "bridge"); `deno task install` and `deno task compile`
 * (lib/cli_install.ts) turn it into explicit flags, with the user's additions
 * (`--allow-run=sh`, `--allow-net=HOST`, `--allow-write=DIR`), so nobody edits the repository to
 * allow a launcher. The installed launcher says how it was installed in
 * {@linkcode LAUNCH_VARIABLE}; messages that must tell the user how to allow something use
 * {@linkcode widenCommand} to name the command that works for the way they run the bridge.
 *
 * A file the user asks the bridge to write (an MCP config `mcps add` edits, a session file of
 * `run --session`) is written by {@linkcode writeFileNarrowly}: by the bridge when its sandbox
 * allows it, else by a deno allowed to write that one file and nothing else.
 */
import { z } from "zod";
import { BridgeError } from "./errors.ts";
import { isFile, pathCandidates } from "./lms_locate.ts";
import { join } from "./path.ts";
import { firstLine, shellWord } from "./text.ts";

/** Set by the installed launcher: how the install was made (JSON, see {@linkcode Launch}). */
export const LAUNCH_VARIABLE = "LMSTUDIO_BRIDGE_LAUNCH";

/** The repository this module was loaded from (undefined in a compiled binary). */
export const REPOSITORY: string | undefined = import.meta.url.startsWith("file:") &&
    !/\/deno-compile-[^/]*\//.test(import.meta.url)
  ? decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "")
  : undefined;

/** Permissions a user adds to the set for their install or build. */
export interface ExtraPermissions {
  run: string[];
  net: string[];
  write: string[];
}

/** No additions. */
export const NO_EXTRAS: ExtraPermissions = { run: [], net: [], write: [] };

const ExtrasSchema = z.object({
  run: z.array(z.string()).default([]),
  net: z.array(z.string()).default([]),
  write: z.array(z.string()).default([]),
});

const LaunchSchema = z.object({
  via: z.literal("install"),
  repo: z.string(),
  root: z.string().optional(),
  name: z.string().optional(),
  allow: ExtrasSchema.default({ run: [], net: [], write: [] }),
});

/** How the bridge runs: which command a user would change to allow more. */
export type Launch =
  | z.infer<typeof LaunchSchema>
  | { via: "compiled" }
  /** `deno task cli|start` or `deno run ... main.ts`. */
  | { via: "source"; repo: string };

/** The way this process was started, from `env` (default: the process environment). */
export function currentLaunch(
  env: Readonly<Record<string, string | undefined>> = safeEnv(),
): Launch {
  const raw = env[LAUNCH_VARIABLE];
  if (raw !== undefined) {
    try {
      const parsed = LaunchSchema.safeParse(JSON.parse(raw));
      if (parsed.success) return parsed.data;
    } catch {
      // A hand-made value: fall back to what the process itself shows.
    }
  }
  return REPOSITORY === undefined ? { via: "compiled" } : { via: "source", repo: REPOSITORY };
}

function safeEnv(): Record<string, string | undefined> {
  try {
    return Deno.env.toObject();
  } catch {
    return {};
  }
}

const PermissionList = z.union([z.boolean(), z.array(z.string())]).optional();
const DenoJsonSchema = z.object({
  permissions: z.object({
    bridge: z.object({
      net: PermissionList,
      run: PermissionList,
      env: PermissionList,
      read: PermissionList,
      write: PermissionList,
      sys: PermissionList,
    }),
  }),
});

/** The "bridge" permission set of `repo`'s deno.json. */
export type PermissionSet = z.infer<typeof DenoJsonSchema>["permissions"]["bridge"];

/** Reads the "bridge" permission set from `repo`/deno.json. */
export function readPermissionSet(repo: string): PermissionSet {
  const path = join(repo, "deno.json");
  const parsed = DenoJsonSchema.safeParse(JSON.parse(Deno.readTextFileSync(path)));
  if (!parsed.success) {
    throw new Error(`${path} has no usable "permissions" -> "bridge" set: ${parsed.error.message}`);
  }
  return parsed.data.permissions.bridge;
}

function unique(list: readonly string[]): string[] {
  return [...new Set(list.filter((x) => x !== ""))];
}

/** One `--allow-NAME` flag for a permission's value plus additions, or none. */
function allowFlag(
  name: string,
  value: boolean | string[] | undefined,
  extra: readonly string[] = [],
): string[] {
  if (value === true) return [`--allow-${name}`];
  const list = unique([...(Array.isArray(value) ? value : []), ...extra]);
  return list.length === 0 ? [] : [`--allow-${name}=${list.join(",")}`];
}

/** The permission set with `extras` as explicit `deno run` / `deno install` / `deno compile` flags. */
export function permissionFlags(
  set: PermissionSet,
  extras: ExtraPermissions = NO_EXTRAS,
): string[] {
  return [
    ...allowFlag("read", set.read),
    ...allowFlag("write", set.write, extras.write),
    ...allowFlag("net", set.net, extras.net),
    ...allowFlag("env", set.env),
    ...allowFlag("run", set.run, extras.run),
    ...allowFlag("sys", set.sys),
  ];
}

/** The `--allow-run=` / `--allow-net=` / `--allow-write=` options of the install and compile tasks. */
export function extraFlags(extras: ExtraPermissions): string[] {
  const flags: string[] = [];
  for (const name of ["run", "net", "write"] as const) {
    const list = unique(extras[name]);
    if (list.length > 0) flags.push(`--allow-${name}=${list.join(",")}`);
  }
  return flags;
}

function merged(a: ExtraPermissions, b: Partial<ExtraPermissions>): ExtraPermissions {
  return {
    run: unique([...a.run, ...(b.run ?? [])]),
    net: unique([...a.net, ...(b.net ?? [])]),
    write: unique([...a.write, ...(b.write ?? [])]),
  };
}

/**
 * The exact command that gives this bridge `wanted` (launchers to run, hosts to reach, paths to
 * write) for the way it runs: installed, it is the install again with what it already allowed
 * plus `wanted`; compiled, the build; from source (`deno task cli`), the install that gives a
 * command with it.
 */
export function widenCommand(
  wanted: Partial<ExtraPermissions>,
  launch: Launch = currentLaunch(),
): string {
  const words = (list: string[]) => list.map(shellWord).join(" ");
  if (launch.via === "compiled") {
    return `deno task --quiet compile ${words(extraFlags(merged(NO_EXTRAS, wanted)))}` +
      " (in the lmstudio-bridge repository)";
  }
  const base = launch.via === "install" ? launch.allow : NO_EXTRAS;
  const where = [
    ...(launch.via === "install" && launch.root !== undefined ? ["--root", launch.root] : []),
    ...(launch.via === "install" && launch.name !== undefined ? ["--name", launch.name] : []),
  ];
  return `deno task --quiet --cwd ${shellWord(launch.repo)} install ${
    words([...where, ...extraFlags(merged(base, wanted))])
  }`;
}

/** Whether `command` names an existing file directly or through PATH. */
export async function onPath(command: string): Promise<boolean> {
  if (command.includes("/")) return await isFile(command);
  for (const candidate of pathCandidates(command)) {
    if (await isFile(candidate)) return true;
  }
  return false;
}

/**
 * Why a stdio server's `command` cannot start here, before trying: it is not installed (not on
 * PATH, no such file), or the sandbox does not allow running it (with the command that allows
 * it). Undefined when it can start.
 */
export async function launcherProblem(command: string): Promise<string | undefined> {
  if (!await onPath(command)) {
    return command.includes("/")
      ? `${command} does not exist (or is not a file)`
      : `\`${command}\` is not installed (not found on PATH)`;
  }
  const state = (await Deno.permissions.query({ name: "run", command })).state;
  if (state !== "granted") {
    return `the sandbox does not allow running \`${command}\`; allow it with: ${
      widenCommand({ run: [command] })
    }`;
  }
  return undefined;
}

/** A file the bridge cannot write: its sandbox does not allow it, or the write failed. */
export class WriteError extends BridgeError<"write"> {
  override name = "WriteError";
}

async function granted(descriptor: Deno.PermissionDescriptor): Promise<boolean> {
  return (await Deno.permissions.query(descriptor)).state === "granted";
}

/**
 * The deno that writes one file for the bridge (lib/config_edit.ts run as a program), when the
 * bridge runs from its repository and may run deno; undefined otherwise (a compiled binary).
 */
async function writerDeno(): Promise<string | undefined> {
  if (REPOSITORY === undefined) return undefined;
  const deno = Deno.execPath();
  if (await granted({ name: "run", command: deno })) return deno;
  return await granted({ name: "run", command: "deno" }) ? "deno" : undefined;
}

/**
 * Why `path` cannot be written, with the exact command that allows it (after `instead`, what the
 * user can do otherwise, e.g. "Edit the file by hand"); undefined when it can be, by the bridge
 * or by a deno allowed to write only that file.
 */
export async function writeProblem(path: string, instead?: string): Promise<string | undefined> {
  if (await granted({ name: "write", path }) || await writerDeno() !== undefined) return undefined;
  const allow = `allow it with: ${widenCommand({ write: [path] })}`;
  return `Cannot write ${path}: the bridge's sandbox allows no writes there. ` +
    (instead ? `${instead}, or ${allow}` : allow[0]!.toUpperCase() + allow.slice(1));
}

/**
 * Writes `text` to `path` (`mode`: the permission bits of a file it creates). The bridge's sandbox
 * writes nothing, so unless it was installed with write access there, a deno allowed to write
 * that one file does it. Throws {@linkcode WriteError} with {@linkcode writeProblem}'s message
 * when neither can, or why the write failed.
 */
export async function writeFileNarrowly(
  path: string,
  text: string,
  o: { mode?: number; instead?: string } = {},
): Promise<void> {
  const options = o.mode !== undefined ? { mode: o.mode } : {};
  if (await granted({ name: "write", path })) {
    await Deno.writeTextFile(path, text, options);
    return;
  }
  const runner = await writerDeno();
  if (REPOSITORY === undefined || runner === undefined) {
    throw new WriteError("write", await writeProblem(path, o.instead) ?? `Cannot write ${path}.`);
  }
  const child = new Deno.Command(runner, {
    args: [
      "run",
      `--allow-write=${path}`,
      "--no-prompt",
      "--quiet",
      "--no-config",
      join(REPOSITORY, "lib", "config_edit.ts"),
      path,
      ...(o.mode !== undefined ? [o.mode.toString(8)] : []),
    ],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new WriteError(
      "write",
      `Cannot write ${path}: ${firstLine(new TextDecoder().decode(out.stderr), 300)}`,
    );
  }
}
