/**
 * The peer loops the bench compares the bridge with: the Vercel AI SDK with @ai-sdk/mcp, and the
 * OpenAI Agents SDK. They are benchmark-only: npm installs them, pinned, into a cache directory
 * the bench makes (`$XDG_CACHE_HOME/lmstudio-bridge/bench-peers/<pins>`, default
 * `~/.cache/...`), never into the project (not in deno.json, not in deno.lock). The install is
 * the one step of `deno task bench` that needs the network, once; `BENCH_PEERS=off` skips the
 * peers (their rows then say so).
 *
 * Each peer runs as a child process under Deno, like the bridge and the floor (the same runtime
 * for every row; `ai` 7 also needs Node 22+), from the cache directory with its node_modules
 * (`--node-modules-dir=manual`, no config, no lockfile).
 */
import { z } from "zod";
import { join } from "../../lib/path.ts";
import type { PeerJob, PeerReport } from "./peers/peer_support.ts";
import { ROOT } from "./support.ts";

/** The pinned peer packages (exact versions: a new release must not change the figures silently). */
export const PEER_PACKAGES: Readonly<Record<string, string>> = {
  "ai": "7.0.173",
  "@ai-sdk/mcp": "2.0.99",
  "@ai-sdk/openai-compatible": "3.0.92",
  "@openai/agents": "0.20.0",
  "openai": "7.59.0",
  "@modelcontextprotocol/sdk": "1.32.2",
  "zod": "4.6.7",
};

/** The peers: the label of their rows and their script in tests/bench/peers/. */
export const PEERS = [
  { label: "Vercel AI SDK + @ai-sdk/mcp", script: "vercel_ai.ts" },
  { label: "OpenAI Agents SDK", script: "openai_agents.ts" },
] as const;

/** Where the peers are installed, or why they are not. */
export type PeerInstall = { dir: string } | { unavailable: string };

function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  return xdg ? xdg : join(Deno.env.get("HOME") ?? "/tmp", ".cache");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

let installing: Promise<PeerInstall> | undefined;

/** Installs the peers once (npm, into the cache), or says why they cannot be. */
export function installPeers(log: (line: string) => void): Promise<PeerInstall> {
  return installing ??= install(log);
}

async function install(log: (line: string) => void): Promise<PeerInstall> {
  if (Deno.env.get("BENCH_PEERS") === "off") return { unavailable: "BENCH_PEERS=off" };
  const pins = Object.entries(PEER_PACKAGES).map(([name, v]) => `${name}@${v}`).join(",");
  const key = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pins))),
  ).slice(0, 6).map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = join(cacheRoot(), "lmstudio-bridge", "bench-peers", key);
  const done = join(dir, ".installed");
  if (await exists(done)) return { dir };
  log(`installing the peer loops (one time, needs the npm registry) into ${dir}`);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, "package.json"),
    JSON.stringify(
      { name: "lmstudio-bridge-bench-peers", private: true, dependencies: PEER_PACKAGES },
      null,
      2,
    ),
  );
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("npm", {
      args: ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error: unknown) {
    return { unavailable: `npm could not run (${error instanceof Error ? error.message : error})` };
  }
  if (!out.success) {
    const last = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" ");
    return { unavailable: `npm install failed: ${last}` };
  }
  await Deno.writeTextFile(done, `${pins}\n`);
  return { dir };
}

const Report = z.object({
  setupMs: z.number(),
  tasks: z.array(z.object({ rounds: z.number(), ms: z.number(), answer: z.string() })),
});

/** Runs one peer on `job` (without `modules`) and returns its report, or why it failed. */
export async function runPeerProcess(
  dir: string,
  script: string,
  job: Omit<PeerJob, "modules">,
  env: Record<string, string>,
): Promise<PeerReport | { failed: string }> {
  const full: PeerJob = { ...job, modules: dir };
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      "--no-config",
      "--no-lock",
      "--node-modules-dir=manual",
      join(ROOT, "tests", "bench", "peers", script),
      JSON.stringify(full),
    ],
    cwd: dir,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").slice(0, 3).join(" ");
    return { failed: `exited with ${out.code}: ${why}` };
  }
  let report: unknown;
  try {
    report = JSON.parse(stdout.split("\n").at(-1) ?? "");
  } catch {
    // Reported below with what was printed.
  }
  const parsed = Report.safeParse(report);
  return parsed.success ? parsed.data : { failed: `unreadable report: ${stdout.slice(0, 200)}` };
}
