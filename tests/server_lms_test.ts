import { McpServer } from "../lib/sdk.ts";
import { registerLmsTools } from "../lib/server_lms.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import {
  connectInMemory,
  DOWNLOADED_KEYS,
  type InMemoryClient,
  type ModelStack,
  modelStack,
  type ModelStackOptions,
  resultText as text,
} from "./rigs.ts";

type Harness = Pick<ModelStack, "fake" | "server"> & InMemoryClient;

/** A real SDK client, in memory, against an McpServer with the lms tools over fakes. */
async function harness(o: ModelStackOptions = {}): Promise<Harness> {
  const stack = await modelStack(o);
  const mcp = new McpServer({ name: "lms-tools-test", version: "0" });
  registerLmsTools(mcp, stack);
  const connection = await connectInMemory(mcp);
  return {
    fake: stack.fake,
    server: stack.server,
    client: connection.client,
    call: connection.call,
    async [Symbol.asyncDispose]() {
      await connection[Symbol.asyncDispose]();
      await stack[Symbol.asyncDispose]();
    },
  };
}

Deno.test("the six lms tools are listed with parameters and honest annotations", async () => {
  await using h = await harness();
  const { tools } = await h.client.listTools();
  const byName = new Map(tools.map((t) => [t.name, t]));
  assertEquals([...byName.keys()].sort(), [
    "lms_ensure_model_loaded",
    "lms_list_downloaded_models",
    "lms_list_loaded_models",
    "lms_load_model",
    "lms_server_status",
    "lms_unload_model",
  ]);
  const load = byName.get("lms_load_model");
  assertEquals(Object.keys(load?.inputSchema.properties ?? {}).sort(), [
    "context_length",
    "model_name",
    "ttl",
  ]);
  assertEquals(load?.inputSchema.required, ["model_name"]);
  assertEquals(load?.annotations?.readOnlyHint, false);
  assertEquals(byName.get("lms_unload_model")?.annotations?.destructiveHint, true);
  assertEquals(byName.get("lms_list_loaded_models")?.annotations?.readOnlyHint, true);
});

Deno.test("loaded and downloaded models are listed through lms", async () => {
  await using h = await harness({
    lms: {
      loaded: [{
        identifier: "qwen2.5-7b-instruct",
        modelKey: "qwen2.5-7b-instruct",
        contextLength: 8192,
        status: "idle",
      }],
    },
    server: { flavor: "openai-only" },
  });
  const loaded = await h.call("lms_list_loaded_models");
  assert(!loaded.isError, text(loaded));
  assertStringIncludes(text(loaded), "qwen2.5-7b-instruct (llm, idle, context 8192)");
  assertEquals(loaded.structuredContent, {
    models: [{ id: "qwen2.5-7b-instruct", type: "llm", status: "idle", contextLength: 8192 }],
    source: "lms",
    note: null,
  });

  const downloaded = await h.call("lms_list_downloaded_models", { kind: "embedding" });
  assertStringIncludes(text(downloaded), "1 model (from lms):");
  assertStringIncludes(
    text(downloaded),
    "text-embedding-nomic-embed-text-v1.5 (embedding, 80.2 MiB",
  );
  assertEquals(downloaded.structuredContent?.source, "lms");
  assertEquals(downloaded.structuredContent?.note, null);
});

const ENSURE_KEYS = ["model", "via", "source", "contextLength", "waitedMs", "note"];

Deno.test("load, ensure and unload go through lms and report what happened", async () => {
  await using h = await harness({});
  const load = await h.call("lms_load_model", {
    model_name: "qwen/qwen3-8b",
    ttl: 120,
    context_length: 8192,
  });
  assert(!load.isError, text(load));
  assertStringIncludes(text(load), "Loaded qwen/qwen3-8b with lms");
  assertEquals(load.structuredContent, {
    model: "qwen/qwen3-8b",
    via: "lms",
    source: "lms",
    contextLength: 8192,
    waitedMs: load.structuredContent?.waitedMs,
    note: null,
  });
  assert(
    (await h.fake.invocations()).some((a) =>
      a.join(" ") === "load qwen/qwen3-8b -y --ttl 120 --context-length 8192"
    ),
  );

  const ensure = await h.call("lms_ensure_model_loaded", { model_name: "qwen3-8b" });
  assertStringIncludes(text(ensure), "is loaded and ready");
  assertEquals(Object.keys(ensure.structuredContent ?? {}), ENSURE_KEYS);
  assertEquals(ensure.structuredContent?.model, "qwen/qwen3-8b");

  const unload = await h.call("lms_unload_model", { model_name: "qwen/qwen3-8b" });
  assertStringIncludes(text(unload), "Unloaded qwen/qwen3-8b with lms.");
  assertEquals(unload.structuredContent, {
    model: "qwen/qwen3-8b",
    unloaded: ["qwen/qwen3-8b"],
    source: "lms",
  });
  assertEquals((await h.fake.scenario()).loaded, []);
});

Deno.test("a failed load is an error result with the memory it needs", async () => {
  await using h = await harness({
    lms: { load: { "qwen/qwen3-8b": { error: "memory", memory: "22.92 GB" } } },
  });
  const result = await h.call("lms_load_model", { model_name: "qwen/qwen3-8b" });
  assertEquals(result.isError, true);
  assertStringIncludes(text(result), "22.92 GB");
});

Deno.test("without lms, the tools use LM Studio's REST API", async () => {
  await using h = await harness({ lms: false });
  const ensure = await h.call("lms_ensure_model_loaded", {
    model_name: "text-embedding-nomic-embed-text-v1.5",
  });
  assertStringIncludes(text(ensure), "over LM Studio's REST API");
  assertStringIncludes(text(ensure), "Unload it with lms_unload_model");
  assertEquals(Object.keys(ensure.structuredContent ?? {}), ENSURE_KEYS);
  const loaded = await h.call("lms_list_loaded_models");
  assertEquals(loaded.structuredContent?.source, "rest-v1");
  const unload = await h.call("lms_unload_model", {
    model_name: "text-embedding-nomic-embed-text-v1.5",
  });
  assertStringIncludes(text(unload), "over LM Studio's REST API.");
  assertEquals(unload.structuredContent?.source, "rest-v1");
  const status = await h.call("lms_server_status");
  assertStringIncludes(text(status), "lms: not installed");
  assertStringIncludes(text(status), "npx lmstudio install-cli");
  assertStringIncludes(text(status), "restart the bridge");
  assertStringIncludes(text(status), "listed and loaded over LM Studio's REST API");
  assertEquals(status.structuredContent?.management, "rest");
  assertEquals(status.structuredContent?.source, "rest-v1");
});

Deno.test("on a server without model APIs, listed models load on first use and others fail", async () => {
  await using h = await harness({ lms: false, server: { flavor: "openai-only" } });
  const unload = await h.call("lms_unload_model", { model_name: "qwen2.5-7b-instruct" });
  assertEquals(unload.isError, true);
  assertStringIncludes(text(unload), "not LM Studio");
  const ensure = await h.call("lms_ensure_model_loaded", { model_name: "qwen2.5-7b-instruct" });
  assertStringIncludes(text(ensure), "just-in-time");
  assertEquals(ensure.structuredContent?.source, "openai");
  for (const tool of ["lms_load_model", "lms_ensure_model_loaded"]) {
    const unknown = await h.call(tool, { model_name: "llama3:8b" });
    assertEquals(unknown.isError, true, `${tool}: ${text(unknown)}`);
    assertStringIncludes(text(unknown), 'has no model "llama3:8b"');
    assertStringIncludes(text(unknown), "qwen2.5-7b-instruct");
    assert(!text(unknown).includes("first request"), text(unknown));
  }
  const downloaded = await h.call("lms_list_downloaded_models");
  const models = downloaded.structuredContent?.models as Record<string, unknown>[];
  assertEquals(Object.keys(models[0] ?? {}), DOWNLOADED_KEYS);
  assertEquals(downloaded.structuredContent?.source, "openai");
});

Deno.test("lms_load_model without context_length loads with the bridge's default context", async () => {
  await using h = await harness({ manager: { defaultContextLength: 8192 } });
  const { tools } = await h.client.listTools();
  const load = tools.find((t) => t.name === "lms_load_model");
  const described = JSON.stringify(load?.inputSchema.properties?.context_length);
  assertStringIncludes(described, "8192 (the bridge's LMSTUDIO_CONTEXT_LENGTH)");
  const result = await h.call("lms_load_model", { model_name: "qwen/qwen3-8b" });
  assert(!result.isError, text(result));
  assertStringIncludes(text(result), "Context: 8192 tokens.");
  assert(
    (await h.fake.invocations()).some((a) =>
      a.join(" ") === "load qwen/qwen3-8b -y --ttl 600 --context-length 8192"
    ),
  );
  assertEquals((await h.fake.scenario()).loaded?.[0]?.contextLength, 8192);
});

Deno.test("when lms says LM Studio's server is not running, the status says REST is used", async () => {
  await using h = await harness({ lms: { running: false } });
  const status = await h.call("lms_server_status");
  assert(!status.isError, text(status));
  assertStringIncludes(text(status), "server not running");
  assertStringIncludes(text(status), "listed and loaded over LM Studio's REST API");
  assert(!text(status).includes("with `lms`"), text(status));
  assertEquals(status.structuredContent?.management, "rest");
});

Deno.test("with nothing answering and no lms, the tools say how to start the server", async () => {
  await using h = await harness({ lms: false, closed: true });
  const loaded = await h.call("lms_list_loaded_models");
  assertEquals(loaded.isError, true);
  assertStringIncludes(text(loaded), "Developer tab");
  assertStringIncludes(text(loaded), "install-cli");
  const status = await h.call("lms_server_status");
  assertEquals(status.isError, true);
  assertStringIncludes(text(status), "not answering");
});
