/**
 * Outside text (a server's stderr, tool descriptions and results, a model's answer) reaches the
 * terminal and MCP results without escape sequences or control characters.
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { NASTY } from "./fixtures/escape_server.ts";
import { cachedRun, denoChildEnv } from "./fixtures/pool_support.ts";
import { baseEnv, REPO, runCli } from "./helpers.ts";
import { connectInMemory, quiet, resultText } from "./rigs.ts";
import { createApp } from "../lib/app.ts";
import { createServer } from "../lib/server.ts";
import { resolveSettings } from "../lib/settings.ts";
import { safeText, safeValue } from "../lib/text.ts";

const FIXTURE = `${REPO}/tests/fixtures/escape_server.ts`;
/** The fixture's deno finds the test's cache even with HOME moved to a temp dir. */
const childEnv = { ...denoChildEnv(), DENO_DIR: baseEnv().DENO_DIR ?? "" };

/** Fails when `text` holds an ESC, BEL, CSI/OSC/ST C1 byte or a C0 control other than \n, \t. */
function assertSafe(text: string, where: string): void {
  // deno-lint-ignore no-control-regex
  const bad = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/.exec(text);
  assert(bad === null, `${where} holds ${JSON.stringify(bad?.[0])}:\n${JSON.stringify(text)}`);
}

Deno.test("safeText strips escape sequences and controls and keeps Unicode, \\n and \\t", () => {
  assertEquals(safeText(`héllo ✓ ${NASTY} end\tTab\nline2`), "héllo ✓ red end\tTab\nline2");
  assertEquals(safeText("a\x1b]52;c;unterminated clipboard"), "a");
  assertEquals(safeText("x\x1bcy\x1b(Bz\x1b7"), "xyz");
  assertEquals(safeText("日本語 emoji 🎉 and ü"), "日本語 emoji 🎉 and ü");
  assertEquals(safeText("a\r\nb\x7f"), "a\nb");
  // Every C1 introducer alone (8-bit CSI, OSC, DCS, ST) goes too.
  assertEquals(safeText("a\x9b31mb\x9d0;t\x07c\x90q\x9cd"), "abcd");
});

Deno.test("safeValue cleans every string and key, and returns what is clean as it is", () => {
  const clean = { a: [1, "x", { b: "y", c: null }], d: true };
  assert(safeValue(clean) === clean, "a clean value is not copied");
  const inner = { b: "y" };
  const dirty = { a: [1, `x${NASTY}`, inner], "k\x07": "v", d: 2 };
  const safe = safeValue(dirty) as { a: unknown[] };
  assertEquals(safe, { a: [1, "xred", { b: "y" }], k: "v", d: 2 });
  assert(safe !== dirty && safe.a !== dirty.a, "what changed is a copy");
  assert(safe.a[2] === inner, "a clean branch beside a dirty one is kept as it is");
  assertEquals(dirty.a[1], `x${NASTY}`, "the input is left as it was");
  assertEquals(safeValue(["a", "b\x00", "c"]), ["a", "b", "c"]);
  assertEquals(safeValue(new Date(0)), {}, "not a plain object: its own fields, as JSON sees them");
});

async function withConfig(fn: (dir: string, config: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "safe_text_" });
  try {
    const config = `${dir}/.mcp.json`;
    await Deno.writeTextFile(
      config,
      // By name: the permission set allows `deno`, not its absolute path.
      JSON.stringify({
        mcpServers: { nasty: { command: "deno", args: cachedRun([FIXTURE]), env: childEnv } },
      }),
    );
    await fn(dir, config);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tools, call and doctor print a server's escapes as plain text", async (t) => {
  await withConfig(async (dir, config) => {
    const env = { HOME: dir, LOG_LEVEL: "debug", LMSTUDIO_BASE_URL: "http://127.0.0.1:9" };
    await t.step("tools", async () => {
      const r = await runCli(["--config", config, "tools", "nasty"], { env, cwd: dir });
      assertEquals(r.code, 0, r.stderr);
      assertStringIncludes(r.stdout, "Shouts");
      assertSafe(r.stdout, "stdout");
      assertSafe(r.stderr, "stderr");
      assertStringIncludes(r.stderr, "starting"); // the server's stderr, logged at debug
    });
    await t.step("call", async () => {
      const r = await runCli(["--config", config, "call", "nasty", "shout"], { env, cwd: dir });
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "héllo ✓ red end\tTab\nline2\n");
      assertSafe(r.stderr, "stderr");
    });
    await t.step("call of a tool whose server dies", async () => {
      const r = await runCli(["--config", config, "call", "nasty", "crash"], { env, cwd: dir });
      assertEquals(r.code, 1);
      assertSafe(r.stdout, "stdout");
      assertSafe(r.stderr, "stderr");
    });
    await t.step("doctor", async () => {
      const r = await runCli(["--config", config, "doctor"], { env, cwd: dir });
      assertSafe(r.stdout, "stdout");
      assertSafe(r.stderr, "stderr");
      assertStringIncludes(r.stdout, "server nasty");
    });
  });
});

Deno.test("MCP results carry no escapes: a model's answer, a downstream server's report", async () => {
  await using fake = await FakeLmStudio.start();
  fake.script("/v1/chat/completions", { body: chatReply({ content: `answer ${NASTY}` }) });
  await withConfig(async (_dir, config) => {
    const app = createApp(
      resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" }),
      { configPath: config, log: quiet },
    );
    try {
      await using connection = await connectInMemory(createServer(app));
      const chat = await connection.call("chat_completion", { prompt: "hi" });
      assertEquals(resultText(chat), "answer red");
      assertSafe(JSON.stringify(chat), "chat_completion result");
      const report = await connection.call("list_available_mcps", {});
      assertSafe(JSON.stringify(report), "list_available_mcps result");
    } finally {
      await app.close();
    }
  });
});
