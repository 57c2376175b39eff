/**
 * What a sandboxed server was refused, in words that say how to allow it.
 *
 * Deno refuses with `NotCapable: Requires read access to "/x", run again with the --allow-read
 * flag`, in a tool's error result or on the server's stderr. The user never runs that command
 * (the bridge does), so the flag is no answer; {@linkcode translateDenials} rewrites it into
 * `MCP server "X" tried to read /x, which its sandbox does not allow; to allow it, add "read":
 * ["/x"] to servers.X.sandbox in /path/lmstudio-bridge.json`. {@linkcode translatingTransport}
 * does it to every tool result and error a server sends, so the model and the user read the same
 * sentence; {@linkcode explainStartFailure} to a server that failed to start in its sandbox.
 */
import type { Transport } from "./sdk.ts";
import { McpServerError } from "./pool_errors.ts";
import { isRecord } from "./json.ts";
import { clause, shellWord } from "./text.ts";

type Message = Parameters<Transport["send"]>[0];

/** Whom a refusal is about and where its settings go. */
export interface DenialContext {
  server: string;
  /** The bridge settings file (lmstudio-bridge.json) to name. */
  settingsPath: string;
}

// Deno 2: `Requires read access to "/x", run again with the --allow-read flag`, sometimes
// without a target (`Requires env access`) or with a placeholder (`to <CWD>`).
const DENIAL = new RegExp(
  String.raw`(?:\b(?:NotCapable|PermissionDenied): )?Requires (\w+) access` +
    String.raw`(?: to (?:"([^"\n]*)"|(<[\w ]+>)))?` +
    String.raw`(?:, (?:run again with the --allow-[\w-]+ flag|specify the required permissions` +
    String.raw` during compilation using [^\n]*?flag))?`,
  "g",
);

/** One refusal found in a text. */
export interface Denial {
  /** Deno's permission name: read, write, net, env, run, sys, ffi, import. */
  kind: string;
  /** What was refused (a path, `host:port`, a command, a variable), when Deno says. */
  target?: string;
}

/** The refusals `text` reports, in order. */
export function findDenials(text: string): Denial[] {
  return [...text.matchAll(DENIAL)].map((m) => {
    const target = m[2] ?? m[3];
    return target === undefined ? { kind: m[1] ?? "" } : { kind: m[1] ?? "", target };
  });
}

const VERB: Record<string, (target: string) => string> = {
  read: (t) => `read ${t}`,
  write: (t) => `write ${t}`,
  net: (t) => `connect to ${t}`,
  run: (t) => `run ${t}`,
  sys: (t) => `read system information (${t})`,
  env: (t) => `read the environment variable ${t}`,
  import: (t) => `import code from ${t}`,
  ffi: (t) => `load the native library ${t}`,
};

const LIST_KEYS = new Set(["read", "write", "net", "run", "sys"]);

/** One refusal as a sentence (no final period) that says how to allow it. */
export function denialSentence(denial: Denial, ctx: DenialContext): string {
  const { server, settingsPath } = ctx;
  const { kind, target } = denial;
  const shown = target === undefined
    ? kind === "read" || kind === "write" ? "a path it did not name" : "something"
    : target === "<CWD>"
    ? "its working directory"
    : target;
  const verb = VERB[kind]?.(shown) ?? `use ${kind} access to ${shown}`;
  const head = `MCP server "${server}" tried to ${verb}, which its sandbox does not allow`;
  const key = `servers.${server}.sandbox`;
  if (LIST_KEYS.has(kind)) {
    const value = target === undefined || target.startsWith("<") ? true : [target];
    return `${head}; to allow it, add "${kind}": ${JSON.stringify(value)} to ${key} in ` +
      settingsPath;
  }
  if (kind === "import") {
    return `${head}; to allow it, add --allow-import=${shown} to its deno arguments in the MCP ` +
      "config";
  }
  if (kind === "env") {
    return `${head}; its own --deny-env flag in the MCP config refuses it`;
  }
  return `${head}; Deno never allows it to MCP servers: set ${key} to "os" or "none" in ` +
    `${settingsPath} to run it outside Deno's sandbox`;
}

/** `text` with each Deno refusal in it replaced by {@linkcode denialSentence}. */
export function translateDenials(text: string, ctx: DenialContext): string {
  return text.replace(DENIAL, (_match, kind: string, quoted?: string, placeholder?: string) => {
    const target = quoted ?? placeholder;
    return denialSentence(target === undefined ? { kind } : { kind, target }, ctx);
  });
}

const HINT = /Requires \w+ access/;

/** A tool result's text parts or an error's message, translated; other messages as they are. */
export function translateMessage(message: Message, ctx: DenialContext): Message {
  if ("result" in message) {
    const content = message.result["content"];
    if (!Array.isArray(content)) return message;
    const refused = (part: unknown) =>
      isRecord(part) && typeof part["text"] === "string" && HINT.test(part["text"]);
    if (!content.some(refused)) return message;
    const translated = content.map((part: unknown) =>
      isRecord(part) && refused(part)
        ? { ...part, text: translateDenials(String(part["text"]), ctx) }
        : part
    );
    return { ...message, result: { ...message.result, content: translated } };
  }
  if ("error" in message && HINT.test(message.error.message)) {
    return {
      ...message,
      error: { ...message.error, message: translateDenials(message.error.message, ctx) },
    };
  }
  return message;
}

/** `inner`, with every message from the server passed through {@linkcode translateMessage}. */
export function translatingTransport(inner: Transport, ctx: DenialContext): Transport {
  const outer: Transport = {
    start: () => {
      inner.onmessage = (message, extra) =>
        outer.onmessage?.(translateMessage(message, ctx), extra);
      inner.onclose = () => outer.onclose?.();
      inner.onerror = (error) => outer.onerror?.(error);
      return inner.start();
    },
    send: (message, options) => inner.send(message, options),
    close: () => inner.close(),
    setProtocolVersion: (version) => inner.setProtocolVersion?.(version),
  };
  return outer;
}

/** Failures of a start that the sandbox may have caused. */
const START_FAILURES = new Set(["exited", "connect_timeout", "closed", "handshake", "spawn"]);

/**
 * A server that failed to start in its sandbox: the refusal that stopped it when its stderr shows
 * one, else the failure with how to run it as before. Other errors are returned as they are.
 */
export function explainStartFailure(
  error: unknown,
  o: DenialContext & { confinement: string; commandLine: string[] },
): unknown {
  if (!(error instanceof McpServerError) || !START_FAILURES.has(error.kind)) return error;
  const { server, settingsPath, confinement } = o;
  const key = `servers.${server}.sandbox`;
  const denial = findDenials([...error.stderrTail, error.message].join("\n"))[0];
  const deno = confinement.startsWith("deno");
  const where = deno
    ? `runs under Deno's sandbox (${confinement})`
    : "runs inside bubblewrap (it sees the system directories and what its sandbox allows, " +
      "and no network unless allowed)";
  const separator = o.commandLine.indexOf("--");
  const inner = o.commandLine[0] === "bwrap" && separator !== -1
    ? o.commandLine.slice(separator + 1)
    : o.commandLine;
  const ran = `It ran: ${inner.map(shellWord).join(" ")}${
    o.commandLine[0] === "bwrap" ? " (inside bubblewrap)" : ""
  }.`;
  const advice = denial !== undefined
    ? `${denialSentence(denial, o)}.`
    : deno
    ? `If it runs without the sandbox, set ${key} to "os" or "none" in ${settingsPath} to run ` +
      "it as before."
    : `Widen ${key} in ${settingsPath} (e.g. {"read": ["/path"], "net": true}), or set it to ` +
      `"none" to run it as before.`;
  return new McpServerError(
    `MCP server "${server}" ${where} and failed to start: ${clause(error.message)}.\n${ran}\n` +
      advice,
    {
      server,
      kind: error.kind,
      stderrTail: error.stderrTail,
      exitCode: error.exitCode,
      cause: error,
    },
  );
}
