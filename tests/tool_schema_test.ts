import {
  ArgumentValidator,
  cleanToolSchema,
  describeParameters,
  MAX_COMPILED_SCHEMAS,
} from "../lib/tool_schema.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("cleanToolSchema removes what local servers reject and keeps the structure", () => {
  const cleaned = cleanToolSchema({
    $schema: "http://json-schema.org/draft-07/schema#",
    type: "object",
    properties: {
      url: { type: "string", format: "uri", description: "Where to go" },
      when: { type: "string", format: "date-time" },
      tags: { type: "array", items: { type: "string", format: "email", $comment: "x" } },
      meta: { type: "object", additionalProperties: {} },
      nested: { type: "object", properties: { a: { type: "string", format: "hostname" } } },
    },
    required: [],
    additionalProperties: false,
  });
  assertEquals(cleaned, {
    type: "object",
    properties: {
      url: { type: "string", description: "Where to go (format: uri)" },
      when: { type: "string", format: "date-time" },
      tags: { type: "array", items: { type: "string", description: "(format: email)" } },
      meta: { type: "object", additionalProperties: true },
      nested: {
        type: "object",
        properties: { a: { type: "string", description: "(format: hostname)" } },
      },
    },
    additionalProperties: false,
  });
});

Deno.test("cleanToolSchema makes any input a top-level object schema with properties", () => {
  assertEquals(cleanToolSchema(undefined), { type: "object", properties: {} });
  assertEquals(cleanToolSchema({ type: "object" }), { type: "object", properties: {} });
  assertEquals(cleanToolSchema("nonsense"), { type: "object", properties: {} });
});

Deno.test("ArgumentValidator lists every problem with the arguments readably", () => {
  const validator = new ArgumentValidator();
  const schema = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: {
      path: { type: "string" },
      depth: { type: "integer" },
      url: { type: "string", format: "uri" },
      opts: { type: "object", properties: { mode: { type: "string", enum: ["a", "b"] } } },
    },
    required: ["path"],
  };
  assertEquals(validator.problems(schema, { path: "x", url: "not a uri" }), []);
  const problems = validator.problems(schema, { depth: "deep", opts: { mode: "c" } });
  assertEquals(problems.length, 3);
  assert(problems.some((p) => p.includes("must have required property 'path'")));
  assert(problems.some((p) => p.includes("arguments.depth must be integer")));
  assert(problems.some((p) => p.includes("arguments.opts.mode must be equal to one of")));
  assertEquals(validator.problems({ $ref: "https://example.com/remote.json" }, {}), []);
  assertEquals(
    describeParameters(schema),
    "path (string, required), depth (integer), url (string), opts (object)",
  );
});

Deno.test("a schema is compiled once per object and once per content, by a bounded compiler", () => {
  const validator = new ArgumentValidator();
  const schema = {
    type: "object",
    properties: { count: { type: "integer" } },
    required: ["count"],
  };
  for (let i = 0; i < 3; i++) assertEquals(validator.problems(schema, { count: i }), []);
  assertEquals(validator.compilations, 1);
  // The same tool in a changed tool list: a new object, the same content.
  assertEquals(validator.problems(structuredClone(schema), { count: 1 }), []);
  assertEquals(validator.compilations, 1);
  const other = { type: "object", properties: { name: { type: "string" } } };
  assertEquals(validator.problems(other, { name: 1 }).length, 1);
  assertEquals(validator.compilations, 2);
  // Past the bound a fresh compiler takes over; checks made before keep working.
  for (let i = 0; i < MAX_COMPILED_SCHEMAS + 5; i++) {
    const distinct = { type: "object", properties: { [`p${i}`]: { type: "number" } } };
    assertEquals(validator.problems(distinct, { [`p${i}`]: "x" }).length, 1);
  }
  assertEquals(validator.compilations, 2 + MAX_COMPILED_SCHEMAS + 5);
  assertEquals(validator.problems(schema, { count: "x" }), ["arguments.count must be integer"]);
});
