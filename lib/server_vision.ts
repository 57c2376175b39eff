/**
 * The `analyze_image` tool: one or more images (paths, data URIs, URLs) and a prompt go to a
 * vision-capable local model as one multimodal user message. Also the choice of that model.
 */
import { z } from "zod";
import type { LoadedImage } from "./image_type.ts";
import type { App } from "./app.ts";
import type { LmStudioClient } from "./lmstudio.ts";
import type { ChatContentPart, ModelInfo, ModelList } from "./lmstudio_types.ts";
import type { Logger } from "./log.ts";
import { findModel } from "./model_names.ts";
import { basename } from "./path.ts";
import { emptyAnswerText, errorResult, safeResult } from "./server_result.ts";
import type {
  CallToolResult,
  McpServer,
  RequestHandlerExtra,
  ServerNotification,
  ServerRequest,
} from "./sdk.ts";
import { toolModelProgress } from "./server_progress.ts";
import { TOOL_DEFINITIONS as TOOLS } from "./server_tools.ts";
import { BridgeError, errorMessage } from "./errors.ts";
import { plural } from "./text.ts";

/**
 * What `analyze_image` uses of the app: the client, the settings (relative image paths start at
 * `workDir`) and the log as they are, and the model manager's `ensureLoaded` (optional: without it
 * the server loads the model on demand). {@linkcode App} satisfies it.
 */
export interface VisionApp extends Pick<App, "client" | "settings" | "log"> {
  readonly models?: {
    ensureLoaded(model: string, o?: { signal?: AbortSignal }): Promise<unknown>;
  };
}

/** A vision model could not be chosen; the message names the vision models that exist. */
export class VisionModelError extends BridgeError<"vision_model"> {
  override name = "VisionModelError";
  /** The model that was asked for, when one was. */
  readonly model?: string;
  /** Vision-capable models the server lists (loaded or not). */
  readonly visionModels: string[];
  constructor(message: string, options: { model?: string; visionModels: string[] }) {
    super("vision_model", message);
    if (options.model !== undefined) this.model = options.model;
    this.visionModels = options.visionModels;
  }
}

/** The chosen model and why. */
interface VisionModelChoice {
  model: string;
  via: "explicit" | "default" | "loaded-vision" | "downloaded-vision";
  /** Something the caller should know (e.g. DEFAULT_MODEL was skipped as text-only). */
  note?: string;
}

/** True when the server says the model reads images. Pure. */
function isVisionModel(m: ModelInfo): boolean {
  return m.vision === true || m.type === "vlm";
}

/** True for an embedding model: by its type, or by its name where the server tells no type. */
function isEmbeddingModel(m: ModelInfo): boolean {
  return m.type === "embedding" || /embed/i.test(m.id);
}

/** True when the server says the model cannot read images. Pure. */
function isTextOnlyModel(m: ModelInfo): boolean {
  return !isVisionModel(m) && (m.vision === false || m.type === "embedding");
}

function visionHint(list: ModelList): string {
  const vision = list.models.filter(isVisionModel).map((m) =>
    `${m.id} (${m.state === "loaded" ? "loaded" : "not loaded"})`
  );
  return vision.length > 0
    ? `Vision-capable models here: ${vision.join(", ")}.`
    : "No vision-capable model is downloaded; get one with e.g. `lms get qwen2.5-vl-7b-instruct` " +
      "or `lms get gemma-3-4b-it`.";
}

function textOnlyMessage(id: string, m: ModelInfo, list: ModelList): string {
  const what = m.type === "embedding" ? "an embedding model" : "a text-only model";
  return `Model ${id} cannot read images: LM Studio lists it as ${what}. ${
    visionHint(list)
  } Pass a vision model as \`model\`.`;
}

/**
 * Picks the model for an image request: `explicit`, else `defaultModel` (skipped when the server
 * says it is text-only), else the first loaded vision-capable model. A model the server reports
 * as unable to read images is refused before anything is sent. Throws
 * {@linkcode VisionModelError} naming the vision models that exist, or the listing's own error.
 */
async function chooseVisionModel(
  client: Pick<LmStudioClient, "listModels" | "baseUrl">,
  o: { explicit?: string; defaultModel?: string; signal?: AbortSignal; log?: Logger } = {},
): Promise<VisionModelChoice> {
  const explicit = o.explicit?.trim() || undefined;
  const fallback = o.defaultModel?.trim() || undefined;
  let list: ModelList | undefined;
  try {
    list = await client.listModels({ signal: o.signal });
  } catch (error: unknown) {
    // With a named model the chat request itself reports the same failure, with its own advice.
    if (explicit === undefined && fallback === undefined) throw error;
    o.log?.debug("model list unavailable; sending to the named model", {
      error: errorMessage(error),
    });
  }
  const visionModels = list?.models.filter(isVisionModel).map((m) => m.id) ?? [];
  if (explicit !== undefined) {
    const info = list && findModel(explicit, list.models);
    if (list && info && isTextOnlyModel(info)) {
      throw new VisionModelError(textOnlyMessage(explicit, info, list), {
        model: explicit,
        visionModels,
      });
    }
    return { model: explicit, via: "explicit" };
  }
  let note: string | undefined;
  if (fallback !== undefined) {
    const info = list && findModel(fallback, list.models);
    if (!(list && info && isTextOnlyModel(info))) return { model: fallback, via: "default" };
    note = `DEFAULT_MODEL ${fallback} is text-only, so a loaded vision model was used instead.`;
  }
  if (list === undefined) {
    // Unreachable: without a list there was an explicit or default model, handled above.
    throw new VisionModelError("The model list is unavailable.", { visionModels });
  }
  const loaded = list.models.find((m) => isVisionModel(m) && m.state === "loaded");
  if (loaded) return { model: loaded.id, via: "loaded-vision", ...(note ? { note } : {}) };
  const prefix = note ? `${note.replace(/, so.*$/, "")}. ` : "";
  // None is loaded but one is downloaded: use it (a declared vlm first); it is loaded on demand,
  // as every other tool loads the model it needs.
  const downloaded = list.models.find((m) => m.type === "vlm") ??
    list.models.find(isVisionModel);
  if (downloaded) {
    return {
      model: downloaded.id,
      via: "downloaded-vision",
      note: `${prefix}No vision model was loaded, so ${downloaded.id} was loaded for this call.`,
    };
  }
  if (list.source === "openai") {
    throw new VisionModelError(
      `${prefix}Cannot tell which model can read images: the server at ${client.baseUrl} does not ` +
        "report model capabilities (it has no LM Studio REST API). Pass a vision model as " +
        `\`model\` (one of: ${
          list.models.filter((m) => !isEmbeddingModel(m)).map((m) => m.id).join(", ") ||
          "none listed"
        }), ` +
        "or set DEFAULT_MODEL to one.",
      { visionModels },
    );
  }
  const all = list.models.map((m) => `${m.id} (${m.type})`).join(", ");
  throw new VisionModelError(
    `${prefix}No vision-capable model is downloaded in LM Studio (models: ${all || "none"}). ` +
      "Download one, e.g. `lms get qwen2.5-vl-7b-instruct` or `lms get gemma-3-4b-it`, " +
      "then call again.",
    { visionModels },
  );
}

/** The content parts of the one user message: the prompt, then each image (labelled when several). */
function imageMessageParts(
  prompt: string,
  images: readonly LoadedImage[],
  detail?: "auto" | "low" | "high",
): ChatContentPart[] {
  const parts: ChatContentPart[] = [{ type: "text", text: prompt }];
  images.forEach((image, i) => {
    if (images.length > 1) {
      const name = image.source === "data-uri" ? "" : ` (${basename(image.label)})`;
      parts.push({ type: "text", text: `Image ${i + 1}${name}:` });
    }
    parts.push({
      type: "image_url",
      image_url: detail === undefined ? { url: image.dataUri } : { url: image.dataUri, detail },
    });
  });
  return parts;
}

/** `images` as sent: one string, a list, or a JSON-encoded list in a string (models do that). */
function imageList(images: string | string[]): string[] {
  if (Array.isArray(images)) return images;
  const text = images.trim();
  if (text.startsWith("[")) {
    try {
      const parsed = z.array(z.string()).safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
    } catch {
      // Not JSON: a path that starts with "[" is still a path.
    }
  }
  return [images];
}

/** The context of one tool call (its signal, progress token, notification sender). */
type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The arguments of one `analyze_image` call, after validation. */
type AnalyzeImageArgs = z.infer<z.ZodObject<typeof TOOLS.analyze_image.inputSchema>>;

/** Runs one `analyze_image` call; never throws (failures are isError results). */
async function analyzeImage(
  app: VisionApp,
  args: AnalyzeImageArgs,
  extra: ToolExtra,
): Promise<CallToolResult> {
  const signal = extra.signal;
  const log = app.log.child("vision");
  const { workDir } = app.settings;
  const [loaded, chosen] = await Promise.allSettled([
    // Reading and fetching images is loaded on the first call, not at the server's start.
    import("./images.ts").then(({ loadImages }) =>
      loadImages(imageList(args.images), { ...(workDir ? { cwd: workDir } : {}), signal })
    ),
    chooseVisionModel(app.client, {
      explicit: args.model,
      defaultModel: app.settings.defaultModel,
      signal,
      log,
    }),
  ]);
  const problems = [loaded, chosen].flatMap((r) =>
    r.status === "rejected" ? [errorMessage(r.reason)] : []
  );
  if (loaded.status === "rejected" || chosen.status === "rejected") {
    return errorResult(problems.join("\n"), "analyze_image could not start");
  }
  const images = loaded.value;
  const { model, via, note } = chosen.value;
  try {
    if (via !== "loaded-vision" && app.models) {
      await app.models.ensureLoaded(model, { signal });
    }
    const started = performance.now();
    const progress = toolModelProgress(extra, log);
    const result = await app.client.chat({
      model,
      messages: [{ role: "user", content: imageMessageParts(args.prompt, images, args.detail) }],
      max_tokens: args.max_tokens,
      ...(args.temperature === undefined ? {} : { temperature: args.temperature }),
      ttl: app.settings.modelTtlSeconds || undefined,
    }, { signal, onEvent: progress.onEvent }).finally(() => progress.dispose());
    progress.done({ text: result.content, reasoning: result.reasoning, stats: result.stats });
    log.debug("analyze_image done", {
      model,
      images: images.length,
      ms: Math.round(performance.now() - started),
    });
    const answer = result.content;
    let text = answer;
    if (answer.trim() === "") {
      text = emptyAnswerText(result.finishReason, Boolean(result.reasoning));
    } else if (result.finishReason === "length") {
      text += "\n\n(Answer cut off at max_tokens; call again with a larger max_tokens.)";
    }
    const content: CallToolResult["content"] = [{ type: "text", text }];
    if (result.reasoning) {
      content.push({
        type: "text",
        text: `---\n[model reasoning, not part of the answer]\n${result.reasoning}`,
      });
    }
    if (note) content.push({ type: "text", text: `[note] ${note}` });
    return safeResult({
      content,
      structuredContent: {
        answer,
        reasoning: result.reasoning ?? null,
        model: result.model ?? model,
        model_choice: via,
        images: images.map(({ label, mime, bytes, source }) => ({ label, mime, bytes, source })),
        finish_reason: result.finishReason ?? null,
        usage: result.usage ?? null,
        ...(note ? { note } : {}),
      },
    });
  } catch (error: unknown) {
    return errorResult(
      error,
      `analyze_image with model ${model} (${plural(images.length, "image")}) failed`,
    );
  }
}

/** Registers `analyze_image` on the server. */
export function registerAnalyzeImageTool(server: McpServer, app: VisionApp): void {
  server.registerTool(
    "analyze_image",
    TOOLS.analyze_image,
    (args, extra) => analyzeImage(app, args, extra),
  );
}
