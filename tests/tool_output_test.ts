import { estimateTokens, formatToolResult, truncateText } from "../lib/tool_output.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

Deno.test("formatToolResult includes every content part", () => {
  const text = formatToolResult({
    content: [
      { type: "text", text: "first" },
      { type: "image", data: "A".repeat(4096), mimeType: "image/png" },
      {
        type: "resource",
        resource: { uri: "file:///a.txt", mimeType: "text/plain", text: "body" },
      },
      { type: "resource", resource: { uri: "file:///b.bin", blob: "AAAA" } },
      { type: "resource_link", uri: "file:///c", name: "c" },
      { type: "text", text: "last" },
    ],
  });
  assertEquals(
    text,
    [
      "first",
      "[image: image/png, 3.0 KiB]",
      "[resource file:///a.txt, text/plain]\nbody",
      "[resource file:///b.bin, 3 B (binary, not shown)]",
      "[resource link c file:///c]",
      "last",
    ].join("\n"),
  );
  assertEquals(
    formatToolResult({ content: [], structuredContent: { n: 1 } }),
    '{"n":1}',
  );
  assertEquals(
    formatToolResult({ content: [{ type: "text", text: "no such file" }], isError: true }),
    "The tool reported an error:\nno such file",
  );
  assertEquals(formatToolResult({ content: [] }), "(the tool returned no content)");
});

Deno.test("truncateText keeps head and tail and says how much was cut", () => {
  const long = "a".repeat(5000) + "TAIL";
  const { text, cut } = truncateText(long, 1000);
  assert(text.length <= 1000 + 10, `length ${text.length}`);
  assert(text.startsWith("aaa"));
  assert(text.endsWith("TAIL"));
  assertStringIncludes(text, `truncated: ${cut} of 5004 characters`);
  assertEquals(truncateText("short", 1000), { text: "short", cut: 0 });
  assertEquals(estimateTokens("12345678"), 2);
});
