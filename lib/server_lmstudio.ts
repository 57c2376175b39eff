/**
 * The MCP tools that expose LM Studio itself: health, models, chat, completion, embeddings and
 * stateful responses. One registration function per tool, schema beside it.
 */
import type { CallToolResult, McpServer } from "./sdk.ts";
import type { App } from "./app.ts";
import type { ChatMessage, Usage } from "./lmstudio_types.ts";
import { chooseModel } from "./models.ts";
import { plural } from "./text.ts";
import { emptyAnswerText, guarded, safeResult, textResult } from "./server_result.ts";
import { toolModelProgress } from "./server_progress.ts";
import { registerChosen, TOOL_DEFINITIONS as TOOLS } from "./server_tools.ts";
import type { ToolName } from "./tool_groups.ts";

/**
 * What the LM Studio tools use of the app: the client, the model manager (it loads a named model
 * before use and tells which models are loaded), the settings and the log.
 */
type LmStudioApp = Pick<App, "client" | "models" | "settings" | "log">;

function usageText(usage: Usage | undefined): string {
  return usage
    ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`
    : "usage not reported";
}

/** Text content for an answer, with reasoning as its own block, never mixed into the answer. */
function answerResult(
  answer: string,
  extra: { reasoning?: string; finishReason?: string; structured: Record<string, unknown> },
): CallToolResult {
  const text = answer.trim() === ""
    ? emptyAnswerText(extra.finishReason, Boolean(extra.reasoning))
    : answer;
  const content: CallToolResult["content"] = [{ type: "text", text }];
  if (extra.reasoning) {
    content.push({
      type: "text",
      text: `[model reasoning, not part of the answer]\n${extra.reasoning}`,
    });
  }
  return safeResult({ content, structuredContent: extra.structured });
}

function registerHealthCheck(server: McpServer, app: LmStudioApp): void {
  server.registerTool("health_check", TOOLS.health_check, (extra) =>
    guarded(async () => {
      const h = await app.client.health({ signal: extra.signal });
      const structured = { ...h };
      if (h.endpoints) {
        const up = h.endpoints.filter((e) => e.ok).length;
        const text = [
          `${up} of ${plural(h.endpoints.length, "model server")} healthy:`,
          ...h.endpoints.map((e) =>
            `- ${e.name} at ${e.baseUrl}: ${
              e.ok
                ? `answering (${e.latencyMs} ms, ${e.modelCount ?? "unknown number of"} models)` +
                  (e.note ? `. ${e.note}` : "")
                : `not healthy: ${e.error ?? "unknown error"}`
            }`
          ),
        ].join("\n");
        return { ...textResult(text, structured), ...(h.ok ? {} : { isError: true }) };
      }
      if (!h.ok) {
        return {
          content: [{
            type: "text",
            text: `LM Studio is not healthy: ${h.error ?? "unknown error"}`,
          }],
          structuredContent: structured,
          isError: true,
        };
      }
      return textResult(
        `LM Studio at ${h.baseUrl} is answering (${h.latencyMs} ms, ` +
          `${h.modelCount ?? "unknown number of"} models).${h.note ? ` ${h.note}` : ""}`,
        structured,
      );
    }));
}

function registerListModels(server: McpServer, app: LmStudioApp): void {
  server.registerTool("list_models", TOOLS.list_models, (extra) =>
    guarded(async () => {
      const list = await app.client.listModels({ signal: extra.signal });
      const lines = list.models.map((m) => {
        const parts: string[] = [m.type];
        if (m.state) parts.push(m.state);
        const ctx = m.loadedContextLength ?? m.maxContextLength;
        if (ctx) parts.push(`context ${ctx}`);
        if (m.vision) parts.push("vision");
        if (m.toolUse) parts.push("tool use");
        return `- ${m.id} (${parts.join(", ")})${m.endpoint ? ` on ${m.endpoint}` : ""}`;
      });
      const text = [
        lines.length ? `${lines.length} models:` : "The server lists no models.",
        ...lines,
        ...list.notes.map((n) => `Note: ${n}`),
      ].join("\n");
      return textResult(text, {
        models: list.models,
        source: list.source,
        notes: list.notes,
        ...(list.endpoints ? { endpoints: list.endpoints } : {}),
      });
    }));
}

function registerGetCurrentModel(server: McpServer, app: LmStudioApp): void {
  server.registerTool("get_current_model", TOOLS.get_current_model, (extra) =>
    guarded(async () => {
      const current = await app.models.currentModels({ signal: extra.signal });
      const lines = current.models.map((m) =>
        `- ${m.id} (${m.type}${m.status ? `, ${m.status}` : ""}${
          m.contextLength ? `, context ${m.contextLength}` : ""
        })${m.endpoint ? ` on ${m.endpoint}` : ""}`
      );
      // A server without LM Studio's REST state cannot say what is loaded: say that first, and
      // never "no model is loaded".
      const unknown = current.source === "openai" && lines.length === 0;
      const head = unknown
        ? `Which models are loaded is unknown: ${current.note ?? "the server does not say"}`
        : lines.length
        ? `Loaded models (from ${current.source}):`
        : `No model is loaded (from ${current.source}).`;
      const fallback = app.settings.defaultModel
        ? `Calls without \`model\` use DEFAULT_MODEL=${app.settings.defaultModel}.`
        : lines.length
        ? `Calls without \`model\` use the first loaded LLM.`
        : "A call that names a downloaded model loads it on demand (JIT).";
      const notes = !unknown && current.note ? [current.note] : [];
      const text = [head, ...lines, ...notes, fallback].join("\n");
      return textResult(text, { ...current, defaultModel: app.settings.defaultModel ?? null });
    }));
}

function registerChatCompletion(server: McpServer, app: LmStudioApp): void {
  const log = app.log.child("tools");
  server.registerTool(
    "chat_completion",
    TOOLS.chat_completion,
    (args, extra) =>
      guarded(async () => {
        const messages: ChatMessage[] = [];
        if (args.system_prompt) messages.push({ role: "system", content: args.system_prompt });
        messages.push({ role: "user", content: args.prompt });
        const format = typeof args.response_format === "string"
          ? (args.response_format === "text" ? undefined : { type: args.response_format })
          : args.response_format;
        const progress = toolModelProgress(extra, log);
        // Loaded on the first chat, not at the server's start.
        const { chatOnce } = await import("./model_chat.ts");
        const { model, result } = await chatOnce(app, args.model, {
          messages,
          temperature: args.temperature,
          max_tokens: args.max_tokens,
          response_format: format,
          ttl: app.settings.modelTtlSeconds || undefined,
        }, {
          signal: extra.signal,
          onEvent: progress.onEvent,
          // A caller who watches hears LM Studio's load and prompt progress (its native chat).
          watch: progress.onEvent !== undefined,
        }).finally(() => progress.dispose());
        progress.done({ text: result.content, reasoning: result.reasoning, stats: result.stats });
        log.debug("chat_completion done", { model, usage: usageText(result.usage) });
        return answerResult(result.content, {
          reasoning: result.reasoning,
          finishReason: result.finishReason,
          structured: {
            answer: result.content,
            reasoning: result.reasoning ?? null,
            model: result.model ?? model,
            finish_reason: result.finishReason ?? null,
            usage: result.usage ?? null,
          },
        });
      }),
  );
}

function registerTextCompletion(server: McpServer, app: LmStudioApp): void {
  server.registerTool(
    "text_completion",
    TOOLS.text_completion,
    (args, extra) =>
      guarded(async () => {
        const model = await chooseModel(app, args.model, { signal: extra.signal });
        const progress = toolModelProgress(extra, app.log.child("tools"));
        const result = await app.client.complete({
          model,
          prompt: args.prompt,
          temperature: args.temperature,
          max_tokens: args.max_tokens,
          stop: args.stop_sequences,
          ttl: app.settings.modelTtlSeconds || undefined,
        }, { signal: extra.signal, onEvent: progress.onEvent }).finally(() => progress.dispose());
        progress.done(result);
        return textResult(result.text, {
          text: result.text,
          model: result.model ?? model,
          finish_reason: result.finishReason ?? null,
          usage: result.usage ?? null,
        });
      }),
  );
}

function registerGenerateEmbeddings(server: McpServer, app: LmStudioApp): void {
  server.registerTool(
    "generate_embeddings",
    TOOLS.generate_embeddings,
    (args, extra) =>
      guarded(async () => {
        const model = await chooseModel(app, args.model, {
          kind: "embedding",
          signal: extra.signal,
        });
        const result = await app.client.embed({ model, input: args.text }, {
          signal: extra.signal,
        });
        const dims = result.embeddings[0]?.length ?? 0;
        const summary = `${result.embeddings.length} embedding(s) of ${dims} dimensions from ${
          result.model ?? model
        }:\n${JSON.stringify(result.embeddings)}`;
        return textResult(summary, {
          model: result.model ?? model,
          dimensions: dims,
          embeddings: result.embeddings,
          usage: result.usage ?? null,
        });
      }),
  );
}

function registerCreateResponse(server: McpServer, app: LmStudioApp): void {
  server.registerTool(
    "create_response",
    TOOLS.create_response,
    (args, extra) =>
      guarded(async () => {
        const model = await chooseModel(app, args.model, { signal: extra.signal });
        const progress = toolModelProgress(extra, app.log.child("tools"));
        const r = await app.client.respond({
          model,
          input: args.input_text,
          previous_response_id: args.previous_response_id,
          ttl: app.settings.modelTtlSeconds || undefined,
        }, { signal: extra.signal, onEvent: progress.onEvent }).finally(() => progress.dispose());
        progress.done(r);
        const result = answerResult(r.text, {
          reasoning: r.reasoning,
          structured: {
            response_id: r.id,
            answer: r.text,
            reasoning: r.reasoning ?? null,
            model: r.model ?? model,
            previous_response_id: r.previousResponseId ?? null,
            status: r.status ?? null,
            usage: r.usage ?? null,
          },
        });
        result.content.push({
          type: "text",
          text: `response_id: ${r.id} (pass it as previous_response_id to continue)`,
        });
        return result;
      }),
  );
}

/** Registers the LM Studio tools (those of `chosen`, or all). */
export function registerLmStudioTools(
  server: McpServer,
  app: LmStudioApp,
  chosen?: readonly ToolName[],
): void {
  registerChosen(
    {
      health_check: registerHealthCheck,
      list_models: registerListModels,
      get_current_model: registerGetCurrentModel,
      chat_completion: registerChatCompletion,
      text_completion: registerTextCompletion,
      generate_embeddings: registerGenerateEmbeddings,
      create_response: registerCreateResponse,
    },
    server,
    app,
    chosen,
  );
}
