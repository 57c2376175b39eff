/**
 * `serve --http [HOST:]PORT`: the bridge's MCP tools over streamable HTTP (the SDK's web-standard
 * transport on Deno.serve) at `/mcp`, and its state at `/health`.
 *
 * Each client gets its own MCP session and its own McpServer, built by server.ts's
 * {@linkcode createServer} (the tool table stdio serves), and every session shares the one App:
 * one pool (a downstream server starts once for every client), one config source, one model
 * manager. What a client sends and receives stays in its session: its requests (request ids are
 * per session), their progress (sent on the request's own response stream), its cancellations
 * and the sessions of its autonomous tasks (session_id). A client that goes away in the middle of a request (its response stream is
 * cancelled) has that request cancelled, so the model request and the downstream calls stop;
 * shutdown answers every request in flight with the reason, cancels it, and closes the
 * downstream servers.
 */
import { z } from "zod";
import type { App } from "./app.ts";
import { errorMessage, isSandboxDenial } from "./errors.ts";
import type { Logger } from "./log.ts";
import {
  ErrorCode,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
  type Transport,
  type TransportSendOptions,
} from "./sdk.ts";
import { WebStandardStreamableHTTPServerTransport } from "./sdk_http.ts";
import { createServer, lmStudioState } from "./server.ts";
import {
  allowNetFlag,
  hostPort,
  type HttpAccess,
  isLoopback,
  type ListenAddress,
  ListenError,
  RequestGuard,
} from "./server_http_access.ts";
import { NAME, VERSION } from "./version.ts";

export { httpAccess } from "./server_http_access.ts";

/** A session with nothing in flight and no open stream is closed after this long (1 hour). */
export const DEFAULT_SESSION_IDLE_MS = 3_600_000;

/**
 * Largest POST body. The SDK's default of 4 MiB would refuse an analyze_image call with a large
 * image as a data URI, which stdio takes; images are capped at 10 MiB each.
 */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/**
 * The header the bridge puts on every POST it hands the transport, numbering it, so the requests
 * a POST carried are known when its response stream is cancelled. A client's own is replaced.
 */
const POST_HEADER = "x-lmstudio-bridge-post";

/** Options of {@linkcode startHttpBridge}: where and for whom, and how long idle sessions live. */
export interface HttpBridgeOptions extends HttpAccess {
  sessionIdleMs?: number;
}

/** A listening bridge. */
export interface HttpBridge {
  /** The MCP endpoint (`http://127.0.0.1:8765/mcp`; the host's name when on every address). */
  readonly url: string;
  /** Where it listens, with the port the system chose when asked for port 0. */
  readonly address: ListenAddress;
  /** Open MCP sessions. */
  sessions(): number;
  /** Answers and cancels what is in flight with `why`, closes every session, stops listening. */
  close(why: string): Promise<void>;
}

/**
 * Serves MCP over HTTP until SIGINT/SIGTERM, then shuts down: requests in flight are answered
 * with the reason and cancelled, sessions closed, downstream servers closed. Throws a
 * {@linkcode ListenError} when the address cannot be used.
 */
export async function serveHttp(app: App, access: HttpAccess): Promise<void> {
  const stop = stopRequests(app.log);
  try {
    const bridge = await startHttpBridge(app, access);
    void printBanner(app, bridge, access);
    const why = await stop.requested;
    app.log.info(`shutting down (${why})`);
    // Close the downstream servers while the signal handlers are still installed, so a second
    // signal does not cut the cleanup short and leave servers running.
    await bridge.close(why);
    await app.close();
  } finally {
    stop.dispose();
  }
}

/** Starts listening; see {@linkcode HttpBridge}. */
export async function startHttpBridge(app: App, options: HttpBridgeOptions): Promise<HttpBridge> {
  const bridge = new Bridge(app, options);
  await bridge.listen();
  return bridge;
}

/**
 * Resolves with the signal's name on SIGINT/SIGTERM; meanwhile a stray rejection in a tool is
 * logged instead of ending the server.
 */
function stopRequests(log: Logger): { requested: Promise<string>; dispose(): void } {
  const { promise, resolve } = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const listeners = signals.map((name) => [name, () => resolve(name)] as const);
  for (const [name, listener] of listeners) Deno.addSignalListener(name, listener);
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    log.error("unhandled rejection (server keeps running)", { reason: String(event.reason) });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return {
    requested: promise,
    dispose: () => {
      for (const [name, listener] of listeners) Deno.removeSignalListener(name, listener);
      globalThis.removeEventListener("unhandledrejection", onRejection);
    },
  };
}

async function printBanner(app: App, bridge: HttpBridge, access: HttpAccess): Promise<void> {
  const remote = !isLoopback(access.listen.hostname);
  const who = access.token === undefined
    ? "loopback only, no token"
    : `${remote ? "reachable from other machines; " : ""}every request${
      remote ? "" : " to /mcp"
    } needs the bearer token (${access.token.source})`;
  app.log.info(
    `${NAME} ${VERSION} serving MCP over HTTP at ${bridge.url} (state at /health); ${who}; ` +
      await lmStudioState(app),
  );
}

class Bridge implements HttpBridge {
  readonly #app: App;
  readonly #access: HttpAccess;
  readonly #guard: RequestGuard;
  readonly #idleMs: number;
  readonly #log: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #started = performance.now();
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #posts = 0;
  #closing: Promise<void> | undefined;
  url = "";
  address: ListenAddress;

  constructor(app: App, options: HttpBridgeOptions) {
    this.#app = app;
    this.#access = options;
    this.#guard = new RequestGuard(options);
    this.#idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.#log = app.log.child("http");
    this.address = options.listen;
  }

  sessions(): number {
    return this.#sessions.size;
  }

  async listen(): Promise<void> {
    const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
    try {
      this.#server = Deno.serve({
        hostname: this.#access.listen.hostname,
        port: this.#access.listen.port,
        onListen: resolve,
        onError: (error) => {
          this.#log.error("request failed", { error: errorMessage(error) });
          return jsonRpcError(500, `${NAME} failed on this request: ${errorMessage(error)}`);
        },
      }, (request) => this.#handle(request));
    } catch (error: unknown) {
      throw await listenError(error, this.#access.listen);
    }
    const addr = await listening;
    this.address = { hostname: this.#access.listen.hostname, port: addr.port };
    this.url = `http://${
      hostPort({ hostname: publicName(this.address.hostname), port: addr.port })
    }/mcp`;
    const every = Math.max(1000, Math.min(60_000, Math.round(this.#idleMs / 4)));
    this.#sweep = setInterval(() => this.#closeIdle(), every);
  }

  close(why: string): Promise<void> {
    return this.#closing ??= (async () => {
      clearInterval(this.#sweep);
      const reason = `${NAME} is shutting down (${why}); the request was cancelled. Send it ` +
        "again once the bridge runs again.";
      await Promise.all([...this.#sessions.values()].map((s) => s.close(reason)));
      // Deno waits for the responses still being sent; every stream is closed by now, so at most
      // a /health reply waiting for LM Studio remains. Do not wait for it for long.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#server?.shutdown(),
        new Promise((resolve) => timer = setTimeout(resolve, 5000)),
      ]);
      clearTimeout(timer);
    })();
  }

  async #handle(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    const health = path === "/health";
    // With a token, a request without it gets 401 and nothing else is looked at.
    const refusal = this.#guard.check(request, !health || this.#guard.remote);
    if (refusal !== undefined) {
      this.#log.debug("request refused", { status: refusal.status, path });
      return jsonRpcError(
        refusal.status,
        refusal.message,
        refusal.status === 401 ? { "www-authenticate": `Bearer realm="${NAME}"` } : {},
      );
    }
    if (health) {
      return request.method === "GET"
        ? await this.#health()
        : jsonRpcError(405, "Method not allowed: /health answers GET.", { allow: "GET" });
    }
    if (path !== "/mcp") {
      return jsonRpcError(404, `Not found: ${NAME} serves MCP at /mcp and its state at /health.`);
    }
    if (this.#closing !== undefined) {
      return jsonRpcError(503, `${NAME} is shutting down; connect again once it runs again.`);
    }
    const id = request.headers.get("mcp-session-id");
    if (id !== null) {
      const session = this.#sessions.get(id);
      if (session === undefined) {
        return jsonRpcError(
          404,
          "Session not found: it was closed (by the client, after being idle, or by a restart " +
            "of the bridge). Start a new session with initialize.",
          {},
          -32001,
        );
      }
      return await session.handle(request);
    }
    if (request.method !== "POST") {
      return jsonRpcError(
        400,
        "Bad Request: the Mcp-Session-Id header is required; start a session with a POST of " +
          "initialize.",
      );
    }
    const session = await this.#newSession();
    const response = await session.handle(request);
    // Anything but an initialize got its error from the transport; there is nothing to keep.
    if (session.id === undefined) await session.close();
    return response;
  }

  async #newSession(): Promise<Session> {
    const session = new Session({
      log: this.#log,
      nextPost: () => ++this.#posts,
      opened: (s) => {
        this.#sessions.set(s.id ?? "", s);
        this.#log.debug("session opened", { session: s.id, sessions: this.#sessions.size });
      },
      closed: (s) => {
        if (s.id !== undefined && this.#sessions.get(s.id) === s) {
          this.#sessions.delete(s.id);
          // The client's autonomous sessions end with its MCP session.
          this.#app.sessions.drop(s.id);
        }
        this.#log.debug("session closed", { session: s.id, sessions: this.#sessions.size });
      },
    });
    await createServer(this.#app).connect(session);
    return session;
  }

  #closeIdle(): void {
    const now = performance.now();
    for (const session of this.#sessions.values()) {
      const idle = session.idleMs(now);
      if (idle <= this.#idleMs) continue;
      this.#log.info("closing an idle session", {
        session: session.id,
        idleMinutes: Math.round(idle / 60_000),
      });
      void session.close();
    }
  }

  async #health(): Promise<Response> {
    const [lmstudio, pool] = await Promise.all([
      this.#app.client.health({ timeoutMs: 2000 }),
      this.#poolState(),
    ]);
    const tasks = [...this.#sessions.values()].reduce((n, s) => n + s.toolCalls(), 0);
    const stopping = this.#closing !== undefined;
    return Response.json({
      name: NAME,
      version: VERSION,
      status: stopping ? "stopping" : "ok",
      pid: Deno.pid,
      uptimeSeconds: Math.round((performance.now() - this.#started) / 1000),
      url: this.url,
      auth: this.#access.token === undefined ? "none" : "bearer",
      sessions: this.#sessions.size,
      toolCallsInFlight: tasks,
      lmstudio,
      pool,
    }, { status: stopping ? 503 : 200, headers: { "cache-control": "no-store" } });
  }

  async #poolState(): Promise<Record<string, unknown>> {
    try {
      const { config, servers } = await (await this.#app.pool()).status();
      return {
        config: config.path ?? null,
        ...(config.error === undefined ? {} : { configError: config.error }),
        servers: servers.map((s) => ({
          name: s.name,
          transport: s.transport,
          state: s.state,
          ...(s.pid === undefined ? {} : { pid: s.pid }),
          ...(s.toolCount === undefined ? {} : { tools: s.toolCount }),
          ...(s.reason === undefined ? {} : { reason: s.reason }),
        })),
      };
    } catch (error: unknown) {
      return { error: errorMessage(error) };
    }
  }
}

/** A request of the client being handled: the POST that carried it and what it is. */
interface InFlight {
  post: number | undefined;
  method: string;
}

/** What a {@linkcode Session} tells the bridge. */
interface SessionHooks {
  log: Logger;
  nextPost(): number;
  opened(session: Session): void;
  closed(session: Session): void;
}

/**
 * One client's MCP session, and the transport its McpServer is connected to: the SDK's HTTP
 * transport plus the bookkeeping of what the client has in flight, on which POST, and which
 * response streams are open.
 */
class Session implements Transport {
  readonly #inner: WebStandardStreamableHTTPServerTransport;
  readonly #hooks: SessionHooks;
  readonly #inFlight = new Map<RequestId, InFlight>();
  #openStreams = 0;
  #lastSeen = performance.now();
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;

  constructor(hooks: SessionHooks) {
    this.#hooks = hooks;
    this.#inner = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: () => hooks.opened(this),
      maxRequestBodySize: MAX_BODY_BYTES,
    });
    this.#inner.onmessage = (message, extra) => {
      this.#received(message, extra);
      this.onmessage?.(message, extra);
    };
    this.#inner.onerror = (error) => this.onerror?.(error);
    this.#inner.onclose = () => {
      this.#inFlight.clear();
      hooks.closed(this);
      this.onclose?.();
    };
  }

  get id(): string | undefined {
    return this.#inner.sessionId;
  }

  get sessionId(): string | undefined {
    return this.#inner.sessionId;
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      if (message.id !== undefined) this.#inFlight.delete(message.id);
    }
    await this.#inner.send(message, options);
  }

  /** Closes the session; with `reason`, first answers and cancels every request in flight. */
  async close(reason?: string): Promise<void> {
    if (reason !== undefined) {
      await Promise.all([...this.#inFlight.keys()].map((id) => this.#cancel(id, reason, true)));
    }
    await this.#inner.close();
  }

  /** Hands one HTTP request of this session to the transport. */
  async handle(request: Request): Promise<Response> {
    this.#lastSeen = performance.now();
    let post: number | undefined;
    if (request.method === "POST") {
      post = this.#hooks.nextPost();
      const headers = new Headers(request.headers);
      headers.set(POST_HEADER, String(post));
      // Built from its parts: copying the Request itself would read its signal, which makes
      // Deno.serve print a warning about its legacy abort behaviour.
      request = new Request(request.url, { method: "POST", headers, body: request.body });
    } else if (request.method === "DELETE" && this.#inFlight.size > 0) {
      const reason = "the client ended its MCP session";
      await Promise.all([...this.#inFlight.keys()].map((id) => this.#cancel(id, reason, false)));
    }
    return this.#watch(await this.#inner.handleRequest(request), post);
  }

  /** How long the session has been idle: 0 while a request runs or a stream is open. */
  idleMs(now: number): number {
    return this.#inFlight.size > 0 || this.#openStreams > 0 ? 0 : now - this.#lastSeen;
  }

  /** Tool calls in flight. */
  toolCalls(): number {
    return [...this.#inFlight.values()].filter((r) => r.method === "tools/call").length;
  }

  #received(message: JSONRPCMessage, extra: MessageExtraInfo | undefined): void {
    if (isJSONRPCRequest(message)) {
      const tag = extra?.requestInfo?.headers[POST_HEADER];
      this.#inFlight.set(message.id, {
        post: typeof tag === "string" ? Number(tag) : undefined,
        method: message.method,
      });
    } else if (isJSONRPCNotification(message) && message.method === "notifications/cancelled") {
      const id = CancelledParams.safeParse(message.params);
      if (id.success) this.#inFlight.delete(id.data.requestId);
    }
  }

  /**
   * Cancels request `id` as if the client had sent `notifications/cancelled` with `reason`: the
   * handler's signal aborts (the model request and downstream calls stop) and its late result is
   * dropped. With `answer`, the client is first sent an error response saying why.
   */
  async #cancel(id: RequestId, reason: string, answer: boolean): Promise<void> {
    const request = this.#inFlight.get(id);
    if (request === undefined) return;
    this.#inFlight.delete(id);
    this.#hooks.log.info(`cancelled ${request.method}: ${reason}`, { session: this.id, id });
    if (answer) {
      await this.#inner.send({
        jsonrpc: "2.0",
        id,
        error: { code: ErrorCode.ConnectionClosed, message: reason },
      }).catch((error: unknown) => {
        // The client's stream is gone already; the cancellation below is what matters.
        this.#hooks.log.debug("could not answer a cancelled request", { error: String(error) });
      });
    }
    this.onmessage?.({
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId: id, reason },
    });
  }

  /**
   * Passes the response on, counting its event stream while it is open; when the client cancels
   * the stream of a POST (it went away), the requests that POST carried are cancelled.
   */
  #watch(response: Response, post: number | undefined): Response {
    const type = response.headers.get("content-type") ?? "";
    if (response.body === null || !type.startsWith("text/event-stream")) return response;
    const reader = response.body.getReader();
    this.#openStreams++;
    let open = true;
    const ended = () => {
      if (!open) return;
      open = false;
      this.#openStreams--;
      this.#lastSeen = performance.now();
    };
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const { done, value } = await reader.read();
          if (!done) return controller.enqueue(value);
          ended();
          controller.close();
        } catch (error: unknown) {
          ended();
          controller.error(error);
        }
      },
      cancel: async (why) => {
        ended();
        const reason = "the client disconnected";
        const carried = [...this.#inFlight].filter(([, r]) =>
          r.post === post && post !== undefined
        );
        await Promise.all(carried.map(([id]) => this.#cancel(id, reason, false)));
        await reader.cancel(why);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  }
}

const CancelledParams = z.object({ requestId: z.union([z.string(), z.number()]) });

/** An error in the JSON-RPC shape the SDK's transport uses, which MCP clients show. */
function jsonRpcError(
  status: number,
  message: string,
  headers: Record<string, string> = {},
  code: number = ErrorCode.ConnectionClosed,
): Response {
  return Response.json(
    { jsonrpc: "2.0", error: { code, message }, id: null },
    { status, headers },
  );
}

/** The name clients use for `hostname`: this host's name when listening on every address. */
function publicName(hostname: string): string {
  if (hostname !== "0.0.0.0" && hostname !== "::") return hostname;
  try {
    return Deno.hostname();
  } catch {
    return hostname; // without --allow-sys=hostname the address itself has to do
  }
}

/** Why the address cannot be used, and what to do. */
async function listenError(error: unknown, address: ListenAddress): Promise<unknown> {
  const where = hostPort(address);
  if (error instanceof Deno.errors.AddrInUse) {
    return new ListenError(
      `Cannot serve MCP on ${where}: the address is already in use${await occupant(address)}. ` +
        `Stop it, or choose another port (serve --http [HOST:]PORT).`,
      { cause: error },
    );
  }
  if (isSandboxDenial(error)) {
    return new ListenError(
      `The sandbox does not allow listening on ${where}. Widen it for this address only: ` +
        `deno run -P=bridge ${allowNetFlag(address)} main.ts serve --http ${where} (the ` +
        `compiled binary: deno compile with the same flag).`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new ListenError(
      `Cannot serve MCP on ${where}: ${address.hostname} is not an address of this machine.`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new ListenError(
      `Cannot serve MCP on ${where}: the system refused (${errorMessage(error)}); ports below ` +
        "1024 need privileges, choose a higher one.",
      { cause: error },
    );
  }
  return new ListenError(`Cannot serve MCP on ${where}: ${errorMessage(error)}`, { cause: error });
}

const HealthName = z.object({ name: z.string(), version: z.string(), pid: z.number() });

/** Who holds `address`, as far as its /health tells: " by another lmstudio-bridge (...)". */
async function occupant(address: ListenAddress): Promise<string> {
  const hostname = address.hostname === "0.0.0.0"
    ? "127.0.0.1"
    : address.hostname === "::"
    ? "::1"
    : address.hostname;
  try {
    // A one-off local probe, not a request to LM Studio: lmstudio.ts's request function is not
    // for this.
    const response = await fetch(`http://${hostPort({ hostname, port: address.port })}/health`, {
      signal: AbortSignal.timeout(1500),
    });
    const text = await response.text();
    if (response.status === 401) return " (by a program that wants a token: another bridge?)";
    const health = HealthName.safeParse(JSON.parse(text));
    if (health.success && health.data.name === NAME) {
      return ` by another ${NAME} (version ${health.data.version}, pid ${health.data.pid})`;
    }
  } catch {
    // Not an HTTP server, or it does not answer /health: say nothing more about it.
  }
  return " by another program";
}
