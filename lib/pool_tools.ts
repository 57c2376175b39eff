/**
 * Reading a server's `tools/list` one tool at a time ({@linkcode readToolList}): a tool declared
 * wrongly (no `inputSchema`, a schema that is not an object schema, an invalid optional field) is
 * repaired or skipped with a note that says so, and the server's other tools stay usable. The
 * SDK's own `listTools` rejects the whole list, with a dump of the validator's issues, when one
 * tool is wrong.
 */
import { z } from "zod";
import { type Tool, ToolSchema } from "./sdk.ts";
import { typeName } from "./config_entry.ts";
import { isRecord } from "./json.ts";

/** Fields a tool may do without: an invalid one is dropped rather than losing the tool. */
const OPTIONAL_FIELDS = new Set([
  "title",
  "description",
  "outputSchema",
  "annotations",
  "execution",
  "icons",
  "_meta",
]);

/** "an object without \"type\"", "a string", "type \"string\"" for a message about a schema. */
function schemaKind(schema: unknown): string {
  if (!isRecord(schema)) return typeName(schema);
  const type = schema["type"];
  return type === undefined ? 'an object without "type"' : `of type ${JSON.stringify(type)}`;
}

function issueText(issue: z.core.$ZodIssue): string {
  const where = issue.path.map(String).join(".");
  return where === "" ? issue.message : `${where}: ${issue.message}`;
}

/**
 * The tools of one page of `server`'s list, checked one by one. A tool with a bad `inputSchema`
 * (missing, or not an object schema) is offered with an empty object schema (any arguments); an
 * invalid optional field is dropped; a tool without a name, or still invalid after that, is
 * skipped. Each repair or skip gets a note naming the tool and what was wrong.
 */
export function readToolList(
  raw: readonly unknown[],
  server: string,
): { tools: Tool[]; notes: string[] } {
  const tools: Tool[] = [];
  const notes: string[] = [];
  const report = "Report it to the server's authors.";
  raw.forEach((item, index) => {
    const parsed = ToolSchema.safeParse(item);
    if (parsed.success) {
      tools.push(parsed.data);
      return;
    }
    const name = isRecord(item) ? item["name"] : undefined;
    if (!isRecord(item) || typeof name !== "string" || name === "") {
      notes.push(
        `MCP server "${server}" listed a tool without a name (entry ${index + 1} of its list); ` +
          `skipped. ${report}`,
      );
      return;
    }
    const fixed: Record<string, unknown> = { ...item };
    const fixes: string[] = [];
    const schema = item["inputSchema"];
    let anyArguments = false;
    if (schema === undefined || !isRecord(schema) || schema["type"] !== "object") {
      fixes.push(
        schema === undefined
          ? "declares no inputSchema"
          : `has an inputSchema ${schemaKind(schema)}, not an object schema`,
      );
      fixed["inputSchema"] = { type: "object" };
      anyArguments = true;
    }
    let again = ToolSchema.safeParse(fixed);
    if (!again.success) {
      const bad = new Set(
        again.error.issues.map((i) => String(i.path[0] ?? "")).filter((k) =>
          OPTIONAL_FIELDS.has(k)
        ),
      );
      for (const key of bad) {
        delete fixed[key];
        fixes.push(`has an invalid ${key} (ignored)`);
      }
      again = ToolSchema.safeParse(fixed);
    }
    if (!again.success && !anyArguments) {
      // The schema is an object schema, but its properties or required list are wrong.
      const issue = again.error.issues.find((i) => i.path[0] === "inputSchema");
      if (issue !== undefined) {
        fixes.push(`has an invalid inputSchema (${issueText(issue)})`);
        fixed["inputSchema"] = { type: "object" };
        anyArguments = true;
        again = ToolSchema.safeParse(fixed);
      }
    }
    if (!again.success) {
      const first = again.error.issues[0];
      notes.push(
        `Tool "${name}" of MCP server "${server}" is declared wrongly (${
          first === undefined ? "invalid" : issueText(first)
        }); skipped, the server's other tools are usable. ${report}`,
      );
      return;
    }
    tools.push(again.data);
    notes.push(
      `Tool "${name}" of MCP server "${server}" ${fixes.join(" and ")}; ` +
        (anyArguments ? "it is offered as taking any arguments. " : "it is offered as it is. ") +
        report,
    );
  });
  return { tools, notes };
}
