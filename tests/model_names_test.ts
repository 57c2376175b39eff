import type { LoadedInstance } from "../lib/lms_output.ts";
import { findInstances, normalizeModelName, sameModel } from "../lib/model_names.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("model names match across case, instance suffixes and a one-sided publisher", async (t) => {
  await t.step("normalising lower-cases and drops a numeric instance suffix only", () => {
    assertEquals(normalizeModelName(" Qwen2.5-7B-Instruct:2 "), "qwen2.5-7b-instruct");
    assertEquals(normalizeModelName("llama3:8b"), "llama3:8b");
  });
  await t.step("Ollama's default tag :latest is the untagged name", () => {
    assert(sameModel("llama3", "llama3:latest"));
    assert(sameModel("Llama3:latest", "llama3"));
    assert(!sameModel("llama3", "llama3:8b"));
  });
  await t.step("equal names, suffixes and publisher prefixes match", () => {
    assert(sameModel("qwen2.5-7b-instruct", "qwen2.5-7b-instruct:2"));
    assert(sameModel("QWEN/Qwen3-8B", "qwen3-8b"));
    assert(sameModel("qwen3-8b", "qwen/qwen3-8b"));
  });
  await t.step("different models or different publishers do not match", () => {
    assert(!sameModel("qwen3-8b", "qwen3-8b-instruct"));
    assert(!sameModel("qwen/qwen3-8b", "lmstudio-community/qwen3-8b"));
    assert(!sameModel("", "x"));
  });
  await t.step("an exact identifier comes before other instances of the same model", () => {
    const instances: LoadedInstance[] = [
      { identifier: "qwen3-8b", modelKey: "qwen/qwen3-8b", type: "llm", status: "idle" },
      { identifier: "qwen3-8b:2", modelKey: "qwen/qwen3-8b", type: "llm", status: "idle" },
      { identifier: "other", modelKey: "other", type: "llm", status: "idle" },
    ];
    assertEquals(findInstances("qwen3-8b:2", instances).map((i) => i.identifier), [
      "qwen3-8b:2",
      "qwen3-8b",
    ]);
  });
});
