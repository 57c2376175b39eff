import { memoryRequirement } from "../lib/lms_errors.ts";
import { assertEquals } from "./assert.ts";

Deno.test("memory failures yield the amount lms says the model needs", () => {
  assertEquals(
    memoryRequirement(
      "Error: Model loading was stopped due to insufficient system resources. Under the current " +
        "settings, this model requires approximately 22.92 GB of memory, and continuing...",
    ),
    "22.92 GB",
  );
  assertEquals(memoryRequirement("Error: out of memory"), "");
  assertEquals(memoryRequirement("Error: Model not found"), undefined);
});
