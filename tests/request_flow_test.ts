/**
 * How many HTTP requests a real autonomous task sends to LM Studio before it asks the model: the
 * loop reads the model list once and hands it down (model choice, pre-load, context window), so
 * nothing below it reads the list again. A real runAgent with a real McpPool over the fixture
 * server, the real LmStudioClient and ModelManager against the fake LM Studio, with the fake `lms`
 * on the search path or no `lms` at all.
 */
import { Lms } from "../lib/lms.ts";
import { ModelManager } from "../lib/models.ts";
import { assert, assertEquals } from "./assert.ts";
import { answer, CHAT, type Harness, withHarness } from "./agent_harness.ts";
import { FakeLms } from "./fakes/lms.ts";
import type { RecordedRequest } from "./fakes/lmstudio.ts";
import { quiet } from "./rigs.ts";

const LISTS = new Set(["/v1/models", "/api/v1/models", "/api/v0/models"]);

/** The requests of one task: those before its chat request, and the model-list reads among them. */
function beforeChat(requests: RecordedRequest[]): { all: string[]; lists: number } {
  const chat = requests.findIndex((r) => r.path === CHAT);
  assert(chat >= 0, "the task asked the model");
  const before = requests.slice(0, chat);
  return {
    all: before.map((r) => `${r.method} ${r.path}`),
    lists: before.filter((r) => LISTS.has(r.path)).length,
  };
}

/** Runs one task with `models` and returns what it sent before its chat request. */
async function task(h: Harness, models: ModelManager, model?: string) {
  const from = h.fake.requests.length;
  h.fake.script(CHAT, answer("done"));
  const result = await h.run({
    deps: { client: h.client, pool: h.pool, config: h.config, models },
    ...(model ? { model } : {}),
  });
  assertEquals(result.answer, "done", result.error);
  assertEquals(result.model, "qwen2.5-7b-instruct");
  return beforeChat(h.fake.requests.slice(from));
}

Deno.test("a task sends at most one model-list read before its chat request", async (t) => {
  await t.step("no model named, no lms: one list read, then chat", async () => {
    await withHarness(async (h) => {
      const lms = new Lms({ searchPath: "/nonexistent", home: h.dir, log: quiet });
      const models = new ModelManager({ client: h.client, lms, log: quiet });
      const first = await task(h, models);
      assert(first.all.length <= 3, `before the first chat: ${first.all.join(", ")}`);
      // The manager's state is cached: a second task reads the list for itself, nothing more.
      const second = await task(h, models);
      assert(second.lists <= first.lists, `second task: ${second.all.join(", ")}`);
      assert(second.all.length <= 3, `second task: ${second.all.join(", ")}`);
    });
  });
  await t.step("with lms managing the server: the same single read", async () => {
    await withHarness(async (h) => {
      await using fake = await FakeLms.create({
        port: h.fake.port,
        loaded: [{ identifier: "qwen2.5-7b-instruct", modelKey: "qwen2.5-7b-instruct" }],
      });
      const lms = new Lms({ ...fake.lookup, log: quiet });
      const models = new ModelManager({ client: h.client, lms, log: quiet });
      for (const model of [undefined, "qwen2.5-7b-instruct"]) {
        const sent = await task(h, models, model);
        assert(sent.all.length <= 3, `${model ?? "no model"}: ${sent.all.join(", ")}`);
      }
    });
  });
});
