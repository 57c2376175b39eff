/**
 * OAuth for remote servers (lib/pool_oauth.ts) through a real pool, against the OAuth-protected
 * streamable HTTP fixture (tests/fixtures/pool_oauth_fixture.ts). The test plays the user: it
 * fetches the page the bridge names, which the fixture answers by redirecting to the bridge's
 * loopback listener.
 */
import { createLogger, type Logger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpServerError } from "../lib/pool_errors.ts";
import { defaultOAuthDir, tokenFileOf } from "../lib/pool_oauth.ts";
import type { McpPool } from "../lib/pool.ts";
import { type OAuthFixture, startOAuthFixture } from "./fixtures/pool_oauth_fixture.ts";
import { TempConfig } from "./fixtures/pool_config.ts";
import { textOf } from "./fixtures/pool_support.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";

/** A logger that keeps what it was told. */
function recording(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: "info", color: false, write: (line) => lines.push(line) });
  return { log, lines };
}

/** The page an error (or a log line) tells the user to open. */
function pageIn(text: string): string {
  const url = /open (http:\/\/\S+) in a browser/.exec(text)?.[1];
  assert(url !== undefined, `no page to open in: ${text}`);
  return url;
}

async function needsAuthorization(pool: McpPool): Promise<McpServerError> {
  const error = await assertRejects(() => pool.callTool("secure", "echo", { text: "hi" }));
  assert(error instanceof McpServerError, String(error));
  assertEquals(error.kind, "unauthorized");
  assertStringIncludes(error.message, "then retry");
  return error;
}

async function echo(pool: McpPool, text: string): Promise<string> {
  return textOf(await pool.callTool("secure", "echo", { text }));
}

interface Rig {
  fixture: OAuthFixture;
  cfg: TempConfig;
  dir: string;
  lines: string[];
  pool: McpPool;
  file: string;
}

async function withRig(body: (rig: Rig) => Promise<void>): Promise<void> {
  const fixture = await startOAuthFixture();
  const cfg = new TempConfig({ secure: { type: "http", url: fixture.mcpUrl } });
  const dir = join(cfg.dir, "oauth");
  const { log, lines } = recording();
  const pool = cfg.pool({ oauthDir: dir, log });
  try {
    await body({ fixture, cfg, dir, lines, pool, file: tokenFileOf(dir, "secure") });
  } finally {
    await pool.close();
    await fixture.close();
    cfg.remove();
  }
}

/** The user opens the page: the answer reaches the bridge, which says it is authorized. */
async function authorize(url: string): Promise<void> {
  const page = await fetch(url);
  const text = await page.text();
  assertEquals(page.status, 200, text);
  assertStringIncludes(text, "The bridge is authorized");
}

Deno.test("an OAuth server: the user is given the page, then the call works and the tokens are kept", async () => {
  await withRig(async ({ pool, file, fixture, lines }) => {
    const error = await needsAuthorization(pool);
    const url = pageIn(error.message);
    assertStringIncludes(error.message, `kept in ${file}`);
    // The same page is in the log (stderr), and the redirect goes to 127.0.0.1 only.
    assert(lines.some((l) => l.includes(url)), lines.join("\n"));
    assertMatch(
      new URL(url).searchParams.get("redirect_uri") ?? "",
      /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    );
    // A retry before the user answered names the same page instead of starting anew.
    assertEquals(pageIn((await needsAuthorization(pool)).message), url);
    await authorize(url);
    assertEquals(await echo(pool, "hello"), "hello");
    assertEquals([fixture.counts.registrations, fixture.counts.codeGrants], [1, 1]);
    const info = await Deno.stat(file);
    assertEquals((info.mode ?? 0) & 0o777, 0o600);
    const kept = JSON.parse(await Deno.readTextFile(file));
    assertEquals(kept.server, "secure");
    assertEquals(kept.resource, fixture.mcpUrl);
    assertMatch(kept.tokens.access_token, /^at-/);
    assertMatch(kept.tokens.refresh_token, /^rt-/);
    assertMatch(kept.client.client_id, /^client-/);
  });
});

Deno.test("kept tokens serve the next run without asking; deleting the file signs the bridge out", async () => {
  await withRig(async ({ pool, file, fixture, cfg, dir }) => {
    await authorize(pageIn((await needsAuthorization(pool)).message));
    assertEquals(await echo(pool, "one"), "one");
    const next = cfg.pool({ oauthDir: dir, log: createLogger({ level: "silent" }) });
    try {
      assertEquals(await echo(next, "two"), "two");
      assertEquals(fixture.counts.codeGrants, 1);
      await Deno.remove(file);
      // The live connection loses its token with the file: the next call asks again.
      const error = await needsAuthorization(next);
      pageIn(error.message);
    } finally {
      await next.close();
    }
  });
});

Deno.test("an expired access token is refreshed and the new tokens saved", async () => {
  await withRig(async ({ pool, file, fixture }) => {
    await authorize(pageIn((await needsAuthorization(pool)).message));
    assertEquals(await echo(pool, "before"), "before");
    const before = JSON.parse(await Deno.readTextFile(file)).tokens;
    fixture.expire();
    assertEquals(await echo(pool, "after"), "after");
    assertEquals([fixture.counts.refreshes, fixture.counts.codeGrants], [1, 1]);
    const after = JSON.parse(await Deno.readTextFile(file)).tokens;
    assertNotEquals(after.access_token, before.access_token);
    assertNotEquals(after.refresh_token, before.refresh_token);
  });
});

Deno.test("an answer with the wrong state is refused; the right one still works", async () => {
  await withRig(async ({ pool }) => {
    const url = pageIn((await needsAuthorization(pool)).message);
    const consent = await fetch(url, { redirect: "manual" });
    await consent.body?.cancel();
    const callback = new URL(consent.headers.get("location") ?? "");
    const forged = new URL(callback);
    forged.searchParams.set("state", "not-the-bridges");
    const refused = await fetch(forged);
    assertEquals(refused.status, 400);
    assertStringIncludes(await refused.text(), "not for the page the bridge asked you to open");
    await needsAuthorization(pool);
    const answered = await fetch(callback);
    assertEquals(answered.status, 200, await answered.text());
    assertEquals(await echo(pool, "ok"), "ok");
  });
});

Deno.test("the tokens' directory defaults to the user's config directory", () => {
  assertEquals(defaultOAuthDir({}, "/home/u"), "/home/u/.config/lmstudio-bridge/oauth");
  assertEquals(
    defaultOAuthDir({ XDG_CONFIG_HOME: "/cfg" }, "/home/u"),
    "/cfg/lmstudio-bridge/oauth",
  );
  assertEquals(tokenFileOf("/d", "web"), "/d/web.json");
  assertMatch(tokenFileOf("/d", "../a/b"), /^\/d\/__a_b-[0-9a-f]{8}\.json$/);
});

Deno.test("an entry with its own Authorization header keeps it: no OAuth", async () => {
  const fixture = await startOAuthFixture();
  const cfg = new TempConfig({
    secure: { type: "http", url: fixture.mcpUrl, headers: { Authorization: "Bearer fixed" } },
  });
  const pool = cfg.pool({ oauthDir: join(cfg.dir, "oauth") });
  try {
    const error = await assertRejects(() => pool.callTool("secure", "echo", { text: "hi" }));
    assert(error instanceof McpServerError, String(error));
    assertStringIncludes(error.message, "refused the connection with HTTP 401");
    assertEquals(fixture.counts.registrations, 0);
  } finally {
    await pool.close();
    await fixture.close();
    cfg.remove();
  }
});

Deno.test("a pool that waits for the user says so in the call's progress, then the call goes on", async () => {
  const fixture = await startOAuthFixture();
  const cfg = new TempConfig({ secure: { type: "http", url: fixture.mcpUrl } });
  const pool = cfg.pool({ oauthDir: join(cfg.dir, "oauth"), waitForAuthorization: true });
  let opened: Promise<void> | undefined;
  try {
    const result = await pool.callTool("secure", "echo", { text: "waited" }, {
      onProgress: (p) => {
        const message = p.message ?? "";
        if (opened !== undefined || !message.includes("waiting for you to authorize")) return;
        opened = authorize(/open (http:\/\/\S+):/.exec(message)?.[1] ?? "");
      },
    });
    assert(opened !== undefined, "no progress named the page");
    await opened;
    assertEquals(textOf(result), "waited");
  } finally {
    await pool.close();
    await fixture.close();
    cfg.remove();
  }
});
