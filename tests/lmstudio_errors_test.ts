import { parseErrorBody } from "../lib/lmstudio_errors.ts";
import { assertEquals } from "./assert.ts";

Deno.test("parseErrorBody tolerates empty and odd bodies", () => {
  assertEquals(parseErrorBody(""), {});
  assertEquals(parseErrorBody('{"error":{"type":"server_error"}}'), { code: "server_error" });
  assertEquals(parseErrorBody('{"detail":"Not Found"}'), { message: "Not Found" });
  assertEquals(parseErrorBody("[1,2]"), { message: "[1,2]" });
});
