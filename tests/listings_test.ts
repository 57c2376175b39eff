/**
 * Listings and messages that must not mislead: what `mcps` counts as usable, `models --json`'s
 * unknown fields, notes joined into one line, the model analyze_image suggests, an entry with a
 * command of the wrong type, and get_current_model on a server that cannot tell.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedRun, denoChildEnv } from "./fixtures/pool_support.ts";
import { baseEnv, REPO, runCli } from "./helpers.ts";
import { connectInMemory, quiet, resultText } from "./rigs.ts";
import { createApp } from "../lib/app.ts";
import { parseConfigText } from "../lib/config.ts";
import { join } from "../lib/path.ts";
import { createServer } from "../lib/server.ts";
import { resolveSettings } from "../lib/settings.ts";

const FIXTURE = `${REPO}/tests/fixtures/agent_server.ts`;
const fixtureEntry = () => ({
  command: "deno",
  args: cachedRun([FIXTURE]),
  env: { ...denoChildEnv(), DENO_DIR: baseEnv().DENO_DIR ?? "" },
});

async function withProject(
  servers: Record<string, unknown>,
  fn: (dir: string, config: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "listings_test_" });
  try {
    const config = join(dir, ".mcp.json");
    await Deno.writeTextFile(config, JSON.stringify({ mcpServers: servers }));
    await fn(dir, config);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("mcps counts a server whose launcher is missing or refused by the sandbox as unusable", async () => {
  await withProject({
    good: fixtureEntry(),
    missing: { command: "nonexistent-launcher-xyz", args: [] },
    shell: { command: "sh", args: ["-c", "exit 0"] },
  }, async (dir, config) => {
    const r = await runCli(["--config", config, "mcps"], { env: { HOME: dir }, cwd: dir });
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "3 servers (1 usable):");
    assertStringIncludes(r.stdout, "cannot start: `nonexistent-launcher-xyz` is not installed");
    assertMatch(
      r.stdout,
      /cannot start: the sandbox does not allow running `sh`; allow it with: .*--allow-run=sh/,
    );
    const json = await runCli(["--config", config, "mcps", "--json"], {
      env: { HOME: dir },
      cwd: dir,
    });
    const servers = JSON.parse(json.stdout).servers as { name: string; usable: boolean }[];
    assertEquals(
      Object.fromEntries(servers.map((s) => [s.name, s.usable])),
      { good: true, missing: false, shell: false },
    );
  });
});

Deno.test("models --json has every key of every model, null when the server does not tell", async () => {
  await using fake = await FakeLmStudio.start({ flavor: "openai-only" });
  const home = await Deno.makeTempDir({ prefix: "listings_test_" });
  try {
    const r = await runCli(["models", "--json"], {
      env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home },
    });
    assertEquals(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    const keys = [
      "id",
      "type",
      "state",
      "maxContextLength",
      "loadedContextLength",
      "vision",
      "toolUse",
      "reasoning",
      "publisher",
      "arch",
      "quantization",
      "instanceIds",
    ];
    for (const model of doc.models) assertEquals(Object.keys(model), keys);
    assertEquals(doc.models[0].state, null);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a command of the wrong type gets one message, not a contradiction", () => {
  const servers = parseConfigText('{"mcpServers": {"bad": {"command": 42}}}', {
    path: "/x/.mcp.json",
    env: {},
  });
  const problem = servers[0]?.problem ?? "";
  assertStringIncludes(problem, '"command" must be string');
  assert(!problem.includes('neither "command"'), problem);
});

Deno.test("on a server without LM Studio's REST state", async (t) => {
  await using fake = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [
      { id: "llama3.2", type: "llm" },
      { id: "nomic-embed-text", type: "embeddings" },
    ],
  });
  await withProject({ fixture: fixtureEntry() }, async (_dir, config) => {
    const app = createApp(
      resolveSettings({ LMSTUDIO_BASE_URL: fake.baseUrl, LMSTUDIO_RETRIES: "0" }),
      { configPath: config, log: quiet },
    );
    try {
      await using connection = await connectInMemory(createServer(app));
      await t.step(
        "get_current_model says it cannot know, not that nothing is loaded",
        async () => {
          const text = resultText(await connection.call("get_current_model", {}));
          assertMatch(text, /^Which models are loaded is unknown: /);
          assert(!text.includes("No model is loaded"), text);
        },
      );
      await t.step("analyze_image never suggests an embedding model", async () => {
        const png = `${REPO}/tests/fixtures/images/red.png`;
        const result = await connection.call("analyze_image", { images: png, prompt: "colour?" });
        assertEquals(result.isError, true);
        const text = resultText(result);
        assertStringIncludes(text, "llama3.2");
        assert(!text.includes("nomic-embed-text"), text);
      });
      await t.step("the autonomous tools join notes into one clean line", async () => {
        fake.script("/v1/chat/completions", { body: chatReply({ content: "done" }) });
        const result = await connection.call("autonomous_with_mcp", {
          mcp_name: "fixture",
          task: "say done",
        });
        const text = resultText(result);
        assertStringIncludes(text, "Notes: ");
        assert(!text.includes(".;"), text);
      });
    } finally {
      await app.close();
    }
  });
});
