/**
 * The sandbox of each downstream server (lib/sandbox*.ts): how commands are rewritten for Deno,
 * what a server may do, how refusals read, and, with real processes, that server-filesystem and
 * a fixture that tries everything are held to what they are allowed, in and out of bubblewrap.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { join } from "../lib/path.ts";
import {
  defaultHost,
  denoPermissionFlags,
  planSandbox,
  type SandboxConfig,
  type SandboxHost,
  sandboxSetting,
  serverDataDir,
  settingsPath,
} from "../lib/sandbox.ts";
import { bwrapArgs, probeBwrap } from "../lib/sandbox_bwrap.ts";
import { denoTarget } from "../lib/sandbox_command.ts";
import { explainStartFailure, findDenials, translateDenials } from "../lib/sandbox_denial.ts";
import type { ServerEntry } from "../lib/config_entry.ts";
import { fingerprintOf } from "../lib/config_entry.ts";
import {
  cachedRun,
  denoChildEnv,
  processGone,
  processTree,
  REFERENCE_VERSION,
  textOf,
  waitFor,
} from "./fixtures/pool_support.ts";
import { BridgeConfigSource } from "./fixtures/sandbox_bridge.ts";
import { quiet } from "./rigs.ts";
import {
  answer,
  CHAT,
  ProgrammableModel,
  toolCalls,
  toolMessages,
} from "./fixtures/attack_model.ts";
import { type Project, resultText, startServe, tempProject } from "./fixtures/attack_support.ts";
import { baseEnv, runCli } from "./helpers.ts";
import type { BridgeSettings } from "../lib/config_bridge.ts";

const FIXTURE = new URL("./fixtures/sandbox_server.ts", import.meta.url).pathname;
const BRIDGE = new URL("./fixtures/sandbox_bridge.ts", import.meta.url).pathname;
const FILESYSTEM = `@modelcontextprotocol/server-filesystem@${REFERENCE_VERSION}`;
const MEMORY = `@modelcontextprotocol/server-memory@${REFERENCE_VERSION}`;

// -- pure parts -----------------------------------------------------------------------------------

function entry(command: string, args: string[], more: Partial<ServerEntry> = {}): ServerEntry {
  const resolved = {
    transport: "stdio" as const,
    command,
    args,
    env: {},
    headers: {},
    ...more,
  };
  return {
    name: "x",
    disabled: false,
    envNames: [],
    fingerprint: fingerprintOf(resolved),
    written: { command: resolved.command, args: resolved.args },
    secrets: [],
    ...resolved,
  };
}

Deno.test("commands Deno can run are rewritten for deno run; others say why not", () => {
  const npx = denoTarget("npx", ["-y", "@scope/pkg@1.2.3", "/data", "--flag"], "/w");
  assert(npx.ok);
  assertEquals(npx.target.module, "npm:@scope/pkg@1.2.3");
  assertEquals(npx.target.args, ["/data", "--flag"]);
  assertEquals(npx.target.packageName, "@scope/pkg");
  assertEquals(npx.target.flags, ["--no-config", "--no-lock"]);

  const bin = denoTarget("/usr/bin/npx", ["--yes", "-p", "pkg@latest", "pkg-cli", "a"], "/w");
  assert(bin.ok);
  assertEquals([bin.target.module, bin.target.args], ["npm:pkg@latest/pkg-cli", ["a"]]);

  const node = denoTarget("node", ["--no-warnings", "dist/index.js", "x"], "/srv/app");
  assert(node.ok);
  assertEquals(node.target.module, "/srv/app/dist/index.js");
  const nodePkg = denoTarget("node", ["/n/node_modules/@modelcontextprotocol/x/dist/i.js"], "/");
  assert(nodePkg.ok);
  assertEquals(nodePkg.target.packageName, "@modelcontextprotocol/x");

  const deno = denoTarget("deno", [
    "run",
    "-A",
    "--allow-read=/data,rel",
    "--allow-net",
    "--cached-only",
    "--config",
    "deno.json",
    "-P=x",
    "--deny-read=/data/private",
    "server.ts",
    "--port",
    "1",
  ], "/w");
  assert(deno.ok);
  assertEquals(deno.target.flags, [
    "--cached-only",
    "--config",
    "deno.json",
    "--deny-read=/data/private",
  ]);
  assertEquals(deno.target.cacheFlags, ["--config", "deno.json"]);
  assertEquals(deno.target.grants.read, ["/data", "/w/rel"]);
  assertEquals(deno.target.grants.net, [], "a blanket grant is dropped, not kept");
  assert(deno.target.cachedOnly);
  assertEquals([deno.target.module, deno.target.args], ["server.ts", ["--port", "1"]]);
  const npm = denoTarget("deno", ["run", "-A", `npm:${FILESYSTEM}`, "/d"], "/w");
  assert(npm.ok);
  assertEquals(npm.target.packageName, "@modelcontextprotocol/server-filesystem");

  const refused: [string, string[], RegExp][] = [
    ["npx", ["-y", "./local-dir"], /not a package name from the npm registry/],
    ["npx", ["-c", "echo hi"], /npx option -c has no Deno equivalent/],
    ["node", ["--inspect", "x.js"], /node option --inspect/],
    ["deno", ["task", "start"], /"deno task" is not "deno run"/],
    ["uvx", ["mcp-server-fetch"], /Python program, which Deno cannot run/],
    ["docker", ["run", "-i", "img"], /runs a container/],
    ["/opt/bin/my-server", [], /"my-server" is not a launcher/],
  ];
  for (const [command, args, why] of refused) {
    const result = denoTarget(command, args, "/w");
    assert(!result.ok, command);
    assertMatch(result.why, why);
  }
});

Deno.test("bubblewrap sees the system, the allowed paths (parents first) and no network", () => {
  const args = bwrapArgs({
    system: [{ path: "/usr", bind: true }, { path: "/lib", symlink: "usr/lib" }],
    readOnly: ["/home/u/.cache/deno", "/srv/data/ro"],
    readWrite: ["/srv/data", "/srv/data/ro2"],
    network: false,
    home: "/home/u",
    cwd: "/work/project",
  });
  const text = args.join(" ");
  assert(!text.includes("--share-net"));
  for (const part of ["--unshare-all", "--die-with-parent", "--cap-drop ALL", "--new-session"]) {
    assertStringIncludes(text, part);
  }
  assertStringIncludes(text, "--ro-bind /usr /usr --symlink usr/lib /lib");
  assertStringIncludes(text, "--tmpfs /home/u");
  const at = (s: string) => text.indexOf(s);
  assert(at("--tmpfs /home/u") < at("--ro-bind-try /home/u/.cache/deno"), text);
  assert(at("--bind-try /srv/data /srv/data") < at("--ro-bind-try /srv/data/ro "), text);
  assertStringIncludes(text, "--dir /work/project --chdir /work/project");
  const online = bwrapArgs({
    system: [],
    readOnly: [],
    readWrite: ["/w"],
    network: true,
    cwd: "/w",
  }).join(" ");
  assertStringIncludes(online, "--share-net");
  assertStringIncludes(online, "--ro-bind-try /etc/resolv.conf");
  assert(!online.includes("--dir /w"), "a bound working directory is not recreated");
});

Deno.test("bubblewrap's probe says why it cannot be used", async () => {
  const bin = await Deno.makeTempDir({ prefix: "sandbox_probe_" });
  try {
    assertMatch(
      (await probeBwrap({ os: "darwin" })).ok ? "" : "Linux only",
      /Linux only/,
    );
    const missing = await probeBwrap({ os: "linux", searchPath: bin });
    assert(!missing.ok);
    assertStringIncludes(missing.why, "apt-get install bubblewrap");
    await Deno.writeTextFile(join(bin, "bwrap"), "#!/bin/sh\n", { mode: 0o755 });
    const denied = await probeBwrap({ os: "linux", searchPath: bin, mayRun: () => false });
    assert(!denied.ok);
    assertStringIncludes(denied.why, '"bwrap" to the "run" list');
    const broken = await probeBwrap({
      os: "linux",
      searchPath: bin,
      mayRun: () => true,
      run: () =>
        Promise.resolve({ code: 1, stderr: "bwrap: No permissions to creating new namespace\n" }),
    });
    assert(!broken.ok);
    assertStringIncludes(broken.why, "cannot create a sandbox here: bwrap: No permissions");
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test("Deno's refusals become sentences that name the server and how to allow it", () => {
  const ctx = { server: "fs", settingsPath: "/p/lmstudio-bridge.json" };
  const text = 'Error: NotCapable: Requires read access to "/etc/secret", run again with the ' +
    "--allow-read flag";
  assertEquals(
    translateDenials(text, ctx),
    'Error: MCP server "fs" tried to read /etc/secret, which its sandbox does not allow; to ' +
      'allow it, add "read": ["/etc/secret"] to servers.fs.sandbox in /p/lmstudio-bridge.json',
  );
  assertStringIncludes(
    translateDenials(
      'Requires net access to "127.0.0.1:9", run again with the --allow-net flag',
      ctx,
    ),
    'tried to connect to 127.0.0.1:9, which its sandbox does not allow; to allow it, add "net": ["127.0.0.1:9"]',
  );
  assertStringIncludes(
    translateDenials('Requires run access to "ls", run again with the --allow-run flag', ctx),
    'tried to run ls, which its sandbox does not allow; to allow it, add "run": ["ls"]',
  );
  assertStringIncludes(
    translateDenials(
      'Requires import access to "esm.sh:443", run again with the --allow-import flag',
      ctx,
    ),
    "add --allow-import=esm.sh:443 to its deno arguments",
  );
  assertStringIncludes(
    translateDenials("Requires read access to <CWD>, run again with the --allow-read flag", ctx),
    'tried to read its working directory, which its sandbox does not allow; to allow it, add "read": true',
  );
  assertEquals(findDenials("nothing refused here"), []);
  assertEquals(
    findDenials('Requires write access to "/a" and Requires sys access to "hostname"'),
    [{ kind: "write", target: "/a" }, { kind: "sys", target: "hostname" }],
  );

  const failed = new McpServerError(
    'MCP server "fs" exited with code 1 before completing the MCP handshake.',
    {
      server: "fs",
      kind: "exited",
      exitCode: 1,
      stderrTail: [
        'error: Uncaught NotCapable: Requires read access to "/x", run again with the --allow-read flag',
      ],
    },
  );
  const explained = explainStartFailure(failed, {
    ...ctx,
    confinement: "deno+bwrap",
    commandLine: ["bwrap", "--unshare-all", "--", "/usr/bin/deno", "run", "x.ts"],
  });
  assert(explained instanceof McpServerError);
  assertEquals([explained.kind, explained.exitCode], ["exited", 1]);
  assertStringIncludes(
    explained.message,
    "runs under Deno's sandbox (deno+bwrap) and failed to start",
  );
  assertStringIncludes(explained.message, "It ran: /usr/bin/deno run x.ts (inside bubblewrap).");
  assertStringIncludes(explained.message, 'add "read": ["/x"] to servers.fs.sandbox');
  const plain = explainStartFailure(
    new McpServerError("boom", { server: "fs", kind: "connect_timeout" }),
    { ...ctx, confinement: "deno", commandLine: ["deno", "run", "x.ts"] },
  );
  assert(plain instanceof McpServerError);
  assertStringIncludes(
    plain.message,
    'set servers.fs.sandbox to "os" or "none" in /p/lmstudio-bridge.json to run it as before',
  );
  const other = new McpServerError("no such tool", { server: "fs", kind: "unknown_tool" });
  assertEquals(explainStartFailure(other, { ...ctx, confinement: "deno", commandLine: [] }), other);
});

/** The configuration in force, as the sandbox reads it, with these bridge settings. */
function withSettings(
  path: string | undefined,
  settings: BridgeSettings,
  bridgePath?: string,
): SandboxConfig {
  return { path, bridge: { path: bridgePath, searched: undefined, settings, warnings: [] } };
}

Deno.test("the sandbox setting comes from the bridge settings, else the environment's default", () => {
  const config = withSettings("/p/.mcp.json", {
    servers: { a: { sandbox: "os" }, b: { sandbox: { net: ["x.org"] } } },
  });
  assertEquals(sandboxSetting(config, "a"), "os");
  assertEquals(sandboxSetting(config, "b"), { net: ["x.org"] });
  assertEquals(sandboxSetting(config, "z", "NONE"), "none");
  assertEquals(sandboxSetting(config, "z", "bogus"), "auto");
  assertEquals(sandboxSetting(withSettings(undefined, {}), "z"), "auto");
  assertEquals(settingsPath(config), "/p/lmstudio-bridge.json");
  assertEquals(settingsPath(withSettings("/p/.mcp.json", {}, "/q/b.json")), "/q/b.json");
});

/** A machine with deno at /usr/bin/deno and bubblewrap as `bwrap` says. */
function fakeHost(o: { bwrap: boolean; env?: Record<string, string> }): SandboxHost {
  return {
    os: "linux",
    env: { HOME: "/home/u", PATH: "/usr/bin", ...o.env },
    cwd: "/work",
    deno: () => Promise.resolve({ ok: true, path: "/usr/bin/deno" }),
    denoDir: () => Promise.resolve("/home/u/.cache/deno"),
    bwrap: () =>
      Promise.resolve(
        o.bwrap ? { ok: true, path: "/usr/bin/bwrap" } : {
          ok: false,
          why: "bubblewrap is not installed (apt-get install bubblewrap)",
        },
      ),
    systemMounts: () => Promise.resolve([{ path: "/usr", bind: true }]),
    realPath: (path) => Promise.resolve(path === "/work/link" ? "/data/real" : undefined),
    which: (command) => Promise.resolve(command.startsWith("/") ? command : `/usr/bin/${command}`),
    mkdirp: () => Promise.resolve(),
    run: () => Promise.resolve({ code: 0, stderr: "" }),
  };
}

Deno.test("what each server may do: derived for reference servers, widened by the user", async () => {
  const host = fakeHost({ bwrap: true, env: { XDG_DATA_HOME: "/xdg", HTTPS_PROXY: "http://p" } });
  const fs = await planSandbox(
    { ...entry("npx", ["-y", FILESYSTEM, "/data", "link"]), name: "files" },
    { host, config: withSettings("/p/.mcp.json", {}) },
  );
  assertEquals(fs.confinement, "deno+bwrap");
  assertEquals(fs.policy.read, ["/data", "/work/link", "/data/real"]);
  assertEquals(fs.policy.write, ["/data", "/work/link", "/data/real"]);
  assertEquals(fs.allows, "read+write /data, /work/link, /data/real; no network; no commands");
  assertEquals(fs.note, undefined);
  assertEquals(denoPermissionFlags(fs.policy), [
    "--no-prompt",
    "--allow-env",
    "--allow-read=/data,/work/link,/data/real",
    "--allow-write=/data,/work/link,/data/real",
  ]);
  assert(fs.bwrap !== undefined && !fs.bwrap.network);
  assert(fs.bwrap.readOnly.includes("/home/u/.cache/deno"), "deno's cache is read-only");

  const memory = await planSandbox({ ...entry("npx", ["-y", MEMORY]), name: "my mem" }, { host });
  const dataDir = "/xdg/lmstudio-bridge/servers/my_mem";
  assertEquals(dataDir, serverDataDir("my mem", host));
  assertEquals(memory.env, { MEMORY_FILE_PATH: `${dataDir}/memory.jsonl` });
  assertEquals(memory.dirs, [dataDir]);
  assertEquals(memory.policy.write, [dataDir]);
  const ownFile = await planSandbox(
    entry("npx", ["-y", MEMORY], { env: { MEMORY_FILE_PATH: "/m/graph.jsonl" } }),
    { host },
  );
  assertEquals([ownFile.env, ownFile.policy.write], [{}, ["/m"]]);

  const widened = await planSandbox(entry("npx", ["-y", "some-server"]), {
    host,
    config: withSettings("/p/.mcp.json", {
      servers: {
        x: {
          sandbox: {
            read: ["~/notes", "rel"],
            net: ["api.example.com"],
            run: ["git"],
            env: ["HTTPS_PROXY"],
          },
        },
      },
    }),
  });
  assertEquals(widened.policy.read, ["/home/u/notes", "/work/rel"]);
  assertEquals(widened.env, { HTTPS_PROXY: "http://p" });
  assertEquals(
    widened.allows,
    "read /home/u/notes, /work/rel; network to api.example.com; commands git; bridge variables HTTPS_PROXY",
  );
  assert(widened.bwrap?.network === true);

  const remote = await planSandbox(
    { ...entry("", []), transport: "http", command: undefined, url: "http://h/mcp" },
    { host },
  );
  assertEquals(remote.confinement, "remote");
});

Deno.test("without bubblewrap a listing says what is weaker, or that a server runs unconfined", async () => {
  const host = fakeHost({ bwrap: false });
  const deno = await planSandbox(entry("npx", ["-y", FILESYSTEM, "/data"]), { host });
  assertEquals(deno.confinement, "deno");
  assertStringIncludes(deno.note ?? "", "a symlink inside an allowed directory is followed");
  assertStringIncludes(deno.note ?? "", "bubblewrap is not installed");
  const python = await planSandbox(entry("uvx", ["mcp-server-fetch"]), { host });
  assertEquals(python.confinement, "none");
  assertEquals(
    python.note,
    "runs unconfined: uvx starts a Python program, which Deno cannot run, and bubblewrap is " +
      "not installed (apt-get install bubblewrap)",
  );
  const config = withSettings("/p/.mcp.json", { servers: { x: { sandbox: "os" } } });
  const os = await planSandbox(entry("uvx", ["mcp-server-fetch"]), { host, config });
  assertEquals(os.confinement, "bwrap");
  assertStringIncludes(
    os.problem ?? "",
    'servers.x.sandbox is "os", but there is no operating-system sandbox here',
  );
  const forced = await planSandbox(entry("uvx", ["x"]), {
    host: fakeHost({ bwrap: true }),
    config: withSettings("/p/.mcp.json", { servers: { x: { sandbox: "deno" } } }),
  });
  assertStringIncludes(forced.problem ?? "", 'is "deno", but it cannot run under Deno: uvx starts');
  const off = await planSandbox(entry("npx", ["-y", "pkg"]), {
    host: fakeHost({ bwrap: true, env: { LMSTUDIO_BRIDGE_SANDBOX: "none" } }),
  });
  assertEquals(off.confinement, "none");
  assertEquals(
    off.note,
    "runs unconfined: LMSTUDIO_BRIDGE_SANDBOX=none and servers.x.sandbox is not set",
  );
  const bwrapOnly = await planSandbox(entry("uvx", ["x"]), { host: fakeHost({ bwrap: true }) });
  assertEquals(bwrapOnly.confinement, "bwrap");
  assertStringIncludes(bwrapOnly.allows, "read the system directories and its own program");
});

// -- real processes -------------------------------------------------------------------------------

/** bubblewrap works here, or the test fails saying why (it never skips). */
async function requireBwrap(): Promise<void> {
  const probe = await defaultHost().bwrap();
  if (!probe.ok) {
    throw new Error(
      `this test needs bubblewrap, which cannot be used here: ${probe.why}. .ci/run installs it.`,
    );
  }
}

interface Sandbox extends AsyncDisposable {
  dir: string;
  pool: McpPool;
  file(name: string): string;
}

/**
 * A temp directory with a .mcp.json of `servers` and the bridge settings `bridge(dir)` says, and
 * a pool on it.
 */
async function sandbox(
  servers: Record<string, unknown>,
  bridge: (dir: string) => Record<string, unknown> = () => ({}),
): Promise<Sandbox> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandbox_test_" }));
  const config = join(dir, ".mcp.json");
  await Deno.writeTextFile(config, JSON.stringify({ mcpServers: servers }));
  // Every server of the test gets the product's default unless the test says otherwise (the
  // rest of the suite runs unconfined: pool_support.ts).
  const settings = new Proxy(bridge(dir), {
    get: (target, name) => Reflect.get(target, name) ?? { sandbox: "auto" },
  });
  const pool = new McpPool({
    config: new BridgeConfigSource(config, { servers: settings }),
    log: quiet,
    idleMs: 0,
    connectTimeoutMs: 20_000,
  });
  return {
    dir,
    pool,
    file: (name) => join(dir, name),
    async [Symbol.asyncDispose]() {
      await pool.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The fixture server under `deno run` with no permission flags of its own, from the cache. */
function fixtureEntry(flags: string[] = []) {
  return {
    command: Deno.execPath(),
    args: cachedRun([FIXTURE, ...flags], []),
    env: denoChildEnv(),
  };
}

/** Secret, allowed and elsewhere directories, with symlinks from the allowed one out. */
async function layout(s: Sandbox) {
  const secret = s.file("secret/secret.txt");
  const allowed = s.file("allowed");
  await Deno.mkdir(s.file("secret"));
  await Deno.mkdir(allowed);
  await Deno.mkdir(s.file("elsewhere"));
  await Deno.writeTextFile(secret, "TOPSECRET");
  await Deno.writeTextFile(join(allowed, "inside.txt"), "hello inside");
  await Deno.symlink(secret, join(allowed, "link.txt"));
  await Deno.symlink(s.file("secret"), join(allowed, "dirlink"));
  return { secret, allowed };
}

Deno.test("a sandboxed server-filesystem reads inside its directory and nothing outside, not even through a symlink", async () => {
  await requireBwrap();
  await using s = await sandbox({});
  const { secret, allowed } = await layout(s);
  await Deno.writeTextFile(
    s.file(".mcp.json"),
    JSON.stringify({
      mcpServers: {
        fs: { command: "npx", args: ["-y", FILESYSTEM, allowed], env: denoChildEnv() },
      },
    }),
  );
  const read = async (path: string) => {
    const r = await s.pool.callTool("fs", "read_text_file", { path });
    return { text: textOf(r), isError: r.isError === true };
  };
  assertEquals(await read(join(allowed, "inside.txt")), { text: "hello inside", isError: false });
  for (const path of [secret, join(allowed, "link.txt"), join(allowed, "dirlink/secret.txt")]) {
    const r = await read(path);
    assert(r.isError, `${path}: ${r.text}`);
    assert(!r.text.includes("TOPSECRET"), `${path} leaked: ${r.text}`);
  }
  const write = await s.pool.callTool("fs", "write_file", {
    path: join(allowed, "new.txt"),
    content: "written",
  });
  assert(write.isError !== true, textOf(write));
  assertEquals(await Deno.readTextFile(join(allowed, "new.txt")), "written");
  const [status] = (await s.pool.status()).servers;
  assertEquals(status?.sandbox.confinement, "deno+bwrap");
  assertStringIncludes(status?.sandbox.allows ?? "", `read+write ${allowed}`);
  // What runs is deno inside bubblewrap, not npx.
  const tree = processTree(status?.pid ?? 0).map((pid) =>
    Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ")
  );
  assertMatch(tree[0] ?? "", /^(\S*\/)?bwrap /, `${status?.pid}: ${tree.join("\n")}`);
  assert(tree.some((cmd) => cmd.includes(`npm:${FILESYSTEM}`)), tree.join("\n"));
  assert(!tree.some((cmd) => /\bnpx\b/.test(cmd.split(" ")[0] ?? "")), tree.join("\n"));
});

Deno.test("a fixture that tries to read a secret, write outside, open a socket or run a command is refused, and the refusal reaches the caller as a tool result", async () => {
  await requireBwrap();
  await using s = await sandbox({ probe: fixtureEntry() }, (dir) => ({
    probe: { sandbox: { read: [join(dir, "allowed")], write: [join(dir, "allowed")] } },
  }));
  const { secret } = await layout(s);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  let accepted = false;
  listener.accept().then(() => accepted = true, () => {});
  const settings = s.file("lmstudio-bridge.json");
  const call = async (tool: string, args: Record<string, unknown>) => {
    const r = await s.pool.callTool("probe", tool, args);
    return { text: textOf(r), isError: r.isError === true };
  };
  const cases: [string, Record<string, unknown>, string][] = [
    [
      "read",
      { path: secret },
      `tried to read ${secret}, which its sandbox does not allow; to allow it, add "read": ["${secret}"] to servers.probe.sandbox in ${settings}`,
    ],
    [
      "write",
      { path: s.file("elsewhere/x.txt"), text: "x" },
      `tried to write ${
        s.file("elsewhere/x.txt")
      }, which its sandbox does not allow; to allow it, add "write": ["${
        s.file("elsewhere/x.txt")
      }"]`,
    ],
    [
      "connect",
      { port },
      `tried to connect to 127.0.0.1:${port}, which its sandbox does not allow; to allow it, add "net": ["127.0.0.1:${port}"]`,
    ],
    [
      "run",
      { command: "ls" },
      'tried to run ls, which its sandbox does not allow; to allow it, add "run": ["ls"]',
    ],
  ];
  for (const [tool, args, expected] of cases) {
    const r = await call(tool, args);
    assert(r.isError, `${tool}: ${r.text}`);
    assertStringIncludes(r.text, `MCP server "probe" ${expected}`);
  }
  assert(!accepted, "the sandboxed server reached the loopback port");
  assert(!(await exists(s.file("elsewhere/x.txt"))));
  const [status] = (await s.pool.status()).servers;
  assertEquals(status?.sandbox.confinement, "deno+bwrap");
});

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("inside bubblewrap a symlink out of an allowed directory leads nowhere, and widening the sandbox lets a path in", async () => {
  await requireBwrap();
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandbox_test_" }));
  const allowed = join(dir, "allowed");
  const secretDir = join(dir, "secret");
  try {
    await using s = await sandbox({ probe: fixtureEntry() }, () => ({
      probe: { sandbox: { read: [allowed], write: [join(allowed, "out")] } },
    }));
    await Deno.mkdir(secretDir);
    await Deno.mkdir(join(allowed, "out"), { recursive: true });
    await Deno.writeTextFile(join(secretDir, "secret.txt"), "TOPSECRET");
    await Deno.symlink(join(secretDir, "secret.txt"), join(allowed, "link.txt"));
    const viaLink = await s.pool.callTool("probe", "read", { path: join(allowed, "link.txt") });
    assert(viaLink.isError === true, textOf(viaLink));
    assert(!textOf(viaLink).includes("TOPSECRET"), textOf(viaLink));
    assertMatch(textOf(viaLink), /No such file or directory|NotFound/);
    const inside = await s.pool.callTool("probe", "write", {
      path: join(allowed, "out", "ok.txt"),
      text: "ok",
    });
    assert(inside.isError !== true, textOf(inside));
    assertEquals(await Deno.readTextFile(join(allowed, "out", "ok.txt")), "ok");
    const notWritable = await s.pool.callTool("probe", "write", {
      path: join(allowed, "no.txt"),
      text: "no",
    });
    assert(notWritable.isError === true, "read-only stays read-only");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await using wide = await sandbox({ probe: fixtureEntry() });
  await Deno.writeTextFile(wide.file("open.txt"), "open to it");
  await using widened = await sandbox({ probe: fixtureEntry() }, () => ({
    probe: { sandbox: { read: [wide.file("open.txt")] } },
  }));
  const r = await widened.pool.callTool("probe", "read", { path: wide.file("open.txt") });
  assertEquals(textOf(r), "open to it");
});

Deno.test("a server the sandbox stops at start-up says what it tried and how to allow it", async () => {
  await requireBwrap();
  const secret = await Deno.makeTempFile({ prefix: "sandbox_secret_" });
  try {
    await using s = await sandbox({ probe: fixtureEntry(["--read-at-start", secret]) });
    const error = await assertRejects(() => s.pool.listTools("probe"), McpServerError);
    assertEquals(error.kind, "exited");
    assertStringIncludes(
      error.message,
      'MCP server "probe" runs under Deno\'s sandbox (deno+bwrap) and failed to start',
    );
    assertStringIncludes(
      error.message,
      `tried to read ${secret}, which its sandbox does not allow; to allow it, add "read": ["${secret}"] to servers.probe.sandbox in ${
        s.file("lmstudio-bridge.json")
      }`,
    );
    assertStringIncludes(error.message, "It ran: ");
  } finally {
    await Deno.remove(secret);
  }
});

Deno.test('a server marked "os" runs inside bubblewrap alone: it sees only the system and what it is allowed', async () => {
  await requireBwrap();
  const hidden = await Deno.makeTempDir({ prefix: "sandbox_hidden_" });
  try {
    await Deno.writeTextFile(join(hidden, "secret.txt"), "TOPSECRET");
    // deno with every permission, as a native program would have: only the OS fence holds it.
    const native = { ...fixtureEntry(), args: cachedRun([FIXTURE]) };
    // Like a native program's own files, deno's cache is allowed by the user, not derived.
    const cache = await defaultHost().denoDir();
    assert(cache !== undefined);
    await using s = await sandbox({ native }, (dir) => ({
      native: { sandbox: { mode: "os", read: [cache], write: [join(dir, "out")] } },
    }));
    await Deno.mkdir(s.file("out"));
    const read = await s.pool.callTool("native", "read", { path: join(hidden, "secret.txt") });
    assert(read.isError === true && !textOf(read).includes("TOPSECRET"), textOf(read));
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const connect = await s.pool.callTool("native", "connect", { port: listener.addr.port });
    assert(connect.isError === true, `no network inside: ${textOf(connect)}`);
    const [status] = (await s.pool.status()).servers;
    assertEquals(status?.sandbox.confinement, "bwrap");
  } finally {
    await Deno.remove(hidden, { recursive: true });
  }
});

Deno.test("closing the pool ends a sandboxed server and everything it started, even a setsid grandchild", async () => {
  await requireBwrap();
  await using s = await sandbox({ probe: fixtureEntry() }, () => ({
    probe: { sandbox: { run: ["setsid", "sleep"] } },
  }));
  const r = await s.pool.callTool("probe", "spawn", { command: "setsid", args: ["sleep", "600"] });
  assert(r.isError !== true, textOf(r));
  const [status] = (await s.pool.status()).servers;
  const root = status?.pid ?? 0;
  await waitFor(
    "the grandchild",
    () =>
      processTree(root).some((pid) =>
        Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep")
      ),
  );
  const tree = processTree(root);
  await s.pool.close();
  await waitFor("every process of the sandbox to end", () => tree.every(processGone));
});

Deno.test("after a SIGKILL of the bridge, a sandboxed server and its grandchild are gone", async () => {
  await requireBwrap();
  const dir = await Deno.makeTempDir({ prefix: "sandbox_kill_" });
  try {
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(config, JSON.stringify({ mcpServers: { probe: fixtureEntry() } }));
    const bridge = { servers: { probe: { sandbox: { run: ["setsid", "sleep"] } } } };
    const child = new Deno.Command(Deno.execPath(), {
      args: cachedRun([
        BRIDGE,
        config,
        JSON.stringify(bridge),
        "probe",
        "spawn",
        JSON.stringify({ command: "setsid", args: ["sleep", "600"] }),
        "--hold",
      ]),
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value = "" } = await reader.read();
    const out = JSON.parse(value);
    assert(out.result !== undefined, value);
    await waitFor(
      "the grandchild",
      () =>
        processTree(Number(out.pid)).some((pid) =>
          Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep")
        ),
    );
    const all = processTree(Number(out.pid));
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    await waitFor("every process of the sandbox to end", () => all.every(processGone));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without bubblewrap, Deno's sandbox alone refuses what is not allowed and the listing says symlinks are followed", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandbox_nobwrap_" }));
  try {
    const allowed = join(dir, "allowed");
    await Deno.mkdir(allowed);
    await Deno.writeTextFile(join(dir, "secret.txt"), "TOPSECRET");
    await Deno.symlink(join(dir, "secret.txt"), join(allowed, "link.txt"));
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(config, JSON.stringify({ mcpServers: { probe: fixtureEntry() } }));
    const bridge = JSON.stringify({ servers: { probe: { sandbox: { read: [allowed] } } } });
    // A bridge whose own sandbox does not let it run bubblewrap.
    const run = async (tool: string, args: Record<string, unknown>) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: cachedRun(
          [BRIDGE, config, bridge, "probe", tool, JSON.stringify(args)],
          [`--allow-run=${Deno.execPath()}`, "--allow-read", "--allow-env"],
        ),
        stdout: "piped",
        stderr: "piped",
        env: denoChildEnv(),
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert(out.success, new TextDecoder().decode(out.stderr));
      return JSON.parse(text);
    };
    const denied = await run("read", { path: join(dir, "secret.txt") });
    assertEquals(denied.sandbox.confinement, "deno");
    assertStringIncludes(denied.sandbox.note, "a symlink inside an allowed directory is followed");
    assertStringIncludes(denied.sandbox.note, "does not allow running bwrap");
    assertStringIncludes(JSON.stringify(denied.result), "tried to read");
    // What the note warns of: Deno compares paths as written.
    const followed = await run("read", { path: join(allowed, "link.txt") });
    assertEquals(textOf(followed.result), "TOPSECRET");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server-memory keeps its graph in the file it is given and can write nothing else", async () => {
  await requireBwrap();
  await using s = await sandbox({});
  const file = s.file("mem/graph.jsonl");
  await Deno.mkdir(s.file("mem"));
  await Deno.writeTextFile(
    s.file(".mcp.json"),
    JSON.stringify({
      mcpServers: {
        memory: {
          command: "npx",
          args: ["-y", MEMORY],
          env: { ...denoChildEnv(), MEMORY_FILE_PATH: file },
        },
      },
    }),
  );
  const created = await s.pool.callTool("memory", "create_entities", {
    entities: [{ name: "sandbox", entityType: "test", observations: ["kept"] }],
  });
  assert(created.isError !== true, textOf(created));
  assertStringIncludes(await Deno.readTextFile(file), '"name":"sandbox"');
  const [status] = (await s.pool.status()).servers;
  assertEquals(status?.sandbox.allows, `read+write ${s.file("mem")}; no network; no commands`);
});

Deno.test('a server the settings mark "none" runs as before, and every listing says it is unconfined', async () => {
  const plain = { ...fixtureEntry(), args: cachedRun([FIXTURE]) };
  await using s = await sandbox({ plain }, () => ({ plain: { sandbox: "none" } }));
  const r = await s.pool.callTool("plain", "write", { path: s.file("free.txt"), text: "free" });
  assert(r.isError !== true, textOf(r));
  const [status] = (await s.pool.status()).servers;
  assertEquals(status?.sandbox, {
    confinement: "none",
    allows: "everything the bridge's user may do",
    note: 'runs unconfined: servers.plain.sandbox is "none"',
  });
});

// -- end to end -----------------------------------------------------------------------------------

/** The project of the end-to-end tests: allowed and secret directories and four servers. */
async function e2eProject(project: Project) {
  const allowed = project.file("allowed");
  const secret = project.file("secret/secret.txt");
  await Deno.mkdir(allowed);
  await Deno.mkdir(project.file("secret"));
  await Deno.writeTextFile(secret, "TOPSECRET");
  await Deno.writeTextFile(join(allowed, "inside.txt"), "hello inside");
  await Deno.symlink(secret, join(allowed, "link.txt"));
  const env = { DENO_DIR: baseEnv().DENO_DIR ?? "" };
  await project.write({
    fs: { command: "npx", args: ["-y", FILESYSTEM, allowed], env },
    memory: { command: "npx", args: ["-y", MEMORY], env },
    probe: { command: "deno", args: cachedRun([FIXTURE], []), env },
    remote: { type: "http", url: "http://127.0.0.1:9/mcp" },
  });
  return { allowed, secret };
}

/** The product's default for the bridges these tests start (the suite's default is "none"). */
const SANDBOXED = { LMSTUDIO_BRIDGE_SANDBOX: "auto" };

Deno.test("end to end through serve: listings name each server's confinement, and a model reading a secret is told its sandbox refused", async () => {
  await requireBwrap();
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const { allowed, secret } = await e2eProject(project);
  const data = project.file("data");
  await using serve = await startServe(project.dir, model.baseUrl, {
    ...SANDBOXED,
    XDG_DATA_HOME: data,
  });
  const listed = await serve.call("list_available_mcps");
  const text = resultText(listed);
  assertStringIncludes(text, `sandbox: deno+bwrap: read+write ${allowed}; no network; no commands`);
  assertStringIncludes(text, "sandbox: remote: runs elsewhere");
  const servers = (listed.structuredContent as { servers: { name: string; confinement: string }[] })
    .servers;
  assertEquals(servers.map((s) => [s.name, s.confinement]), [
    ["fs", "deno+bwrap"],
    ["memory", "deno+bwrap"],
    ["probe", "deno+bwrap"],
    ["remote", "remote"],
  ]);

  const ask = async (server: string, tool: string, args: Record<string, unknown>) => {
    model.sequence([toolCalls({ name: tool, arguments: args }), answer("done")]);
    const r = await serve.call("autonomous_with_mcp", {
      mcp_name: server,
      task: "go",
      max_rounds: 3,
    });
    assertEquals(resultText(r).startsWith("done"), true, resultText(r));
    return toolMessages(model.fake.requestsTo(CHAT).at(-1)).at(-1) ?? "";
  };
  const refused = await ask("probe", "read", { path: secret });
  assertStringIncludes(
    refused,
    `MCP server "probe" tried to read ${secret}, which its sandbox does not allow; to allow it, ` +
      `add "read": ["${secret}"] to servers.probe.sandbox in ${
        project.file("lmstudio-bridge.json")
      }`,
  );
  const viaLink = await ask("fs", "read_text_file", { path: join(allowed, "link.txt") });
  assert(!viaLink.includes("TOPSECRET"), viaLink);
  assertStringIncludes(
    await ask("fs", "read_text_file", { path: join(allowed, "inside.txt") }),
    "hello inside",
  );
  await ask("memory", "create_entities", {
    entities: [{ name: "e2e", entityType: "test", observations: ["kept"] }],
  });
  const memory = join(data, "lmstudio-bridge", "servers", "memory", "memory.jsonl");
  assertStringIncludes(await Deno.readTextFile(memory), '"name":"e2e"');
});

Deno.test("end to end through the CLI: run passes the refusal to the model, mcps --json and doctor show the confinement", async () => {
  await requireBwrap();
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const { secret } = await e2eProject(project);
  const env = {
    ...SANDBOXED,
    LMSTUDIO_BASE_URL: model.baseUrl,
    MCP_JSON_PATH: project.config,
    HOME: project.dir,
    XDG_DATA_HOME: project.file("data"),
  };
  model.sequence([
    toolCalls({ name: "read", arguments: { path: secret } }),
    answer("refused, as it should"),
  ]);
  const run = await runCli(["run", "--mcp", "probe", "read the secret"], { env, cwd: project.dir });
  assertEquals(run.code, 0, run.stderr);
  assertEquals(run.stdout, "refused, as it should\n");
  const told = toolMessages(model.fake.requestsTo(CHAT).at(-1)).at(-1) ?? "";
  assertStringIncludes(
    told,
    `MCP server "probe" tried to read ${secret}, which its sandbox does not allow`,
  );
  assert(!told.includes("TOPSECRET"));

  const mcps = await runCli(["mcps", "--json"], { env, cwd: project.dir });
  assertEquals(mcps.code, 0, mcps.stderr);
  const doc = JSON.parse(mcps.stdout) as {
    servers: { name: string; confinement: string; sandbox: { allows: string } }[];
  };
  assertEquals(doc.servers.map((s) => s.confinement), [
    "deno+bwrap",
    "deno+bwrap",
    "deno+bwrap",
    "remote",
  ]);
  assertStringIncludes(doc.servers[0]?.sandbox.allows ?? "", "no network");

  const doctor = await runCli(["doctor"], { env, cwd: project.dir });
  assertMatch(doctor.stdout, /ok +server fs +\d+ tools, connected in \d+ ms/);
  assertStringIncludes(doctor.stdout, "sandbox: deno+bwrap: read+write");
  // Unconfined, a server needs its own permissions, and doctor warns that it has them all.
  const plain = project.file("plain.json");
  const entry = {
    command: "deno",
    args: cachedRun([FIXTURE]),
    env: { DENO_DIR: baseEnv().DENO_DIR ?? "" },
  };
  await Deno.writeTextFile(plain, JSON.stringify({ mcpServers: { plain: entry } }));
  const unconfined = await runCli(["doctor"], {
    env: { ...env, LMSTUDIO_BRIDGE_SANDBOX: "none", MCP_JSON_PATH: plain },
    cwd: project.dir,
  });
  assertMatch(unconfined.stdout, /warn +server plain +\d+ tools/);
  assertStringIncludes(
    unconfined.stdout,
    "sandbox: none: everything the bridge's user may do (runs unconfined",
  );
});
