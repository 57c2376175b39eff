/**
 * Kept request bodies (lmstudio_body.ts): byte for byte what `JSON.stringify` writes, however the
 * conversations grow, share their first message, shrink or come back.
 */
import { assertEquals } from "./assert.ts";
import { bodyBytesKept } from "../lib/lmstudio_body.ts";

const text = new TextDecoder();
const expected = (body: unknown) => JSON.stringify(body);

Deno.test("a conversation of 300 rounds: every body is what JSON.stringify writes", () => {
  const tools = [{
    type: "function",
    function: { name: "search", parameters: { type: "object" } },
  }];
  const messages: unknown[] = [{ role: "system", content: "Work \u2028 step by step." }];
  for (let round = 0; round < 300; round++) {
    // Key order as the loop sends it, and values that are not kept (a number, nested objects).
    const body = { model: "qwen", messages: [...messages], tools, temperature: 0.2, stream: false };
    assertEquals(text.decode(bodyBytesKept(body)), expected(body), `round ${round}`);
    // Multi-byte text and a long result now and then make the kept bytes grow past their room.
    messages.push(
      { role: "assistant", content: "", tool_calls: [{ id: `c${round}`, arguments: "{}" }] },
      { role: "tool", content: round % 7 === 0 ? "ünï \u{1F600} ".repeat(400) : `r${round}` },
    );
  }
});

Deno.test("two conversations that share their first message, a shorter one, and odd bodies", () => {
  const system = { role: "system", content: "shared" };
  const a: unknown[] = [system, { role: "user", content: "a" }];
  const b: unknown[] = [system, { role: "user", content: "b" }];
  for (let turn = 0; turn < 5; turn++) {
    for (const list of [a, b, a.slice(0, 2), a]) {
      const body = { tools: [], messages: [...list], model: "m" };
      assertEquals(text.decode(bodyBytesKept(body)), expected(body), `turn ${turn}`);
    }
    a.push({ role: "assistant", content: `a${turn}` });
    b.push({ role: "assistant", content: `b${turn}` });
  }
  for (
    const body of [
      {},
      { messages: [] },
      { messages: ["text", 1, null] },
      { skipped: undefined, model: "m", messages: [system] },
      { messages: [system], tools: [system] },
      [1, 2],
      "text",
    ]
  ) {
    assertEquals(text.decode(bodyBytesKept(body)), expected(body), JSON.stringify(body));
  }
});
