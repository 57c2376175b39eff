/**
 * The original Python bridge's architecture, as a bench-only tool host: every tool listing and
 * every tool call starts the MCP server, completes the handshake, makes the one request and stops
 * the server again (one spawn per call). The loop is the bridge's own (runAgent), so comparing it
 * with the pooled host measures the architecture alone.
 */
import type { ToolHost } from "../../lib/agent_types.ts";
import type { ConfigSource } from "../../lib/config.ts";
import { McpPool } from "../../lib/pool.ts";
import type { CallToolResult, Tool } from "../../lib/sdk.ts";
import { quiet } from "./support.ts";

/** A {@linkcode ToolHost} that starts the server for each request and stops it after. */
export class SpawnPerCall implements ToolHost {
  readonly #config: ConfigSource;
  /** Servers started so far. */
  spawns = 0;

  constructor(config: ConfigSource) {
    this.#config = config;
  }

  async #once<T>(work: (pool: McpPool) => Promise<T>): Promise<T> {
    const pool = new McpPool({ config: this.#config, log: quiet, idleMs: 0 });
    this.spawns++;
    try {
      return await work(pool);
    } finally {
      await pool.close();
    }
  }

  listTools(server: string, options?: { signal?: AbortSignal }): Promise<readonly Tool[]> {
    return this.#once((pool) => pool.listTools(server, options));
  }

  callTool(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<CallToolResult> {
    return this.#once((pool) => pool.callTool(server, tool, args, options));
  }
}
