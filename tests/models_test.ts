import { LmStudioError } from "../lib/lmstudio_errors.ts";
import { LmsError } from "../lib/lms_errors.ts";
import { ModelError } from "../lib/model_types.ts";
import { chooseModel, type ModelManager } from "../lib/models.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import type { FakeLmsScenario, FakeLoaded } from "./fakes/lms.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import { DOWNLOADED_KEYS, type ModelStack, modelStack, type ModelStackOptions } from "./rigs.ts";

type Rig = ModelStack & {
  manager: ModelManager;
  /** argv of every `lms` run, joined with spaces. */
  runs(): Promise<string[]>;
  /** "METHOD path" of every HTTP request to the model endpoints. */
  modelRequests(): string[];
};

/** A model stack (tests/rigs.ts) with its ModelManager as `manager`, and what it ran and asked. */
async function withRig(options: ModelStackOptions, fn: (rig: Rig) => Promise<void>): Promise<void> {
  await using stack = await modelStack(options);
  const { server, fake } = stack;
  await fn({
    ...stack,
    manager: stack.models,
    runs: async () => (await fake.invocations()).map((a) => a.join(" ")),
    modelRequests: () =>
      server.requests.filter((r) => r.path.includes("models")).map((r) => `${r.method} ${r.path}`),
  });
}

/** An `lms` scenario with one instance of qwen2.5-7b-instruct, as `instance` describes it. */
function qwenLoaded(instance: Omit<FakeLoaded, "identifier" | "modelKey">): FakeLmsScenario {
  return {
    loaded: [{ identifier: "qwen2.5-7b-instruct", modelKey: "qwen2.5-7b-instruct", ...instance }],
  };
}

const QWEN_LOADED = qwenLoaded({ status: "idle" });

Deno.test("ensureLoaded with lms checks once, then answers from its cache without spawning", async () => {
  let now = 1_000_000;
  await withRig({ lms: QWEN_LOADED, manager: { now: () => now } }, async (rig) => {
    for (let i = 0; i < 20; i++) {
      const result = await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
      assertEquals(result.via, "already-loaded");
      assertEquals(result.model, "qwen2.5-7b-instruct");
    }
    assertEquals(await rig.runs(), ["server status --json", "ps --json"]);
    assertEquals(rig.modelRequests(), [], "lms answered; no HTTP needed");
    now += 6000; // past the 5 s cache
    await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
    assertEquals(await rig.runs(), ["server status --json", "ps --json", "ps --json"]);
  });
});

Deno.test("concurrent ensures of one model share a single lms load with the TTL", async () => {
  await withRig({ lms: {} }, async (rig) => {
    const results = await Promise.all(
      Array.from({ length: 5 }, () => rig.manager.ensureLoaded("qwen2.5-7b-instruct")),
    );
    for (const r of results) assertEquals(r.via, "lms");
    assertEquals(results[0]?.model, "qwen2.5-7b-instruct");
    const runs = await rig.runs();
    assertEquals(runs.filter((r) => r.startsWith("load")), [
      "load qwen2.5-7b-instruct -y --ttl 600",
    ]);
    assertEquals(runs.length, 4, `status, ps, ls, load: ${runs.join(" | ")}`);
    const again = await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
    assertEquals(again.via, "already-loaded");
    assertEquals((await rig.runs()).length, 4);
  });
});

Deno.test("a loose name finds the loaded instance and returns its identifier", async () => {
  await withRig({
    lms: {
      loaded: [{ identifier: "qwen/qwen3-8b:2", modelKey: "qwen/qwen3-8b", status: "generating" }],
    },
  }, async (rig) => {
    const result = await rig.manager.ensureLoaded("Qwen3-8B");
    assertEquals(result, {
      model: "qwen/qwen3-8b:2",
      via: "already-loaded",
      source: "lms",
      contextLength: 4096,
      waitedMs: result.waitedMs,
    });
  });
});

Deno.test("a busy instance is used as it is, never loaded a second time", async (t) => {
  const embedding = "text-embedding-nomic-embed-text-v1.5";
  const cases: [string, string, FakeLoaded["status"]][] = [
    ["an embedding model computing embeddings", embedding, "computingEmbedding"],
    ["a model processing a prompt", "qwen2.5-7b-instruct", "processingPrompt"],
    ["a model generating", "qwen2.5-7b-instruct", "generating"],
    ["a model lms prints no status for (before 0.3.27)", "qwen2.5-7b-instruct", null],
    ["a model in a status this bridge does not know", "qwen2.5-7b-instruct", "warmingUp"],
  ];
  for (const [label, key, status] of cases) {
    await t.step(label, async () => {
      await withRig(
        { lms: { loaded: [{ identifier: key, modelKey: key, status }] } },
        async (rig) => {
          const result = await rig.manager.ensureLoaded(key);
          assertEquals([result.via, result.model], ["already-loaded", key]);
          const runs = await rig.runs();
          assert(!runs.some((r) => r.startsWith("load")), `no second load: ${runs.join(" | ")}`);
        },
      );
    });
  }
});

Deno.test("an idle instance is preferred to a busy one of the same model", async () => {
  await withRig({
    lms: {
      loaded: [
        { identifier: "qwen/qwen3-8b", modelKey: "qwen/qwen3-8b", status: "generating" },
        { identifier: "qwen/qwen3-8b:2", modelKey: "qwen/qwen3-8b", status: "idle" },
      ],
    },
  }, async (rig) => {
    assertEquals((await rig.manager.ensureLoaded("qwen3-8b")).model, "qwen/qwen3-8b:2");
  });
});

Deno.test("a cancelled ensure stops the lms load it started", async () => {
  const controller = new AbortController();
  await withRig({
    lms: { load: { "qwen2.5-7b-instruct": { delayMs: 120_000 } } },
  }, async (rig) => {
    const ensuring = rig.manager.ensureLoaded("qwen2.5-7b-instruct", {
      signal: controller.signal,
    });
    await waitFor(
      "lms load to start",
      async () => (await rig.runs()).some((r) => r.startsWith("load")),
    );
    controller.abort(new DOMException("stop", "AbortError"));
    await assertRejects(() => ensuring);
    assertEquals((await rig.fake.scenario()).loaded ?? [], [], "the load did not finish");
  });
});

Deno.test("a variant key (model@q8_0) from lms ls's variants is loaded by that key, once", async () => {
  const variants = ["qwen/qwen3-8b@q4_k_m", "qwen/qwen3-8b@q8_0"];
  await withRig({
    lms: {
      downloaded: [{
        modelKey: "qwen/qwen3-8b",
        type: "llm",
        maxContextLength: 40960,
        variants,
        selectedVariant: variants[0],
      }],
    },
  }, async (rig) => {
    const result = await rig.manager.ensureLoaded("qwen/qwen3-8b@q8_0");
    assertEquals(result.via, "lms");
    const loads = (await rig.runs()).filter((r) => r.startsWith("load"));
    assertEquals(loads, ["load qwen/qwen3-8b@q8_0 -y --ttl 600"]);
    rig.manager.invalidate();
    assertEquals((await rig.manager.ensureLoaded("qwen/qwen3-8b@q8_0")).via, "already-loaded");
    assertEquals(
      (await rig.runs()).filter((r) => r.startsWith("load")).length,
      1,
      "no second load",
    );
  });
});

Deno.test("a model that is not downloaded is never handed to lms's fuzzy matching", async () => {
  await withRig({ lms: {} }, async (rig) => {
    const error = await assertRejects(
      () => rig.manager.ensureLoaded("qwen"),
      ModelError,
      "lms get",
    );
    assertEquals(error.kind, "not_found");
    assertStringIncludes(error.message, "qwen2.5-7b-instruct");
    assert(!(await rig.runs()).some((r) => r.startsWith("load")));
  });
});

Deno.test("a model too big for memory fails with the amount it needs", async () => {
  await withRig(
    { lms: { load: { "qwen/qwen3-8b": { error: "memory", memory: "9.80 GB" } } } },
    async (rig) => {
      const error = await assertRejects(
        () => rig.manager.ensureLoaded("qwen/qwen3-8b"),
        LmsError,
        "9.80 GB",
      );
      assertEquals(error.kind, "out_of_memory");
    },
  );
});

Deno.test("lms managing another port is not used; the REST API loads the model", async () => {
  await withRig({ lms: { port: 9 } }, async (rig) => {
    const result = await rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5", {
      contextLength: 2048,
    });
    assertEquals(result.via, "rest");
    assertEquals(await rig.runs(), ["server status --json"]);
    const load = rig.server.requests.find((r) => r.path === "/api/v1/models/load");
    assertEquals(load?.body, {
      model: "text-embedding-nomic-embed-text-v1.5",
      context_length: 2048,
    });
    const management = await rig.manager.management();
    assertEquals(management.via, "rest");
    assertStringIncludes(management.reason, "port 9");
  });
});

Deno.test("without lms, LM Studio's REST API tells state and loads", async (t) => {
  await withRig({ lms: false }, async (rig) => {
    await t.step("a loaded model needs no load", async () => {
      const result = await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
      assertEquals(result.via, "already-loaded");
      assert(!rig.modelRequests().includes("POST /api/v1/models/load"));
    });
    await t.step("an unloaded model is loaded over REST, once", async () => {
      const [a, b] = await Promise.all([
        rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5"),
        rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5"),
      ]);
      assertEquals([a?.via, b?.via], ["rest", "rest"]);
      assertEquals(
        rig.modelRequests().filter((r) => r === "POST /api/v1/models/load").length,
        1,
      );
      assertStringIncludes(a?.note ?? "", "no idle TTL");
    });
    await t.step("an unknown model is an error naming the models there are", async () => {
      const error = await assertRejects(
        () => rig.manager.ensureLoaded("no-such-model"),
        ModelError,
        "qwen2.5-7b-instruct",
      );
      assertEquals(error.kind, "not_found");
    });
    await t.step("no subprocess was started", async () => {
      assertEquals(await rig.runs(), []);
    });
  });
});

/** A REST load that holds its answer until `release`, and tells when it arrived and was given up. */
function heldLoad() {
  const arrived = Promise.withResolvers<void>();
  const abandoned = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const body = JSON.stringify({ type: "embedding", instance_id: NOMIC, status: "loaded" });
  return {
    reply: () => {
      arrived.resolve();
      return new Response(
        new ReadableStream<Uint8Array>({
          async start(controller) {
            await release.promise;
            controller.enqueue(new TextEncoder().encode(body));
            controller.close();
          },
          cancel: () => abandoned.resolve(),
        }),
        { headers: { "content-type": "application/json" } },
      );
    },
    arrived: arrived.promise,
    abandoned: abandoned.promise,
    release: () => release.resolve(),
  };
}

const NOMIC = "text-embedding-nomic-embed-text-v1.5";
const LOAD = "/api/v1/models/load";

Deno.test("callers sharing one load each stop on their own signal, without failing the others", async (t) => {
  await withRig({ lms: false }, async (rig) => {
    await t.step(
      "the caller that started the load leaves; the one that joined gets the model",
      async () => {
        const held = heldLoad();
        rig.server.script(LOAD, held.reply);
        const first = new AbortController();
        const starter = rig.manager.ensureLoaded(NOMIC, { signal: first.signal });
        const joiner = rig.manager.ensureLoaded(NOMIC);
        await held.arrived;
        first.abort(new DOMException("gone", "AbortError"));
        await assertRejects(() => starter, DOMException, "gone");
        held.release();
        assertEquals((await joiner).via, "rest");
        assertEquals(rig.server.requestsTo(LOAD).length, 1);
        rig.manager.invalidate();
        rig.server.models.find((m) => m.id === NOMIC)!.state = "not-loaded";
      },
    );
    await t.step("a caller that joined stops waiting on its own signal", async () => {
      const held = heldLoad();
      rig.server.script(LOAD, held.reply);
      const starter = rig.manager.ensureLoaded(NOMIC);
      const second = new AbortController();
      const joiner = rig.manager.ensureLoaded(NOMIC, { signal: second.signal });
      await held.arrived;
      second.abort(new DOMException("gone", "AbortError"));
      await assertRejects(() => joiner, DOMException, "gone");
      held.release();
      assertEquals((await starter).via, "rest");
      rig.manager.invalidate();
    });
    await t.step(
      "when every caller has gone the load is cancelled, and the next one starts afresh",
      async () => {
        const held = heldLoad();
        rig.server.script(LOAD, held.reply);
        const loads = rig.server.requestsTo(LOAD).length;
        const a = new AbortController();
        const b = new AbortController();
        const first = rig.manager.ensureLoaded(NOMIC, { signal: a.signal });
        const second = rig.manager.ensureLoaded(NOMIC, { signal: b.signal });
        await held.arrived;
        a.abort();
        b.abort();
        await assertRejects(() => first);
        await assertRejects(() => second);
        await held.abandoned;
        assertEquals((await rig.manager.ensureLoaded(NOMIC)).via, "rest");
        assertEquals(rig.server.requestsTo(LOAD).length, loads + 2);
      },
    );
  });
});

Deno.test("ensureLoaded uses the model list it is given, and returns a fresh one only after a load", async () => {
  await withRig({ lms: false }, async (rig) => {
    const list = await rig.client.listModels();
    const read = rig.modelRequests().length;
    const loaded = await rig.manager.ensureLoaded("qwen2.5-7b-instruct", { list });
    assertEquals([loaded.via, loaded.list], ["already-loaded", undefined]);
    assertEquals(rig.modelRequests().length, read, "the list given was used");
    const fresh = await rig.manager.ensureLoaded(NOMIC, { list });
    assertEquals(fresh.via, "rest");
    // One read, after the load (the server answered /api/v1/models before: no /api/v0/models).
    assertEquals(rig.modelRequests().slice(read).filter((r) => r.startsWith("GET")).sort(), [
      "GET /api/v1/models",
      "GET /v1/models",
    ], "one read, after the load");
    assertEquals(fresh.list?.models.find((m) => m.id === NOMIC)?.state, "loaded");
  });
});

Deno.test("with JIT off, a model picked from the list that is not loaded is loaded by the bridge", async (t) => {
  const server = {
    jit: false,
    models: [{ id: "qwen2.5-7b-instruct", type: "llm" as const, state: "not-loaded" as const }],
  };
  const settings = { defaultModel: undefined };
  const ask = (rig: Rig, model: string) =>
    rig.client.chat({ model, messages: [{ role: "user", content: "hi" }] });
  await t.step("over the REST API", async () => {
    await withRig({ lms: false, server }, async (rig) => {
      const model = await chooseModel({ ...rig, settings }, undefined);
      assertEquals(model, "qwen2.5-7b-instruct");
      assertEquals((await ask(rig, model)).content, "Echo: hi");
      assertEquals(rig.server.requestsTo("/api/v1/models/load").length, 1);
    });
  });
  await t.step("with lms", async () => {
    await withRig({ lms: {}, server }, async (rig) => {
      const model = await chooseModel({ ...rig, settings }, undefined);
      assert((await rig.runs()).some((r) => r.startsWith("load qwen2.5-7b-instruct")));
      assertEquals(model, "qwen2.5-7b-instruct");
    });
  });
});

Deno.test("LM Studio before 0.4 (no load endpoint) relies on JIT loading and says so", async () => {
  await withRig({ lms: false, server: { flavor: "lmstudio-v0" } }, async (rig) => {
    const result = await rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5");
    assertEquals(result.via, "jit");
    assertStringIncludes(result.note ?? "", "JIT");
  });
});

Deno.test("an Ollama-like server without model APIs relies on JIT loading for the models it lists", async () => {
  await withRig({ lms: false, server: { flavor: "openai-only" } }, async (rig) => {
    const known = await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
    assertEquals(known.via, "jit");
    assertEquals(known.source, "openai");
    assertStringIncludes(known.note ?? "", "JIT");
    const current = await rig.manager.currentModels();
    assertEquals(current.models, []);
    assertEquals(current.source, "openai");
    assertStringIncludes(current.note ?? "", "JIT");
    const error = await assertRejects(
      () => rig.manager.unload("qwen2.5-7b-instruct"),
      ModelError,
      "not LM Studio",
    );
    assertEquals(error.kind, "unsupported");
    assert(!error.message.includes("install-cli"), "lms cannot unload another server's models");
  });
});

Deno.test("a model an Ollama-like server does not list fails, naming the models it has", async (t) => {
  await withRig({ lms: false, server: { flavor: "openai-only" } }, async (rig) => {
    await t.step("ensure and load both fail instead of promising a JIT load", async () => {
      for (
        const call of [
          () => rig.manager.ensureLoaded("llama3:8b"),
          () => rig.manager.load("llama3:8b"),
        ]
      ) {
        const error = await assertRejects(call, ModelError, 'has no model "llama3:8b"');
        assertEquals(error.kind, "not_found");
        assertStringIncludes(error.message, "qwen2.5-7b-instruct");
        assertStringIncludes(error.message, "ollama pull llama3:8b");
      }
    });
    await t.step("Ollama's :latest tag and loose names still match", async () => {
      rig.server.models.push({ id: "llama3:latest", type: "llm" });
      const result = await rig.manager.ensureLoaded("Llama3");
      assertEquals([result.via, result.model], ["jit", "llama3:latest"]);
    });
  });
});

Deno.test("a server without a readable model list is left to JIT, saying the name was not checked", async () => {
  await withRig({ lms: false, server: { flavor: "openai-only" } }, async (rig) => {
    rig.server.script("/v1/models", { status: 500, body: { error: { message: "boom" } } });
    const result = await rig.manager.load("llama3:8b");
    assertEquals([result.via, result.source, result.model], ["jit", null, "llama3:8b"]);
    assertStringIncludes(result.note ?? "", "could not be checked");
  });
});

Deno.test("when lms says LM Studio's server is not running, lms is not used and REST is", async () => {
  await withRig({ lms: { running: false } }, async (rig) => {
    const result = await rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5");
    assertEquals(result.via, "rest");
    assertEquals(await rig.runs(), ["server status --json"]);
    const status = await rig.manager.status();
    assertEquals([status.management, status.source], ["rest", "rest-v1"]);
    assertStringIncludes(status.managementReason, "not running");
    // lms prints {"running":false} without a port.
    assertEquals(status.lms.server, { running: false, port: null });
  });
});

Deno.test("when lms cannot reach LM Studio after all, the REST API is used", async () => {
  await withRig({
    lms: {
      fail: {
        ps: { code: 1, stderr: "Failed to start or connect to local LM Studio API server." },
      },
    },
  }, async (rig) => {
    const result = await rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5");
    assertEquals(result.via, "rest");
    assertEquals(await rig.runs(), ["server status --json", "ps --json"]);
  });
});

Deno.test("loads ask for the default context length unless the caller names one", async (t) => {
  const manager = { defaultContextLength: 8192 };
  await t.step("through lms: --context-length, the caller's value winning", async () => {
    await withRig({ lms: {}, manager }, async (rig) => {
      const result = await rig.manager.ensureLoaded("qwen/qwen3-8b");
      assertEquals([result.via, result.contextLength], ["lms", 8192]);
      await rig.manager.load("qwen2.5-7b-instruct", { contextLength: 16384 });
      const loads = (await rig.runs()).filter((r) => r.startsWith("load"));
      assertEquals(loads, [
        "load qwen/qwen3-8b -y --ttl 600 --context-length 8192",
        "load qwen2.5-7b-instruct -y --ttl 600 --context-length 16384",
      ]);
      assertEquals((await rig.fake.scenario()).loaded?.[0]?.contextLength, 8192);
    });
  });
  await t.step("through lms: capped at the model's maximum", async () => {
    await withRig({ lms: {}, manager }, async (rig) => {
      await rig.manager.ensureLoaded("text-embedding-nomic-embed-text-v1.5");
      assert(
        (await rig.runs()).includes(
          "load text-embedding-nomic-embed-text-v1.5 -y --ttl 600 --context-length 2048",
        ),
      );
    });
  });
  await t.step("over REST: context_length, capped, the caller's value winning", async () => {
    await withRig({
      lms: false,
      manager,
      server: {
        models: [
          { id: "big", type: "llm", state: "not-loaded", maxContextLength: 32768 },
          { id: "small", type: "llm", state: "not-loaded", maxContextLength: 4096 },
          { id: "asked", type: "llm", state: "not-loaded", maxContextLength: 32768 },
        ],
      },
    }, async (rig) => {
      await rig.manager.ensureLoaded("big");
      await rig.manager.ensureLoaded("small");
      await rig.manager.load("asked", { contextLength: 12000 });
      const bodies = rig.server.requests.filter((r) => r.path === "/api/v1/models/load")
        .map((r) => r.body);
      assertEquals(bodies, [
        { model: "big", context_length: 8192 },
        { model: "small", context_length: 4096 },
        { model: "asked", context_length: 12000 },
      ]);
      assertEquals(rig.server.models.map((m) => m.loadedContextLength), [8192, 4096, 12000]);
    });
  });
  await t.step("without a default, LM Studio picks", async () => {
    await withRig({ lms: {} }, async (rig) => {
      const result = await rig.manager.ensureLoaded("qwen/qwen3-8b");
      assertEquals(result.contextLength, null);
      assert((await rig.runs()).includes("load qwen/qwen3-8b -y --ttl 600"));
    });
  });
});

Deno.test("currentModels reads REST state first and lms ps when HTTP is down", async (t) => {
  await t.step("REST state", async () => {
    await withRig({ lms: false }, async (rig) => {
      const current = await rig.manager.currentModels();
      assertEquals(current, {
        models: [{ id: "qwen2.5-7b-instruct", type: "llm", status: "loaded", contextLength: 8192 }],
        source: "rest-v1",
        note: null,
      });
    });
  });
  await t.step("lms ps first when asked, with its processing status", async () => {
    await withRig({ lms: QWEN_LOADED }, async (rig) => {
      const current = await rig.manager.currentModels({ prefer: "lms" });
      assertEquals(current.source, "lms");
      assertEquals(current.models.map((m) => [m.id, m.status]), [["qwen2.5-7b-instruct", "idle"]]);
      assertEquals(rig.modelRequests(), []);
    });
  });
  await t.step("lms ps when the server does not answer", async () => {
    await using stack = await modelStack({ lms: QWEN_LOADED, closed: true });
    const current = await stack.models.currentModels();
    assertEquals(current.source, "lms");
    assertEquals(current.models.map((m) => [m.id, m.status]), [["qwen2.5-7b-instruct", "idle"]]);
    assertStringIncludes(current.note ?? "", "did not answer");
  });
  await t.step("an unreachable server without lms is the client's error", async () => {
    await using stack = await modelStack({ lms: false, closed: true });
    const error = await assertRejects(() => stack.models.currentModels(), LmStudioError);
    assertEquals(error.kind, "unreachable");
  });
});

Deno.test("unload removes every instance of a model, or just the one named", async (t) => {
  await t.step("with lms", async () => {
    await withRig({
      lms: {
        loaded: [
          { identifier: "qwen2.5-7b-instruct", modelKey: "qwen2.5-7b-instruct" },
          { identifier: "qwen2.5-7b-instruct:2", modelKey: "qwen2.5-7b-instruct" },
          { identifier: "qwen2.5-7b-instruct:3", modelKey: "qwen2.5-7b-instruct" },
        ],
      },
    }, async (rig) => {
      assertEquals(await rig.manager.unload("qwen2.5-7b-instruct:3"), {
        model: "qwen2.5-7b-instruct:3",
        unloaded: ["qwen2.5-7b-instruct:3"],
        source: "lms",
      });
      assertEquals(await rig.manager.unload("QWEN2.5-7B-instruct"), {
        model: "QWEN2.5-7B-instruct",
        unloaded: ["qwen2.5-7b-instruct", "qwen2.5-7b-instruct:2"],
        source: "lms",
      });
      assertEquals((await rig.fake.scenario()).loaded, []);
      const error = await assertRejects(
        () => rig.manager.unload("qwen2.5-7b-instruct"),
        ModelError,
        "not loaded",
      );
      assertEquals(error.kind, "not_loaded");
    });
  });
  await t.step("over REST", async () => {
    await withRig({ lms: false }, async (rig) => {
      assertEquals(await rig.manager.unload("qwen2.5-7b-instruct"), {
        model: "qwen2.5-7b-instruct",
        unloaded: ["qwen2.5-7b-instruct"],
        source: "rest-v1",
      });
      assertEquals(rig.server.models[0]?.state, "not-loaded");
    });
  });
  await t.step("an unload makes the next ensure look again", async () => {
    await withRig({ lms: QWEN_LOADED }, async (rig) => {
      await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
      await rig.manager.unload("qwen2.5-7b-instruct");
      const result = await rig.manager.ensureLoaded("qwen2.5-7b-instruct");
      assertEquals(result.via, "lms");
    });
  });
});

Deno.test("downloaded models come from lms ls, else from the REST model list, with the same keys", async (t) => {
  await t.step("lms ls with loaded flags", async () => {
    await withRig({ lms: QWEN_LOADED }, async (rig) => {
      const list = await rig.manager.downloadedModels({ kind: "llm" });
      assertEquals([list.source, list.note], ["lms", null]);
      assertEquals(list.models.map((m) => [m.id, m.loaded]), [
        ["qwen2.5-7b-instruct", true],
        ["qwen/qwen3-8b", false],
      ]);
      for (const m of list.models) assertEquals(Object.keys(m), DOWNLOADED_KEYS);
    });
  });
  await t.step("REST", async () => {
    await withRig({ lms: false }, async (rig) => {
      const list = await rig.manager.downloadedModels({ kind: "embedding" });
      assertEquals(list, {
        models: [{
          id: "text-embedding-nomic-embed-text-v1.5",
          type: "embedding",
          loaded: false,
          displayName: null,
          sizeBytes: null,
          maxContextLength: 2048,
          vision: null,
          toolUse: null,
        }],
        source: "rest-v1",
        note: null,
      });
    });
  });
  await t.step("an OpenAI-only server: ids, every other value null", async () => {
    await withRig({ lms: false, server: { flavor: "openai-only" } }, async (rig) => {
      const list = await rig.manager.downloadedModels();
      assertEquals(list.source, "openai");
      assertEquals(list.models[0], {
        id: "qwen2.5-7b-instruct",
        type: null,
        loaded: null,
        displayName: null,
        sizeBytes: null,
        maxContextLength: null,
        vision: null,
        toolUse: null,
      });
      assertStringIncludes(list.note ?? "", "no separate download list");
    });
  });
});

Deno.test("status reports the server, lms and who manages models", async () => {
  await withRig({ lms: QWEN_LOADED }, async (rig) => {
    const status = await rig.manager.status();
    assertEquals(status.reachable, true);
    assertEquals(status.lms.installed, true);
    assertEquals(status.lms.path, rig.fake.path);
    assertEquals(status.lms.server?.running, true);
    assertEquals(status.management, "lms");
    assertEquals(status.source, "lms");
    assertEquals(status.ttlSeconds, 600);
  });
});

const STATUS_KEYS = [
  "baseUrl",
  "reachable",
  "latencyMs",
  "modelCount",
  "error",
  "lms",
  "management",
  "managementReason",
  "source",
  "ttlSeconds",
  "defaultContextLength",
];

Deno.test("status has the same keys whether the server answers or not", async () => {
  await using up = await modelStack({ lms: false, manager: { defaultContextLength: 8192 } });
  const answering: Record<string, unknown> = { ...await up.models.status() };
  assertEquals(Object.keys(answering), STATUS_KEYS);
  assertEquals([answering.error, answering.defaultContextLength], [null, 8192]);
  assertEquals(answering.lms, {
    installed: false,
    path: null,
    foundVia: null,
    server: null,
    error: null,
  });
  await using closed = await modelStack({ lms: false, closed: true });
  const down = await closed.models.status();
  assertEquals(Object.keys(down), STATUS_KEYS);
  assertEquals([down.reachable, down.modelCount, down.management, down.source], [
    false,
    null,
    "none",
    null,
  ]);
  assertStringIncludes(down.error ?? "", "Cannot reach");
});

Deno.test("an explicit load of a model already loaded says which requested settings did not apply", async (t) => {
  await withRig({ lms: false }, async (rig) => {
    await t.step("a smaller context length and a TTL", async () => {
      const result = await rig.manager.load("qwen2.5-7b-instruct", {
        contextLength: 4096,
        ttlSeconds: 60,
      });
      assertEquals(result.via, "already-loaded");
      assertStringIncludes(result.note ?? "", "context of 8192 tokens");
      assertStringIncludes(result.note ?? "", "context length 4096 and TTL 60 s did not apply");
      assertStringIncludes(result.note ?? "", "unload it first");
    });
    await t.step("nothing asked for: no note", async () => {
      const result = await rig.manager.load("qwen2.5-7b-instruct");
      assertEquals(result.note, undefined);
    });
    await t.step(
      "ensureLoaded (before a chat) stays quiet about a larger loaded context",
      async () => {
        const result = await rig.manager.ensureLoaded("qwen2.5-7b-instruct", {
          contextLength: 4096,
        });
        assertEquals(result.note, undefined);
      },
    );
  });
});
