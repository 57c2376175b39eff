/**
 * bubblewrap (`bwrap`), the operating-system sandbox on Linux: a mount namespace in which only
 * the system directories and the paths a server is allowed exist, no network unless allowed,
 * no capabilities, its own process tree that ends with the bridge (`--die-with-parent`).
 *
 * Unlike Deno's permission checks, which compare paths as written, the mount namespace decides
 * by what a path really is: a symlink in an allowed directory that points elsewhere leads to a
 * file that does not exist. {@linkcode bwrapArgs} builds the command line (pure);
 * {@linkcode probeBwrap} says whether bubblewrap is installed, allowed and able to create a
 * sandbox here, and why not.
 */
import { isFile, pathCandidates } from "./lms_locate.ts";
import { errorMessage } from "./errors.ts";
import { firstLine } from "./text.ts";

/** How a system directory is reproduced inside the sandbox. */
export type SystemMount = { path: string; bind: true } | { path: string; symlink: string };

/** What {@linkcode bwrapArgs} puts in the sandbox. */
export interface BwrapLayout {
  /** `/usr`, `/lib64 -> usr/lib64`... (see {@linkcode systemMounts}). */
  system: SystemMount[];
  /** Visible read-only (missing ones are skipped). */
  readOnly: string[];
  /** Visible read-write (missing ones are skipped). */
  readWrite: string[];
  /** Share the host's network (otherwise the sandbox has none). */
  network: boolean;
  /** The user's home directory: an empty, private tmpfs unless something in it is bound. */
  home?: string;
  /** The working directory inside the sandbox (created empty when nothing bound holds it). */
  cwd: string;
}

/** Files under /etc that programs need to start, find libraries, users, time and certificates. */
const ETC_FILES = [
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/alternatives",
  "/etc/localtime",
  "/etc/timezone",
  "/etc/passwd",
  "/etc/group",
  "/etc/nsswitch.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/pki",
  "/etc/mime.types",
];

/** What name resolution needs, only bound when the sandbox has the network. */
const NETWORK_FILES = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/host.conf",
  "/etc/gai.conf",
  "/run/systemd/resolve",
];

/** Top-level system directories: bound when they are directories, recreated when symlinks. */
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** How this machine's system directories look (a symlink such as `/lib -> usr/lib` stays one). */
export async function systemMounts(): Promise<SystemMount[]> {
  const mounts: SystemMount[] = [];
  for (const path of SYSTEM_DIRS) {
    try {
      const info = await Deno.lstat(path);
      if (info.isSymlink) mounts.push({ path, symlink: await Deno.readLink(path) });
      else if (info.isDirectory) mounts.push({ path, bind: true });
    } catch {
      // Not on this system (e.g. /lib32): nothing to reproduce.
    }
  }
  return mounts;
}

/** True when `path` is `dir` or inside it. */
export function isWithin(path: string, dir: string): boolean {
  if (dir === "/") return path.startsWith("/");
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** The bubblewrap options (everything before `--` and the command) for `layout`. */
export function bwrapArgs(layout: BwrapLayout): string[] {
  const args = [
    "--unshare-all",
    ...(layout.network ? ["--share-net"] : []),
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
  ];
  for (const mount of layout.system) {
    if ("symlink" in mount) args.push("--symlink", mount.symlink, mount.path);
    else args.push("--ro-bind", mount.path, mount.path);
  }
  for (const file of [...ETC_FILES, ...(layout.network ? NETWORK_FILES : [])]) {
    args.push("--ro-bind-try", file, file);
  }
  args.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  const home = layout.home;
  if (home !== undefined && home !== "/") {
    // An empty home of its own (inside the new /tmp, a directory there).
    args.push(isWithin(home, "/tmp") ? "--dir" : "--tmpfs", home);
  }
  // Parents before children, so a narrower bind inside a wider one stays in force; a path both
  // readable and writable is bound once, writable.
  const writable = new Set(layout.readWrite);
  const paths = [...new Set([...layout.readOnly, ...layout.readWrite])]
    .sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
  for (const path of paths) {
    args.push(writable.has(path) ? "--bind-try" : "--ro-bind-try", path, path);
  }
  // The working directory exists inside when something bound holds it; otherwise it is made,
  // empty (an empty tmpfs holds nothing).
  const bound = [...paths, ...layout.system.map((m) => m.path)];
  if (!bound.some((dir) => isWithin(layout.cwd, dir)) && layout.cwd !== home) {
    args.push("--dir", layout.cwd);
  }
  args.push("--chdir", layout.cwd);
  return args;
}

function depth(path: string): number {
  return path.split("/").filter((p) => p !== "").length;
}

/** Whether bubblewrap can sandbox servers here, and why not. */
export type BwrapProbe = { ok: true; path: string } | { ok: false; why: string };

/** Runs a command to completion: its exit code and its stderr (tests replace it). */
export type RunCommand = (
  command: string,
  args: string[],
) => Promise<{ code: number; stderr: string }>;

/**
 * `Deno.Command(...).output()` with no input and stderr captured; with `env`, the child gets
 * exactly that environment.
 */
export async function runCommand(
  command: string,
  args: string[],
  o: { env?: Record<string, string> } = {},
): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(command, {
    args,
    env: o.env,
    clearEnv: o.env !== undefined,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** `command` through `searchPath` (or as given when it names a directory), if it is a file. */
export async function findCommand(
  command: string,
  searchPath: string | undefined,
): Promise<string | undefined> {
  if (command.includes("/") || command.includes("\\")) {
    return (await isFile(command)) ? command : undefined;
  }
  for (const candidate of pathCandidates(command, searchPath)) {
    if (await isFile(candidate)) return candidate;
  }
  return undefined;
}

/** Options of {@linkcode probeBwrap}; the defaults look at this machine. */
export interface ProbeOptions {
  os?: typeof Deno.build.os;
  searchPath?: string;
  mayRun?: (command: string) => boolean;
  run?: RunCommand;
}

function mayRunCommand(command: string): boolean {
  return Deno.permissions.querySync({ name: "run", command }).state === "granted";
}

/**
 * Whether bubblewrap is installed, the bridge may run it, and it can create a sandbox on this
 * machine (user namespaces may be disabled); when not, a sentence saying why and what to do.
 */
export async function probeBwrap(o: ProbeOptions = {}): Promise<BwrapProbe> {
  if ((o.os ?? Deno.build.os) !== "linux") {
    return { ok: false, why: "bubblewrap is Linux only (macOS's sandbox-exec is not used)" };
  }
  const path = await findCommand("bwrap", o.searchPath);
  if (path === undefined) {
    return {
      ok: false,
      why: "bubblewrap is not installed (apt-get install bubblewrap, or dnf install bubblewrap)",
    };
  }
  if (!(o.mayRun ?? mayRunCommand)("bwrap")) {
    return {
      ok: false,
      why: 'the bridge\'s own sandbox does not allow running bwrap (add "bwrap" to the "run" ' +
        'list of the "bridge" permission set in deno.json, or --allow-run=bwrap)',
    };
  }
  try {
    const { code, stderr } = await (o.run ?? runCommand)("bwrap", [
      "--unshare-all",
      "--die-with-parent",
      "--cap-drop",
      "ALL",
      "--ro-bind",
      "/",
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "true",
    ]);
    if (code === 0) return { ok: true, path };
    return {
      ok: false,
      why:
        `bubblewrap (${path}) cannot create a sandbox here: ${
          firstLine(stderr) || `exit code ${code}`
        } (unprivileged user namespaces may be disabled, e.g. by sysctl ` +
        "kernel.unprivileged_userns_clone=0 or an AppArmor profile)",
    };
  } catch (error) {
    return { ok: false, why: `bubblewrap (${path}) could not be run: ${errorMessage(error)}` };
  }
}
