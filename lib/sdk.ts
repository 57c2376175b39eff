/**
 * The one entry to the MCP TypeScript SDK's server side and to the protocol's types and schemas:
 * what `serve` loads before it answers `initialize`. The client side (the pool's Client, its
 * transports, OAuth) is in sdk_client.ts, loaded with the pool on first use, and the HTTP server
 * transports in sdk_http.ts, loaded by `serve --http`; importing the SDK anywhere else is not done.
 *
 * The SDK's package exports map the types of a `x.js` subpath to a missing `x.js.d.ts`, so under
 * Deno every symbol imported from a `.js` subpath would silently be `any`. Each re-export below
 * names its declarations explicitly with `@ts-types`, so the whole project gets the SDK's real
 * types (and strict checking) from here.
 */

// @ts-types="@modelcontextprotocol/sdk/server/mcp"
export { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
// @ts-types="@modelcontextprotocol/sdk/server/index"
export { Server } from "@modelcontextprotocol/sdk/server/index.js";
// @ts-types="@modelcontextprotocol/sdk/server/stdio"
export { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
// The server validates with it too (server/index.js loads it), so it costs serve nothing more.
// @ts-types="@modelcontextprotocol/sdk/validation/ajv-provider"
export { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv-provider.js";
// @ts-types="@modelcontextprotocol/sdk/types"
export {
  CallToolRequestSchema,
  CallToolResultSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  isInitializeRequest,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  JSONRPCMessageSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  PromptListChangedNotificationSchema,
  PromptSchema,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  ResourceListChangedNotificationSchema,
  ResourceSchema,
  ResourceTemplateSchema,
  ToolListChangedNotificationSchema,
  ToolSchema,
} from "@modelcontextprotocol/sdk/types.js";

export type {
  CallToolResult,
  ClientCapabilities,
  CreateMessageRequestParams,
  CreateMessageResult,
  ElicitRequestParams,
  ElicitResult,
  GetPromptResult,
  JSONRPCMessage,
  MessageExtraInfo,
  Prompt,
  ReadResourceResult,
  RequestId,
  Resource,
  ResourceTemplate,
  ServerNotification,
  ServerRequest,
  Tool,
} from "@modelcontextprotocol/sdk/types";
export type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport";
export type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol";
export type { JsonSchemaType } from "@modelcontextprotocol/sdk/validation/types";
// Also the requests downstream servers send the bridge (above: their resources and prompts).
export type { PromptMessage, SamplingMessage } from "@modelcontextprotocol/sdk/types";
