/**
 * What MCP tools return, made fit for the model: a result as readable text (every content part,
 * binary parts summarised), a rough token estimate, and truncation that keeps head and tail.
 */
import { isRecord } from "./json.ts";
import type { CallToolResult } from "./sdk.ts";
import { base64Bytes, formatBytes } from "./text.ts";

/**
 * One MCP content block as text: a text as it is, an image or audio by type and size, an
 * embedded resource with its text (binary ones by size), a resource link by name and URI.
 */
export function describePart(part: Record<string, unknown>): string {
  const mime = typeof part.mimeType === "string" ? part.mimeType : "unknown type";
  switch (part.type) {
    case "text":
      return typeof part.text === "string" ? part.text : "";
    case "image":
    case "audio": {
      const size = typeof part.data === "string" ? formatBytes(base64Bytes(part.data)) : "?";
      return `[${part.type}: ${mime}, ${size}]`;
    }
    case "resource": {
      const res = isRecord(part.resource) ? part.resource : {};
      const uri = typeof res.uri === "string" ? res.uri : "(no uri)";
      const rmime = typeof res.mimeType === "string" ? `, ${res.mimeType}` : "";
      if (typeof res.text === "string") return `[resource ${uri}${rmime}]\n${res.text}`;
      const size = typeof res.blob === "string" ? `, ${formatBytes(base64Bytes(res.blob))}` : "";
      return `[resource ${uri}${rmime}${size} (binary, not shown)]`;
    }
    case "resource_link": {
      const bits = [part.name, part.uri].filter((b) => typeof b === "string").join(" ");
      const desc = typeof part.description === "string" ? `: ${part.description}` : "";
      const lmime = typeof part.mimeType === "string" ? ` (${part.mimeType})` : "";
      return `[resource link ${bits}${lmime}${desc}]`;
    }
    default:
      return `[${typeof part.type === "string" ? part.type : "unknown"} content]`;
  }
}

/**
 * The content parts of an MCP result as text, one part per line: texts as they are, images and
 * audio summarised by type and size, embedded resource text included; `structuredContent` as JSON
 * when there is no text. What `call` prints and what the model reads.
 */
export function contentText(result: Pick<CallToolResult, "content" | "structuredContent">): string {
  const content: unknown = result.content;
  const parts = (Array.isArray(content) ? content : []).filter(isRecord);
  const texts = parts.map(describePart).filter((t) => t !== "");
  const hasText = parts.some((p) =>
    p.type === "text" && typeof p.text === "string" && p.text.trim() !== ""
  );
  if (!hasText && isRecord(result.structuredContent)) {
    texts.push(JSON.stringify(result.structuredContent));
  }
  return texts.join("\n");
}

/**
 * An MCP tool result as text for the model: every content part (texts joined, images and audio
 * summarised by type and size, embedded resource text included), `structuredContent` as JSON when
 * there is no text, and a clear prefix when the tool reported an error.
 */
export function formatToolResult(result: CallToolResult): string {
  const body = contentText(result).trim();
  if (result.isError === true) {
    return `The tool reported an error:\n${body || "(no details given)"}`;
  }
  return body === "" ? "(the tool returned no content)" : body;
}

/** Characters per token assumed by {@linkcode estimateTokens} (a common rule of thumb for English and code). */
export const CHARS_PER_TOKEN = 4;

/** A rough token count: characters / 4, rounded up. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/**
 * Cuts `text` to about `maxChars`, keeping the head (4/5) and the tail (1/5), with a marker that
 * says how much was cut and why.
 */
export function truncateText(text: string, maxChars: number): { text: string; cut: number } {
  if (text.length <= maxChars) return { text, cut: 0 };
  const room = Math.max(0, maxChars - 120);
  const head = Math.floor(room * 0.8);
  const tail = room - head;
  const cut = text.length - head - tail;
  const marker = `\n[... truncated: ${cut} of ${text.length} characters cut to fit the model's ` +
    `context window ...]\n`;
  return { text: text.slice(0, head) + marker + (tail > 0 ? text.slice(-tail) : ""), cut };
}
