/**
 * What the sandbox needs to know about this machine ({@linkcode SandboxHost}): the bridge's
 * environment, the deno that runs sandboxed servers (this process's own when the bridge's sandbox
 * lets it run it, else `deno` on PATH), Deno's cache directory, whether bubblewrap works, and the
 * few commands the sandbox runs itself (`deno cache`, `mkdir -p`). {@linkcode defaultHost} looks
 * once per process; tests give a host of their own.
 */
import { z } from "zod";
import {
  type BwrapProbe,
  findCommand,
  probeBwrap,
  type RunCommand,
  runCommand,
  type SystemMount,
  systemMounts,
} from "./sandbox_bwrap.ts";
import { commandName } from "./sandbox_command.ts";
import { isSandboxDenial } from "./errors.ts";
import { firstLine } from "./text.ts";

/** The deno that runs sandboxed servers, or why there is none. */
export type DenoFound = { ok: true; path: string } | { ok: false; why: string };

/** What the sandbox needs to know about this machine; {@linkcode defaultHost} looks. */
export interface SandboxHost {
  os: typeof Deno.build.os;
  /** The bridge's environment: HOME, PATH, XDG_DATA_HOME, DENO_DIR and names passed through. */
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  deno(): Promise<DenoFound>;
  /** Deno's cache directory, which sandboxed deno reads its modules and npm packages from. */
  denoDir(): Promise<string | undefined>;
  bwrap(): Promise<BwrapProbe>;
  systemMounts(): Promise<SystemMount[]>;
  /** `path` with symlinks resolved, or undefined when it does not exist. */
  realPath(path: string): Promise<string | undefined>;
  /** `command` through `PATH` (or as given when it has a directory), if it exists. */
  which(command: string): Promise<string | undefined>;
  /** Creates `dir` and its parents. */
  mkdirp(dir: string): Promise<void>;
  /** Runs a command to completion (`deno cache` before a start inside bubblewrap). */
  run: RunCommand;
}

function processEnv(): Record<string, string | undefined> {
  try {
    return Deno.env.toObject();
  } catch {
    // Without env permission nothing is passed through and defaults apply.
    return {};
  }
}

function mayRun(command: string): boolean {
  return Deno.permissions.querySync({ name: "run", command }).state === "granted";
}

/**
 * The deno to run servers with: this process's own executable when it is deno and may be run,
 * else `deno` on PATH when the bridge's sandbox allows running it.
 */
async function findDeno(env: Readonly<Record<string, string | undefined>>): Promise<DenoFound> {
  const own = Deno.execPath();
  if (commandName(own) === "deno" && mayRun(own)) return { ok: true, path: own };
  const onPath = await findCommand("deno", env["PATH"]);
  if (onPath === undefined) {
    return {
      ok: false,
      why: "deno is not installed on PATH (https://docs.deno.com/runtime/getting_started/" +
        "installation/)",
    };
  }
  if (!mayRun("deno")) {
    return {
      ok: false,
      why: 'the bridge\'s own sandbox does not allow running deno (add "deno" to the "run" list ' +
        'of the "bridge" permission set in deno.json)',
    };
  }
  return { ok: true, path: onPath };
}

const DenoInfoSchema = z.object({ denoDir: z.string() });

async function findDenoDir(
  deno: DenoFound,
  env: Record<string, string>,
): Promise<string | undefined> {
  if (!deno.ok) return undefined;
  try {
    const out = await new Deno.Command(deno.path, {
      args: ["info", "--json"],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const parsed = DenoInfoSchema.safeParse(JSON.parse(new TextDecoder().decode(out.stdout)));
    return parsed.success ? parsed.data.denoDir : undefined;
  } catch {
    // No answer: the cache directory is not bound, and a sandboxed start says what failed.
    return undefined;
  }
}

async function mkdirp(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    return;
  } catch (error) {
    // The bridge's own sandbox has no write access: `mkdir` (in its run list) does it.
    if (!isSandboxDenial(error)) throw error;
  }
  const { code, stderr } = await runCommand("mkdir", ["-p", "--", dir]);
  if (code !== 0) throw new Error(`mkdir -p ${dir} failed: ${firstLine(stderr)}`);
}

let shared: SandboxHost | undefined;

/** This machine, looked at once per process (deno, its cache, bubblewrap). */
export function defaultHost(): SandboxHost {
  if (shared !== undefined) return shared;
  const env = processEnv();
  let deno: Promise<DenoFound> | undefined;
  let denoDir: Promise<string | undefined> | undefined;
  let bwrap: Promise<BwrapProbe> | undefined;
  let mounts: Promise<SystemMount[]> | undefined;
  const host: SandboxHost = {
    os: Deno.build.os,
    env,
    cwd: Deno.cwd(),
    deno: () => deno ??= findDeno(env),
    denoDir: () => denoDir ??= host.deno().then((d) => findDenoDir(d, denoEnv(env))),
    bwrap: () => bwrap ??= probeBwrap({ searchPath: env["PATH"] }),
    systemMounts: () => mounts ??= systemMounts(),
    realPath: (path) => Deno.realPath(path).catch(() => undefined),
    which: (command) => findCommand(command, env["PATH"]),
    mkdirp,
    run: (command, args) =>
      runCommand(command, args, { env: { ...denoEnv(env), ...pick(env, ["PATH", "HOME"]) } }),
  };
  shared = host;
  return host;
}

/** Deno's own variables a deno child needs on this machine (cache, certificates), no secrets. */
const DENO_VARIABLES = ["DENO_DIR", "DENO_CERT", "DENO_TLS_CA_STORE"];

export function pick(
  env: Readonly<Record<string, string | undefined>>,
  names: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

export function denoEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  return {
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    DENO_NO_PROMPT: "1",
    ...pick(env, DENO_VARIABLES),
  };
}
