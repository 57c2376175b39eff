import { LmStudioClient } from "../lib/lmstudio.ts";
import { type Endpoint, EndpointRouter } from "../lib/lmstudio_endpoints.ts";
import { Lms } from "../lib/lms.ts";
import { EndpointModels } from "../lib/model_endpoints.ts";
import { ModelManager, type Models } from "../lib/models.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { FakeLms, type FakeLmsScenario } from "./fakes/lms.ts";
import { FakeLmStudio } from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

const QWEN = "qwen2.5-7b-instruct";
const GEMMA = "google/gemma-3-12b";
const LLAMA = "llama3.1:8b";

/**
 * Three endpoints: LM Studio on this machine ("laptop", managed by the fake `lms`), another LM
 * Studio 0.4+ ("gpu", as if on another machine) and an OpenAI-compatible front ("front", as a
 * LiteLLM proxy would answer), each with its own ModelManager over its own client, sharing `lms`.
 */
async function rig(o: { lms?: FakeLmsScenario; gpuDown?: boolean; now?: () => number } = {}) {
  const laptop = await FakeLmStudio.start();
  const gpu = await FakeLmStudio.start({
    models: [{ id: GEMMA, type: "llm", state: "not-loaded", maxContextLength: 131072 }],
  });
  const gpuPort = gpu.port;
  if (o.gpuDown) await gpu.close();
  const front = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [{ id: LLAMA, type: "llm" }],
  });
  const fake = await FakeLms.create({
    port: laptop.port,
    downloaded: [{ modelKey: QWEN, type: "llm", maxContextLength: 32768 }],
    loaded: [{ identifier: QWEN, modelKey: QWEN, type: "llm", contextLength: 8192 }],
    ...o.lms,
  });
  const lms = new Lms({ ...fake.lookup, log: quiet });
  const endpoints: Endpoint[] = [
    ["laptop", laptop.baseUrl],
    ["gpu", `http://127.0.0.1:${gpuPort}`],
    ["front", front.baseUrl],
  ].map(([name, baseUrl]) => ({
    name: name!,
    baseUrl: baseUrl!,
    client: new LmStudioClient({ baseUrl: baseUrl!, retries: 0, log: quiet }),
  }));
  const router = new EndpointRouter({ endpoints, log: quiet, ...(o.now ? { now: o.now } : {}) });
  const managers = new Map<string, Models>(endpoints.map((e) => [
    e.name,
    new ModelManager({ client: e.client, lms, log: quiet, defaultContextLength: 16384 }),
  ]));
  return {
    laptop,
    gpu,
    front,
    fake,
    router,
    models: new EndpointModels({ router, managers }),
    async [Symbol.asyncDispose]() {
      await Promise.all([laptop.close(), gpu.close(), front.close()]);
      await fake.cleanup();
    },
  };
}

Deno.test("each endpoint's models load its own way: lms on this machine, REST on another LM Studio, JIT behind a front", async () => {
  await using r = await rig();
  const local = await r.models.ensureLoaded(QWEN);
  assertEquals([local.via, local.source, local.endpoint], ["already-loaded", "lms", "laptop"]);

  const remote = await r.models.ensureLoaded(GEMMA);
  assertEquals([remote.via, remote.endpoint, remote.contextLength], ["rest", "gpu", 16384]);
  const loads = r.gpu.requestsTo("/api/v1/models/load");
  assertEquals(loads.map((l) => l.body), [{ model: GEMMA, context_length: 16384 }]);
  assertEquals(r.laptop.requestsTo("/api/v1/models/load").length, 0);

  const fronted = await r.models.ensureLoaded(LLAMA);
  assertEquals([fronted.via, fronted.source, fronted.endpoint], ["jit", "openai", "front"]);
  // `lms` was asked about the laptop only, never told to load another server's model.
  const runs = (await r.fake.invocations()).map((a) => a.join(" "));
  assert(!runs.some((run) => run.startsWith("load")), runs.join("\n"));
});

Deno.test("ensureLoaded hands each manager its endpoint's part of the caller's list, and merges the fresh part back", async () => {
  await using r = await rig();
  const list = await r.router.listModels();
  const before = r.gpu.requestsTo("/api/v1/models").length;
  const result = await r.models.ensureLoaded(GEMMA, { list });
  assertEquals(result.via, "rest");
  // Only the read after the load: the state came from the caller's list.
  assertEquals(r.gpu.requestsTo("/api/v1/models").length, before + 1);
  const fresh = result.list;
  assert(fresh !== undefined);
  assertEquals(
    fresh.models.map((m) => [m.id, m.endpoint]),
    list.models.map((m) => [m.id, m.endpoint]),
  );
  assertEquals(fresh.models.find((m) => m.id === GEMMA)?.state, "loaded");
});

Deno.test("the loaded and downloaded models of every endpoint are merged, a down endpoint skipped with a note", async () => {
  let now = 1_000_000;
  await using r = await rig({ gpuDown: true, now: () => now });
  const current = await r.models.currentModels({ prefer: "lms" });
  assertEquals(current.models.map((m) => [m.id, m.endpoint]), [[QWEN, "laptop"]]);
  assertEquals(current.source, "lms");
  assertStringIncludes(current.note ?? "", "gpu at http://127.0.0.1:");
  assertStringIncludes(current.note ?? "", "not answering (connection refused), retried in 30 s");
  // The front cannot tell what it has loaded; it says so, under its name.
  assertStringIncludes(current.note ?? "", "front: ");

  const downloaded = await r.models.downloadedModels();
  assertEquals(downloaded.models.map((m) => [m.id, m.endpoint]), [[QWEN, "laptop"], [
    LLAMA,
    "front",
  ]]);
  now += 5000;
  assertStringIncludes(
    (await r.models.downloadedModels()).note ?? "",
    "retried in 25 s",
  );
});

Deno.test("the status is that of the endpoint lms manages, with each endpoint's", async () => {
  await using r = await rig();
  const s = await r.models.status();
  assertEquals([s.baseUrl, s.management], [r.laptop.baseUrl, "lms"]);
  assertEquals(s.endpoints?.map((e) => [e.name, e.reachable, e.management]), [
    ["laptop", true, "lms"],
    ["gpu", true, "rest"],
    ["front", true, "jit"],
  ]);
  const m = await r.models.management();
  assertEquals(m.via, "lms");
  assertStringIncludes(m.reason, `gpu (${r.gpu.baseUrl}): rest.`);
});

Deno.test("unload goes to the endpoint that has the model", async () => {
  await using r = await rig();
  await r.models.ensureLoaded(GEMMA);
  const report = await r.models.unload(GEMMA);
  assertEquals([report.source, report.endpoint, report.unloaded], ["rest-v1", "gpu", [GEMMA]]);
  assertEquals(r.gpu.requestsTo("/api/v1/models/unload").length, 1);
});
