/**
 * OAuth end to end: the real CLI (main.ts under the "bridge" permission set, as `deno task cli`
 * runs it) on a terminal, against the OAuth-protected fixture server. The CLI names the page to
 * open and waits; the test plays the user by fetching it; the command then goes on. Without the
 * right to write the tokens' directory the tokens stay in memory and the warning names the
 * install flag that allows it; with it (the install's flags plus --allow-write=DIR), they are
 * kept in a file only the user can read, and the next run needs no page.
 */
import { permissionFlags, readPermissionSet } from "../lib/launch.ts";
import { join } from "../lib/path.ts";
import { tokenFileOf } from "../lib/pool_oauth.ts";
import { shellWord } from "../lib/text.ts";
import { startOAuthFixture } from "./fixtures/pool_oauth_fixture.ts";
import { cachedRun, fileExists } from "./fixtures/pool_support.ts";
import { baseEnv, MAIN, REPO, terminal } from "./helpers.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

/** `tools secure` on a terminal with `permissions`; the test opens the page it names. */
async function toolsOnTerminal(o: {
  permissions: string[];
  config: string;
  configHome: string;
  expectPage: boolean;
}): Promise<string> {
  const argv = cachedRun(
    ["--no-prompt", "--quiet", MAIN, "--config", o.config, "tools", "secure"],
    o.permissions,
  );
  const command = [Deno.execPath(), ...argv].map(shellWord).join(" ");
  const term = terminal(command, { env: baseEnv({ XDG_CONFIG_HOME: o.configHome }), cwd: REPO });
  if (o.expectPage) {
    assert(await term.waitFor(/open (http:\/\/\S+) in a browser/), term.screen);
    const url = /open (http:\/\/\S+) in a browser/.exec(term.screen)?.[1] ?? "";
    const page = await fetch(url);
    const text = await page.text();
    assertEquals(page.status, 200, text);
  }
  assert(await term.waitFor(/echo/), term.screen);
  assertEquals(await term.close(), 0, term.screen);
  return term.screen;
}

Deno.test("the CLI on a terminal waits for the user to authorize the bridge, then goes on", async (t) => {
  const fixture = await startOAuthFixture();
  const dir = Deno.makeTempDirSync({ prefix: "oauth_cli_test_" });
  const config = join(dir, ".mcp.json");
  Deno.writeTextFileSync(
    config,
    JSON.stringify({ mcpServers: { secure: { type: "http", url: fixture.mcpUrl } } }),
  );
  const configHome = join(dir, "config");
  const oauthDir = join(configHome, "lmstudio-bridge", "oauth");
  const set = readPermissionSet(REPO);
  try {
    await t.step(
      "sandboxed as installed: tokens in memory, the warning names the flag",
      async () => {
        const screen = await toolsOnTerminal({
          permissions: ["-P=bridge"],
          config,
          configHome,
          expectPage: true,
        });
        assertStringIncludes(screen, "kept in memory only");
        assertStringIncludes(screen, `--allow-write=${oauthDir}`);
        assertStringIncludes(screen, "install");
        assert(!fileExists(tokenFileOf(oauthDir, "secure")));
      },
    );
    await t.step("allowed to write the directory: a file of mode 0600, reused", async () => {
      const permissions = permissionFlags(set, { run: [], net: [], write: [oauthDir] });
      await toolsOnTerminal({ permissions, config, configHome, expectPage: true });
      const file = tokenFileOf(oauthDir, "secure");
      assertEquals(((await Deno.stat(file)).mode ?? 0) & 0o777, 0o600);
      assertStringIncludes(await Deno.readTextFile(file), '"refresh_token"');
      const grants = fixture.counts.codeGrants;
      const screen = await toolsOnTerminal({ permissions, config, configHome, expectPage: false });
      assert(!screen.includes("in a browser"), screen);
      assertEquals(fixture.counts.codeGrants, grants);
    });
  } finally {
    await fixture.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
