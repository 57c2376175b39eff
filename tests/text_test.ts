import { assertEquals } from "./assert.ts";
import { redact, REDACTED } from "../lib/redact.ts";

Deno.test("redact hides secrets by name and by shape, shortens long values and leaves the rest", () => {
  const input = {
    path: "/tmp/notes.txt",
    password: "hunter2",
    apiKey: "abc",
    auth_token: "t0k3n",
    headers: { Authorization: "Basic eDp5" },
    max_tokens: 100,
    prompt: "hello",
    key: "user-42",
    empty_secret: "",
    values: ["sk-abcdefghijklmnopqrstuv", "ghp_abcdefghijklmnopqrstuvwxyz", "plain"],
    url: "https://ada:s3cr3t@example.com/x",
    long: "x".repeat(500),
    many: Array.from({ length: 25 }, (_, i) => i),
    deep: { a: { b: { c: 1 } } },
  };
  const before = structuredClone(input);
  assertEquals(redact(input, { maxDepth: 3 }), {
    path: "/tmp/notes.txt",
    password: REDACTED,
    apiKey: REDACTED,
    auth_token: REDACTED,
    headers: { Authorization: REDACTED },
    max_tokens: 100,
    prompt: "hello",
    key: "user-42",
    empty_secret: "",
    values: [REDACTED, REDACTED, "plain"],
    url: `https://ada:${REDACTED}@example.com/x`,
    long: `${"x".repeat(180)}… (500 chars)`,
    many: [...Array.from({ length: 20 }, (_, i) => i), "… 5 more items"],
    deep: { a: { b: "{…}" } },
  });
  assertEquals(input, before, "the value itself is left alone");
});
