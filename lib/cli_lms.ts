/**
 * `lmstudio-bridge lms ps|ls|load|unload|status`: model management from the command line, through
 * `lms` when installed, else LM Studio's REST API (the same paths as the `lms_*` MCP tools).
 */
import {
  flag,
  integerOption,
  type OptionSpec,
  parseArgs,
  type ParsedArgs,
  UsageError,
} from "./args.ts";
import type { App, CommandContext } from "./app.ts";
import { table } from "./cli.ts";
import { lmsInstallAdvice } from "./lms.ts";
import { type EnsureResult, type Management, sourceLabel } from "./model_types.ts";
import { ensureReport } from "./models.ts";
import type { Output } from "./output.ts";
import { formatBytes, plural } from "./text.ts";

const COMMON: Record<string, OptionSpec> = { json: { type: "boolean" } };

function one(args: ParsedArgs, what: string, command: string): string {
  const [first, ...rest] = args.positionals;
  if (first === undefined) throw new UsageError(`a ${what} is required.`, "lms");
  if (rest.length > 0) {
    throw new UsageError(`${command} takes one ${what}, got also: ${rest.join(" ")}.`, "lms");
  }
  return first;
}

function none(args: ParsedArgs, command: string): void {
  if (args.positionals.length > 0) {
    throw new UsageError(
      `${command} takes no arguments, got: ${args.positionals.join(" ")}`,
      "lms",
    );
  }
}

function size(bytes: number | null): string {
  return bytes === null ? "" : formatBytes(bytes);
}

/** What `lms status` prints after "models via:". */
const MANAGEMENT: Record<Management, string> = {
  lms: "lms",
  rest: "LM Studio's REST API",
  jit: "first request (JIT; the server loads models itself)",
  none: "nothing (the server does not answer)",
};

/** The line `lms load` prints on stdout. */
function loadLine(result: EnsureResult): string {
  const seconds = (result.waitedMs / 1000).toFixed(1);
  const context = result.contextLength === null ? "" : `, context ${result.contextLength}`;
  return {
    "already-loaded": `${result.model} is already loaded${
      result.contextLength === null ? "" : ` (context ${result.contextLength})`
    }.`,
    lms: `Loaded ${result.model} (lms, ${seconds} s${context}).`,
    rest: `Loaded ${result.model} (REST API, ${seconds} s${context}).`,
    jit: `${result.model} will load on its first request (JIT).`,
  }[result.via] + "\n";
}

/** Prints what `lms load` or `lms ensure` did: one line and its note, or the JSON report. */
function reportLoad(result: EnsureResult, json: boolean, out: Output): number {
  if (json) out.stdout(JSON.stringify(ensureReport(result), null, 2) + "\n");
  else {
    out.stdout(loadLine(result));
    if (result.note) out.stderr(result.note);
  }
  return 0;
}

/** Runs `lms SUBCOMMAND ...`; returns the exit code (errors other than misuse propagate to main). */
export async function lmsCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "models">>,
): Promise<number> {
  const [sub, ...rest] = argv;
  const { app: { models }, out, signal } = ctx;
  const json = (value: unknown) => out.stdout(JSON.stringify(value, null, 2) + "\n");
  switch (sub) {
    case "ps": {
      const args = parseArgs(rest, COMMON, "lms");
      none(args, "lms ps");
      const current = await models.currentModels({ signal, prefer: "lms" });
      if (flag(args, "json")) {
        json(current);
        return 0;
      }
      if (current.models.length === 0) {
        // A server that cannot tell (Ollama, llama.cpp) explains that in the note instead.
        if (!current.note) out.stderr(`No model is loaded (from ${sourceLabel(current.source)}).`);
      } else {
        out.stdout(table(
          ["ID", "TYPE", "STATUS", "CONTEXT"],
          current.models.map((m) => [
            m.id,
            m.type,
            m.status ?? "",
            m.contextLength?.toString() ?? "",
          ]),
        ));
      }
      if (current.note) out.stderr(current.note);
      return 0;
    }
    case "ls": {
      const args = parseArgs(rest, {
        ...COMMON,
        llm: { type: "boolean" },
        embedding: { type: "boolean" },
      }, "lms");
      none(args, "lms ls");
      if (flag(args, "llm") && flag(args, "embedding")) {
        throw new UsageError(
          "--llm and --embedding exclude each other; give one or neither.",
          "lms",
        );
      }
      const kind = flag(args, "llm") ? "llm" : flag(args, "embedding") ? "embedding" : undefined;
      const list = await models.downloadedModels({ signal, ...(kind ? { kind } : {}) });
      if (flag(args, "json")) {
        json(list);
        return 0;
      }
      if (list.models.length === 0) {
        out.stderr(`No models found (from ${sourceLabel(list.source)}).`);
      } else {
        out.stdout(table(
          ["ID", "TYPE", "SIZE", "MAX CONTEXT", "LOADED"],
          list.models.map((m) => [
            m.id,
            m.type ?? "?",
            size(m.sizeBytes),
            m.maxContextLength?.toString() ?? "",
            m.loaded === null ? "?" : m.loaded ? "yes" : "",
          ]),
        ));
      }
      if (list.note) out.stderr(list.note);
      return 0;
    }
    case "load": {
      const args = parseArgs(rest, {
        ...COMMON,
        ttl: { type: "string" },
        "context-length": { type: "string", short: "c" },
      }, "lms");
      const model = one(args, "model name", "lms load");
      const ttl = integerOption(args, "ttl", { min: 0, max: 604_800 });
      const contextLength = integerOption(args, "context-length", { min: 256, max: 10_000_000 });
      const result = await models.load(model, {
        signal,
        ...(ttl !== undefined ? { ttlSeconds: ttl } : {}),
        ...(contextLength !== undefined ? { contextLength } : {}),
      });
      return reportLoad(result, flag(args, "json"), out);
    }
    case "ensure": {
      const args = parseArgs(rest, {
        ...COMMON,
        "context-length": { type: "string", short: "c" },
      }, "lms");
      const model = one(args, "model name", "lms ensure");
      const contextLength = integerOption(args, "context-length", { min: 256, max: 10_000_000 });
      const result = await models.ensureLoaded(model, {
        signal,
        ...(contextLength !== undefined ? { contextLength } : {}),
      });
      return reportLoad(result, flag(args, "json"), out);
    }
    case "unload": {
      const args = parseArgs(rest, COMMON, "lms");
      const model = one(args, "model name", "lms unload");
      const result = await models.unload(model, { signal });
      if (flag(args, "json")) json(result);
      else {
        out.stdout(
          `Unloaded ${result.unloaded.join(", ")} (${
            result.source === "lms" ? "lms" : "REST API"
          }).\n`,
        );
      }
      return 0;
    }
    case "status": {
      const args = parseArgs(rest, COMMON, "lms");
      none(args, "lms status");
      const s = await models.status({ signal });
      if (flag(args, "json")) json(s);
      else {
        out.stdout(
          [
            `server:     ${s.baseUrl} ${
              s.reachable
                ? `answering (${s.latencyMs} ms, ${
                  s.modelCount === null ? "? models" : plural(s.modelCount, "model")
                })`
                : "NOT answering"
            }`,
            `lms:        ${
              s.lms.installed
                ? `${s.lms.path}${
                  s.lms.server
                    ? ` (server ${s.lms.server.running ? "running" : "not running"}${
                      s.lms.server.port ? ` on port ${s.lms.server.port}` : ""
                    })`
                    : ""
                }`
                : "not installed"
            }`,
            `models via: ${MANAGEMENT[s.management]}`,
            `model TTL:  ${s.ttlSeconds ? `${s.ttlSeconds} s` : "none"}`,
            // Only lms and the REST API load with a context length the bridge chooses.
            ...(s.management === "lms" || s.management === "rest"
              ? [
                `context:    ${
                  s.defaultContextLength === null
                    ? "LM Studio's default"
                    : `${s.defaultContextLength} tokens`
                } for loads that name none`,
              ]
              : []),
          ].join("\n") + "\n",
        );
        if (!s.reachable) out.stderr(`error: ${s.error ?? "the server does not answer"}`);
        if (s.lms.error) out.stderr(`lms: ${s.lms.error}`);
        // `lms` manages only LM Studio: no advice to install it for Ollama and the like.
        if (!s.lms.installed && s.source !== "openai") out.stderr(lmsInstallAdvice("cli"));
        // When the server is down the reason repeats the error above.
        if (s.reachable) out.stderr(s.managementReason);
      }
      return s.reachable ? 0 : 1;
    }
    case undefined:
      throw new UsageError("a subcommand is required: ps, ls, load, unload or status.", "lms");
    default:
      throw new UsageError(
        `unknown subcommand "${sub}"; use ps, ls, load, ensure, unload or status.`,
        "lms",
      );
  }
}
