/**
 * `deno task install` and `deno task compile`: put a `lmstudio-bridge` command on PATH (a
 * `deno install -g` launcher) or build a self-contained binary, both with the "bridge"
 * permission set of deno.json as explicit flags plus what the user adds on the command line, so
 * allowing `sh` or a remote host never means editing the repository:
 *
 *   deno task install [--root DIR] [--name NAME] [--allow-run=CMD,...] [--allow-net=HOST,...]
 *                     [--allow-write=PATH,...]
 *   deno task compile [--output FILE] [same --allow-* options]
 *
 * The launcher turns off Deno's update check (DENO_NO_UPDATE_CHECK=1: nothing leaves the machine
 * but what the sandbox allows), runs the deno that installed it, and records how it was installed
 * (LMSTUDIO_BRIDGE_LAUNCH) so the bridge can name the exact command that widens it. Installing
 * also downloads and caches every dependency, so the first start of the installed command is fast.
 */
import { parseArgs, stringListOption, stringOption, UsageError } from "./args.ts";
import { errorMessage } from "./errors.ts";
import {
  extraFlags,
  type ExtraPermissions,
  type Launch,
  LAUNCH_VARIABLE,
  permissionFlags,
  readPermissionSet,
  REPOSITORY,
} from "./launch.ts";
import { isAbsolute, join, resolve } from "./path.ts";
import { firstLine, safeText, shellWord } from "./text.ts";
import { NAME } from "./version.ts";

/** What the install or build prints; injectable for tests. */
interface Io {
  stdout(line: string): void;
  stderr(line: string): void;
}

const consoleIo: Io = {
  stdout: (line) => void Deno.stdout.writeSync(new TextEncoder().encode(line + "\n")),
  stderr: (line) => void Deno.stderr.writeSync(new TextEncoder().encode(line + "\n")),
};

/** A failure of the install or build that says what to do; exit 1. */
class InstallError extends Error {
  override name = "InstallError";
}

/**
 * V8 flags of the installed and compiled command (and of `deno task start`/`cli` in deno.json):
 * a young generation of at most 2 MiB per semi-space and a heap that grows by a fifth instead of
 * V8's default factor, so that a bridge under sustained load stays near 117 MiB instead of about
 * 217 MiB after 3,000 tasks (tests/bench/memory_soak.ts). `--optimize-for-size` held it at 113 MiB
 * but cost about a tenth more CPU per tool round.
 */
export const V8_FLAGS = "--v8-flags=--max-semi-space-size=2,--heap-growing-percent=20";

const OPTIONS = {
  root: { type: "string" },
  name: { type: "string" },
  output: { type: "string" },
  "allow-run": { type: "string", multiple: true },
  "allow-net": { type: "string", multiple: true },
  "allow-write": { type: "string", multiple: true },
} as const;

const USAGE = `Usage:
  deno task --quiet install [--root DIR] [--name NAME] [--allow-run=CMD,...] [--allow-net=HOST,...]
                    [--allow-write=PATH,...]
  deno task --quiet compile [--output FILE] [--allow-run=CMD,...] [--allow-net=HOST,...]
                    [--allow-write=PATH,...]

install puts a ${NAME} command in DIR/bin (default: deno's, ~/.deno/bin), compile builds
dist/${NAME}; both with deno.json's "bridge" permission set plus the --allow-* additions.
Run either again with other additions to change them.`;

function extrasOf(args: ReturnType<typeof parseArgs>, cwd: string): ExtraPermissions {
  return {
    run: stringListOption(args, "allow-run"),
    net: stringListOption(args, "allow-net"),
    // Paths the bridge may write are fixed at install time: make them absolute now.
    write: stringListOption(args, "allow-write").map((p) => isAbsolute(p) ? p : resolve(cwd, p)),
  };
}

/** The environment every deno the install or build starts gets. */
function quietEnv(): Record<string, string> {
  return { DENO_NO_UPDATE_CHECK: "1" };
}

async function runDeno(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env: { ...quietEnv(), ...env },
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** `text` of a launcher with the update check off, the deno that installed it, and `launch`. */
export function launcherScript(text: string, launch: Launch, deno: string): string {
  const lines = text.split("\n");
  const exec = lines.findIndex((l) => /^exec deno run /.test(l));
  if (exec === -1) {
    throw new InstallError(
      `deno install wrote a launcher of an unknown form (no "exec deno run" line):\n${text}`,
    );
  }
  lines[exec] = lines[exec]!.replace(/^exec deno /, `exec ${shellWord(deno)} `);
  lines.splice(
    exec,
    0,
    "# Deno's update check would reach Deno's download host at every start, outside the sandbox.",
    "export DENO_NO_UPDATE_CHECK=1",
    `export ${LAUNCH_VARIABLE}=${shellWord(JSON.stringify(launch))}`,
  );
  return lines.join("\n");
}

function onPath(dir: string): boolean {
  const path = Deno.env.get("PATH") ?? "";
  return path.split(":").some((p) => p.replace(/\/$/, "") === dir.replace(/\/$/, ""));
}

async function install(argv: string[], repo: string, cwd: string, io: Io): Promise<number> {
  const args = parseArgs(argv, OPTIONS, "install");
  if (args.positionals.length > 0) {
    throw new UsageError(`install takes no arguments, got ${args.positionals.join(" ")}.`);
  }
  if (stringOption(args, "output") !== undefined) {
    throw new UsageError("--output is an option of compile; install takes --root and --name.");
  }
  const root = stringOption(args, "root");
  const name = stringOption(args, "name") ?? NAME;
  const extras = extrasOf(args, cwd);
  const flags = permissionFlags(readPermissionSet(repo), extras);
  const rootDir = root === undefined ? undefined : resolve(cwd, root);
  const result = await runDeno([
    "install",
    "--global",
    "--force",
    ...(rootDir === undefined ? [] : ["--root", rootDir]),
    "--name",
    name,
    ...flags,
    V8_FLAGS,
    "--no-prompt",
    "--quiet",
    "--config",
    join(repo, "deno.json"),
    join(repo, "main.ts"),
  ]);
  if (result.code !== 0) {
    throw new InstallError(
      `deno install failed (exit ${result.code}): ${safeText(result.stderr).trim() || "no output"}`,
    );
  }
  const binDir = join(
    rootDir ?? Deno.env.get("DENO_INSTALL_ROOT") ?? join(Deno.env.get("HOME") ?? "~", ".deno"),
    "bin",
  );
  const launcher = join(binDir, name);
  const launch: Launch = {
    via: "install",
    repo,
    ...(rootDir === undefined ? {} : { root: rootDir }),
    ...(name === NAME ? {} : { name }),
    allow: extras,
  };
  await Deno.writeTextFile(
    launcher,
    launcherScript(await Deno.readTextFile(launcher), launch, Deno.execPath()),
  );
  io.stdout(`Installed ${launcher}`);
  const added = extraFlags(extras);
  io.stdout(
    added.length === 0
      ? `  sandbox: deno.json's "bridge" permission set`
      : `  sandbox: deno.json's "bridge" permission set plus ${added.join(" ")}`,
  );
  if (!onPath(binDir)) {
    io.stdout(`  ${binDir} is not on PATH; add it (e.g. in ~/.profile):`);
    io.stdout(`    export PATH="${binDir}:$PATH"`);
  }
  io.stdout(`Check it with: ${name} doctor`);
  io.stdout(`Add it to Claude Code with: claude mcp add lmstudio -- ${name} serve`);
  io.stdout("  (add --tools autonomous,mcp after serve to offer only the delegating tools)");
  return 0;
}

/** Why the file `denort` names cannot be a runtime for `deno compile`, or undefined. */
export async function denortProblem(denort: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(denort);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "there is no such file";
    return `it cannot be read (${errorMessage(error)})`;
  }
  if (!info.isFile) return info.isDirectory ? "it is a directory" : "it is not a regular file";
  if (info.mode !== null && (info.mode & 0o111) === 0) return "it is not executable";
  return undefined;
}

/** True when `deno compile`'s stderr says it could not download its runtime (denort). */
export function isRuntimeDownloadFailure(stderr: string): boolean {
  return /error sending request|dns error|failed to lookup|download|dl\.deno\.land/i.test(stderr);
}

async function compile(argv: string[], repo: string, cwd: string, io: Io): Promise<number> {
  const args = parseArgs(argv, OPTIONS, "compile");
  if (args.positionals.length > 0) {
    throw new UsageError(`compile takes no arguments, got ${args.positionals.join(" ")}.`);
  }
  if (stringOption(args, "root") !== undefined || stringOption(args, "name") !== undefined) {
    throw new UsageError("--root and --name are options of install; compile takes --output.");
  }
  const output = resolve(cwd, stringOption(args, "output") ?? join(repo, "dist", NAME));
  const denort = Deno.env.get("DENORT_BIN");
  if (denort !== undefined) {
    const problem = await denortProblem(denort);
    if (problem !== undefined) {
      throw new InstallError(
        `DENORT_BIN=${denort} is unusable: ${problem}. Point DENORT_BIN at the denort binary ` +
          `of this Deno version (${Deno.version.deno}), or unset it to let deno compile ` +
          "download one.",
      );
    }
  }
  const extras = extrasOf(args, cwd);
  const result = await runDeno([
    "compile",
    ...permissionFlags(readPermissionSet(repo), extras),
    V8_FLAGS,
    "--no-prompt",
    "--config",
    join(repo, "deno.json"),
    "--output",
    output,
    join(repo, "main.ts"),
  ]);
  if (result.code !== 0) {
    if (denort === undefined && isRuntimeDownloadFailure(result.stderr)) {
      throw new InstallError(
        `deno compile needs Deno's runtime binary (denort ${Deno.version.deno} for ` +
          `${Deno.build.target}) and could not download it from Deno's download host ` +
          `(${firstLine(deepestCause(result.stderr), 200)}). Set DENORT_BIN to a local denort of ` +
          `this version (the denort-${Deno.build.target}.zip of the Deno ${Deno.version.deno} ` +
          "release, unpacked) and run it again, or use `deno task install`, which needs no " +
          "download.",
      );
    }
    throw new InstallError(
      `deno compile failed (exit ${result.code}): ${safeText(result.stderr).trim() || "no output"}`,
    );
  }
  io.stdout(`Built ${output}`);
  const added = extraFlags(extras);
  if (added.length > 0) io.stdout(`  sandbox: deno.json's "bridge" set plus ${added.join(" ")}`);
  return 0;
}

/** The deepest "N: cause" line of a deno error before its stack backtrace, else its first line. */
function deepestCause(stderr: string): string {
  const text = safeText(stderr).split("Stack backtrace:")[0] ?? "";
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const cause = lines.findLast((l) => /^\d+: /.test(l));
  return (cause ?? lines.find((l) => /^error/i.test(l)) ?? lines[0] ?? "no output")
    .replace(/^\d+: /, "");
}

/** Runs `install` or `compile` with `argv`; returns the exit code. */
export async function installMain(
  argv: string[],
  options: { repo?: string; cwd?: string; io?: Io } = {},
): Promise<number> {
  const io = options.io ?? consoleIo;
  const repo = options.repo ?? REPOSITORY;
  // Under `deno task`, the user's directory is INIT_CWD (the task runs in the repository).
  const cwd = options.cwd ?? Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const [what, ...rest] = argv;
  try {
    if (repo === undefined) throw new InstallError("Run this from the lmstudio-bridge repository.");
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout(USAGE);
      return 0;
    }
    if (what === "install") return await install(rest, repo, cwd, io);
    if (what === "compile") return await compile(rest, repo, cwd, io);
    throw new UsageError(`expected install or compile, got ${what ?? "nothing"}.`);
  } catch (error: unknown) {
    if (error instanceof UsageError) {
      io.stderr(`error: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    io.stderr(`error: ${errorMessage(error)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await installMain(Deno.args));
