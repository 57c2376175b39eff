/**
 * The resources of MCP servers, for the local model: a server that offers resources gets two
 * tools the bridge adds to the catalog (tool_catalog.ts), `list_resources` (its resources and URI
 * templates: URI, name, MIME type, size, description) and `read_resource` (one resource by URI),
 * both read-only, namespaced like its own tools (`everything__read_resource` beside other
 * servers). Their results read like tool results: text inline, binary content summarised by type
 * and size (text sent as base64 is shown as text), cut to the context budget by the loop.
 */
import type { ToolHost } from "./agent_types.ts";
import type { ReadResourceResult, Resource, ResourceTemplate, Tool } from "./sdk.ts";
import { errorMessage } from "./errors.ts";
import { clause, firstLine, formatBytes, plural } from "./text.ts";
import { describePart } from "./tool_output.ts";
import { isAbort } from "./abort.ts";

/** The tools the bridge adds for a server that offers resources. */
export type ResourceTool = "list_resources" | "read_resource";

/** The tool definitions of {@linkcode ResourceTool}, one pair per server name. */
const definitions = new Map<string, Record<ResourceTool, Tool>>();

/**
 * The bridge's resource tools for `server`, made once per server name (the catalog caches
 * definitions by tool object).
 */
export function resourceTools(server: string): Record<ResourceTool, Tool> {
  let tools = definitions.get(server);
  if (tools === undefined) {
    const annotations = { readOnlyHint: true, destructiveHint: false, openWorldHint: false };
    tools = {
      list_resources: {
        name: "list_resources",
        description: `Lists the resources (documents, files, data) MCP server "${server}" ` +
          "offers: URI, name, MIME type and description of each, and URI templates to fill " +
          "in. Read one with the read_resource tool of the same server.",
        inputSchema: { type: "object", properties: {} },
        annotations,
      },
      read_resource: {
        name: "read_resource",
        description: `Reads one resource of MCP server "${server}" by its URI (from ` +
          "list_resources, or a URI template with its {placeholders} filled in). Text comes " +
          "back as it is; binary content is summarised.",
        inputSchema: {
          type: "object",
          properties: {
            uri: { type: "string", description: "The resource's URI, as list_resources gives it" },
          },
          required: ["uri"],
        },
        annotations,
      },
    };
    definitions.set(server, tools);
  }
  return tools;
}

/** " (text/plain, 1.2 KiB) name: description" for a resource or template. */
function describeItem(item: Resource | ResourceTemplate): string {
  const facts = [
    item.mimeType,
    "size" in item && typeof item.size === "number" ? formatBytes(item.size) : undefined,
  ].filter((f): f is string => typeof f === "string" && f !== "");
  const name = item.title ?? item.name;
  const description = item.description?.trim() ? `: ${firstLine(item.description, 200)}` : "";
  return `${facts.length > 0 ? ` (${facts.join(", ")})` : ""} ${name}${description}`;
}

/** What `list_resources` answers: the resources, then the templates. */
export function resourceListText(
  server: string,
  resources: readonly Resource[],
  templates: readonly ResourceTemplate[],
): string {
  const lines: string[] = [];
  if (resources.length === 0 && templates.length === 0) {
    return `MCP server "${server}" lists no resources and no resource templates.`;
  }
  lines.push(`${plural(resources.length, "resource")} of MCP server "${server}":`);
  for (const r of resources) lines.push(`- ${r.uri}${describeItem(r)}`);
  if (templates.length > 0) {
    lines.push(
      `${plural(templates.length, "resource template")} (fill in the {placeholders}, then read ` +
        "the URI):",
    );
    for (const t of templates) lines.push(`- ${t.uriTemplate}${describeItem(t)}`);
  }
  return lines.join("\n");
}

const TEXT_MIME = /^text\/|[/+](json|xml|yaml|csv|javascript|markdown)$/i;

/** A blob as text when its MIME type is textual and its bytes are UTF-8; else undefined. */
function blobText(blob: string, mimeType: string | undefined): string | undefined {
  if (mimeType === undefined || !TEXT_MIME.test(mimeType)) return undefined;
  try {
    const bytes = Uint8Array.from(atob(blob), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // Not base64, or not UTF-8: summarised as binary.
    return undefined;
  }
}

/** What `read_resource` answers: every content of the result, one after the other. */
export function resourceReadText(uri: string, result: ReadResourceResult): string {
  const contents = Array.isArray(result.contents) ? result.contents : [];
  if (contents.length === 0) return `The resource ${uri} has no content.`;
  return contents.map((c) => {
    const text = "blob" in c ? blobText(c.blob, c.mimeType) : undefined;
    return describePart({ type: "resource", resource: text === undefined ? c : { ...c, text } });
  }).join("\n");
}

/** The outcome of a resource tool, as the loop records a call. */
export interface ResourceOutcome {
  ok: boolean;
  text: string;
  error?: string;
}

/**
 * Runs one of the resource tools of `server` on `host`. A failure (the host has no resources,
 * the server refused, an unknown URI) becomes text the model can act on; only an abort rejects.
 */
export async function runResourceTool(
  host: ToolHost,
  o: { server: string; tool: ResourceTool; args: Record<string, unknown> },
  signal: AbortSignal,
): Promise<ResourceOutcome> {
  const { server } = o;
  try {
    if (o.tool === "list_resources") {
      if (host.listResources === undefined) throw new Error("this bridge cannot list resources");
      const [resources, templates] = await Promise.all([
        host.listResources(server, { signal }),
        // Templates are optional: a server that has none may not answer the request at all.
        host.listResourceTemplates?.(server, { signal }).catch((error: unknown) => {
          if (isAbort(error, signal)) throw error;
          return [];
        }) ?? [],
      ]);
      return { ok: true, text: resourceListText(server, resources, templates) };
    }
    const uri = String(o.args.uri ?? "");
    if (host.readResource === undefined) throw new Error("this bridge cannot read resources");
    return {
      ok: true,
      text: resourceReadText(uri, await host.readResource(server, uri, { signal })),
    };
  } catch (error: unknown) {
    if (isAbort(error, signal)) throw error;
    const message = errorMessage(error);
    const what = o.tool === "list_resources"
      ? `listing the resources of "${server}"`
      : `reading ${JSON.stringify(o.args.uri)} from "${server}"`;
    return {
      ok: false,
      error: message,
      text: `Error: ${what} failed: ${clause(message)}. ` +
        (o.tool === "read_resource"
          ? "Check the URI against list_resources, or do without it."
          : "Do without the resources, or explain the problem in your final answer."),
    };
  }
}
