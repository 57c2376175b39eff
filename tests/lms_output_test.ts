import { lsOutput, parseJsonOutput, psOutput, statusAction } from "../lib/lms_output.ts";
import { assertEquals } from "./assert.ts";

Deno.test("instance statuses map to use, wait or reload", () => {
  assertEquals(statusAction("loaded"), "use");
  assertEquals(statusAction("IDLE"), "use");
  assertEquals(statusAction("processingPrompt"), "use");
  assertEquals(statusAction("loading"), "wait");
  assertEquals(statusAction("unloading"), "reload");
  assertEquals(statusAction("crashed"), "reload");
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
        status: "idle",
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
