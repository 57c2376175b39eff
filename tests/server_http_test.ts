/**
 * `serve --http`: the parts that need no process: the listen address, the token rules, the Host
 * and Origin checks.
 */
import { UsageError } from "../lib/args.ts";
import { SettingsError } from "../lib/settings.ts";
import {
  allowNetFlag,
  BRIDGE_NET,
  httpAccess,
  isLoopback,
  parseListenAddress,
  RequestGuard,
} from "../lib/server_http_access.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { REPO } from "./helpers.ts";

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
