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
import type { LmStudioClient } from "./lmstudio.ts";
import { type Lms, LMS_INSTALL_HINT } from "./lms.ts";
import type { ModelManager } from "./models.ts";
import type { Output } from "./output.ts";

/** What `lms` commands need. */
export interface LmsCommandContext {
  lms: Lms;
  models: ModelManager;
  client: LmStudioClient;
  out: Output;
  signal?: AbortSignal;
}

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

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  }
  return rows.map((row) => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd())
    .join("\n") + "\n";
}

function size(bytes: number | undefined): string {
  return bytes === undefined ? "" : `${(bytes / 1e9).toFixed(2)} GB`;
}

/** Runs `lms SUBCOMMAND ...`; returns the exit code (errors other than misuse propagate to main). */
export async function lmsCommand(argv: string[], ctx: LmsCommandContext): Promise<number> {
  const [sub, ...rest] = argv;
  const { models, out, signal } = ctx;
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
        if (!current.note) out.stderr(`No model is loaded (from ${current.source}).`);
      } else {
        out.stdout(table([
          ["ID", "TYPE", "STATUS", "CONTEXT"],
          ...current.models.map((m) => [
            m.id,
            m.type,
            m.status ?? "",
            m.contextLength?.toString() ?? "",
          ]),
        ]));
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
      if (list.models.length === 0) out.stderr(`No models found (from ${list.source}).`);
      else {
        out.stdout(table([
          ["ID", "TYPE", "SIZE", "MAX CONTEXT", "LOADED"],
          ...list.models.map((m) => [
            m.id,
            m.type,
            size(m.sizeBytes),
            m.maxContextLength?.toString() ?? "",
            m.loaded === undefined ? "?" : m.loaded ? "yes" : "",
          ]),
        ]));
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
      if (flag(args, "json")) json(result);
      else {
        const seconds = (result.waitedMs / 1000).toFixed(1);
        out.stdout(
          {
            "already-loaded": `${result.model} is already loaded.\n`,
            lms: `Loaded ${result.model} (lms, ${seconds} s).\n`,
            rest: `Loaded ${result.model} (REST API, ${seconds} s).\n`,
            jit: `${result.model} will load on its first request (JIT).\n`,
          }[result.via],
        );
      }
      if (result.note && !flag(args, "json")) out.stderr(result.note);
      return 0;
    }
    case "unload": {
      const args = parseArgs(rest, COMMON, "lms");
      const model = one(args, "model name", "lms unload");
      const result = await models.unload(model, { signal });
      if (flag(args, "json")) json(result);
      else out.stdout(`Unloaded ${result.unloaded.join(", ")} (${result.via}).\n`);
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
                ? `answering (${s.latencyMs} ms, ${s.modelCount ?? "?"} models)`
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
            `models via: ${s.management}`,
            `model TTL:  ${s.ttlSeconds ? `${s.ttlSeconds} s` : "none"}`,
          ].join("\n") + "\n",
        );
        if (!s.reachable) out.stderr(`error: ${s.error ?? "the server does not answer"}`);
        if (s.lms.error) out.stderr(`lms: ${s.lms.error}`);
        if (!s.lms.installed) out.stderr(LMS_INSTALL_HINT);
        // When the server is down the reason repeats the error above.
        if (s.reachable) out.stderr(s.managementReason);
      }
      return s.reachable ? 0 : 1;
    }
    case undefined:
      throw new UsageError("a subcommand is required: ps, ls, load, unload or status.", "lms");
    default:
      throw new UsageError(
        `unknown subcommand "${sub}"; use ps, ls, load, unload or status.`,
        "lms",
      );
  }
}
