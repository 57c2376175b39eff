/**
 * The resources of MCP servers as tools for the local model: the bridge's `list_resources` and
 * `read_resource` in the catalog of a server that offers resources, their results as the model
 * reads them, and the loop running them (read-only, cut to the budget, failures as text). The loop
 * side runs on a host with contract 6's methods (tests/agent_harness.ts `featureHost`); the end
 * to end test against server-everything runs through the pool.
 */
import { resourceListText, resourceReadText } from "../lib/agent_resources.ts";
import { ToolCatalog } from "../lib/tool_catalog.ts";
import {
  answer,
  calls,
  CHAT,
  featureHost,
  toolMessages,
  toolNamesOf,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { cachedEntry, REFERENCE_SERVERS } from "./fixtures/pool_support.ts";

const NOTES = { uri: "notes://today", name: "today", mimeType: "text/plain" };

Deno.test("list_resources shows URIs, MIME types, sizes, descriptions and templates", () => {
  assertEquals(
    resourceListText("docs", [
      { ...NOTES, description: "What happened today.\nMore lines.", size: 2048 },
      { uri: "notes://logo", name: "logo", title: "The logo" },
    ], [{
      uriTemplate: "notes://day/{date}",
      name: "day",
      mimeType: "text/plain",
      description: "One day's notes",
    }]),
    [
      '2 resources of MCP server "docs":',
      "- notes://today (text/plain, 2.0 KiB) today: What happened today.",
      "- notes://logo The logo",
      "1 resource template (fill in the {placeholders}, then read the URI):",
      "- notes://day/{date} (text/plain) day: One day's notes",
    ].join("\n"),
  );
  assertEquals(
    resourceListText("docs", [], []),
    'MCP server "docs" lists no resources and no resource templates.',
  );
});

Deno.test("read_resource shows text inline, summarises binary, and shows text sent as base64", () => {
  assertEquals(
    resourceReadText("notes://today", {
      contents: [
        { uri: "notes://today", mimeType: "text/plain", text: "It rained." },
        { uri: "notes://logo", mimeType: "image/png", blob: "iVBORw0KGgo=" },
        { uri: "notes://raw", mimeType: "text/plain", blob: btoa("plain words") },
      ],
    }),
    [
      "[resource notes://today, text/plain]\nIt rained.",
      "[resource notes://logo, image/png, 8 B (binary, not shown)]",
      "[resource notes://raw, text/plain]\nplain words",
    ].join("\n"),
  );
  assertEquals(resourceReadText("x://y", { contents: [] }), "The resource x://y has no content.");
});

Deno.test("a server that offers resources gets read-only resource tools, namespaced like its own", () => {
  const tools = [{ name: "echo", inputSchema: { type: "object" as const } }];
  const one = ToolCatalog.build([{ server: "docs", tools, resources: true }], {
    namespaced: false,
  });
  assertEquals(one.names, ["echo", "list_resources", "read_resource"]);
  assertEquals(one.resolve("read_resource")?.resourceTool, "read_resource");
  assert(one.resolve("read_resource")?.readOnly);
  assertEquals(one.resolve("echo")?.resourceTool, undefined);
  const two = ToolCatalog.build([
    { server: "docs", tools, resources: true },
    { server: "other", tools },
  ], { namespaced: true, allowed: ["*__read_*", "other__*"] });
  assertEquals(two.names, ["docs__read_resource", "other__echo"]);
  // A tool of the server's own keeps its name; the bridge's gets a hash suffix.
  const clash = ToolCatalog.build([{
    server: "docs",
    tools: [{ name: "read_resource", inputSchema: { type: "object" as const } }],
    resources: true,
  }], { namespaced: false });
  assertEquals(clash.entries[0]!.resourceTool, undefined);
  assertEquals(clash.entries[0]!.name, "read_resource");
  assertMatch(clash.entries[2]!.name, /^read_resource_[0-9a-z]{6}$/);
});

Deno.test("the model lists and reads a server's resources; large ones are cut, unknown URIs explained", async () => {
  await withHarness(async (h) => {
    const big = `${"x".repeat(60_000)}THE END`;
    const host = featureHost(h.pool, {
      fixture: {
        resources: [NOTES, { uri: "notes://big", name: "big", mimeType: "text/plain" }],
        read: (uri) => {
          if (uri === NOTES.uri) return { contents: [{ ...NOTES, text: "It rained." }] };
          if (uri === "notes://big") {
            return { contents: [{ uri, mimeType: "text/plain", text: big }] };
          }
          throw new Error(`Resource ${uri} not found`);
        },
      },
    });
    h.fake.script(
      CHAT,
      calls({ name: "list_resources", arguments: {} }),
      calls(
        { name: "read_resource", arguments: { uri: NOTES.uri } },
        { name: "read_resource", arguments: { uri: "notes://big" } },
        { name: "read_resource", arguments: { uri: "notes://nope" } },
      ),
      answer("It rained."),
    );
    const result = await h.run({ deps: { pool: host }, defaultContextLength: 8192 });
    assertEquals(result.stopped_because, "answer");
    const requests = h.fake.requestsTo(CHAT);
    assert(toolNamesOf(requests[0]!).includes("read_resource"));
    assertStringIncludes(
      String(toolMessages(requests[1]!)[0]!.content),
      "- notes://today (text/plain) today",
    );
    const [notes, cut, unknown] = toolMessages(requests[2]!).slice(1).map((m) => String(m.content));
    assertEquals(notes, "[resource notes://today, text/plain]\nIt rained.");
    assertStringIncludes(cut!, "[... truncated:");
    assert(cut!.endsWith("THE END"));
    assertEquals(
      unknown,
      'Error: reading "notes://nope" from "fixture" failed: Resource notes://nope not found. ' +
        "Check the URI against list_resources, or do without it.",
    );
    assertEquals(result.tool_calls.map((c) => [c.tool, c.ok]), [
      ["list_resources", true],
      ["read_resource", true],
      ["read_resource", true],
      ["read_resource", false],
    ]);
    assert((result.tool_calls[2]!.truncated_chars ?? 0) > 0);
    // Read-only: they ran without asking.
    assert(result.approvals.every((a) => a.rule === "default: read-only" && !a.asked));
    assertEquals(host.calls, [
      "list fixture",
      "read notes://today",
      "read notes://big",
      "read notes://nope",
    ]);
  });
});

Deno.test({
  name: "end to end: the model reads a document of server-everything through the pool",
  fn: async () => {
    await withHarness(async (h) => {
      h.fake.script(
        CHAT,
        calls({ name: "everything__list_resources", arguments: {} }),
        calls({
          name: "everything__read_resource",
          arguments: { uri: "demo://resource/static/document/architecture.md" },
        }),
        answer("read it"),
      );
      const result = await h.run({ servers: ["everything", "memory"] });
      assertEquals(result.stopped_because, "answer");
      const requests = h.fake.requestsTo(CHAT);
      const names = toolNamesOf(requests[0]!);
      assert(names.includes("everything__read_resource"), names.join(", "));
      // server-memory (2026.8.31) declares resources too: each server gets its own pair.
      assert(names.includes("memory__read_resource"), names.join(", "));
      const listing = String(toolMessages(requests[1]!)[0]!.content);
      assertStringIncludes(
        listing,
        "demo://resource/static/document/architecture.md (text/markdown)",
      );
      assertStringIncludes(listing, "demo://resource/dynamic/text/{resourceId}");
      const read = String(toolMessages(requests[2]!)[1]!.content);
      assertStringIncludes(
        read,
        "[resource demo://resource/static/document/architecture.md, text/markdown]",
      );
    }, { servers: { everything: cachedEntry([REFERENCE_SERVERS.everything]) } });
  },
});
