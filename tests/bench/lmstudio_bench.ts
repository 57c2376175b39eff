/**
 * The LM Studio client against the fake LM Studio (real HTTP on 127.0.0.1): what the client adds
 * to a bare fetch (headers, timeout, zod validation, reasoning split), `listModels`, which asks
 * /v1/models, /api/v1/models and /api/v0/models in parallel, and what streaming costs: a
 * 2,000-token answer streamed (about 2,000 server-sent events, each parsed and validated, a
 * progress event for each) against the same answer in one JSON body.
 */
import { LmStudioClient } from "../../lib/lmstudio.ts";
import { chatReply, FakeLmStudio } from "../fakes/lmstudio.ts";
import { check, quiet, Shared } from "./support.ts";

const MODEL = "qwen2.5-7b-instruct";

const lmstudio = new Shared(async () => {
  const fake = await FakeLmStudio.start({ stream: "sse" });
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const unstreamed = new LmStudioClient({
    baseUrl: fake.baseUrl,
    retries: 0,
    stream: false,
    log: quiet,
  });
  return { value: { fake, client, unstreamed }, close: () => fake.close() };
});

/** A 2,000-token answer: " word" is one token of the fake's streams. */
const LONG_ANSWER = Array.from({ length: 2_000 }, (_, i) => ` w${i % 100}`).join("").trim();

const group = "LM Studio client (fake server)";

Deno.bench({
  name: "bare fetch GET /v1/models (floor)",
  group,
  baseline: true,
  async fn(b) {
    const { fake } = await lmstudio.get();
    fake.requests.length = 0;
    b.start();
    const response = await fetch(`${fake.baseUrl}/v1/models`);
    await response.json();
    b.end();
    check(response.ok, "models listed");
  },
});

Deno.bench({
  name: "chat round trip",
  group,
  async fn(b) {
    const { fake, client } = await lmstudio.get();
    fake.requests.length = 0;
    b.start();
    const result = await client.chat({
      model: MODEL,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "ping" },
      ],
      max_tokens: 64,
    });
    b.end();
    check(result.content === "Echo: ping", "echo answer");
  },
});

Deno.bench({
  name: "listModels (3 parallel requests, merged)",
  group,
  async fn(b) {
    const { fake, client } = await lmstudio.get();
    fake.requests.length = 0;
    b.start();
    const list = await client.listModels();
    b.end();
    check(list.source === "api/v1" && list.models.length === 2, "merged list");
  },
});

const CHAT = "/v1/chat/completions";
const LONG_REQUEST = {
  model: MODEL,
  messages: [{ role: "user" as const, content: "write at length" }],
};
const LONG_REPLY = chatReply({
  content: LONG_ANSWER,
  usage: { prompt_tokens: 9, completion_tokens: 2_000 },
});

/** One 2,000-token chat request, streamed or not, checked whole. */
async function longAnswer(
  b: Deno.BenchContext,
  o: { streamed: boolean; perSecond?: number },
): Promise<void> {
  const { fake, client, unstreamed } = await lmstudio.get();
  fake.requests.length = 0;
  // A model at `perSecond` takes 2,000 / perSecond seconds either way; unstreamed, all of it
  // passes before the body is sent.
  const generating = o.perSecond !== undefined ? Math.round(2_000_000 / o.perSecond) : 0;
  fake.script(CHAT, {
    body: LONG_REPLY,
    ...(o.streamed
      ? { stream: o.perSecond !== undefined ? { perSecond: o.perSecond } : {} }
      : { delayMs: generating }),
  });
  let events = 0;
  b.start();
  const result = await (o.streamed ? client : unstreamed).chat(LONG_REQUEST, {
    onEvent: () => void events++,
  });
  b.end();
  check(result.content === LONG_ANSWER, "the whole answer");
  check(!o.streamed || events > 2_000, `a progress event a piece (${events})`);
}

const instant = "a 2,000-token answer, generated instantly (fake LM Studio)";

Deno.bench({
  name: "one JSON body (stream: false)",
  group: instant,
  baseline: true,
  async fn(b) {
    await longAnswer(b, { streamed: false });
  },
});

Deno.bench({
  name: "bare fetch reading the same stream (floor of streaming)",
  group: instant,
  async fn(b) {
    const { fake } = await lmstudio.get();
    fake.requests.length = 0;
    fake.script(CHAT, { body: LONG_REPLY });
    b.start();
    const response = await fetch(`${fake.baseUrl}${CHAT}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...LONG_REQUEST, stream: true }),
    });
    const text = await response.text();
    b.end();
    check(text.endsWith("data: [DONE]\n\n"), "the whole stream");
  },
});

Deno.bench({
  name: "streamed: ~2,000 server-sent events, a progress event each",
  group: instant,
  async fn(b) {
    await longAnswer(b, { streamed: true });
  },
});

const paced = "a 2,000-token answer at 5,000 tokens/s (25x a fast local model)";

Deno.bench({
  name: "one JSON body after the generation (stream: false)",
  group: paced,
  baseline: true,
  n: 10,
  warmup: 1,
  async fn(b) {
    await longAnswer(b, { streamed: false, perSecond: 5_000 });
  },
});

Deno.bench({
  name: "streamed as generated",
  group: paced,
  n: 10,
  warmup: 1,
  async fn(b) {
    await longAnswer(b, { streamed: true, perSecond: 5_000 });
  },
});
