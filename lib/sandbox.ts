/**
 * Each downstream stdio server in its own sandbox.
 *
 * - Deno's permission system for servers Deno can run (`npx pkg`, `node file.js`, `deno run x`,
 *   rewritten by sandbox_command.ts): exactly the paths, hosts, commands and system information
 *   it needs, derived for the reference servers (server-filesystem: its directories;
 *   server-memory: its memory file's directory) and widened by the user's
 *   `servers.<name>.sandbox` in lmstudio-bridge.json ({@linkcode SandboxSettingSchema}).
 * - bubblewrap around it on Linux when it works here (sandbox_bwrap.ts): Deno's checks compare
 *   paths as written, so a symlink inside an allowed directory would be followed; in the mount
 *   namespace its target does not exist. Servers Deno cannot run (Python, Docker, native
 *   binaries) run inside bubblewrap alone, or unconfined when there is none, and say so.
 * - Every server's confinement in one word ({@linkcode Confinement}) with what it may do
 *   ({@linkcode sandboxStatus}), for `mcps`, `list_available_mcps` and `doctor`.
 * - {@linkcode sandboxLaunch} turns a config entry into the command that starts it, and returns
 *   how to translate Deno's refusals into messages that say how to allow what was refused
 *   (sandbox_denial.ts). What it needs to know about the machine (deno, its cache, bubblewrap)
 *   is in sandbox_host.ts.
 *
 * Environment: a child gets only the SDK's default variables, the bridge's own and its entry's
 * `env` (pool_connect.ts), plus Deno's cache and certificate variables and the names the user
 * passes through (`env`). So every sandboxed server may read all of its environment
 * (`--allow-env`): nothing beyond what it is given is there to read.
 */
import { z } from "zod";
import type { McpConfig } from "./config.ts";
import type { ServerEntry } from "./config_entry.ts";
import { dirname, expandTilde, isAbsolute, join, resolve } from "./path.ts";
import { McpServerError } from "./pool_errors.ts";
import { bwrapArgs, type BwrapLayout, isWithin } from "./sandbox_bwrap.ts";
import { type DenoTarget, denoTarget, type Grants } from "./sandbox_command.ts";
import { defaultHost, denoEnv, pick, type SandboxHost } from "./sandbox_host.ts";
import { type DenialContext, explainStartFailure, translatingTransport } from "./sandbox_denial.ts";
import type { Transport } from "./sdk.ts";
import { listNames } from "./text.ts";
import { BRIDGE_SETTINGS_FILE, type SandboxRules, type SandboxSetting } from "./config_bridge.ts";

export { defaultHost, type SandboxHost } from "./sandbox_host.ts";

// -- the settings ---------------------------------------------------------------------------------

const ModeSchema = z.enum(["auto", "deno", "os", "none"]);

/** The part of the configuration in force the sandbox reads: its path and the bridge settings. */
export type SandboxConfig = Pick<McpConfig, "path" | "bridge">;

/**
 * The bridge's environment variable that sets the default for servers the bridge settings say
 * nothing about: auto, deno, os or none (`LMSTUDIO_BRIDGE_SANDBOX=none` runs every server as
 * before).
 */
export const SANDBOX_VARIABLE = "LMSTUDIO_BRIDGE_SANDBOX";

/**
 * `servers.<name>.sandbox` of the configuration's bridge settings (the `bridge` field its
 * loader adds), else `fallback` (the {@linkcode SANDBOX_VARIABLE} default), else "auto". A
 * setting that does not validate counts as absent (the loader reports why): an unreadable
 * setting never loosens the sandbox beyond the default.
 */
export function sandboxSetting(
  config: SandboxConfig | undefined,
  server: string,
  fallback?: string,
): SandboxSetting {
  const setting = config?.bridge.settings.servers?.[server]?.sandbox;
  if (setting !== undefined) return setting;
  const mode = ModeSchema.safeParse(fallback?.trim().toLowerCase());
  return mode.success ? mode.data : "auto";
}

/** Where the bridge settings are: the loader's path, else lmstudio-bridge.json beside the config. */
export function settingsPath(config: SandboxConfig | undefined): string {
  const path = config?.bridge.path;
  if (path !== undefined) return path;
  return config?.path === undefined
    ? `${BRIDGE_SETTINGS_FILE} (beside your MCP config)`
    : join(dirname(config.path), BRIDGE_SETTINGS_FILE);
}

// -- what a server may do -------------------------------------------------------------------------

/** The one word for how a server is confined. */
export type Confinement = "deno+bwrap" | "deno" | "bwrap" | "none" | "remote";

/** Everything a server is allowed: grants, and the bridge variables passed on to it. */
export interface Policy extends Grants {
  env: string[];
}

/** Defaults derived from what a known server is given. */
interface Derived {
  grants: Partial<Grants>;
  /** Variables set for it (unless its entry sets them). */
  env?: Record<string, string>;
  /** Directories created before it starts. */
  dirs?: string[];
}

interface DeriveInput {
  server: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  home?: string;
  /** This server's own data directory (see {@linkcode serverDataDir}). */
  dataDir: string;
}

/** `host:port` of a database URL argument (`postgresql://user:pw@db:5432/x`). */
function urlHost(args: string[], defaultPort: number): string[] {
  for (const arg of args) {
    try {
      const url = new URL(arg);
      if (url.hostname !== "") return [`${url.hostname}:${url.port || defaultPort}`];
    } catch {
      // Not a URL: look at the next argument.
    }
  }
  return [];
}

/** Least privilege for the reference servers a user most likely has, by npm package. */
const KNOWN_SERVERS: Record<string, (i: DeriveInput) => Derived> = {
  "@modelcontextprotocol/server-filesystem": (i) => {
    const dirs = i.args.filter((a) => !a.startsWith("-"))
      .map((a) => resolve(i.cwd, expandTilde(a, i.home)));
    return { grants: { read: dirs, write: dirs } };
  },
  "@modelcontextprotocol/server-memory": (i) => {
    const given = i.env["MEMORY_FILE_PATH"];
    // It writes a temporary file beside the memory file and renames it over: the directory.
    if (given !== undefined) {
      if (!isAbsolute(given)) return { grants: {} }; // Relative to its own package: refused, said.
      return { grants: { read: [dirname(given)], write: [dirname(given)] } };
    }
    // Its default is beside its own code in the package cache, where writing would let it
    // change code other programs run: its own directory instead.
    return {
      grants: { read: [i.dataDir], write: [i.dataDir] },
      env: { MEMORY_FILE_PATH: join(i.dataDir, "memory.jsonl") },
      dirs: [i.dataDir],
    };
  },
  "@modelcontextprotocol/server-everything": () => ({ grants: {} }),
  "@modelcontextprotocol/server-sequential-thinking": () => ({ grants: {} }),
  "@modelcontextprotocol/server-github": () => ({ grants: { net: ["api.github.com"] } }),
  "@modelcontextprotocol/server-brave-search": () => ({
    grants: { net: ["api.search.brave.com"] },
  }),
  "@modelcontextprotocol/server-slack": () => ({ grants: { net: ["slack.com"] } }),
  "@modelcontextprotocol/server-google-maps": () => ({ grants: { net: ["maps.googleapis.com"] } }),
  "@modelcontextprotocol/server-postgres": (i) => ({ grants: { net: urlHost(i.args, 5432) } }),
};

/** Where the bridge keeps a server's own files (server-memory's memory file). */
export function serverDataDir(
  server: string,
  o: { os: typeof Deno.build.os; env: Readonly<Record<string, string | undefined>> },
): string {
  const home = o.env["HOME"] ?? o.env["USERPROFILE"] ?? ".";
  const base = o.os === "windows"
    ? o.env["APPDATA"] ?? join(home, "AppData", "Roaming")
    : o.os === "darwin"
    ? join(home, "Library", "Application Support")
    : o.env["XDG_DATA_HOME"] ?? join(home, ".local", "share");
  return join(base, "lmstudio-bridge", "servers", server.replace(/[^\w.-]/g, "_"));
}

function union(a: string[] | true, b: string[] | true | undefined): string[] | true {
  if (a === true || b === true) return true;
  return [...new Set([...a, ...(b ?? [])])];
}

function merge(into: Policy, more: Partial<Policy>): Policy {
  return {
    read: union(into.read, more.read),
    write: union(into.write, more.write),
    net: union(into.net, more.net),
    run: union(into.run, more.run),
    sys: union(into.sys, more.sys),
    env: [...new Set([...into.env, ...(more.env ?? [])])],
  };
}

/** A user's paths: `~` expanded, relative ones against the server's working directory. */
function userPaths(paths: string[] | true | undefined, cwd: string, home?: string) {
  if (paths === undefined || paths === true) return paths;
  return paths.map((p) => resolve(cwd, expandTilde(p, home)));
}

/** The paths with their real locations added (a directory given through a symlink). */
async function withRealPaths(paths: string[] | true, host: SandboxHost): Promise<string[] | true> {
  if (paths === true) return true;
  const real = await Promise.all(paths.map((p) => host.realPath(p)));
  return [...new Set([...paths, ...real.filter((p): p is string => p !== undefined)])];
}

// -- the plan -------------------------------------------------------------------------------------

/** How a server is to be started and confined, and how that reads in a listing. */
export interface SandboxPlan {
  server: string;
  confinement: Confinement;
  /** What it may do, in a few words. */
  allows: string;
  /** Why this confinement, or what it does not stop. */
  note?: string;
  /** The setting cannot be honoured here: the server is not started, and this says why. */
  problem?: string;
  policy: Policy;
  /** Set when Deno runs it. */
  deno?: { path: string; target: DenoTarget };
  /** Set when bubblewrap runs it. */
  bwrap?: BwrapLayout;
  /** Variables added to its environment. */
  env: Record<string, string>;
  /** Directories created before it starts. */
  dirs: string[];
  /** Where its settings go (lmstudio-bridge.json). */
  settingsPath: string;
}

/** What {@linkcode planSandbox} reads besides the entry. */
export interface PlanOptions {
  /** The configuration in force (its path, its bridge settings). */
  config?: SandboxConfig;
  host?: SandboxHost;
}

function emptyPolicy(): Policy {
  return { read: [], write: [], net: [], run: [], sys: [], env: [] };
}

const UNCONFINED = "everything the bridge's user may do";

/** How `entry`'s server is to run; never throws (a setting it cannot honour is its `problem`). */
export async function planSandbox(entry: ServerEntry, o: PlanOptions = {}): Promise<SandboxPlan> {
  const host = o.host ?? defaultHost();
  const server = entry.name;
  const base: SandboxPlan = {
    server,
    confinement: "none",
    allows: UNCONFINED,
    policy: emptyPolicy(),
    env: {},
    dirs: [],
    settingsPath: settingsPath(o.config),
  };
  if (entry.transport !== "stdio") {
    return { ...base, confinement: "remote", allows: "runs elsewhere; reached over HTTP" };
  }
  const fallback = host.env[SANDBOX_VARIABLE];
  const setting = sandboxSetting(o.config, server, fallback);
  const key = `servers.${server}.sandbox`;
  if (setting === "none") {
    const why = sandboxSetting(o.config, server) === "none"
      ? `${key} is "none"`
      : `${SANDBOX_VARIABLE}=${fallback} and ${key} is not set`;
    return { ...base, note: `runs unconfined: ${why}` };
  }
  const rules: SandboxRules = typeof setting === "string" ? {} : setting;
  const mode = typeof setting === "string" ? setting : setting.mode ?? "auto";
  const command = entry.command ?? "";
  const cwd = entry.cwd ?? host.cwd;
  const home = host.env["HOME"] ?? host.env["USERPROFILE"];

  const target = denoTarget(command, entry.args, cwd);
  const [deno, bwrap] = await Promise.all([host.deno(), host.bwrap()]);
  const denoUsable = target.ok && deno.ok;
  const useDeno = mode === "deno" || (mode === "auto" && denoUsable);
  if (useDeno && !denoUsable) {
    const why = target.ok ? (deno.ok ? "" : deno.why) : target.why;
    return {
      ...base,
      confinement: "deno",
      allows: "nothing: it is not started",
      problem: `${key} is "deno", but it cannot run under Deno: ${why}. Set it to "os" or ` +
        `"none" in ${base.settingsPath}.`,
    };
  }
  if (!useDeno && !bwrap.ok) {
    if (mode === "os") {
      return {
        ...base,
        confinement: "bwrap",
        allows: "nothing: it is not started",
        problem: `${key} is "os", but there is no operating-system sandbox here: ${bwrap.why}. ` +
          `Install it, or set ${key} to "auto" or "none" in ${base.settingsPath}.`,
      };
    }
    const denoWhy = target.ok ? (deno.ok ? "" : deno.why) : target.why;
    return { ...base, note: `runs unconfined: ${denoWhy}, and ${bwrap.why}` };
  }

  // What it may do: derived defaults, its own scoped deno flags, the user's additions.
  const derived = derive(target.ok ? target.target : undefined, {
    server,
    args: target.ok ? target.target.args : entry.args,
    env: entry.env,
    cwd,
    home,
    dataDir: serverDataDir(server, host),
  });
  let policy = merge(emptyPolicy(), derived.grants);
  if (target.ok && useDeno) policy = merge(policy, target.target.grants);
  policy = merge(policy, {
    read: userPaths(rules.read, cwd, home),
    write: userPaths(rules.write, cwd, home),
    net: rules.net,
    run: rules.run,
    sys: rules.sys,
    env: rules.env,
  });
  policy = {
    ...policy,
    read: await withRealPaths(policy.read, host),
    write: await withRealPaths(policy.write, host),
  };
  const commas = [policy.read, policy.write].flatMap((l) => (l === true ? [] : l))
    .filter((p) => p.includes(","));
  if (useDeno && commas.length > 0) {
    return {
      ...base,
      confinement: "deno",
      allows: "nothing: it is not started",
      problem: `Deno's permission flags cannot name a path with a comma (${
        listNames(commas, 3)
      }). Rename it, or set ${key} to "os" or "none" in ${base.settingsPath}.`,
    };
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(derived.env ?? {})) {
    if (entry.env[name] === undefined) env[name] = value;
  }
  Object.assign(env, pick(host.env, policy.env));
  const plan: SandboxPlan = {
    ...base,
    policy,
    env,
    dirs: derived.dirs ?? [],
    confinement: useDeno ? (bwrap.ok ? "deno+bwrap" : "deno") : "bwrap",
  };
  if (useDeno && target.ok && deno.ok) plan.deno = { path: deno.path, target: target.target };
  if (bwrap.ok) plan.bwrap = await layout(plan, { command, args: entry.args, cwd, home, host });
  plan.allows = allowsText(plan);
  if (useDeno && !bwrap.ok) {
    plan.note = `Deno's checks alone compare paths as written, so a symlink inside an allowed ` +
      `directory is followed (${bwrap.why})`;
  } else if (!useDeno) {
    plan.note = `${target.ok ? "" : `${target.why}; `}inside bubblewrap alone, a refused ` +
      "operation fails as if the file or network did not exist";
  }
  return plan;
}

function derive(target: DenoTarget | undefined, input: DeriveInput): Derived {
  const known = target?.packageName === undefined ? undefined : KNOWN_SERVERS[target.packageName];
  // A server Deno cannot run, or an unknown one, gets no defaults.
  return known === undefined ? { grants: {} } : known(input);
}

/** What is visible inside bubblewrap: the system, deno and its cache, the allowed paths. */
async function layout(
  plan: SandboxPlan,
  o: { command: string; args: string[]; cwd: string; home?: string; host: SandboxHost },
): Promise<BwrapLayout> {
  const { policy, deno } = plan;
  const readOnly: string[] = [];
  const readWrite: string[] = [];
  const host = o.host;
  const addProgram = async (path: string | undefined) => {
    if (path === undefined) return;
    readOnly.push(dirname(path));
    const real = await host.realPath(path);
    if (real !== undefined) readOnly.push(dirname(real));
    // A launcher installed under a dot directory of the home (~/.pyenv/shims/python3,
    // ~/.deno/bin/deno) needs the rest of that directory.
    const home = o.home;
    if (home === undefined) return;
    for (const p of [path, real]) {
      if (p === undefined || !isWithin(p, home) || p === home) continue;
      const top = p.slice(home.length).split("/").find((part) => part !== "");
      if (top?.startsWith(".")) readOnly.push(join(home, top));
    }
  };
  if (deno !== undefined) {
    await addProgram(deno.path);
    const cache = await host.denoDir();
    if (cache !== undefined) readOnly.push(cache);
    const cert = host.env["DENO_CERT"];
    if (cert !== undefined) readOnly.push(cert);
    // A local script's own project (its imports, deno.json, package.json, node_modules).
    const module = deno.target.module;
    if (!/^[a-z]+:/i.test(module) || module.startsWith("file:")) {
      readOnly.push(await projectDir(module.replace(/^file:\/\//, ""), host));
    }
    for (const path of configPaths(deno.target.flags, o.cwd)) readOnly.push(path);
  } else {
    await addProgram(await host.which(o.command));
    readOnly.push(...await argumentPaths(o.args, o.cwd, host));
  }
  if (policy.run !== true) {
    for (const command of policy.run) await addProgram(await host.which(command));
  }
  if (policy.read === true) readOnly.push("/");
  else readOnly.push(...policy.read);
  if (policy.write === true) readWrite.push("/");
  else readWrite.push(...policy.write);
  return {
    system: await host.systemMounts(),
    readOnly: readOnly.filter((p) => isAbsolute(p)),
    readWrite,
    network: policy.net === true || policy.net.length > 0,
    home: o.home,
    cwd: o.cwd,
  };
}

/** The files a `--config`/`--import-map`/`--lock`/`--env-file` flag names, absolute. */
function configPaths(flags: string[], cwd: string): string[] {
  const paths: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i]!;
    const [name, inline] = flag.includes("=")
      ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)]
      : [flag, undefined];
    if (["-c", "--config", "--import-map", "--lock", "--env-file"].includes(name)) {
      const value = inline ?? flags[i + 1];
      if (value !== undefined && !value.startsWith("-") && !/^https?:/.test(value)) {
        paths.push(dirname(resolve(cwd, value)));
      }
    }
  }
  return paths;
}

/**
 * What a program's arguments name that exists, to be visible read-only inside bubblewrap: a
 * file's project (`python3 /srv/server.py`, `--config=/srv/x.toml`), a directory itself.
 */
async function argumentPaths(args: string[], cwd: string, host: SandboxHost): Promise<string[]> {
  const paths: string[] = [];
  for (const arg of args) {
    const value = arg.startsWith("-") ? arg.slice(arg.indexOf("=") + 1) : arg;
    if (value === arg && arg.startsWith("-")) continue;
    if (!value.startsWith("/") && !value.startsWith("./") && !value.startsWith("../")) continue;
    const path = resolve(cwd, value);
    if (await host.realPath(path) === undefined) continue;
    const info = await Deno.stat(path).catch(() => undefined);
    paths.push(info?.isDirectory ? path : await projectDir(path, host));
  }
  return paths;
}

/** The nearest directory from `script` up with a deno.json(c) or package.json, else its own. */
async function projectDir(script: string, host: SandboxHost): Promise<string> {
  const start = dirname(script);
  for (let dir = start;;) {
    for (const name of ["deno.json", "deno.jsonc", "package.json"]) {
      if (await host.realPath(join(dir, name)) !== undefined) return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) return start;
    dir = parent;
  }
}

function listText(list: string[] | true, all: string, none: string, some: string): string {
  if (list === true) return all;
  return list.length === 0 ? none : `${some} ${listNames(list, 4)}`;
}

/** "read+write /data; no network; no commands" */
function allowsText(plan: SandboxPlan): string {
  const p = plan.policy;
  const parts: string[] = [];
  const writes = p.write === true ? undefined : p.write;
  const reads = p.read === true ? undefined : p.read.filter((r) => !(writes ?? []).includes(r));
  if (p.write === true) parts.push("read+write anywhere");
  else if (p.read === true) parts.push("read anywhere");
  if (writes !== undefined && writes.length > 0) {
    parts.push(`read+write ${listNames(writes, 4)}`);
  }
  if (reads !== undefined && reads.length > 0 && p.write !== true) {
    parts.push(`read ${listNames(reads, 4)}`);
  }
  const bwrapOnly = plan.confinement === "bwrap";
  if (bwrapOnly) parts.unshift("read the system directories and its own program");
  else if (parts.length === 0) parts.push("no files");
  parts.push(
    bwrapOnly && p.net !== true && p.net.length > 0
      ? "any network (bubblewrap cannot limit hosts)"
      : listText(p.net, "any network", "no network", "network to"),
  );
  parts.push(listText(p.run, "any command", "no commands", "commands"));
  if (p.sys !== true && p.sys.length > 0) parts.push(`system information ${p.sys.join(", ")}`);
  else if (p.sys === true) parts.push("system information");
  if (p.env.length > 0) parts.push(`bridge variables ${p.env.join(", ")}`);
  return parts.join("; ");
}

// -- status ---------------------------------------------------------------------------------------

/** A server's confinement as listings show it. */
export interface SandboxStatus {
  confinement: Confinement;
  /** What it may do. */
  allows: string;
  /** Why this confinement, what it does not stop, or why the server will not start. */
  note?: string;
}

/** {@linkcode planSandbox}, as listings show it. */
export async function sandboxStatus(
  entry: ServerEntry,
  o: PlanOptions = {},
): Promise<SandboxStatus> {
  const plan = await planSandbox(entry, o);
  const note = plan.problem ?? plan.note;
  return {
    confinement: plan.confinement,
    allows: plan.allows,
    ...(note === undefined ? {} : { note }),
  };
}

// -- starting a server ----------------------------------------------------------------------------

/** The permission flags of a policy for `deno run`. */
export function denoPermissionFlags(policy: Policy): string[] {
  const flags = ["--no-prompt", "--allow-env"];
  const list = (flag: string, value: string[] | true) => {
    if (value === true) flags.push(flag);
    else if (value.length > 0) flags.push(`${flag}=${value.join(",")}`);
  };
  list("--allow-read", union(policy.read, policy.write));
  list("--allow-write", policy.write);
  list("--allow-net", policy.net);
  list("--allow-run", policy.run);
  list("--allow-sys", policy.sys);
  return flags;
}

/** What the pool starts for a stdio server, and what it does with the server's messages. */
export interface SandboxLaunch {
  plan: SandboxPlan;
  command: string;
  args: string[];
  env: Record<string, string>;
  /** The transport the client should use: tool results with Deno's refusals translated. */
  wrap(transport: Transport): Transport;
  /** A failed start, with what the sandbox has to do with it. */
  explain(error: unknown): unknown;
}

/** What {@linkcode sandboxLaunch} takes besides the entry. */
export interface LaunchOptions extends PlanOptions {
  /** The environment the pool gives the server (SDK defaults, the bridge's, the entry's). */
  env: Record<string, string>;
}

/**
 * The command that starts `entry`'s server in its sandbox. Creates the directories it is given
 * and, before a start inside bubblewrap (which has no network), has deno fetch what it runs.
 * Throws an McpServerError when the setting cannot be honoured or the fetch fails.
 */
export async function sandboxLaunch(
  entry: ServerEntry,
  o: LaunchOptions,
): Promise<SandboxLaunch> {
  const host = o.host ?? defaultHost();
  const plan = await planSandbox(entry, { ...o, host });
  const server = entry.name;
  if (plan.problem !== undefined) {
    throw new McpServerError(`Cannot start MCP server "${server}": ${plan.problem}`, {
      server,
      kind: "config",
    });
  }
  for (const dir of plan.dirs) {
    try {
      await host.mkdirp(dir);
    } catch (error) {
      throw new McpServerError(
        `Cannot start MCP server "${server}": its data directory ${dir} cannot be created ` +
          `(${error instanceof Error ? error.message : String(error)}).`,
        { server, kind: "spawn", cause: error },
      );
    }
  }
  const env = { ...(plan.deno === undefined ? {} : denoEnv(host.env)), ...o.env, ...plan.env };
  let command = entry.command ?? "";
  let args = entry.args;
  if (plan.deno !== undefined) {
    const { target, path } = plan.deno;
    command = target.command ?? path;
    args = [
      "run",
      ...denoPermissionFlags(plan.policy),
      ...target.flags,
      target.module,
      ...target.args,
    ];
    if (plan.bwrap !== undefined && !target.cachedOnly) {
      await precache(server, { command, target, host });
    }
  }
  if (plan.bwrap !== undefined) {
    const inside = (await host.which(command)) ?? command;
    args = [...bwrapArgs(plan.bwrap), "--", inside, ...args];
    command = "bwrap";
  }
  const context: DenialContext = { server, settingsPath: plan.settingsPath };
  return {
    plan,
    command,
    args,
    env,
    wrap: (transport) =>
      plan.deno === undefined ? transport : translatingTransport(transport, context),
    explain: (error) =>
      plan.confinement === "none" ? error : explainStartFailure(error, {
        ...context,
        confinement: plan.confinement,
        commandLine: [command, ...args],
      }),
  };
}

/** What this process had deno fetch already, per host (a restart needs no second fetch). */
const fetched = new WeakMap<SandboxHost, Set<string>>();

/** Has deno download what the server runs, outside the sandbox (no code runs), or throws. */
async function precache(
  server: string,
  o: { command: string; target: DenoTarget; host: SandboxHost },
): Promise<void> {
  const { target } = o;
  const args = ["cache", ...target.cacheFlags, target.module];
  const done = fetched.get(o.host) ?? new Set<string>();
  fetched.set(o.host, done);
  const key = JSON.stringify([o.command, args]);
  if (done.has(key)) return;
  let result: { code: number; stderr: string };
  try {
    result = await o.host.run(o.command, args);
  } catch (error) {
    result = { code: -1, stderr: error instanceof Error ? error.message : String(error) };
  }
  if (result.code === 0) {
    done.add(key);
    return;
  }
  const tail = result.stderr.trim().split("\n").slice(-5).join("\n  | ");
  throw new McpServerError(
    `Cannot start MCP server "${server}": deno could not fetch ${target.module} before ` +
      `starting it inside bubblewrap (which gives it no network):\n  | ${tail}\nCheck the ` +
      "package name and version and the network, then try again.",
    { server, kind: "spawn" },
  );
}
