/**
 * The LM Studio client against the fake LM Studio (real HTTP on 127.0.0.1): what the client adds
 * to a bare fetch (headers, timeout, zod validation, reasoning split), and `listModels`, which
 * asks /v1/models, /api/v1/models and /api/v0/models in parallel.
 */
import { LmStudioClient } from "../../lib/lmstudio.ts";
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { check, quiet, Shared } from "./support.ts";

const MODEL = "qwen2.5-7b-instruct";

const lmstudio = new Shared(async () => {
  const fake = await FakeLmStudio.start();
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  return { value: { fake, client }, close: () => fake.close() };
});

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
