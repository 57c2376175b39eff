/**
 * The MCP TypeScript SDK's HTTP server transports, for `serve --http` (server_http.ts, loaded only
 * then) and the test fixtures. Each re-export names its declarations with `@ts-types`, as sdk.ts
 * explains (the SDK's `.js` subpaths carry no types under Deno).
 */

// @ts-types="@modelcontextprotocol/sdk/server/sse"
export { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
// @ts-types="@modelcontextprotocol/sdk/server/webStandardStreamableHttp"
export { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
