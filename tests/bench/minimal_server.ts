/**
 * The minimal MCP server on the same SDK as the bridge: one tool, served on stdio. The start-up
 * and idle-memory rows compare the bridge with it: whatever the bridge costs beyond this is its
 * own code, not the runtime's or the SDK's.
 */
import process from "node:process";
import { z } from "zod";
import { McpServer, StdioServerTransport } from "../../lib/sdk.ts";

const server = new McpServer({ name: "minimal", version: "1" });
server.registerTool("echo", {
  description: "Returns its text.",
  inputSchema: { text: z.string() },
}, ({ text }) => ({ content: [{ type: "text", text }] }));
await server.connect(new StdioServerTransport());
// The SDK's stdio transport does not notice the end of stdin: leave when the client does.
process.stdin.once("end", () => Deno.exit(0));
