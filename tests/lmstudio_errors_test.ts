import { httpError, parseErrorBody } from "../lib/lmstudio_errors.ts";
import { assertEquals, assertStringIncludes } from "./assert.ts";

Deno.test("parseErrorBody tolerates empty and odd bodies", () => {
  assertEquals(parseErrorBody(""), {});
  assertEquals(parseErrorBody('{"error":{"type":"server_error"}}'), { code: "server_error" });
  assertEquals(parseErrorBody('{"detail":"Not Found"}'), { message: "Not Found" });
  assertEquals(parseErrorBody("[1,2]"), { message: "[1,2]" });
});

/** The error for a 400 answer with `body` (as JSON) to a chat request. */
function chat400(body: unknown) {
  return httpError({
    baseUrl: "http://127.0.0.1:1234",
    url: "http://127.0.0.1:1234/v1/chat/completions",
    what: "the chat request",
    status: 400,
    statusText: "Bad Request",
    body: JSON.stringify(body),
    tokenSent: false,
  });
}

Deno.test("an HTTP error keeps the server's words without doubling the final period", () => {
  const e = chat400({ error: "Model is unloaded." });
  assertStringIncludes(e.message, "Model is unloaded.");
  assertEquals(e.message.includes(".."), false);
});

Deno.test("a context-length 400 says how to make the request fit", () => {
  const e = chat400({
    error: {
      message: "The number of tokens to keep from the initial prompt is greater than the " +
        "context length.",
    },
  });
  assertStringIncludes(e.message, "context window");
  assertStringIncludes(e.message, "--context-length");
});
