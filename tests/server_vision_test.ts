import { type CallToolResult, McpServer } from "../lib/sdk.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { join, resolve } from "../lib/path.ts";
import { registerAnalyzeImageTool, type VisionApp } from "../lib/server_vision.ts";
import { resolveSettings } from "../lib/settings.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio, type FakeModel } from "./fakes/lmstudio.ts";
import { connectInMemory, type InMemoryClient, quiet } from "./rigs.ts";

const FIXTURES = resolve(import.meta.dirname ?? ".", "fixtures/images");
const fixture = (name: string) => join(FIXTURES, name);
const b64 = (name: string) => Deno.readFileSync(fixture(name)).toBase64();

const VISION: FakeModel = {
  id: "qwen2.5-vl-7b-instruct",
  type: "vlm",
  state: "loaded",
  maxContextLength: 32768,
};
const TEXT: FakeModel = { id: "qwen2.5-7b-instruct", type: "llm", state: "loaded" };
const EMBED: FakeModel = { id: "text-embedding-nomic-embed-text-v1.5", type: "embeddings" };

interface Harness extends AsyncDisposable {
  fake: FakeLmStudio;
  client: InMemoryClient["client"];
  call(args: Record<string, unknown>): Promise<CallToolResult>;
  chats(): Record<string, unknown>[];
}

/** A real SDK client talking in memory to an McpServer with analyze_image, over a fake LM Studio. */
async function harness(
  o: {
    models?: FakeModel[];
    flavor?: "lmstudio" | "lmstudio-v0" | "openai-only";
    defaultModel?: string;
    /** The model manager's part analyze_image uses; none by default. */
    manager?: VisionApp["models"];
  } = {},
): Promise<Harness> {
  const fake = await FakeLmStudio.start({
    models: o.models ?? [VISION, TEXT, EMBED],
    flavor: o.flavor,
  });
  const lm = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0 });
  const server = new McpServer({ name: "vision-test", version: "0" });
  registerAnalyzeImageTool(server, {
    client: lm,
    settings: resolveSettings(o.defaultModel ? { DEFAULT_MODEL: o.defaultModel } : {}),
    log: quiet,
    ...(o.manager ? { models: o.manager } : {}),
  });
  const connection = await connectInMemory(server);
  return {
    fake,
    client: connection.client,
    call: (args) => connection.call("analyze_image", args),
    chats: () =>
      fake.requestsTo("/v1/chat/completions").map((r) => r.body as Record<string, unknown>),
    async [Symbol.asyncDispose]() {
      await connection[Symbol.asyncDispose]();
      await fake.close();
    },
  };
}

function texts(result: CallToolResult): string[] {
  return result.content.map((c) => (c.type === "text" ? c.text : `<${c.type}>`));
}

Deno.test("analyze_image is listed as a read-only, open-world tool with its parameters", async () => {
  await using h = await harness();
  const { tools } = await h.client.listTools();
  const tool = tools.find((t) => t.name === "analyze_image");
  assert(tool, "analyze_image is registered");
  assertEquals(tool.annotations?.readOnlyHint, true);
  assertEquals(tool.annotations?.openWorldHint, true);
  assertEquals(tool.inputSchema.required?.sort(), ["images", "prompt"]);
  for (const p of ["images", "prompt", "model", "detail", "max_tokens", "temperature"]) {
    assert(p in (tool.inputSchema.properties ?? {}), `parameter ${p}`);
  }
  assertMatch(tool.description ?? "", /describe.*compare.*OCR/is);
});

Deno.test("analyze_image sends the prompt and every image as data URIs to a loaded vision model", async () => {
  await using h = await harness();
  const gifUri = `data:image/gif;base64,${b64("green.gif")}`;
  const result = await h.call({
    images: [fixture("red.png"), gifUri],
    prompt: "Which colours do you see?",
    detail: "low",
    temperature: 0,
  });
  assertEquals(result.isError, undefined, texts(result).join("\n"));

  const [body, ...more] = h.chats();
  assertEquals(more.length, 0);
  assert(body);
  assertEquals(body.model, VISION.id);
  assertEquals(body.max_tokens, 1024);
  assertEquals(body.temperature, 0);
  assertEquals(body.ttl, 600);
  assertEquals(body.messages, [{
    role: "user",
    content: [
      { type: "text", text: "Which colours do you see?" },
      { type: "text", text: "Image 1 (red.png):" },
      {
        type: "image_url",
        image_url: { url: `data:image/png;base64,${b64("red.png")}`, detail: "low" },
      },
      { type: "text", text: "Image 2:" },
      { type: "image_url", image_url: { url: gifUri, detail: "low" } },
    ],
  }]);

  assertStringIncludes(texts(result)[0] ?? "", "[2 image(s)]");
  const structured = result.structuredContent as Record<string, unknown>;
  assertEquals(structured.model, VISION.id);
  assertEquals(structured.model_choice, "loaded-vision");
  assertEquals(structured.images, [
    { label: fixture("red.png"), mime: "image/png", bytes: 69, source: "file" },
    { label: "data:image/gif", mime: "image/gif", bytes: 43, source: "data-uri" },
  ]);
  assert(structured.usage !== null, "usage is reported");
});

Deno.test("analyze_image accepts a single image string and a JSON-encoded list", async () => {
  await using h = await harness();
  const one = await h.call({ images: fixture("blue.jpg"), prompt: "Describe." });
  assertEquals(one.isError, undefined, texts(one).join("\n"));
  const list = await h.call({
    images: JSON.stringify([fixture("blue.jpg"), fixture("yellow.webp")]),
    prompt: "Compare.",
  });
  assertEquals(list.isError, undefined, texts(list).join("\n"));
  const [first, second] = h.chats();
  const parts = (b: Record<string, unknown> | undefined) =>
    ((b?.messages as { content: { type: string }[] }[])[0]?.content ?? []).filter((p) =>
      p.type === "image_url"
    ).length;
  assertEquals(parts(first), 1);
  assertEquals(parts(second), 2);
});

Deno.test("analyze_image returns reasoning apart from the answer", async () => {
  await using h = await harness();
  h.fake.script(
    "/v1/chat/completions",
    {
      body: chatReply({
        content: "<think>It is one red pixel.</think>A red square.",
        reasoning_content: "The image is 1x1.",
        model: VISION.id,
      }),
    },
  );
  const result = await h.call({ images: fixture("red.png"), prompt: "What is it?" });
  assertEquals(result.isError, undefined, texts(result).join("\n"));
  const [answer, reasoning] = texts(result);
  assertEquals(answer, "A red square.");
  assert(reasoning !== undefined, "reasoning block present");
  assertMatch(reasoning, /^---\n\[model reasoning, not part of the answer\]/);
  assertStringIncludes(reasoning, "The image is 1x1.");
  assertStringIncludes(reasoning, "It is one red pixel.");
  const structured = result.structuredContent as Record<string, unknown>;
  assertEquals(structured.answer, "A red square.");
  assertStringIncludes(String(structured.reasoning), "It is one red pixel.");
});

Deno.test("analyze_image says when the answer ran out of tokens", async () => {
  await using h = await harness();
  h.fake.script("/v1/chat/completions", {
    body: chatReply({ content: "", reasoning_content: "hmm...", finishReason: "length" }),
  });
  const result = await h.call({ images: fixture("red.png"), prompt: "Read it.", max_tokens: 5 });
  assertStringIncludes(texts(result)[0] ?? "", "larger max_tokens");
  assertEquals(h.chats()[0]?.max_tokens, 5);
});

Deno.test("analyze_image explains a missing vision model without sending anything", async (t) => {
  await t.step("nothing with vision is downloaded", async () => {
    await using h = await harness({ models: [TEXT, EMBED] });
    const result = await h.call({ images: fixture("red.png"), prompt: "Describe." });
    assertEquals(result.isError, true);
    const text = texts(result).join("\n");
    assertStringIncludes(text, "No vision-capable model is downloaded");
    assertStringIncludes(text, "lms get");
    assertStringIncludes(text, TEXT.id);
    assertEquals(h.chats().length, 0);
  });

  await t.step("a vision model is downloaded but not loaded: it is loaded and used", async () => {
    await using h = await harness({ models: [TEXT, { ...VISION, state: "not-loaded" }] });
    const result = await h.call({ images: fixture("red.png"), prompt: "Describe." });
    assertEquals(result.isError, undefined, texts(result).join("\n"));
    const [chat] = h.chats();
    assertEquals((chat as { model?: string }).model, VISION.id);
    assertStringIncludes(JSON.stringify(result.structuredContent), "was loaded for this call");
  });

  await t.step("an explicitly named text-only model is refused before sending", async () => {
    await using h = await harness();
    const result = await h.call({ images: fixture("red.png"), prompt: "Hi", model: TEXT.id });
    assertEquals(result.isError, true);
    const text = texts(result).join("\n");
    assertStringIncludes(text, `Model ${TEXT.id} cannot read images`);
    assertStringIncludes(text, `${VISION.id} (loaded)`);
    assertEquals(h.chats().length, 0);
  });

  await t.step("on a server without capabilities, it asks for a model", async () => {
    await using h = await harness({ flavor: "openai-only" });
    const result = await h.call({ images: fixture("red.png"), prompt: "Hi" });
    assertEquals(result.isError, true);
    assertStringIncludes(texts(result).join("\n"), "Cannot tell which model can read images");
    assertEquals(h.chats().length, 0);
  });
});

Deno.test("analyze_image uses DEFAULT_MODEL unless the server says it is text-only", async (t) => {
  await t.step("a vision DEFAULT_MODEL is used", async () => {
    const other: FakeModel = { ...VISION, id: "gemma-3-4b-it", state: "not-loaded" };
    await using h = await harness({ models: [VISION, other], defaultModel: other.id });
    const result = await h.call({ images: fixture("red.png"), prompt: "Hi" });
    assertEquals(result.isError, undefined, texts(result).join("\n"));
    assertEquals(h.chats()[0]?.model, other.id);
  });

  await t.step(
    "a text-only DEFAULT_MODEL is skipped for a loaded vision model, with a note",
    async () => {
      await using h = await harness({ defaultModel: TEXT.id });
      const result = await h.call({ images: fixture("red.png"), prompt: "Hi" });
      assertEquals(result.isError, undefined, texts(result).join("\n"));
      assertEquals(h.chats()[0]?.model, VISION.id);
      assertStringIncludes(texts(result).join("\n"), `DEFAULT_MODEL ${TEXT.id} is text-only`);
    },
  );
});

Deno.test("analyze_image reports bad image inputs by name and sends nothing", async (t) => {
  await t.step("a missing file", async () => {
    await using h = await harness();
    const missing = fixture("no-such-image.png");
    const result = await h.call({ images: [fixture("red.png"), missing], prompt: "Hi" });
    assertEquals(result.isError, true);
    const text = texts(result).join("\n");
    assertStringIncludes(text, `Image file not found: ${missing}`);
    assertEquals(h.chats().length, 0);
  });

  await t.step("a file that is not an image", async () => {
    await using h = await harness();
    const result = await h.call({ images: fixture("not-really.png"), prompt: "Hi" });
    assertEquals(result.isError, true);
    assertStringIncludes(texts(result).join("\n"), "PNG, JPEG, GIF, WebP, BMP");
  });

  await t.step("a private URL", async () => {
    await using h = await harness();
    const result = await h.call({ images: `${h.fake.baseUrl}/v1/models`, prompt: "Hi" });
    assertEquals(result.isError, true);
    assertStringIncludes(texts(result).join("\n"), "Refusing to fetch");
    assertEquals(h.fake.requestsTo("/v1/models").length, 1, "only the model listing");
  });

  await t.step("image and model problems are reported together", async () => {
    await using h = await harness({ models: [TEXT] });
    const result = await h.call({ images: fixture("gone.png"), prompt: "Hi" });
    const text = texts(result).join("\n");
    assertStringIncludes(text, "gone.png");
    assertStringIncludes(text, "No vision-capable model");
  });
});

Deno.test("analyze_image passes on LM Studio's own refusal with the model named", async () => {
  // Without the REST API the bridge cannot know the model is text-only; LM Studio says so.
  await using h = await harness({ flavor: "openai-only" });
  const result = await h.call({ images: fixture("red.png"), prompt: "Hi", model: TEXT.id });
  assertEquals(result.isError, true);
  const text = texts(result).join("\n");
  assertStringIncludes(text, `analyze_image with model ${TEXT.id} (1 image) failed`);
  assertStringIncludes(text, "does not support images");
});

Deno.test("analyze_image loads a named model through the model manager first", async (t) => {
  await t.step("a load failure stops the call with its message", async () => {
    await using h = await harness({
      manager: {
        ensureLoaded: (model) =>
          Promise.reject(new Error(`Not enough memory to load ${model}: needs 9 GB.`)),
      },
    });
    const result = await h.call({ images: fixture("red.png"), prompt: "Hi", model: VISION.id });
    assertEquals(result.isError, true);
    assertStringIncludes(texts(result).join("\n"), `Not enough memory to load ${VISION.id}`);
    assertEquals(h.chats().length, 0);
  });

  await t.step("a model found loaded is used without another load", async () => {
    const loads: string[] = [];
    await using h = await harness({
      manager: { ensureLoaded: (model) => Promise.resolve(void loads.push(model)) },
    });
    await h.call({ images: fixture("red.png"), prompt: "Hi" });
    await h.call({ images: fixture("red.png"), prompt: "Hi", model: VISION.id });
    assertEquals(loads, [VISION.id]);
  });
});
