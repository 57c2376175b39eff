import {
  type LoadedInstance,
  lsOutput,
  parseJsonOutput,
  pickInstance,
  psOutput,
} from "../lib/lms_output.ts";
import { assertEquals } from "./assert.ts";

Deno.test("any listed instance is used, an idle one first, whatever the other statuses say", () => {
  const instance = (identifier: string, status: string): LoadedInstance => ({
    identifier,
    modelKey: "m",
    type: "llm",
    status,
  });
  const busy = ["processingPrompt", "generating", "computingEmbedding", "loaded", "someday"];
  for (const status of busy) {
    assertEquals(pickInstance([instance("m", status)])?.identifier, "m", status);
  }
  assertEquals(
    pickInstance([instance("m", "generating"), instance("m:2", "IDLE")])?.identifier,
    "m:2",
  );
  assertEquals(pickInstance([]), undefined);
});

Deno.test("JSON output is found even after a stray line on stdout", () => {
  assertEquals(parseJsonOutput('[{"a":1}]\n'), [{ a: 1 }]);
  assertEquals(parseJsonOutput("Waking up LM Studio service...\n[1,2]"), [1, 2]);
});

Deno.test("ps and ls rows read the same way: null or mistyped fields left out, nameless rows skipped", () => {
  const shared = {
    type: "vlm",
    displayName: null,
    sizeBytes: 12,
    vision: "yes",
    trainedForToolUse: true,
  };
  assertEquals(
    psOutput.parse([
      { identifier: "q:2", modelKey: "q", status: "IDLE", contextLength: 4096, ...shared },
      { modelKey: "only-key" },
      { identifier: 5 },
      "junk",
    ]),
    [
      {
        identifier: "q:2",
        modelKey: "q",
        type: "vlm",
        status: "IDLE",
        sizeBytes: 12,
        toolUse: true,
        contextLength: 4096,
      },
      { identifier: "only-key", modelKey: "only-key", type: "llm", status: "loaded" },
    ],
  );
  assertEquals(
    lsOutput.parse([
      { modelKey: "m", paramsString: "7B", architecture: null, ...shared },
      { path: "a/b" },
      {},
    ]),
    [
      { modelKey: "m", type: "vlm", sizeBytes: 12, toolUse: true, paramsString: "7B" },
      { modelKey: "a/b", type: "llm" },
    ],
  );
});

Deno.test("ls rows keep their variant keys, ps rows the variant they loaded", () => {
  const variants = ["q/m@q4_k_m", "q/m@q8_0"];
  assertEquals(
    lsOutput.parse([{ modelKey: "q/m", variants, selectedVariant: "q/m@q4_k_m" }]),
    [{ modelKey: "q/m", type: "llm", variants, selectedVariant: "q/m@q4_k_m" }],
  );
  assertEquals(
    psOutput.parse([{ identifier: "q/m", modelKey: "q/m", selectedVariant: "q/m@q8_0" }]),
    [{ identifier: "q/m", modelKey: "q/m", type: "llm", status: "loaded", variant: "q/m@q8_0" }],
  );
});
