/**
 * Connecting to a remote MCP server ({@linkcode connectRemote}): streamable HTTP, falling back to
 * the older SSE transport when the server refuses HTTP with a 4xx other than 401/403, or SSE
 * directly. Each connection gets a {@linkcode RemoteWatch} so a server that goes away mid-call
 * fails its calls at once. When connecting fails the error says why in the user's terms: the
 * sandbox does not allow the host, the server wants credentials, answered an HTTP error, cannot
 * be reached, or never completed the handshake.
 */
import { type Client, SSEClientTransport, SseError, StreamableHTTPClientTransport } from "./sdk.ts";
import {
  Connection,
  type ConnectOptions,
  handshake,
  isHandshakeTimeout,
  newClient,
} from "./mcp_connection.ts";
import { httpStatusOf, McpServerError } from "./pool_errors.ts";
import { RemoteWatch } from "./remote_watch.ts";
import type { ServerEntry } from "./config_entry.ts";
import { StderrTail } from "./stdio_child.ts";
import { causeChain, errnoCode, errorMessage, isSandboxDenial, networkFailure } from "./errors.ts";

interface Connected {
  client: Client;
  remote: RemoteWatch;
}

/** Connects to `entry`'s URL; a failed connect throws an McpServerError. */
export async function connectRemote(entry: ServerEntry, o: ConnectOptions): Promise<Connection> {
  const name = entry.name;
  const url = entry.url ?? "";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new McpServerError(
      `MCP server "${name}" has an invalid url ${JSON.stringify(url)}. Fix it in the config.`,
      { server: name, kind: "config", cause: error },
    );
  }
  const requestInit: RequestInit = { headers: { ...entry.headers } };
  const stderr = new StderrTail(0, () => {});
  const attempt = async (kind: "http" | "sse"): Promise<Connected> => {
    const remote = new RemoteWatch();
    const transport = kind === "sse"
      ? new SSEClientTransport(parsed, { requestInit })
      : new StreamableHTTPClientTransport(parsed, { requestInit, fetch: remote.fetch });
    remote.attach(transport, (reason) => {
      o.log.debug("connection lost", { server: name, reason });
      // Closing the transport fails every request still waiting on it.
      transport.close().catch(() => undefined);
    });
    const client = newClient(o.clientInfo);
    client.onerror = (error) => o.log.debug(`transport: ${errorMessage(error)}`, { server: name });
    try {
      await handshake(client, transport, { timeoutMs: o.connectTimeoutMs });
      return { client, remote };
    } catch (error) {
      o.track(client.close().catch(() => undefined));
      if (remote.lostReason !== undefined && !(error instanceof SseError)) {
        throw new McpServerError(
          `Cannot connect to MCP server "${name}" at ${url}: ${remote.lostReason} during ` +
            `the MCP handshake. Check that the server is up and speaks MCP at that URL.`,
          { server: name, kind: "handshake", cause: error },
        );
      }
      throw error;
    }
  };
  let connected: Connected;
  try {
    if (entry.transport === "sse") {
      connected = await attempt("sse");
    } else {
      try {
        connected = await attempt("http");
      } catch (error) {
        if (!shouldFallBackToSse(error)) throw error;
        o.log.debug("streamable HTTP refused; trying SSE", {
          server: name,
          error: errorMessage(error),
        });
        try {
          connected = await attempt("sse");
        } catch (sseError) {
          throw new McpServerError(
            `Cannot connect to MCP server "${name}" at ${url}: streamable HTTP failed ` +
              `(${errorMessage(error)}) and so did the SSE fallback (${
                networkFailure(sseError).reason
              }). ` +
              `Check the URL (many servers use /mcp for HTTP and /sse for SSE).`,
            { server: name, kind: "handshake", cause: sseError },
          );
        }
      }
    }
  } catch (error) {
    throw error instanceof McpServerError ? error : remoteConnectError({
      entry,
      host: parsed.host,
      error,
      connectTimeoutMs: o.connectTimeoutMs,
    });
  }
  return new Connection({
    entry,
    client: connected.client,
    remote: connected.remote,
    stderr,
    onClosed: o.onClosed,
  });
}

function remoteConnectError(
  o: { entry: ServerEntry; host: string; error: unknown; connectTimeoutMs: number },
): McpServerError {
  const { entry, host, error } = o;
  const name = entry.name;
  const url = entry.url ?? "";
  const base = { server: name, cause: error };
  const chain = causeChain(error);
  const denial = chain.find(isSandboxDenial);
  if (denial !== undefined) {
    return new McpServerError(
      `Cannot connect to MCP server "${name}" at ${url}: Deno's sandbox does not allow network ` +
        `access to ${host} (${errorMessage(denial)}). Add it to the "net" list of the "bridge" ` +
        `permission set in deno.json, or run/rebuild with --allow-net=${host}.`,
      { ...base, kind: "permission" },
    );
  }
  const status = httpStatusOf(error);
  if (status === 401 || status === 403) {
    return new McpServerError(
      `MCP server "${name}" at ${url} refused the connection with HTTP ${status}: ` +
        `${errorMessage(error)}. Set the credentials it needs in the entry's "headers" ` +
        `(e.g. "Authorization": "Bearer \${TOKEN}").`,
      { ...base, kind: "handshake" },
    );
  }
  if (status !== undefined && status > 0) {
    return new McpServerError(
      `MCP server "${name}" at ${url} answered HTTP ${status}: ${errorMessage(error)}. ` +
        `Check the URL and that the server speaks MCP there.`,
      { ...base, kind: "handshake" },
    );
  }
  if (isHandshakeTimeout(error)) {
    return new McpServerError(
      `MCP server "${name}" at ${url} did not complete the MCP handshake within ` +
        `${o.connectTimeoutMs} ms. Check that the server is up and speaks MCP at that URL.`,
      { ...base, kind: "connect_timeout" },
    );
  }
  const network = chain.some((e) =>
    e instanceof TypeError || errnoCode(e) === "ECONNREFUSED" ||
    (e instanceof SseError && typeof e.code !== "number")
  );
  if (network) {
    return new McpServerError(
      `Cannot connect to MCP server "${name}" at ${url}: ${networkFailure(error).reason}. ` +
        `Start the server or fix the URL in the config.`,
      { ...base, kind: "unreachable" },
    );
  }
  return new McpServerError(
    `Cannot connect to MCP server "${name}" at ${url}: ${networkFailure(error).reason}.`,
    { ...base, kind: "handshake" },
  );
}

function shouldFallBackToSse(error: unknown): boolean {
  const status = httpStatusOf(error);
  return status !== undefined && status >= 400 && status < 500 && status !== 401 &&
    status !== 403;
}
