/**
 * Several model servers (LMSTUDIO_ENDPOINTS) through the app's surfaces: the MCP tools in memory
 * (health_check, list_models, get_current_model, chat, an autonomous task) and the CLI end to end
 * under the "bridge" permission set (models, chat, run, doctor), against several fake LM Studios
 * at once; one of them in the "openai-only" flavour, as a LiteLLM proxy or vLLM router in front
 * of many GPUs answers.
 */
import { createApp } from "../lib/app.ts";
import { join } from "../lib/path.ts";
import { createServer } from "../lib/server.ts";
import { resolveSettings } from "../lib/settings.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedRun, denoChildEnv, trustAllTools } from "./fixtures/pool_support.ts";
import { runCli } from "./helpers.ts";
import { connectInMemory, quiet, resultText } from "./rigs.ts";

const CHAT = "/v1/chat/completions";

/** The chat requests a fake received (not the health check's GET probe). */
function chats(fake: FakeLmStudio) {
  return fake.requestsTo(CHAT).filter((r) => r.method === "POST");
}
const QWEN = "qwen2.5-7b-instruct";
const LLAMA = "llama3.1:8b";
const MIXTRAL = "mixtral-8x22b";
const FIXTURE = new URL("./fixtures/agent_server.ts", import.meta.url).pathname;

/** LM Studio on "this machine" and a router front ("gpus") that serves two models. */
async function servers(front: { token?: string } = {}) {
  const laptop = await FakeLmStudio.start();
  const gpus = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [{ id: LLAMA, type: "llm" }, { id: MIXTRAL, type: "llm" }],
    ...front,
  });
  return {
    laptop,
    gpus,
    env: (extra: Record<string, string> = {}) => ({
      LMSTUDIO_ENDPOINTS: `laptop=${laptop.baseUrl}, gpus=${gpus.baseUrl}`,
      LMSTUDIO_RETRIES: "0",
      ...(front.token ? { LMSTUDIO_ENDPOINT_GPUS_TOKEN: front.token } : {}),
      ...extra,
    }),
    async [Symbol.asyncDispose]() {
      await laptop.close();
      await gpus.close();
    },
  };
}

/** A project dir with the fixture MCP server, every tool call allowed. */
async function project(
  o: { fixture?: boolean } = {},
): Promise<{ dir: string; config: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "several_servers_test_" });
  const config = join(dir, ".mcp.json");
  const fixture = { command: "deno", args: cachedRun([FIXTURE]), env: denoChildEnv() };
  await Deno.writeTextFile(
    config,
    JSON.stringify({ mcpServers: o.fixture === false ? {} : { fixture } }),
  );
  await trustAllTools(dir);
  return {
    dir,
    config,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The port of a fake that was started and closed: nothing answers there. */
async function deadUrl(): Promise<string> {
  const fake = await FakeLmStudio.start();
  const url = fake.baseUrl;
  await fake.close();
  return url;
}

Deno.test("the MCP tools over several endpoints", async (t) => {
  await using s = await servers({ token: "front-token" });
  await using dir = await project();
  const app = createApp(resolveSettings(s.env()), { configPath: dir.config, log: quiet });
  try {
    await using connection = await connectInMemory(createServer(app));
    await t.step("list_models shows each model with its endpoint", async () => {
      const result = await connection.call("list_models", {});
      const text = resultText(result);
      assertStringIncludes(text, `- ${QWEN} (llm, loaded, context 8192, tool use) on laptop`);
      assertStringIncludes(text, `- ${MIXTRAL} (unknown) on gpus`);
      const structured = result.structuredContent as {
        models: { id: string; endpoint: string }[];
        endpoints: { name: string; source: string }[];
      };
      assertEquals(structured.models.find((m) => m.id === LLAMA)?.endpoint, "gpus");
      assertEquals(structured.endpoints.map((e) => [e.name, e.source]), [
        ["laptop", "api/v1"],
        ["gpus", "openai"],
      ]);
    });
    await t.step("health_check reports each endpoint", async () => {
      const result = await connection.call("health_check", {});
      assertEquals(result.isError, undefined);
      const text = resultText(result);
      assertStringIncludes(text, "2 of 2 model servers healthy:");
      assertStringIncludes(text, `- laptop at ${s.laptop.baseUrl}: answering`);
      assertStringIncludes(text, `- gpus at ${s.gpus.baseUrl}: answering`);
      const structured = result.structuredContent as { endpoints: { name: string; ok: boolean }[] };
      assertEquals(structured.endpoints.map((e) => [e.name, e.ok]), [["laptop", true], [
        "gpus",
        true,
      ]]);
    });
    await t.step(
      "chat_completion goes to the endpoint of its model, with that endpoint's token",
      async () => {
        const result = await connection.call("chat_completion", { prompt: "hi", model: MIXTRAL });
        assertEquals(resultText(result), "Echo: hi");
        const sent = chats(s.gpus);
        assertEquals(sent.length, 1);
        assertEquals(sent[0]?.headers["authorization"], "Bearer front-token");
        assertEquals(chats(s.laptop).length, 0);
        assert(s.laptop.requests.every((r) => r.headers["authorization"] === undefined));
      },
    );
    await t.step("get_current_model names the endpoint of each loaded model", async () => {
      const text = resultText(await connection.call("get_current_model", {}));
      assertStringIncludes(text, `- ${QWEN} (llm, loaded, context 8192) on laptop`);
    });
    await t.step("an autonomous task runs on the model of the second endpoint", async () => {
      s.gpus.script(
        CHAT,
        { body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }) },
        { body: chatReply({ content: "Slept on the GPUs." }) },
      );
      const before = chats(s.gpus).length;
      const result = await connection.call("autonomous_with_mcp", {
        mcp_name: "fixture",
        task: "sleep a little",
        model: LLAMA,
      });
      assertStringIncludes(resultText(result), "Slept on the GPUs.");
      const sent = chats(s.gpus).slice(before);
      assertEquals(sent.length, 2);
      assertEquals(
        sent.map((c) => (c.body as { model?: string }).model),
        [LLAMA, LLAMA],
      );
      assertEquals(chats(s.laptop).length, 0);
    });
    await t.step("a down endpoint makes health_check an error that names it", async () => {
      await s.gpus.close();
      const result = await connection.call("health_check", {});
      assertEquals(result.isError, true);
      const text = resultText(result);
      assertStringIncludes(text, "1 of 2 model servers healthy:");
      assertMatch(text, /- gpus at http:\/\/127\.0\.0\.1:\d+: not healthy: /);
      // Requests for the laptop's models go on.
      const chat = await connection.call("chat_completion", { prompt: "still", model: QWEN });
      assertEquals(resultText(chat), "Echo: still");
      const listed = resultText(await connection.call("list_models", {}));
      assertStringIncludes(listed, "not answering (connection refused), retried in 30 s");
    });
  } finally {
    await app.close();
  }
});

Deno.test("models, chat and run work end to end over several endpoints, one of them a router front", async (t) => {
  await using s = await servers();
  await using dir = await project();
  const env = s.env({ MCP_JSON_PATH: dir.config });
  await t.step("models: an ENDPOINT column", async () => {
    const run = await runCli(["models"], { env });
    assertEquals(run.code, 0, run.stderr);
    assertMatch(run.stdout, /^MODEL\s+ENDPOINT\s+TYPE\s+STATE/);
    assertMatch(run.stdout, new RegExp(`\\n${QWEN}\\s+laptop\\s+llm\\s+loaded`));
    assertMatch(run.stdout, new RegExp(`\\n${MIXTRAL}\\s+gpus\\s+unknown\\s+-`));
  });
  await t.step(
    "models --json: every model's endpoint, and what each endpoint answered",
    async () => {
      const run = await runCli(["models", "--json"], { env });
      assertEquals(run.code, 0, run.stderr);
      const doc = JSON.parse(run.stdout);
      assertEquals(
        doc.models.map((m: { id: string; endpoint: string }) => [m.id, m.endpoint]),
        [[QWEN, "laptop"], ["text-embedding-nomic-embed-text-v1.5", "laptop"], [LLAMA, "gpus"], [
          MIXTRAL,
          "gpus",
        ]],
      );
      assertEquals(Object.keys(doc.models[0]).at(-1), "endpoint");
      assertEquals(doc.endpoints.map((e: { name: string }) => e.name), ["laptop", "gpus"]);
    },
  );
  await t.step("chat: the front serves its models, loaded on first request", async () => {
    const run = await runCli(["chat", "--model", LLAMA, "hello"], { env });
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.stdout, "Echo: hello\n");
    assertEquals(chats(s.gpus).length, 1);
  });
  await t.step("run: a task on the front's model", async () => {
    s.gpus.script(
      CHAT,
      { body: chatReply({ content: "", toolCalls: [{ name: "sleep", arguments: { ms: 1 } }] }) },
      { body: chatReply({ content: "Done on the front." }) },
    );
    const run = await runCli(["run", "--mcp", "fixture", "--model", MIXTRAL, "sleep"], { env });
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.stdout, "Done on the front.\n");
    assertEquals(chats(s.laptop).length, 0);
  });
});

Deno.test("doctor reports each endpoint, and names the install command for hosts outside the sandbox", async () => {
  await using laptop = await FakeLmStudio.start();
  await using dir = await project({ fixture: false });
  const down = await deadUrl();
  // TEST-NET-1 (RFC 5737): the sandbox refuses it before any packet leaves.
  const remote = "http://192.0.2.10:1234";
  const run = await runCli(["doctor", "--json"], {
    env: {
      LMSTUDIO_ENDPOINTS: `laptop=${laptop.baseUrl},old=${down},gpu=${remote}`,
      LMSTUDIO_RETRIES: "0",
      LMSTUDIO_ENDPOINT_LAPTOP_TOKEN: "",
      MCP_JSON_PATH: dir.config,
      HOME: dir.dir,
    },
  });
  const report = JSON.parse(run.stdout) as {
    ok: boolean;
    checks: { name: string; status: string; detail: string }[];
  };
  const check = (name: string) => report.checks.find((c) => c.name === name);
  assertEquals(run.code, 1, run.stderr);
  assertEquals(check("endpoint laptop")?.status, "ok");
  assertStringIncludes(check("endpoint laptop")?.detail ?? "", `${laptop.baseUrl} answers in`);
  assertEquals(check("endpoint old")?.status, "warn");
  assertStringIncludes(check("endpoint old")?.detail ?? "", "connection refused");
  const gpu = check("endpoint gpu");
  assertEquals(gpu?.status, "warn");
  assertStringIncludes(gpu?.detail ?? "", "The sandbox blocked the connection to gpu at");
  assertStringIncludes(gpu?.detail ?? "", "install --allow-net=192.0.2.10:1234");
  const sandbox = check("sandbox: network");
  assertEquals(sandbox?.status, "fail");
  assertStringIncludes(sandbox?.detail ?? "", "gpu (192.0.2.10:1234) is outside the sandbox");
  assertStringIncludes(sandbox?.detail ?? "", "install --allow-net=192.0.2.10:1234");
  assertEquals(check("models")?.status, "ok");
  assertStringIncludes(check("models")?.detail ?? "", "laptop: 2 via api/v1");
});

Deno.test("a request to an endpoint outside the sandbox fails with the install command for it", async () => {
  await using laptop = await FakeLmStudio.start();
  const run = await runCli(["chat", "--model", "on-the-gpu", "hi"], {
    env: {
      LMSTUDIO_ENDPOINTS: `laptop=${laptop.baseUrl}, gpu=http://192.0.2.10:1234`,
      LMSTUDIO_RETRIES: "0",
    },
  });
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, "gpu at http://192.0.2.10:1234: blocked by the sandbox");
  assertStringIncludes(run.stderr, "install --allow-net=192.0.2.10:1234");
  assertEquals(chats(laptop).length, 0);
});

Deno.test("a setting error about LMSTUDIO_ENDPOINTS stops the CLI, naming the variable", async () => {
  const run = await runCli(["models"], {
    env: { LMSTUDIO_ENDPOINTS: "gpu=http://127.0.0.1:1", LM_API_TOKEN: "t" },
  });
  assertEquals(run.code, 2, run.stderr);
  assertStringIncludes(run.stderr, "LM_API_TOKEN is set together with LMSTUDIO_ENDPOINTS");
  assertStringIncludes(run.stderr, "LMSTUDIO_ENDPOINT_GPU_TOKEN for gpu");
});

Deno.test("one endpoint in front of many GPUs (a LiteLLM proxy, vLLM's router) serves as an OpenAI-compatible server", async (t) => {
  // FastAPI's answers (LiteLLM and vLLM are FastAPI apps) to what such a front does not have.
  const notFound = { status: 404, body: { detail: "Not Found" } };
  const notAllowed = { status: 405, body: { detail: "Method Not Allowed" } };
  await using front = await FakeLmStudio.start({
    flavor: "openai-only",
    token: "sk-litellm",
    models: [
      { id: "gpt-oss-120b", type: "llm" },
      { id: LLAMA, type: "llm" },
      { id: "bge-m3-embedding", type: "embeddings" },
    ],
  });
  for (let i = 0; i < 8; i++) {
    front.script("/api/v1/models", notFound);
    front.script("/api/v0/models", notFound);
    front.script(`GET ${CHAT}`, notAllowed);
  }
  await using dir = await project({ fixture: false });
  const env = {
    LMSTUDIO_BASE_URL: `${front.baseUrl}/v1`,
    LM_API_TOKEN: "sk-litellm",
    LMSTUDIO_RETRIES: "0",
    MCP_JSON_PATH: dir.config,
  };
  await t.step("models lists what the front serves", async () => {
    const run = await runCli(["models", "--json"], { env });
    assertEquals(run.code, 0, run.stderr);
    const doc = JSON.parse(run.stdout);
    assertEquals(doc.source, "openai");
    assertEquals(doc.models.map((m: { id: string }) => m.id), [
      "gpt-oss-120b",
      LLAMA,
      "bge-m3-embedding",
    ]);
    assertEquals(doc.endpoints, undefined);
  });
  await t.step("requests for its different models all go to it", async () => {
    for (const model of ["gpt-oss-120b", LLAMA]) {
      const run = await runCli(["chat", "--model", model, `to ${model}`], { env });
      assertEquals(run.code, 0, run.stderr);
      assertEquals(run.stdout, `Echo: to ${model}\n`);
    }
    assertEquals(
      chats(front).map((c) => [(c.body as { model?: string }).model, c.headers["authorization"]]),
      [["gpt-oss-120b", "Bearer sk-litellm"], [LLAMA, "Bearer sk-litellm"]],
    );
  });
  await t.step("its models load on first request, as the front decides", async () => {
    const run = await runCli(["lms", "load", "gpt-oss-120b"], { env });
    assertEquals(run.code, 0, run.stderr);
    assertStringIncludes(run.stdout + run.stderr, "first request");
  });
  await t.step("doctor finds it healthy", async () => {
    const run = await runCli(["doctor", "--json"], { env });
    const checks = (JSON.parse(run.stdout) as { checks: { name: string; status: string }[] })
      .checks;
    assertEquals(checks.find((c) => c.name === "LM Studio")?.status, "ok");
    assertEquals(checks.find((c) => c.name === "models")?.status, "ok");
  });
});
