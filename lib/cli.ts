/**
 * CLI commands that talk to LM Studio directly: `chat` and `models`. (`doctor` lives in
 * doctor.ts; MCP, lms and run commands in their own modules.)
 */
import type { App, CommandContext } from "./app.ts";
import {
  flag,
  integerOption,
  parseArgs,
  stringOption,
  temperatureOption,
  UsageError,
} from "./args.ts";
import { ProgressReporter } from "./agent_progress.ts";
import { ModelWatch } from "./agent_stream.ts";
import { LiveReply } from "./cli_live.ts";
import type { ChatMessage, ChatStreamEvent, ModelList } from "./lmstudio_types.ts";
import { log } from "./log.ts";
import { chatOnce, type ChatOnceDeps } from "./model_chat.ts";
import type { Output } from "./output.ts";
import type { Settings } from "./settings.ts";

/** Joins positionals into a prompt; `-` reads standard input. */
export async function readPrompt(
  positionals: string[],
  command: string,
  stdin: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<string> {
  if (positionals.length === 1 && positionals[0] === "-") {
    const text = (await new Response(stdin).text()).trim();
    if (text === "") throw new UsageError("standard input was empty; nothing to send.", command);
    return text;
  }
  const prompt = positionals.join(" ").trim();
  if (prompt === "") throw new UsageError("a prompt is required.", command);
  return prompt;
}

/**
 * The status line of one model request on a terminal, from its stream events: loading, reading
 * the prompt, waiting for the first token, tokens and their rate (the loop's wording). Dispose it
 * when the request ends.
 */
function requestStatus(out: Output): { onEvent(event: ChatStreamEvent): void; dispose(): void } {
  const progress = new ProgressReporter({
    sink: (p) => out.status(p.message.trim()),
    total: 1,
    info: () => ({
      elapsedMs: 0,
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    }),
    log: log.child("chat"),
  });
  const watch = new ModelWatch({ progress, round: 1, prefix: "", now: () => performance.now() });
  return { onEvent: watch.onEvent, dispose: () => progress.dispose() };
}

/**
 * `chat [--model M] [--system S] [--temperature T] [--max-tokens N] [--reasoning] [--json] PROMPT`.
 * On a terminal the answer shows as it streams (cli_live.ts), under a status line.
 */
export async function chatCommand(
  argv: string[],
  ctx: CommandContext<
    ChatOnceDeps & {
      settings: Pick<Settings, "defaultModel" | "modelTtlSeconds" | "defaultContextLength">;
    }
  >,
): Promise<number> {
  const args = parseArgs(argv, {
    model: { type: "string", short: "m" },
    system: { type: "string", short: "s" },
    temperature: { type: "string", short: "t" },
    "max-tokens": { type: "string" },
    reasoning: { type: "boolean" },
    json: { type: "boolean" },
  }, "chat");
  const temperature = temperatureOption(args, "chat") ?? 0.7;
  const maxTokens = integerOption(args, "max-tokens", { min: 1, max: 1_000_000 }) ?? 1024;
  const prompt = await readPrompt(args.positionals, "chat");
  const { app, out, signal } = ctx;

  const messages: ChatMessage[] = [];
  const system = stringOption(args, "system");
  if (system) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: prompt });
  const json = flag(args, "json");
  const showReasoning = flag(args, "reasoning");
  // On a terminal the reply shows as it streams; piped or as JSON, it comes at the end.
  const live = out.stdoutIsTerminal && !json
    ? new LiveReply(out, { reasoning: showReasoning })
    : undefined;
  const status = out.stderrIsTerminal ? requestStatus(out) : undefined;
  const { model, result } = await chatOnce(app, stringOption(args, "model"), {
    messages,
    temperature,
    max_tokens: maxTokens,
    ttl: app.settings.modelTtlSeconds || undefined,
  }, {
    signal,
    onModel: (chosen) => out.status(`asking ${chosen}…`),
    // On a terminal, LM Studio's load and prompt progress show too (its native chat).
    watch: live !== undefined || status !== undefined,
    ...(live !== undefined || status !== undefined
      ? {
        onEvent: (event: ChatStreamEvent) => {
          status?.onEvent(event);
          live?.onEvent(event);
        },
      }
      : {}),
  }).finally(() => {
    status?.dispose();
    out.status("");
    live?.endReply();
  });

  if (json) {
    out.stdout(
      JSON.stringify(
        {
          answer: result.content,
          reasoning: result.reasoning ?? null,
          model: result.model ?? model,
          finish_reason: result.finishReason ?? null,
          usage: result.usage ?? null,
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  if (live === undefined) {
    if (result.reasoning) out.stderr(`[reasoning]\n${result.reasoning}\n[/reasoning]`);
  } else if (showReasoning && result.reasoning && !live.shows(result.content)) {
    // Nothing streamed: the reasoning comes with the answer, dimmed.
    out.stdout(`${result.reasoning.trim()}\n\n`, "dim");
  }
  if (result.content === "") {
    out.stderr(
      result.finishReason === "length"
        ? `The model stopped at --max-tokens ${maxTokens} before answering; raise it.`
        : "The model returned an empty answer.",
    );
    return 1;
  }
  if (!live?.shows(result.content)) {
    out.stdout(result.content.endsWith("\n") ? result.content : result.content + "\n");
  }
  return 0;
}

/** `models [--json]` */
export async function modelsCommand(
  argv: string[],
  ctx: CommandContext<Pick<App, "client" | "settings">>,
): Promise<number> {
  const args = parseArgs(argv, { json: { type: "boolean" } }, "models");
  if (args.positionals.length > 0) {
    throw new UsageError(`models takes no arguments, got ${args.positionals.join(" ")}.`, "models");
  }
  const list = await ctx.app.client.listModels({ signal: ctx.signal });
  if (flag(args, "json")) {
    ctx.out.stdout(JSON.stringify(modelListJson(list), null, 2) + "\n");
    return 0;
  }
  // With several endpoints, each model's is a column of its own.
  const several = list.endpoints !== undefined;
  const rows = list.models.map((m) => [
    m.id,
    ...(several ? [m.endpoint ?? "-"] : []),
    m.type,
    m.state ?? "-",
    String(m.loadedContextLength ?? m.maxContextLength ?? "-"),
    [m.vision ? "vision" : "", m.toolUse ? "tools" : ""].filter(Boolean).join(",") || "-",
  ]);
  if (rows.length === 0) {
    ctx.out.stderr(
      `${
        several
          ? `The servers ${ctx.app.client.baseUrl} offer`
          : `The server at ${ctx.app.settings.baseUrl} offers`
      } no models. Download one in LM Studio (Discover tab) or with \`lms get <model>\`, then ` +
        "try again.",
    );
    // Why an endpoint gave nothing (not answering, token refused) is in its note.
    const notes = several ? list.notes : [];
    for (const note of notes) ctx.out.stderr(`note: ${note}`);
    return 0;
  }
  const header = ["MODEL", ...(several ? ["ENDPOINT"] : []), "TYPE", "STATE", "CONTEXT", "CAPS"];
  ctx.out.stdout(table(header, rows));
  for (const note of list.notes) ctx.out.stderr(`note: ${note}`);
  return 0;
}

/**
 * The `models --json` document: every key of every model always present, null when the server
 * does not tell (as `lms ls --json` and `lms ps --json` do). With several endpoints, every model
 * also has `endpoint`, and `endpoints` tells what each endpoint answered.
 */
export function modelListJson(list: ModelList): Record<string, unknown> {
  return {
    source: list.source,
    models: list.models.map((m) => ({
      id: m.id,
      type: m.type,
      state: m.state ?? null,
      maxContextLength: m.maxContextLength ?? null,
      loadedContextLength: m.loadedContextLength ?? null,
      vision: m.vision ?? null,
      toolUse: m.toolUse ?? null,
      reasoning: m.reasoning ?? null,
      publisher: m.publisher ?? null,
      arch: m.arch ?? null,
      quantization: m.quantization ?? null,
      instanceIds: m.instanceIds ?? null,
      ...(list.endpoints ? { endpoint: m.endpoint ?? null } : {}),
    })),
    notes: list.notes,
    ...(list.endpoints ? { endpoints: list.endpoints } : {}),
  };
}

/** A plain aligned text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
