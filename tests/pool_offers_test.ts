/**
 * What the pool offers of a server beyond its tools: resources, resource templates and prompts
 * (every page, cached per connection, refreshed on list_changed), against the reference
 * server-everything and our fixture.
 */
import { McpServerError } from "../lib/pool_errors.ts";
import type { McpPool } from "../lib/pool.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "./assert.ts";
import { fixtureEntry, TempConfig } from "./fixtures/pool_config.ts";
import { cachedEntry, REFERENCE_SERVERS, textOf } from "./fixtures/pool_support.ts";

async function withPool(
  servers: Record<string, unknown>,
  body: (pool: McpPool) => Promise<void>,
): Promise<void> {
  const cfg = new TempConfig(servers);
  const pool = cfg.pool();
  try {
    await body(pool);
  } finally {
    await pool.close();
    cfg.remove();
  }
}

Deno.test("pool lists and reads server-everything's resources and gets its prompts", async (t) => {
  const everything = cachedEntry([REFERENCE_SERVERS.everything, "stdio"]);
  await withPool({ everything }, async (pool) => {
    await t.step("resources, with URIs and mime types", async () => {
      const resources = await pool.listResources("everything");
      const features = resources.find((r) => r.uri.endsWith("/features.md"));
      assertEquals(features?.mimeType, "text/markdown");
      assertEquals(features?.uri, "demo://resource/static/document/features.md");
    });
    await t.step("resource templates", async () => {
      const templates = await pool.listResourceTemplates("everything");
      assertEquals(
        templates.map((r) => r.uriTemplate).sort(),
        ["demo://resource/dynamic/blob/{resourceId}", "demo://resource/dynamic/text/{resourceId}"],
      );
    });
    await t.step("a text resource and a binary one", async () => {
      const doc = await pool.readResource(
        "everything",
        "demo://resource/static/document/features.md",
      );
      const text = doc.contents[0];
      assert(text !== undefined && "text" in text, "a text resource has text");
      assertStringIncludes(text.text, "# Everything Server - Features");
      const blob = await pool.readResource("everything", "demo://resource/dynamic/blob/1");
      const bytes = blob.contents[0];
      assert(bytes !== undefined && "blob" in bytes, "a binary resource has a blob");
      assertMatch(atob(bytes.blob), /^Resource 1: This is a base64 blob/);
    });
    await t.step("prompts, with their arguments", async () => {
      const prompts = await pool.listPrompts("everything");
      const args = prompts.find((p) => p.name === "args-prompt");
      assertEquals(args?.arguments?.map((a) => [a.name, a.required]), [
        ["city", true],
        ["state", false],
      ]);
      const got = await pool.getPrompt("everything", "args-prompt", { city: "Paris" });
      assertEquals(got.messages[0]?.content, { type: "text", text: "What's weather in Paris?" });
    });
    await t.step("a misspelt prompt or a missing argument says what there is", async () => {
      const unknown = await assertRejects(
        () => pool.getPrompt("everything", "args-promt"),
        McpServerError,
      );
      assertEquals(unknown.kind, "unknown_prompt");
      assertStringIncludes(
        unknown.message,
        'has no prompt "args-promt". Did you mean "args-prompt"?',
      );
      const missing = await assertRejects(
        () => pool.getPrompt("everything", "args-prompt", { town: "Paris" }),
        McpServerError,
      );
      assertStringIncludes(
        missing.message,
        "(missing city; unknown town). It takes: city, state?.",
      );
    });
    await t.step("what it offers, and the counts status shows", async () => {
      assertEquals(await pool.offers("everything"), {
        tools: true,
        resources: true,
        prompts: true,
      });
      const status = (await pool.status()).servers[0];
      assertEquals(status?.offers?.resourceTemplateCount, 2);
      assertEquals(status?.offers?.promptCount, 4);
      assert((status?.offers?.resourceCount ?? 0) >= 7, "its static documents are counted");
    });
  });
});

Deno.test("pool fetches every page of resources and prompts and refreshes them on list_changed", async () => {
  await withPool(
    { fx: fixtureEntry(["--extras", "--resources", "5", "--page-size", "2"]) },
    async (pool) => {
      const first = await pool.listResources("fx");
      // Five text items and the pixel, in pages of two.
      assertEquals(first.map((r) => r.uri), [
        "fx://item/1",
        "fx://item/2",
        "fx://item/3",
        "fx://item/4",
        "fx://item/5",
        "fx://pixel.png",
      ]);
      assertStrictEquals(await pool.listResources("fx"), first, "the list is cached");
      assertEquals((await pool.listPrompts("fx")).map((p) => p.name), ["plain", "greet"]);
      assertEquals(textOf(await pool.callTool("fx", "add_resource", { name: "new" })), "added new");
      assertEquals((await pool.listResources("fx")).at(-1)?.uri, "fx://added/new");
      assertEquals(
        textOf(await pool.callTool("fx", "add_prompt", { name: "later" })),
        "added later",
      );
      assertEquals((await pool.listPrompts("fx")).map((p) => p.name), ["plain", "greet", "later"]);
      const greeting = await pool.getPrompt("fx", "greet", { name: "Ada", style: "formal" });
      assertEquals(greeting.messages[0]?.content, {
        type: "text",
        text: "Greet Ada in a formal way.",
      });
      const pixel = await pool.readResource("fx", "fx://pixel.png");
      assertEquals(pixel.contents[0]?.mimeType, "image/png");
    },
  );
});

Deno.test("pool says a server offers no resources or prompts without asking it", async () => {
  await withPool({ fx: fixtureEntry() }, async (pool) => {
    assertEquals(await pool.offers("fx"), { tools: true, resources: false, prompts: false });
    assertEquals(await pool.listResources("fx"), []);
    assertEquals(await pool.listResourceTemplates("fx"), []);
    assertEquals(await pool.listPrompts("fx"), []);
    const read = await assertRejects(() => pool.readResource("fx", "fx://item/1"), McpServerError);
    assertEquals(read.kind, "unsupported");
    assertStringIncludes(
      read.message,
      'MCP server "fx" offers no resources (it does not declare the capability), so the bridge ' +
        'cannot do reading resource "fx://item/1".',
    );
    const prompt = await assertRejects(() => pool.getPrompt("fx", "greet"), McpServerError);
    assertStringIncludes(prompt.message, 'MCP server "fx" offers no prompts');
    const status = (await pool.status()).servers[0];
    assertEquals(status?.offers, {
      resources: false,
      prompts: false,
      resourceCount: 0,
      resourceTemplateCount: 0,
      promptCount: 0,
    });
  });
});

Deno.test("pool passes on a server's refusal to read a resource it does not have", async () => {
  await withPool({ fx: fixtureEntry(["--extras"]) }, async (pool) => {
    const error = await assertRejects(
      () => pool.readResource("fx", "other://nothing"),
      McpServerError,
    );
    assertStringIncludes(
      error.message,
      'MCP server "fx" rejected reading resource "other://nothing": MCP error -32602: ' +
        "Resource other://nothing not found",
    );
  });
});
