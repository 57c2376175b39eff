/**
 * What the sandbox costs: start-up (spawn + initialize + first call) and a warm call of
 * server-memory and server-filesystem, run plainly (`deno run -A npm:...`), under Deno's
 * permissions alone, and under Deno's permissions inside bubblewrap (which has deno fetch what
 * the server runs before its first start, since the sandbox has no network).
 */
import { join } from "../../lib/path.ts";
import { Client, getDefaultEnvironment } from "../../lib/sdk_client.ts";
import { StdioChildTransport } from "../../lib/pool_stdio.ts";
import { defaultHost, type SandboxHost, sandboxLaunch } from "../../lib/sandbox.ts";
import type { ServerEntry } from "../../lib/config_entry.ts";
import { fingerprintOf } from "../../lib/config_entry.ts";
import {
  check,
  denoChildEnv,
  killTree,
  REFERENCE_VERSION,
  releaseShared,
  Shared,
  textOf,
} from "./support.ts";

const dir = Deno.makeTempDirSync({ prefix: "sandbox_bench_" });
Deno.mkdirSync(join(dir, "files"));
Deno.writeTextFileSync(join(dir, "files", "a.txt"), "hello");
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const SERVERS = {
  memory: {
    args: ["-y", `@modelcontextprotocol/server-memory@${REFERENCE_VERSION}`],
    env: { MEMORY_FILE_PATH: join(dir, "memory.jsonl") },
    call: { name: "read_graph", arguments: {} },
  },
  filesystem: {
    args: [
      "-y",
      `@modelcontextprotocol/server-filesystem@${REFERENCE_VERSION}`,
      join(dir, "files"),
    ],
    env: {},
    call: { name: "read_text_file", arguments: { path: join(dir, "files", "a.txt") } },
  },
} as const;
type Server = keyof typeof SERVERS;
type Mode = "plain" | "deno" | "deno+bwrap";

/** This machine, with or without bubblewrap, with the product's default ("auto"). */
function makeHost(bwrap: boolean): SandboxHost {
  const real = defaultHost();
  const env = { ...real.env, LMSTUDIO_BRIDGE_SANDBOX: "auto" };
  return bwrap ? { ...real, env } : {
    ...real,
    env,
    bwrap: () => Promise.resolve({ ok: false, why: "left out by the benchmark" }),
  };
}

const HOSTS = { withBwrap: makeHost(true), withoutBwrap: makeHost(false) };

function entryOf(server: Server): ServerEntry {
  const { args, env } = SERVERS[server];
  const resolved = {
    transport: "stdio" as const,
    command: "npx",
    args: [...args],
    env: { ...denoChildEnv(), ...env },
    headers: {},
  };
  return {
    name: server,
    disabled: false,
    envNames: [],
    fingerprint: fingerprintOf(resolved),
    written: { command: resolved.command, args: resolved.args },
    secrets: [],
    ...resolved,
  };
}

/** The command line of `server` in `mode`: plainly, `deno run -A` of the same package. */
async function command(server: Server, mode: Mode) {
  const entry = entryOf(server);
  const env = { ...getDefaultEnvironment(), ...entry.env };
  if (mode === "plain") {
    const [, spec, ...rest] = entry.args;
    return {
      command: Deno.execPath(),
      args: ["run", "-A", "--no-config", "--no-lock", `npm:${spec}`, ...rest],
      env,
      wrap: <T>(t: T) => t,
    };
  }
  const host = mode === "deno+bwrap" ? HOSTS.withBwrap : HOSTS.withoutBwrap;
  const launch = await sandboxLaunch(entry, { env, host });
  check(launch.plan.confinement === mode, `${server} runs as ${launch.plan.confinement}`);
  return { command: launch.command, args: launch.args, env: launch.env, wrap: launch.wrap };
}

interface Running {
  client: Client;
  transport: StdioChildTransport;
}

async function start(server: Server, mode: Mode): Promise<Running> {
  const c = await command(server, mode);
  const transport = new StdioChildTransport({ command: c.command, args: c.args, env: c.env });
  const client = new Client({ name: "sandbox-bench", version: "1" }, { capabilities: {} });
  await client.connect(c.wrap(transport));
  return { client, transport };
}

async function callOnce(server: Server, running: Running): Promise<void> {
  const result = await running.client.callTool(SERVERS[server].call);
  check(result.isError !== true, `${server}: ${textOf({ content: result.content as unknown[] })}`);
}

for (const server of ["memory", "filesystem"] as const) {
  for (const mode of ["plain", "deno", "deno+bwrap"] as const) {
    const warm = new Shared(async () => {
      const running = await start(server, mode);
      await callOnce(server, running);
      return {
        value: running,
        close: () => running.client.close(),
        abandon: () => running.transport.pid !== undefined && killTree(running.transport.pid),
      };
    });
    Deno.bench({
      name: `${mode}: warm call`,
      group: `sandbox: ${server}, warm call`,
      baseline: mode === "plain",
      async fn(b) {
        const running = await warm.get();
        b.start();
        await callOnce(server, running);
        b.end();
      },
    });
    Deno.bench({
      name: `${mode}: start-up (spawn + initialize + first call)`,
      group: `sandbox: ${server}, start-up`,
      baseline: mode === "plain",
      n: 5,
      warmup: 1,
      async fn(b) {
        await releaseShared();
        b.start();
        const running = await start(server, mode);
        await callOnce(server, running);
        b.end();
        await running.client.close();
      },
    });
  }
}
