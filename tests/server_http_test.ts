/**
 * `serve --http`: the parts that need no process (the listen address, the token rules, the Host
 * and Origin checks), one bridge in this process spoken to by SDK clients over HTTP, and
 * `main.ts serve --http` spawned under the bridge permission set with several real SDK clients at
 * once, a programmable fake LM Studio and the pool fixture server as the one downstream server.
 */
import { createApp } from "../lib/app.ts";
import { UsageError } from "../lib/args.ts";
import { createLogger } from "../lib/log.ts";
import { resolveSettings, SettingsError } from "../lib/settings.ts";
import { createServer } from "../lib/server.ts";
import { startHttpBridge } from "../lib/server_http.ts";
import {
  allowNetFlag,
  BRIDGE_NET,
  httpAccess,
  isLoopback,
  parseListenAddress,
  RequestGuard,
} from "../lib/server_http_access.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import type { RecordedRequest } from "./fakes/lmstudio.ts";
import {
  answer,
  CHAT,
  ProgrammableModel,
  taskOf,
  toolCalls,
  toolMessages,
} from "./fixtures/attack_model.ts";
import { pidsIn } from "./fixtures/attack_support.ts";
import { assertGone, fileExists, textOf, trustAllTools, waitFor } from "./fixtures/pool_support.ts";
import {
  connectHttp,
  fixtureEntry,
  type HttpServe,
  outputOf,
  runServe,
  spawnHttpServe,
} from "./fixtures/serve_http_support.ts";
import { REPO } from "./helpers.ts";
import { connectInMemory, quiet } from "./rigs.ts";

const TOKEN = "test-token-0123456789abcdef";

// -- no process ---------------------------------------------------------------------------------

Deno.test("listen addresses: PORT is loopback, HOST:PORT and [v6]:PORT as given, junk is misuse", () => {
  assertEquals(parseListenAddress("8765"), { hostname: "127.0.0.1", port: 8765 });
  assertEquals(parseListenAddress("0.0.0.0:80"), { hostname: "0.0.0.0", port: 80 });
  assertEquals(parseListenAddress("[::1]:9000"), { hostname: "::1", port: 9000 });
  assertEquals(parseListenAddress("localhost:0"), { hostname: "localhost", port: 0 });
  for (const bad of ["", "http://x:1", "host:", "1.2.3.4:70000", "::1:80", "a b:1"]) {
    const error = (() => {
      try {
        parseListenAddress(bad);
      } catch (e: unknown) {
        return e;
      }
    })();
    assert(error instanceof UsageError, `${bad} is refused`);
    assertEquals(error.command, "serve");
  }
  assert(isLoopback("127.0.0.1") && isLoopback("127.8.9.10") && isLoopback("::1"));
  assert(isLoopback("[::1]") && isLoopback("LOCALHOST"));
  assert(!isLoopback("0.0.0.0") && !isLoopback("192.168.1.2") && !isLoopback("::"));
});

Deno.test("the --allow-net flag a listen address needs repeats the bridge set's network list", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  assertEquals(config.permissions.bridge.net, [...BRIDGE_NET]);
  assertEquals(
    allowNetFlag({ hostname: "0.0.0.0", port: 8765 }),
    "--allow-net=127.0.0.1,localhost,[::1],0.0.0.0:8765",
  );
  assertEquals(
    allowNetFlag({ hostname: "::", port: 1 }),
    "--allow-net=127.0.0.1,localhost,[::1],[::]:1",
  );
});

Deno.test("a non-loopback address needs a token, from the environment or a file, long enough", async () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const refused = await assertRejects(
    () => httpAccess(["--http", "0.0.0.0:8765"], env({})),
    SettingsError,
  );
  assertStringIncludes(refused.message, "LMSTUDIO_BRIDGE_TOKEN");
  assertStringIncludes(refused.message, "--token-file");
  assertEquals(await httpAccess(["--http", "8765"], env({})), {
    listen: { hostname: "127.0.0.1", port: 8765 },
  });
  const fromEnv = await httpAccess(
    ["--http", "0.0.0.0:1"],
    env({ LMSTUDIO_BRIDGE_TOKEN: ` ${TOKEN}\n` }),
  );
  assertEquals(fromEnv.token, { value: TOKEN, source: "LMSTUDIO_BRIDGE_TOKEN" });
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/token`;
    await Deno.writeTextFile(file, `${TOKEN}x\n`);
    const fromFile = await httpAccess(
      ["--http", "0.0.0.0:1", "--token-file", file],
      env({ LMSTUDIO_BRIDGE_TOKEN: TOKEN }),
    );
    assertEquals(fromFile.token, { value: `${TOKEN}x`, source: `token file ${file}` });
    const missing = await assertRejects(
      () => httpAccess(["--http", "1", "--token-file", `${dir}/none`], env({})),
      SettingsError,
    );
    assertStringIncludes(missing.message, "does not exist");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const short = await assertRejects(
    () => httpAccess(["--http", "1"], env({ LMSTUDIO_BRIDGE_TOKEN: "short" })),
    SettingsError,
  );
  assertStringIncludes(short.message, "openssl rand -hex 32");
  await assertRejects(() => httpAccess(["--http", "1", "extra"], env({})), UsageError);
  await assertRejects(() => httpAccess(["--token-file", "x"], env({})), UsageError);
});

Deno.test("the guard: token first, then Host and Origin against DNS rebinding", () => {
  const request = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1:1/mcp", { headers });
  const local = new RequestGuard({ listen: { hostname: "127.0.0.1", port: 1 } });
  assertEquals(local.check(request({ host: "127.0.0.1:1" }), true), undefined);
  assertEquals(local.check(request({ host: "localhost:1" }), true), undefined);
  assertEquals(local.check(request({ host: "[::1]:1" }), true), undefined);
  assertEquals(local.check(request({ host: "evil.example:1" }), true)?.status, 403);
  assertEquals(local.check(request({}), true)?.status, 403);
  const origin = (value: string) =>
    local.check(request({ host: "127.0.0.1:1", origin: value }), true);
  assertEquals(origin("http://localhost:5173"), undefined);
  assertEquals(origin("http://evil.example")?.status, 403);
  assertEquals(origin("null")?.status, 403);
  assertEquals(origin("file://")?.status, 403);

  const locked = new RequestGuard({
    listen: { hostname: "127.0.0.1", port: 1 },
    token: { value: TOKEN, source: "test" },
  });
  assertEquals(locked.check(request({ host: "127.0.0.1:1" }), true)?.status, 401);
  assertEquals(
    locked.check(request({ host: "127.0.0.1:1", authorization: "Bearer wrong" }), true)?.status,
    401,
  );
  assertEquals(
    locked.check(request({ host: "127.0.0.1:1", authorization: `Bearer ${TOKEN}` }), true),
    undefined,
  );
  // /health on loopback: no token needed.
  assertEquals(locked.check(request({ host: "127.0.0.1:1" }), false), undefined);
  // Without the token, nothing else is looked at: a forged Host gets 401, not 403.
  assertEquals(locked.check(request({ host: "evil.example" }), true)?.status, 401);

  const remote = new RequestGuard({
    listen: { hostname: "0.0.0.0", port: 1 },
    token: { value: TOKEN, source: "test" },
  });
  assert(remote.remote);
  const auth = { authorization: `Bearer ${TOKEN}` };
  assertEquals(remote.check(request({ ...auth, host: "gpu-box.lan:1" }), true), undefined);
  assertEquals(
    remote.check(request({ ...auth, host: "gpu-box.lan:1", origin: "http://gpu-box.lan:1" }), true),
    undefined,
  );
  assertEquals(
    remote.check(request({ ...auth, host: "gpu-box.lan:1", origin: "https://evil.example" }), true)
      ?.status,
    403,
  );
});

// -- in this process ----------------------------------------------------------------------------

/** An App over `model`'s fake LM Studio and an empty config in a temp dir, and a bridge on it. */
async function inProcessBridge(model: ProgrammableModel, sessionIdleMs?: number) {
  const dir = await Deno.makeTempDir();
  const configPath = `${dir}/.mcp.json`;
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: {} }));
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: model.baseUrl, LMSTUDIO_RETRIES: "0" });
  const app = createApp(settings, { configPath, log: createLogger({ level: "silent" }) });
  const bridge = await startHttpBridge(app, {
    listen: { hostname: "127.0.0.1", port: 0 },
    sessionIdleMs,
  });
  return {
    app,
    bridge,
    async [Symbol.asyncDispose]() {
      await bridge.close("test over");
      await app.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("over HTTP the tools are those of stdio and fail the same way", async () => {
  await using model = await ProgrammableModel.start();
  await using rig = await inProcessBridge(model);
  await using http = await connectHttp(rig.bridge.url);
  const settings = resolveSettings({ LMSTUDIO_BASE_URL: model.baseUrl });
  await using memory = await connectInMemory(createServer(createApp(settings, { log: quiet })));
  const names = (tools: { name: string }[]) => tools.map((t) => t.name);
  assertEquals(
    names((await http.client.listTools()).tools),
    names((await memory.client.listTools()).tools),
  );
  model.play(() => answer("pong"));
  assertEquals(textOf(await http.call("chat_completion", { prompt: "ping" })), "pong");
  const bad = await http.call("chat_completion", { prompt: 42 });
  assertEquals(bad.isError, true);
  assertEquals(bad.isError, (await memory.call("chat_completion", { prompt: 42 })).isError);
});

Deno.test("a client that ends its session mid-request has the model request aborted", async () => {
  await using model = await ProgrammableModel.start();
  await using rig = await inProcessBridge(model);
  const arrived = Promise.withResolvers<void>();
  const abandoned = Promise.withResolvers<void>();
  model.play(() => {
    arrived.resolve();
    return new Response(new ReadableStream({ cancel: () => abandoned.resolve() }), {
      headers: { "content-type": "application/json" },
    });
  });
  const http = await connectHttp(rig.bridge.url);
  const call = http.call("chat_completion", { prompt: "never answered" });
  call.catch(() => {}); // it ends with the session
  await arrived.promise;
  assertEquals(rig.bridge.sessions(), 1);
  await http.transport.terminateSession(); // DELETE
  await abandoned.promise;
  await http.close();
  assertEquals(rig.bridge.sessions(), 0);
});

Deno.test("a session with nothing in flight and no open stream is closed after the idle time", async () => {
  await using model = await ProgrammableModel.start();
  await using rig = await inProcessBridge(model, 50);
  const http = await connectHttp(rig.bridge.url);
  assertEquals(rig.bridge.sessions(), 1);
  await http.close(); // no DELETE: the client just goes away
  await waitFor("the idle session to be closed", () => rig.bridge.sessions() === 0);
});

// -- main.ts serve --http -----------------------------------------------------------------------

/** A temp project whose .mcp.json has the pool fixture as `fixture`, counting its starts. */
async function fixtureProject() {
  const dir = await Deno.makeTempDir({ prefix: "serve_http_" });
  const starts = `${dir}/starts.txt`;
  await Deno.writeTextFile(
    `${dir}/.mcp.json`,
    JSON.stringify({ mcpServers: { fixture: fixtureEntry(["--starts", starts]) } }),
  );
  await trustAllTools(dir);
  return {
    dir,
    file: (name: string) => `${dir}/${name}`,
    /** The pids of every start of the fixture so far. */
    starts: () => pidsIn(starts),
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Loaded chat models m-0 ... m-(n-1), so each client's progress names its own. */
function models(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    id: `m-${i}`,
    type: "llm" as const,
    state: "loaded" as const,
    maxContextLength: 32768,
    loadedContextLength: 8192,
    toolUse: true,
  }));
}

async function stopped(serve: HttpServe): Promise<void> {
  const status = await serve.stop();
  assertEquals(status.code, 0, serve.stderr());
}

Deno.test("several HTTP clients at once get their own answers and progress from one downstream spawn", async () => {
  const n = 4;
  await using model = await ProgrammableModel.start({ models: models(n) });
  await using project = await fixtureProject();
  await using serve = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  model.play((req) => {
    const task = taskOf(req);
    const results = toolMessages(req);
    return results.length === 0
      ? toolCalls({ name: "echo", arguments: { text: `echo of ${task}` } })
      : answer(`answer to ${task}: ${results.at(-1)}`);
  });
  const before = await serve.health();
  assertEquals(before.status, 200);
  assertEquals(before.body.name, "lmstudio-bridge");
  assertEquals(typeof before.body.version, "string");
  assertEquals(typeof before.body.uptimeSeconds, "number");
  assertEquals((before.body.lmstudio as { ok: boolean }).ok, true);
  assertEquals(
    JSON.stringify(before.body.pool),
    JSON.stringify({
      config: `${project.dir}/.mcp.json`,
      servers: [{ name: "fixture", transport: "stdio", state: "not-started" }],
    }),
  );

  const clients = await Promise.all(
    Array.from({ length: n }, (_, i) => connectHttp(serve.url, { name: `client-${i}` })),
  );
  const progress: string[][] = clients.map(() => []);
  const results = await Promise.all(clients.map((c, i) =>
    c.call(
      "autonomous_with_mcp",
      { mcp_name: "fixture", task: `task ${i}`, model: `m-${i}` },
      (p) => progress[i]!.push(p.message ?? ""),
    )
  ));
  for (const [i, result] of results.entries()) {
    assertEquals(result.isError, undefined, textOf(result));
    assertStringIncludes(textOf(result), `answer to task ${i}: echo of task ${i}`);
    assertEquals((result.structuredContent as { model: string }).model, `m-${i}`);
    assert(progress[i]!.length > 0, `client ${i} got progress`);
    const named = progress[i]!.flatMap((m) => m.match(/\bm-\d+\b/g) ?? []);
    assert(named.length > 0, `client ${i}'s progress names its model: ${progress[i]}`);
    assertEquals(new Set(named), new Set([`m-${i}`]), `client ${i} saw only its own progress`);
  }
  const starts = await project.starts();
  assertEquals(starts.length, 1, `one downstream spawn for ${n} clients, got ${starts}`);

  const after = await serve.health();
  assertEquals(after.body.sessions, n);
  assertEquals(after.body.toolCallsInFlight, 0);
  const [server] = (after.body.pool as { servers: { state: string; pid?: number }[] }).servers;
  assertEquals(server?.state, "connected");
  for (const c of clients) await c.close();
  await stopped(serve);
  await assertGone(starts[0]!);
});

Deno.test("a client that disconnects mid-task has its task cancelled, downstream and at the model; the others go on", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  await using serve = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  const started = { a: project.file("a.started"), b: project.file("b.started") };
  const releaseB = project.file("b.release");
  const hanging = Promise.withResolvers<RecordedRequest>();
  const abandoned = Promise.withResolvers<void>();
  model.play((req) => {
    const task = taskOf(req);
    const results = toolMessages(req);
    if (task === "count") {
      return results.length === 0
        ? toolCalls({ name: "cancelled", arguments: {} })
        : answer(`cancelled calls: ${results.at(-1)}`);
    }
    if (task === "hang") {
      hanging.resolve(req);
      return new Response(new ReadableStream({ cancel: () => abandoned.resolve() }), {
        headers: { "content-type": "application/json" },
      });
    }
    if (results.length > 0) return answer(`${task} finished: ${results.at(-1)}`);
    return task === "a"
      ? toolCalls({ name: "slow", arguments: { ms: 600_000, started: started.a } })
      : toolCalls({ name: "slow", arguments: { ms: 1, started: started.b, release: releaseB } });
  });
  const a = await connectHttp(serve.url, { name: "a" });
  const b = await connectHttp(serve.url, { name: "b" });
  const callA = a.call("autonomous_with_mcp", { mcp_name: "fixture", task: "a" });
  callA.catch(() => {}); // its client goes away
  const callB = b.call("autonomous_with_mcp", { mcp_name: "fixture", task: "b" });
  await waitFor(
    "both downstream calls to start",
    () => fileExists(started.a) && fileExists(started.b),
    30_000,
  );
  assertEquals((await serve.health()).body.toolCallsInFlight, 2);

  await a.close(); // the connection goes, no DELETE, no notifications/cancelled
  await waitFor(
    "the bridge to cancel a's task",
    async () => (await serve.health()).body.toolCallsInFlight === 1,
    30_000,
  );
  await Deno.writeTextFile(releaseB, "");
  const resultB = await callB;
  assertStringIncludes(textOf(resultB), "b finished: done after 1 steps");

  // The fixture counts the slow calls it saw cancelled: a's, and not b's.
  await using counter = await connectHttp(serve.url, { name: "counter" });
  const counted = await counter.call("autonomous_with_mcp", { mcp_name: "fixture", task: "count" });
  assertStringIncludes(textOf(counted), "cancelled calls: 1");

  // Waiting for the model: the model request is aborted when the client goes.
  const c = await connectHttp(serve.url, { name: "c" });
  const callC = c.call("chat_completion", { prompt: "hang" });
  callC.catch(() => {});
  await hanging.promise;
  await c.close();
  await abandoned.promise;
  assertMatch(serve.stderr(), /cancelled tools\/call: the client disconnected/);
  assertEquals((await project.starts()).length, 1);
  assertEquals(model.fake.requestsTo(CHAT).length > 0, true);
  await stopped(serve);
});

Deno.test("a forged Origin or Host is refused before any session exists; a page of this machine is served", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  await using serve = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  const initialize = JSON.stringify({
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "raw", version: "1" },
    },
  });
  const post = (headers: Record<string, string>) =>
    fetch(serve.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...headers,
      },
      body: initialize,
    });
  const forged = await post({ origin: "http://evil.example" });
  assertEquals(forged.status, 403);
  assertStringIncludes(await forged.text(), "DNS rebinding");
  assertEquals((await serve.health()).body.sessions, 0);

  // A Host header naming another site (what a browser sends after DNS rebinding), over raw TCP.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: serve.port });
  const raw = `POST /mcp HTTP/1.1\r\nHost: evil.example:${serve.port}\r\n` +
    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
    `Content-Length: ${
      new TextEncoder().encode(initialize).length
    }\r\nConnection: close\r\n\r\n${initialize}`;
  await conn.write(new TextEncoder().encode(raw));
  const reply = await new Response(conn.readable).text();
  assertMatch(reply, /^HTTP\/1\.1 403/);
  assertEquals((await serve.health()).body.sessions, 0);

  const local = await post({ origin: "http://localhost:6274" });
  assertEquals(local.status, 200);
  await local.body?.cancel();
  assertEquals((await serve.health()).body.sessions, 1);
  await stopped(serve);
});

Deno.test("a token-protected bridge answers 401 without the token and serves a client that has it", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  await using serve = await spawnHttpServe({
    dir: project.dir,
    baseUrl: model.baseUrl,
    env: { LMSTUDIO_BRIDGE_TOKEN: TOKEN },
  });
  assertStringIncludes(serve.stderr(), "needs the bearer token (LMSTUDIO_BRIDGE_TOKEN)");
  assert(!serve.stderr().includes(TOKEN), "the token is never shown");
  for (const authorization of [undefined, "Bearer wrong-token-0123456789", `Basic ${TOKEN}`]) {
    const response = await fetch(serve.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(authorization === undefined ? {} : { authorization }),
      },
      body: "{}",
    });
    assertEquals(response.status, 401);
    assertEquals(response.headers.get("www-authenticate"), 'Bearer realm="lmstudio-bridge"');
    assertStringIncludes(await response.text(), "Authorization: Bearer");
  }
  await assertRejects(() => connectHttp(serve.url));
  await using client = await connectHttp(serve.url, { token: TOKEN });
  model.play(() => answer("pong"));
  assertEquals(textOf(await client.call("chat_completion", { prompt: "ping" })), "pong");
  // On loopback /health needs no token.
  assertEquals((await serve.health()).status, 200);
  await client.close();
  await stopped(serve);
});

Deno.test("beyond loopback: no token is misuse, the sandbox names its flag, and /health wants the token", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  const run = (args: string[], env: Record<string, string> = {}) =>
    runServe({ dir: project.dir, baseUrl: model.baseUrl, args, env });
  const noToken = await run(["--http", "0.0.0.0:0"]);
  assertEquals(noToken.code, 2);
  assertStringIncludes(noToken.stderr, "needs a bearer token: set LMSTUDIO_BRIDGE_TOKEN");
  const sandboxed = await run(["--http", "0.0.0.0:0"], { LMSTUDIO_BRIDGE_TOKEN: TOKEN });
  assertEquals(sandboxed.code, 1);
  assertStringIncludes(sandboxed.stderr, "--allow-net=127.0.0.1,localhost,[::1],0.0.0.0:0");
  assertEquals(noToken.stdout + sandboxed.stdout, "");

  const tokenFile = project.file("token");
  await Deno.writeTextFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  await using serve = await spawnHttpServe({
    dir: project.dir,
    baseUrl: model.baseUrl,
    args: ["--http", "0.0.0.0:0", "--token-file", tokenFile],
    allowNet: `--allow-net=${[...BRIDGE_NET, "0.0.0.0"].join(",")}`,
  });
  assertStringIncludes(
    serve.stderr(),
    "reachable from other machines; every request needs the bearer token",
  );
  const denied = await serve.health();
  assertEquals(denied.status, 401);
  assertEquals(Object.keys(denied.body), ["jsonrpc", "error", "id"]);
  const health = await serve.health(TOKEN);
  assertEquals(health.status, 200);
  assertEquals(health.body.auth, "bearer");
  await using client = await connectHttp(`${serve.origin}/mcp`, { token: TOKEN });
  assert((await client.client.listTools()).tools.length >= 18);
  await client.close();
  await stopped(serve);
});

Deno.test("a second bridge on the same port fails and says who holds it", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  await using first = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  const second = await runServe({
    dir: project.dir,
    baseUrl: model.baseUrl,
    args: ["--http", `127.0.0.1:${first.port}`],
  });
  assertEquals(second.code, 1);
  const stderr = second.stderr;
  assertStringIncludes(stderr, `127.0.0.1:${first.port}: the address is already in use`);
  assertStringIncludes(stderr, `by another lmstudio-bridge (version `);
  assertStringIncludes(stderr, `pid ${first.pid})`);
  assertEquals((await first.health()).status, 200, "the first one still serves");
  await stopped(first);
});

Deno.test("SIGTERM with a task in flight: the client is told why, the downstream server closes, exit 0", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  const serve = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  const started = project.file("started");
  model.play(() => toolCalls({ name: "slow", arguments: { ms: 600_000, started } }));
  const client = await connectHttp(serve.url);
  const call = client.call("autonomous_with_mcp", { mcp_name: "fixture", task: "forever" });
  const outcome = call.then(() => undefined, (error: unknown) => error);
  await waitFor("the downstream call to start", () => fileExists(started), 30_000);
  const [pid] = await project.starts();
  const status = await serve.stop("SIGTERM");
  const error = await outcome;
  assert(error instanceof Error, "the call fails");
  assertStringIncludes(error.message, "lmstudio-bridge is shutting down (SIGTERM)");
  assertEquals(status.code, 0, serve.stderr());
  await assertGone(pid!);
  await client.close();
});

Deno.test("the MCP Inspector (CLI mode, --transport http) lists and calls the tools", async (t) => {
  const version = "2.12.0";
  const npx = await new Deno.Command("npx", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
  if (!npx) {
    // deno-lint-ignore no-console
    console.log(
      `  skipped: npx is not on PATH, so @modelcontextprotocol/inspector@${version} cannot run`,
    );
    return;
  }
  await using model = await ProgrammableModel.start();
  await using project = await fixtureProject();
  await using serve = await spawnHttpServe({ dir: project.dir, baseUrl: model.baseUrl });
  const inspector = (method: string[]) =>
    outputOf(
      new Deno.Command("npx", {
        args: ["-y", `@modelcontextprotocol/inspector@${version}`, "--cli", serve.url]
          .concat(["--transport", "http", "--method", ...method]),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }),
    );
  const listed = await inspector(["tools/list"]);
  if (
    listed.code !== 0 &&
    /npm (ERR|error)|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|E404/.test(listed.stderr)
  ) {
    // deno-lint-ignore no-console
    console.log(
      `  skipped: npx could not fetch the inspector: ${listed.stderr.trim().split("\n").at(-1)}`,
    );
    await stopped(serve);
    return;
  }
  await t.step("tools/list", () => {
    assertEquals(listed.code, 0, listed.stderr);
    const names = (JSON.parse(listed.stdout) as { tools: { name: string }[] }).tools.map((x) =>
      x.name
    );
    for (
      const name of ["health_check", "chat_completion", "autonomous_with_mcp", "lms_server_status"]
    ) {
      assert(names.includes(name), `${name} in ${names}`);
    }
  });
  model.play(() => answer("pong from the inspector"));
  const called = await inspector([
    "tools/call",
    "--tool-name",
    "chat_completion",
    "--tool-arg",
    "prompt=ping",
  ]);
  await t.step("tools/call", () => {
    assertEquals(called.code, 0, called.stderr);
    assertStringIncludes(called.stdout, "pong from the inspector");
  });
  await stopped(serve);
});
