/**
 * How a stdio server's command line runs under Deno ({@linkcode denoTarget}): `npx [-y] pkg args`
 * becomes `npm:pkg args`, `node file.js args` becomes `file.js args`, and `deno run <flags> x`
 * keeps its flags except the permission flags, whose scoped grants (`--allow-read=/data`) are
 * kept as part of the server's policy while blanket ones (`-A`, `--allow-read`) are dropped.
 * A command that Deno cannot run (Python, Docker, a native binary, an npx package named by a
 * path or URL) gets the reason why. Pure: no I/O.
 */
import { basename, isAbsolute, resolve } from "./path.ts";

/** Access a server is granted: paths, hosts, commands, system-information names. */
export interface Grants {
  read: string[] | true;
  write: string[] | true;
  net: string[] | true;
  run: string[] | true;
  sys: string[] | true;
}

/** A server command line rewritten to run under `deno run`. */
export interface DenoTarget {
  /** How the entry launched it: through npx, node, or deno itself. */
  via: "npx" | "node" | "deno";
  /** The deno executable the entry names (deno entries only; others use the bridge's deno). */
  command?: string;
  /** `deno run` flags kept from the entry (never permission grants). */
  flags: string[];
  /** The flags of `flags` that `deno cache` takes too (module loading, lockfile, certificates). */
  cacheFlags: string[];
  /** The entry promises everything is cached (`--cached-only`): no caching step is needed. */
  cachedOnly: boolean;
  /** What `deno run` runs: an `npm:` specifier, a file path or a URL. */
  module: string;
  args: string[];
  /** The npm package it runs, when known (`@modelcontextprotocol/server-memory`). */
  packageName?: string;
  /** Scoped grants the entry's own `deno run` flags made. */
  grants: Grants;
}

/** Either the Deno form of a command, or why it has none. */
export type DenoTargetResult = { ok: true; target: DenoTarget } | { ok: false; why: string };

/** No access at all. */
export function noGrants(): Grants {
  return { read: [], write: [], net: [], run: [], sys: [] };
}

/** `command`'s name without directory and Windows extension: `/usr/bin/npx.cmd` -> `npx`. */
export function commandName(command: string): string {
  return basename(command).replace(/\.(exe|cmd|bat|ps1)$/i, "").toLowerCase();
}

// -- npm package specs ----------------------------------------------------------------------------

const NPM_NAME = /^(?:@[a-z0-9][\w.~-]*\/)?[a-z0-9~][\w.~-]*$/i;

/** `@scope/name@1.2.3` -> name and version (tag or range); undefined when it is not a registry name. */
export function parsePackageSpec(spec: string): { name: string; version?: string } | undefined {
  const at = spec.indexOf("@", 1);
  const name = at === -1 ? spec : spec.slice(0, at);
  const version = at === -1 ? undefined : spec.slice(at + 1);
  if (!NPM_NAME.test(name) || name.length > 214) return undefined;
  if (version !== undefined && !/^[\w.^~<>=*| -]+$/.test(version)) return undefined;
  return { name, version };
}

/** The package a script path lies in: `/x/node_modules/@scope/pkg/dist/index.js` -> `@scope/pkg`. */
function packageOfPath(path: string): string | undefined {
  const match = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/][^]*$/.exec(path);
  return match?.[1]?.replace("\\", "/");
}

// -- npx ------------------------------------------------------------------------------------------

/** npx options that change nothing once Deno runs the package. */
const NPX_IGNORED = new Set([
  "-y",
  "--yes",
  "-q",
  "--quiet",
  "--silent",
  "--prefer-offline",
  "--prefer-online",
  "--no-update-notifier",
]);

function npxTarget(args: readonly string[]): DenoTargetResult {
  const packages: string[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-")) break;
    if (NPX_IGNORED.has(arg)) continue;
    if (arg === "-p" || arg === "--package") {
      const value = args[++i];
      if (value === undefined) return { ok: false, why: `npx ${arg} has no package after it` };
      packages.push(value);
      continue;
    }
    if (arg.startsWith("--package=")) {
      packages.push(arg.slice("--package=".length));
      continue;
    }
    return { ok: false, why: `the npx option ${arg} has no Deno equivalent` };
  }
  const command = args[i];
  if (command === undefined) return { ok: false, why: "npx is given no package to run" };
  const rest = args.slice(i + 1);
  if (packages.length > 1) {
    return { ok: false, why: "npx is given several packages (-p), and Deno runs one" };
  }
  const spec = packages[0] ?? command;
  const parsed = parsePackageSpec(spec);
  if (parsed === undefined) {
    return {
      ok: false,
      why: `npx runs "${spec}", which is not a package name from the npm registry (Deno's ` +
        "npm: specifiers name registry packages only)",
    };
  }
  const pinned = parsed.version === undefined ? parsed.name : `${parsed.name}@${parsed.version}`;
  // With -p, the command is one of the package's binaries (`npm:pkg@1.0/bin`).
  const module = packages.length === 1 ? `npm:${pinned}/${command}` : `npm:${pinned}`;
  return {
    ok: true,
    target: {
      via: "npx",
      // Neither the bridge's nor the user's project config, nor a lockfile to write.
      flags: ["--no-config", "--no-lock"],
      cacheFlags: ["--no-config", "--no-lock"],
      cachedOnly: false,
      module,
      args: rest,
      packageName: parsed.name,
      grants: noGrants(),
    },
  };
}

// -- node -----------------------------------------------------------------------------------------

const NODE_IGNORED = new Set(["--no-warnings", "--no-deprecation", "--enable-source-maps"]);

function nodeTarget(args: readonly string[], cwd: string): DenoTargetResult {
  const flags: string[] = ["--no-lock"];
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-")) break;
    if (NODE_IGNORED.has(arg)) continue;
    if (arg.startsWith("--env-file=")) {
      flags.push(arg);
      continue;
    }
    return { ok: false, why: `the node option ${arg} has no Deno equivalent` };
  }
  const script = args[i];
  if (script === undefined) return { ok: false, why: "node is given no script to run" };
  const path = isAbsolute(script) ? script : resolve(cwd, script);
  return {
    ok: true,
    target: {
      via: "node",
      flags,
      cacheFlags: ["--no-lock"],
      cachedOnly: false,
      module: path,
      args: args.slice(i + 1),
      packageName: packageOfPath(path),
      grants: noGrants(),
    },
  };
}

// -- deno -----------------------------------------------------------------------------------------

/** `deno run` flags whose value is the next argument. */
const DENO_VALUE_FLAGS = new Set([
  "-c",
  "--config",
  "--import-map",
  "--lock",
  "--cert",
  "--location",
  "--seed",
  "--ext",
  "--preload",
  "--require",
  "--conditions",
  "--node-modules-linker",
  "--min-dep-age",
  "--inspect-publish-uid",
  "-L",
  "--log-level",
]);

/** Flags (by name) that `deno cache` takes as well as `deno run`. */
const DENO_CACHE_FLAGS = new Set([
  "-c",
  "--config",
  "--no-config",
  "--import-map",
  "--lock",
  "--no-lock",
  "--frozen",
  "--frozen-lockfile",
  "--cert",
  "--node-modules-dir",
  "--vendor",
  "--node-modules-linker",
  "--no-remote",
  "--no-npm",
  "-I",
  "--allow-import",
  "--deny-import",
  "--ext",
  "--unsafely-ignore-certificate-errors",
  "--allow-scripts",
  "--min-dep-age",
]);

/** Permission grants, by flag: long and short forms. */
const GRANT_FLAGS: Record<string, keyof Grants | "all" | "env" | "ffi" | "set" | "prompt"> = {
  "-A": "all",
  "--allow-all": "all",
  "-R": "read",
  "--allow-read": "read",
  "-W": "write",
  "--allow-write": "write",
  "-N": "net",
  "--allow-net": "net",
  "-S": "sys",
  "--allow-sys": "sys",
  "--allow-run": "run",
  "-E": "env",
  "--allow-env": "env",
  "--allow-ffi": "ffi",
  "--allow-hrtime": "ffi",
  "-P": "set",
  "--permission-set": "set",
  "--no-prompt": "prompt",
};

/** Deno subcommands, so `deno x.ts` (implicit run) is told apart from `deno task start`. */
const MODULE_LIKE = /^(npm:|jsr:|https?:|file:)|\.(ts|tsx|mts|cts|js|jsx|mjs|cjs)$/i;

function denoRunTarget(command: string, args: readonly string[], cwd: string): DenoTargetResult {
  let i = 0;
  if (args[0] === "run") i = 1;
  else {
    const first = args.find((a) => !a.startsWith("-"));
    if (first === undefined || !MODULE_LIKE.test(first)) {
      const sub = first ?? args[0] ?? "";
      return {
        ok: false,
        why: `"deno ${sub}" is not "deno run" (a task or another subcommand sets its own ` +
          "permissions)",
      };
    }
  }
  const flags: string[] = [];
  const cacheFlags: string[] = [];
  const grants = noGrants();
  let cachedOnly = false;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-") || arg === "-") break;
    if (arg === "--") {
      i++;
      break;
    }
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const grant = GRANT_FLAGS[name];
    if (grant !== undefined) {
      const list = eq === -1 ? undefined : arg.slice(eq + 1).split(",").filter((v) => v !== "");
      if (list !== undefined && isGrantKey(grant)) {
        const scoped = grant === "read" || grant === "write"
          ? list.map((p) => (isAbsolute(p) ? p : resolve(cwd, p)))
          : list;
        const held = grants[grant];
        if (held !== true) grants[grant] = [...held, ...scoped];
      }
      continue;
    }
    const taken = DENO_VALUE_FLAGS.has(name) && eq === -1 ? args[++i] : undefined;
    const words = taken === undefined ? [arg] : [arg, taken];
    flags.push(...words);
    if (DENO_CACHE_FLAGS.has(name)) cacheFlags.push(...words);
    if (name === "--cached-only") cachedOnly = true;
  }
  const module = args[i];
  if (module === undefined) return { ok: false, why: "deno run is given no module to run" };
  const npm = module.startsWith("npm:")
    ? parsePackageSpec(module.slice(4).replace(/^\//, ""))
    : undefined;
  return {
    ok: true,
    target: {
      via: "deno",
      command,
      flags,
      cacheFlags,
      cachedOnly,
      module,
      args: args.slice(i + 1),
      packageName: npm?.name ?? (MODULE_LIKE.test(module) ? packageOfPath(module) : undefined),
      grants,
    },
  };
}

function isGrantKey(key: string): key is keyof Grants {
  return key === "read" || key === "write" || key === "net" || key === "run" || key === "sys";
}

/**
 * The `deno run` form of a stdio command line, or why it has none. `cwd` is the server's working
 * directory (relative script paths and relative scoped grants resolve against it).
 */
export function denoTarget(
  command: string,
  args: readonly string[],
  cwd: string,
): DenoTargetResult {
  const name = commandName(command);
  if (name === "npx") return npxTarget(args);
  if (name === "node" || name === "nodejs") return nodeTarget(args, cwd);
  if (name === "deno") return denoRunTarget(command, args, cwd);
  return { ok: false, why: launcherWhy(name) };
}

function launcherWhy(name: string): string {
  if (["uvx", "uv", "python", "python3", "pipx"].includes(name)) {
    return `${name} starts a Python program, which Deno cannot run`;
  }
  if (name === "docker" || name === "podman") return `${name} runs a container, not a script`;
  if (name === "bunx" || name === "bun") return `${name} is another JavaScript runtime`;
  return `"${name}" is not a launcher Deno can stand in for (npx, node, deno)`;
}
