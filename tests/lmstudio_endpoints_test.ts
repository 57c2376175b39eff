import { LmStudioClient } from "../lib/lmstudio.ts";
import { LmStudioError } from "../lib/lmstudio_errors.ts";
import {
  type Endpoint,
  endpointList,
  EndpointRouter,
  type EndpointRouterOptions,
  withEndpointList,
} from "../lib/lmstudio_endpoints.ts";
import type { ModelList } from "../lib/lmstudio_types.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { FakeLmStudio, type FakeLmStudioOptions } from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

const CHAT = "/v1/chat/completions";
const QWEN = "qwen2.5-7b-instruct";
const LLAMA = "llama3.1:8b";

/** An endpoint over a real client; its fetches are counted. */
function endpoint(
  name: string,
  baseUrl: string,
  o: { token?: string; fetch?: typeof fetch } = {},
): Endpoint & { fetches: () => number } {
  let fetches = 0;
  const real = o.fetch ?? ((input, init) => fetch(input, init));
  const client = new LmStudioClient({
    baseUrl,
    retries: 0,
    log: quiet,
    ...(o.token ? { token: o.token } : {}),
    fetch: (input, init) => {
      fetches++;
      return real(input, init);
    },
  });
  return { name, baseUrl, client, fetches: () => fetches };
}

/** A clock the test moves. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function router(endpoints: Endpoint[], o: Partial<EndpointRouterOptions> = {}): EndpointRouter {
  return new EndpointRouter({ endpoints, log: quiet, blockedHosts: () => [], ...o });
}

/** A fake LM Studio ("laptop") and an Ollama-like one ("gpu") with their own models. */
async function twoServers(gpu: FakeLmStudioOptions = {}) {
  const laptop = await FakeLmStudio.start();
  const box = await FakeLmStudio.start({
    flavor: "openai-only",
    models: [{ id: LLAMA, type: "llm" }, { id: "nomic-embed-text", type: "embeddings" }],
    ...gpu,
  });
  return {
    laptop,
    gpu: box,
    async [Symbol.asyncDispose]() {
      await laptop.close();
      await box.close();
    },
  };
}

/** The port of a fake that was started and closed: nothing answers there. */
async function deadPort(): Promise<number> {
  const fake = await FakeLmStudio.start();
  const port = fake.port;
  await fake.close();
  return port;
}

Deno.test("the model lists of several endpoints are merged in order, each model with its endpoint", async () => {
  await using s = await twoServers();
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  const list = await r.listModels();
  assertEquals(list.models.map((m) => [m.id, m.endpoint]), [
    [QWEN, "laptop"],
    ["text-embedding-nomic-embed-text-v1.5", "laptop"],
    [LLAMA, "gpu"],
    ["nomic-embed-text", "gpu"],
  ]);
  // Details from LM Studio's REST API where an endpoint has it.
  assertEquals(list.models[0]?.state, "loaded");
  assertEquals(list.source, "api/v1");
  assertEquals(list.endpoints, [
    {
      name: "laptop",
      baseUrl: s.laptop.baseUrl,
      source: "api/v1",
      modelCount: 2,
      error: null,
      down: false,
    },
    {
      name: "gpu",
      baseUrl: s.gpu.baseUrl,
      source: "openai",
      modelCount: 2,
      error: null,
      down: false,
    },
  ]);
  assert(list.notes.some((n) => n.startsWith("gpu: ")), list.notes.join("\n"));
  assertStringIncludes(r.baseUrl, `laptop (${s.laptop.baseUrl}), gpu (${s.gpu.baseUrl})`);
});

Deno.test("a request for a model goes to the endpoint that lists it, the mapping kept until a miss", async () => {
  await using s = await twoServers();
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  const first = await r.chat({ model: LLAMA, messages: [{ role: "user", content: "hi" }] });
  assertEquals(first.content, "Echo: hi");
  assertEquals(s.gpu.requestsTo(CHAT).length, 1);
  assertEquals(s.laptop.requestsTo(CHAT).length, 0);
  const listed = s.laptop.requestsTo("/v1/models").length;
  await r.chat({ model: QWEN, messages: [{ role: "user", content: "again" }] });
  await r.embed({ model: "nomic-embed-text", input: "x" });
  assertEquals(s.laptop.requestsTo(CHAT).length, 1);
  assertEquals(s.gpu.requestsTo("/v1/embeddings").length, 1);
  // Both were known from the first read.
  assertEquals(s.laptop.requestsTo("/v1/models").length, listed);
  // A model nobody had when the lists were read: they are read again, and it is found.
  s.gpu.models.push({ id: "mistral-7b", type: "llm" });
  await r.complete({ model: "mistral-7b", prompt: "once" });
  assertEquals(s.gpu.requestsTo("/v1/completions").length, 1);
  assertEquals(s.laptop.requestsTo("/v1/models").length, listed + 1);
});

Deno.test("a model on two endpoints is served by the first configured, and the list says so", async () => {
  await using s = await twoServers({ models: [{ id: QWEN, type: "llm" }] });
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  const list = await r.listModels();
  assertEquals(list.models.filter((m) => m.id === QWEN).map((m) => m.endpoint), ["laptop", "gpu"]);
  assert(
    list.notes.some((n) =>
      n.includes(`${QWEN} is on laptop and gpu`) && n.includes("laptop (the first")
    ),
    list.notes.join("\n"),
  );
  await r.chat({ model: QWEN, messages: [{ role: "user", content: "hi" }] });
  assertEquals(s.laptop.requestsTo(CHAT).length, 1);
  assertEquals(s.gpu.requestsTo(CHAT).length, 0);
});

Deno.test("each endpoint gets its own token and no other", async () => {
  await using s = await twoServers({ token: "gpu-secret" });
  const r = router([
    endpoint("laptop", s.laptop.baseUrl),
    endpoint("gpu", s.gpu.baseUrl, { token: "gpu-secret" }),
  ]);
  await r.chat({ model: LLAMA, messages: [{ role: "user", content: "hi" }] });
  await r.chat({ model: QWEN, messages: [{ role: "user", content: "hi" }] });
  assert(s.gpu.requests.length > 0);
  for (const req of s.gpu.requests) assertEquals(req.headers["authorization"], "Bearer gpu-secret");
  for (const req of s.laptop.requests) assertEquals(req.headers["authorization"], undefined);
});

Deno.test("a down endpoint is skipped with a note, then used again once it answers after its back-off", async () => {
  await using laptop = await FakeLmStudio.start();
  const port = await deadPort();
  const gpuUrl = `http://127.0.0.1:${port}`;
  const gpu = endpoint("gpu", gpuUrl);
  const time = clock();
  const r = router([endpoint("laptop", laptop.baseUrl), gpu], { now: time.now });

  const first = await r.listModels();
  assertEquals(first.models.map((m) => m.endpoint), ["laptop", "laptop"]);
  const note = first.notes.find((n) => n.startsWith("gpu"));
  assertEquals(note, `gpu at ${gpuUrl}: not answering (connection refused), retried in 30 s`);
  assertEquals(first.endpoints?.[1]?.down, true);
  const tried = gpu.fetches();

  // Within the back-off it is not asked at all; the note counts down.
  time.advance(10_000);
  const second = await r.listModels();
  assertEquals(gpu.fetches(), tried);
  assert(
    second.notes.includes(`gpu at ${gpuUrl}: not answering (connection refused), retried in 20 s`),
  );
  await r.chat({ model: QWEN, messages: [{ role: "user", content: "still works" }] });
  assertEquals(gpu.fetches(), tried);

  // It comes back; after the back-off it is asked again and serves its models.
  await using back = await FakeLmStudio.start({
    port,
    flavor: "openai-only",
    models: [{ id: LLAMA, type: "llm" }],
  });
  time.advance(20_000);
  const third = await r.listModels();
  assertEquals(third.models.map((m) => m.endpoint), ["laptop", "laptop", "gpu"]);
  assertEquals(third.endpoints?.[1]?.down, false);
  const reply = await r.chat({ model: LLAMA, messages: [{ role: "user", content: "back" }] });
  assertEquals(reply.content, "Echo: back");
  assertEquals(back.requestsTo(CHAT).length, 1);
});

Deno.test("the back-off of an endpoint that stays down doubles, up to its limit", async () => {
  await using laptop = await FakeLmStudio.start();
  const gpuUrl = `http://127.0.0.1:${await deadPort()}`;
  const time = clock();
  const r = router([endpoint("laptop", laptop.baseUrl), endpoint("gpu", gpuUrl)], {
    now: time.now,
    maxBackoffMs: 100_000,
  });
  const waits: string[] = [];
  for (let i = 0; i < 4; i++) {
    const list = await r.listModels();
    waits.push(list.notes.find((n) => n.startsWith("gpu"))?.match(/retried in (\d+ s)/)?.[1] ?? "");
    time.advance(200_000);
  }
  assertEquals(waits, ["30 s", "60 s", "100 s", "100 s"]);
});

Deno.test("a request for a model only a down endpoint has tries it, and fails saying so", async () => {
  await using laptop = await FakeLmStudio.start();
  const gpuUrl = `http://127.0.0.1:${await deadPort()}`;
  const gpu = endpoint("gpu", gpuUrl);
  const r = router([endpoint("laptop", laptop.baseUrl), gpu], { now: clock().now });
  await r.listModels();
  const before = gpu.fetches();
  const error = await assertRejects(
    () => r.chat({ model: LLAMA, messages: [{ role: "user", content: "hi" }] }),
    LmStudioError,
  );
  assert(
    gpu.fetches() > before,
    "the endpoint in its back-off was tried for a model nobody else has",
  );
  assertEquals(error.kind, "not_found");
  assertStringIncludes(error.message, `No endpoint has model "${LLAMA}"`);
  assertStringIncludes(error.message, `laptop (${laptop.baseUrl}) has ${QWEN}`);
  assertStringIncludes(error.message, `gpu at ${gpuUrl}: not answering (connection refused)`);
});

Deno.test("a call whose endpoint stopped answering goes to the next endpoint that has the model", async () => {
  await using s = await twoServers({ models: [{ id: QWEN, type: "llm" }] });
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)], {
    now: clock().now,
  });
  await r.listModels();
  await s.laptop.close();
  const reply = await r.chat({ model: QWEN, messages: [{ role: "user", content: "hi" }] });
  assertEquals(reply.content, "Echo: hi");
  assertEquals(s.gpu.requestsTo(CHAT).length, 1);
  // Until its back-off ends, the laptop is skipped.
  const list = await r.listModels();
  assertMatch(
    list.notes.join("\n"),
    /laptop at .*: not answering \(connection refused\), retried in 30 s/,
  );
});

Deno.test("a model no endpoint lists fails naming what each one has", async () => {
  await using s = await twoServers();
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  const error = await assertRejects(
    () => r.chat({ model: "gpt-oss-120b", messages: [{ role: "user", content: "hi" }] }),
    LmStudioError,
  );
  assertEquals(error.kind, "not_found");
  assertStringIncludes(error.message, `laptop (${s.laptop.baseUrl}) has ${QWEN}`);
  assertStringIncludes(error.message, `gpu (${s.gpu.baseUrl}) has ${LLAMA}`);
  assertEquals(s.laptop.requestsTo(CHAT).length + s.gpu.requestsTo(CHAT).length, 0);
});

Deno.test("a model no list has goes to an endpoint that cannot list its models", async () => {
  await using s = await twoServers({ models: [] });
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  // Ollama with nothing pulled lists nothing, yet may serve what it is asked (and says if not).
  await assertRejects(
    () => r.chat({ model: "unlisted", messages: [{ role: "user", content: "hi" }] }),
    LmStudioError,
  );
  assertEquals(s.gpu.requestsTo(CHAT).length, 1);
});

Deno.test("a model is picked from the merged list: a loaded one first, whichever endpoint has it", async () => {
  await using s = await twoServers({
    flavor: "lmstudio",
    models: [{ id: LLAMA, type: "llm", state: "loaded" }],
  });
  s.laptop.models = s.laptop.models.map((m) => ({ ...m, state: "not-loaded" }));
  const r = router([endpoint("laptop", s.laptop.baseUrl), endpoint("gpu", s.gpu.baseUrl)]);
  assertEquals(await r.resolveModel(undefined), LLAMA);
  assertEquals(
    await r.resolveModel(undefined, { kind: "embedding" }),
    "text-embedding-nomic-embed-text-v1.5",
  );
  assertEquals(await r.resolveModel(" named "), "named");
});

Deno.test("health reports each endpoint, and is ok only when every one is", async () => {
  await using laptop = await FakeLmStudio.start();
  const gpuUrl = `http://127.0.0.1:${await deadPort()}`;
  const r = router([endpoint("laptop", laptop.baseUrl), endpoint("gpu", gpuUrl)]);
  const h = await r.health();
  assertEquals(h.ok, false);
  assertEquals(h.endpoints.map((e) => [e.name, e.ok, e.modelCount]), [
    ["laptop", true, 2],
    ["gpu", false, undefined],
  ]);
  assertEquals(h.modelCount, 2);
  assertStringIncludes(h.error ?? "", `gpu at ${gpuUrl}: Cannot reach LM Studio`);
  assert(!(h.error ?? "").includes("laptop"), h.error);
  await using gpu = await FakeLmStudio.start();
  const both = await router([endpoint("laptop", laptop.baseUrl), endpoint("gpu", gpu.baseUrl)])
    .health();
  assertEquals([both.ok, both.auth, both.modelCount, both.error], [true, "ok", 4, undefined]);
});

Deno.test("an endpoint the sandbox blocks is explained with the install command for the blocked hosts", async () => {
  await using laptop = await FakeLmStudio.start();
  const denied: typeof fetch = () =>
    Promise.reject(new Deno.errors.NotCapable('Requires net access to "192.168.1.20:1234"'));
  const r = router([
    endpoint("laptop", laptop.baseUrl),
    endpoint("gpu", "http://192.168.1.20:1234", { fetch: denied }),
    endpoint("gpu2", "http://192.168.1.21:1234", { fetch: denied }),
  ], { blockedHosts: (hosts) => hosts.filter((h) => h.startsWith("192.")) });
  const list = await r.listModels();
  const note = list.notes.find((n) => n.startsWith("gpu at")) ?? "";
  assertStringIncludes(note, "blocked by the sandbox");
  assertStringIncludes(note, "--allow-net=192.168.1.20:1234,192.168.1.21:1234");
  const error = await assertRejects(
    () => r.chat({ model: "only-there", messages: [{ role: "user", content: "hi" }] }),
    LmStudioError,
  );
  assertStringIncludes(error.message, "--allow-net=192.168.1.20:1234,192.168.1.21:1234");
  // A call routed to it says the same.
  const one = router([
    endpoint("laptop", laptop.baseUrl),
    endpoint("gpu", "http://192.168.1.20:1234", { fetch: denied }),
  ], { blockedHosts: (hosts) => hosts.filter((h) => h.startsWith("192.")) });
  const routed = await assertRejects(
    () => one.loadModel("x"),
    LmStudioError,
  );
  assertStringIncludes(routed.message, "--allow-net=192.168.1.20:1234");
});

Deno.test("a merged list hands each endpoint its own part, and takes a fresh part back", () => {
  const merged: ModelList = {
    source: "api/v1",
    notes: [],
    models: [
      { id: "a", type: "llm", endpoint: "one" },
      { id: "b", type: "llm", endpoint: "two" },
      { id: "c", type: "llm", endpoint: "three" },
    ],
    endpoints: ["one", "two", "three"].map((name) => ({
      name,
      baseUrl: `http://${name}`,
      source: name === "two" ? "openai" : "api/v1",
      modelCount: 1,
      error: null,
      down: false,
    })),
  };
  assertEquals(endpointList(merged, "two"), {
    models: [{ id: "b", type: "llm", endpoint: "two" }],
    source: "openai",
    notes: [],
  });
  assertEquals(endpointList(merged, "four"), undefined);
  const fresh = withEndpointList(merged, "two", {
    source: "api/v1",
    notes: [],
    models: [{ id: "b", type: "llm", state: "loaded" }, { id: "b2", type: "llm" }],
  });
  assertEquals(fresh.models.map((m) => [m.id, m.endpoint, m.state]), [
    ["a", "one", undefined],
    ["b", "two", "loaded"],
    ["b2", "two", undefined],
    ["c", "three", undefined],
  ]);
  assertEquals(fresh.endpoints?.[1]?.modelCount, 2);
  assertEquals(fresh.endpoints?.[1]?.source, "api/v1");
});

Deno.test("an endpoint whose model list times out is skipped like one that refuses", async () => {
  await using laptop = await FakeLmStudio.start();
  await using slow = await FakeLmStudio.start();
  // Far longer than the router's list timeout: the answer never comes in time.
  slow.script("/v1/models", { delayMs: 600_000, body: { object: "list", data: [] } });
  const r = router([endpoint("laptop", laptop.baseUrl), endpoint("slow", slow.baseUrl)], {
    now: clock().now,
    listTimeoutMs: 200,
  });
  const list = await r.listModels();
  assertEquals(list.models.map((m) => m.endpoint), ["laptop", "laptop"]);
  assert(
    list.notes.includes(`slow at ${slow.baseUrl}: not answering (timed out), retried in 30 s`),
    list.notes.join("\n"),
  );
  assertEquals(
    r.skipNote("slow"),
    `slow at ${slow.baseUrl}: not answering (timed out), retried in 30 s`,
  );
  const [request] = slow.requestsTo("/v1/models");
  assert(request !== undefined);
  assertEquals(await slow.delayedEnd(request), "abandoned");
});

Deno.test("with one named endpoint, calls go straight to it and its errors are its own", async () => {
  await using only = await FakeLmStudio.start();
  const r = router([endpoint("solo", only.baseUrl)]);
  await r.chat({ model: "unknown-model", messages: [{ role: "user", content: "hi" }] }).then(
    () => assert(false, "an unknown model must fail"),
    (error: unknown) => {
      assert(error instanceof LmStudioError);
      assertStringIncludes(error.message, `${only.baseUrl} has no model "unknown-model"`);
    },
  );
  assertEquals(only.requestsTo(CHAT).length, 1);
  // The router read no model list to route it (the client's own 404 check reads only /v1/models).
  assertEquals(only.requestsTo("/api/v1/models").length, 0);
  assertEquals((await r.listModels()).models.every((m) => m.endpoint === "solo"), true);
});
