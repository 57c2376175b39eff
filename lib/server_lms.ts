/**
 * The model-management MCP tools (`lms_*`). They work through `lms` when it is installed, through
 * LM Studio's REST API otherwise, and say how to get either when neither is there. Names and
 * parameters match the original Python bridge.
 */
import type { App } from "./app.ts";
import { LmStudioError } from "./lmstudio_errors.ts";
import { lmsInstallAdvice } from "./lms.ts";
import { type EnsureResult, type ServerStatusReport, sourceLabel } from "./model_types.ts";
import { ensureReport } from "./models.ts";
import type { CallToolResult, McpServer } from "./sdk.ts";
import { errorResult, guarded, textResult } from "./server_result.ts";
import { contextLengthParam, registerChosen, TOOL_DEFINITIONS as TOOLS } from "./server_tools.ts";
import type { ToolName } from "./tool_groups.ts";
import { errorMessage } from "./errors.ts";
import { formatBytes, plural } from "./text.ts";

/** What the lms tools use of the app: `lms` (to advise on setup) and the model manager. */
type LmsApp = Pick<App, "lms" | "models">;

/** With no server to manage models through, says how to start one (and get `lms`). */
function setupAdvice(app: LmsApp): (error: unknown) => Promise<CallToolResult | undefined> {
  return async (error) => {
    if (!(error instanceof LmStudioError && error.kind === "unreachable")) return undefined;
    const lms = await app.lms.locate().catch(() => undefined);
    const advice = lms
      ? "Start the server with `lms server start` (or the Developer tab in LM Studio)."
      : "Start LM Studio's server (Developer tab). To start it and manage models from a " +
        `terminal as well: ${lmsInstallAdvice("server")}`;
    return errorResult(`${errorMessage(error)} ${advice}`);
  };
}

function gb(bytes: number | null): string {
  return bytes === null ? "" : `, ${formatBytes(bytes)}`;
}

/** What a load or ensure did, in one sentence, then its note. */
function ensureText(result: EnsureResult, what: Record<EnsureResult["via"], string>): string {
  const context = result.contextLength !== null && result.via !== "jit"
    ? ` Context: ${result.contextLength} tokens.`
    : "";
  const unload = result.via === "rest" ? " Unload it with lms_unload_model when done." : "";
  return [`${what[result.via]}${context}`, ...(result.note ? [result.note] : [])].join(" ") +
    unload;
}

function registerListLoaded(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_list_loaded_models",
    TOOLS.lms_list_loaded_models,
    (_args, extra) =>
      guarded(async () => {
        const current = await app.models.currentModels({ signal: extra.signal, prefer: "lms" });
        const lines = current.models.map((m) =>
          `- ${m.id} (${m.type}${m.status ? `, ${m.status}` : ""}${
            m.contextLength ? `, context ${m.contextLength}` : ""
          })`
        );
        const from = sourceLabel(current.source);
        const head = lines.length
          ? `${lines.length} loaded (from ${from}):`
          : current.note
          ? `No loaded model known (from ${from}).`
          : `No model is loaded (from ${from}). A request that names a downloaded ` +
            "model loads it on demand, or use lms_load_model.";
        return textResult([head, ...lines, ...(current.note ? [current.note] : [])].join("\n"), {
          ...current,
        });
      }, setupAdvice(app)),
  );
}

function registerListDownloaded(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_list_downloaded_models",
    TOOLS.lms_list_downloaded_models,
    ({ kind }, extra) =>
      guarded(async () => {
        const list = await app.models.downloadedModels({
          signal: extra.signal,
          ...(kind ? { kind } : {}),
        });
        const lines = list.models.map((m) =>
          `- ${m.id} (${m.type ?? "type unknown"}${gb(m.sizeBytes)}${
            m.maxContextLength ? `, max context ${m.maxContextLength}` : ""
          }${m.loaded ? ", loaded" : ""})`
        );
        const from = sourceLabel(list.source);
        const head = lines.length
          ? `${plural(lines.length, "model")} (from ${from}):`
          : `No models found (from ${from}). Download one in LM Studio or with \`lms get <name>\`.`;
        return textResult([head, ...lines, ...(list.note ? [list.note] : [])].join("\n"), {
          ...list,
        });
      }, setupAdvice(app)),
  );
}

function registerLoad(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_load_model",
    {
      ...TOOLS.lms_load_model,
      inputSchema: {
        ...TOOLS.lms_load_model.inputSchema,
        context_length: contextLengthParam(app.models.defaultContextLength),
      },
    },
    ({ model_name, ttl, context_length }, extra) =>
      guarded(async () => {
        const result = await app.models.load(model_name, {
          signal: extra.signal,
          ...(ttl !== undefined ? { ttlSeconds: ttl } : {}),
          ...(context_length !== undefined ? { contextLength: context_length } : {}),
        });
        const seconds = (result.waitedMs / 1000).toFixed(1);
        const text = ensureText(result, {
          "already-loaded": `${result.model} is already loaded.`,
          lms: `Loaded ${result.model} with lms in ${seconds} s.`,
          rest: `Loaded ${result.model} over LM Studio's REST API in ${seconds} s.`,
          jit:
            `${result.model} will load on its first request (this server loads models on demand).`,
        });
        return textResult(text, { ...ensureReport(result) });
      }, setupAdvice(app)),
  );
}

function registerUnload(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_unload_model",
    TOOLS.lms_unload_model,
    ({ model_name }, extra) =>
      guarded(async () => {
        const result = await app.models.unload(model_name, { signal: extra.signal });
        return textResult(
          `Unloaded ${result.unloaded.join(", ")} ${
            result.source === "lms" ? "with lms" : "over LM Studio's REST API"
          }.`,
          { ...result },
        );
      }, setupAdvice(app)),
  );
}

function registerEnsure(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_ensure_model_loaded",
    {
      ...TOOLS.lms_ensure_model_loaded,
      inputSchema: {
        ...TOOLS.lms_ensure_model_loaded.inputSchema,
        context_length: contextLengthParam(app.models.defaultContextLength),
      },
    },
    ({ model_name, context_length }, extra) =>
      guarded(async () => {
        const result = await app.models.ensureLoaded(model_name, {
          signal: extra.signal,
          ...(context_length !== undefined ? { contextLength: context_length } : {}),
        });
        const seconds = (result.waitedMs / 1000).toFixed(1);
        const text = ensureText(result, {
          "already-loaded": `${result.model} is loaded and ready.`,
          lms: `${result.model} was not loaded; loaded it with lms in ${seconds} s.`,
          rest:
            `${result.model} was not loaded; loaded it over LM Studio's REST API in ${seconds} s.`,
          jit: `${result.model} will load on its first request (just-in-time loading).`,
        });
        return textResult(text, { ...ensureReport(result) });
      }, setupAdvice(app)),
  );
}

function registerServerStatus(server: McpServer, app: LmsApp): void {
  server.registerTool(
    "lms_server_status",
    TOOLS.lms_server_status,
    (_args, extra) =>
      guarded(async () => {
        const s = await app.models.status({ signal: extra.signal });
        const lines = [
          s.reachable
            ? `${
              s.source === "openai" ? "The server" : "LM Studio"
            } at ${s.baseUrl} is answering (${s.latencyMs} ms, ${
              s.modelCount === null ? "model count unknown" : plural(s.modelCount, "model")
            }).`
            : `LM Studio at ${s.baseUrl} is not answering: ${s.error ?? "unknown error"}`,
          s.lms.installed
            ? `lms: ${s.lms.path}${
              s.lms.server
                ? ` (server ${s.lms.server.running ? "running" : "not running"}${
                  s.lms.server.port ? ` on port ${s.lms.server.port}` : ""
                })`
                : s.lms.error
                ? ` (error: ${s.lms.error})`
                : ""
            }`
            : s.source === "openai"
            ? "lms: not installed (it manages only LM Studio, so it would not help with this server)."
            : `lms: not installed. ${lmsInstallAdvice("server")}`,
          `${managementSentence(s)} ${s.managementReason}`,
        ];
        if (s.management === "lms" || s.management === "rest") {
          lines.push(
            `Loads ask for ${
              s.defaultContextLength === null
                ? "LM Studio's default context length"
                : `a context of ${s.defaultContextLength} tokens`
            } unless told otherwise.`,
          );
        }
        if (!s.reachable) {
          lines.push(
            s.lms.installed
              ? "To start the server: `lms server start` (or the Developer tab in LM Studio)."
              : "To start the server: open LM Studio and switch the server on in the Developer tab.",
          );
        }
        const result = textResult(lines.join("\n"), { ...s });
        return s.reachable ? result : { ...result, isError: true };
      }, setupAdvice(app)),
  );
}

/** What the status's management means for calls, as the start of a sentence. */
function managementSentence(s: ServerStatusReport): string {
  switch (s.management) {
    case "lms":
      return "Models are listed and loaded with `lms`.";
    case "rest":
      return "Models are listed and loaded over LM Studio's REST API.";
    case "jit":
      return "Models load on their first request (just-in-time); the bridge cannot preload them.";
    case "none":
      return "No model can be listed or loaded until the server answers.";
  }
}

/** Registers the `lms_*` tools (those of `chosen`, or all six). */
export function registerLmsTools(
  server: McpServer,
  app: LmsApp,
  chosen?: readonly ToolName[],
): void {
  registerChosen(
    {
      lms_list_loaded_models: registerListLoaded,
      lms_list_downloaded_models: registerListDownloaded,
      lms_load_model: registerLoad,
      lms_unload_model: registerUnload,
      lms_ensure_model_loaded: registerEnsure,
      lms_server_status: registerServerStatus,
    },
    server,
    app,
    chosen,
  );
}
