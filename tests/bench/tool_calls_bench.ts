/**
 * The tool plumbing of the loop, pure computation: building the catalog the model sees (naming,
 * namespacing, schema cleaning) for 50 tools of 5 servers, and recovering tool calls a model
 * printed as text, including the common case of an answer that holds none.
 */
import type { Tool } from "../../lib/sdk.ts";
import { recoverTextToolCalls } from "../../lib/tool_calls.ts";
import { ToolCatalog } from "../../lib/tool_catalog.ts";
import { cleanToolSchema } from "../../lib/tool_schema.ts";
import { check } from "./support.ts";

/** A tool shaped like the reference servers' (filesystem, memory): nested, annotated schemas. */
function referenceLikeTool(server: number, index: number): Tool {
  return {
    name: `${["read", "write", "search", "list", "edit"][index % 5]}_item_${index}`,
    description: `Tool ${index} of server ${server}: does one thing to items, with a description ` +
      "long enough to look like a real one (a sentence or two of guidance for the model).",
    inputSchema: {
      type: "object",
      $schema: "http://json-schema.org/draft-07/schema#",
      properties: {
        path: { type: "string", format: "uri-reference", description: "Where the item lives" },
        when: { type: "string", format: "date-time" },
        limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
        tags: { type: "array", items: { type: "string", format: "email", $comment: "x" } },
        edits: {
          type: "array",
          items: {
            type: "object",
            properties: {
              oldText: { type: "string" },
              newText: { type: "string" },
              options: { type: "object", additionalProperties: {} },
            },
            required: ["oldText", "newText"],
            additionalProperties: false,
          },
        },
        mode: { anyOf: [{ type: "string", enum: ["fast", "exact"] }, { type: "null" }] },
      },
      required: ["path"],
      additionalProperties: false,
    },
  };
}

const SERVERS = Array.from({ length: 5 }, (_, s) => ({
  server: `server${s}`,
  tools: Array.from({ length: 10 }, (_, i) => referenceLikeTool(s, i)),
}));
const SCHEMA = SERVERS[0]!.tools[0]!.inputSchema;

Deno.bench({
  name: "build the catalog: 50 tools of 5 servers, namespaced",
  group: "catalog",
  baseline: true,
  fn() {
    const catalog = ToolCatalog.build(SERVERS, { namespaced: true });
    check(catalog.entries.length === 50, "50 tools");
  },
});

Deno.bench({
  name: "build the catalog with allowed_tools globs",
  group: "catalog",
  fn() {
    const catalog = ToolCatalog.build(SERVERS, {
      namespaced: true,
      allowed: ["server1__*", "read_*", "server4__edit_item_?"],
    });
    check(catalog.entries.length > 0 && catalog.excluded.length > 0, "filtered");
  },
});

Deno.bench({
  name: "cleanToolSchema, one nested schema",
  group: "catalog",
  fn() {
    check(cleanToolSchema(SCHEMA).type === "object", "object schema");
  },
});

const NAMES = new Set(ToolCatalog.build(SERVERS, { namespaced: true }).names);
const isTool = (name: string) => NAMES.has(name);
const CALL = '{"name": "server2__read_item_0", "arguments": {"path": "notes.txt", "limit": 5}}';
const PROSE = "The file lists three projects. ".repeat(64) +
  'Config keys look like {"timeout": 30} and are read at start-up.';

const recoveries: [string, string, number][] = [
  ["<tool_call> (Qwen, Hermes)", `Let me read it.\n<tool_call>\n${CALL}\n</tool_call>`, 1],
  ["[TOOL_REQUEST] (LM Studio)", `[TOOL_REQUEST]${CALL}[END_TOOL_REQUEST]`, 1],
  ["fenced json block", `I will read the file.\n\`\`\`json\n${CALL}\n\`\`\``, 1],
  ["2 KB answer with no call (the common case)", PROSE, 0],
];

for (const [name, text, expected] of recoveries) {
  Deno.bench({
    name,
    group: "recover tool calls printed as text",
    fn() {
      const { calls } = recoverTextToolCalls(text, isTool);
      check(calls.length === expected, `${expected} call(s) in ${name}`);
    },
  });
}
