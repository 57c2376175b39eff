/**
 * The hand-written floor of the loop benches: the least a bridge can do, written by hand on the
 * same SDK. An MCP server with two tools: `chat`, one chat request passed through (the floor of
 * `chat_completion`), and `run_task`, that runs the tool loop itself: one kept
 * connection to one downstream server (connected on the first call, its tools listed once),
 * then per round one chat request to the model and the calls it asks for, until it answers.
 * No config file, no model management, no budgets, no repair: what is left is the cost any
 * loop must pay, measured across the same stdio boundary as the bridge.
 *
 * Environment: LMSTUDIO_BASE_URL, FLOOR_MODEL (the model id), FLOOR_SERVER (the downstream
 * server as JSON `{command, args, env}`), FLOOR_STREAM (`1`: run_task asks for streamed replies,
 * as the bridge does by default, and reads their server-sent events as a minimal streaming client
 * does; otherwise whole replies).
 */
import process from "node:process";
import { z } from "zod";
import { type CallToolResult, McpServer, StdioServerTransport } from "../../lib/sdk.ts";
import { Client, StdioClientTransport } from "../../lib/sdk_client.ts";

const Downstream = z.object({
  command: z.string(),
  args: z.array(z.string()),
  env: z.record(z.string(), z.string()).optional(),
});

const Call = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
type Call = z.infer<typeof Call>;

const Reply = z.object({
  choices: z.array(z.object({
    message: z.object({
      content: z.string().nullable().optional(),
      tool_calls: z.array(Call).optional(),
    }),
  })).min(1),
});

/** One chunk of a streamed reply (the usage chunk at the end has no choices). */
const Chunk = z.object({
  choices: z.array(z.object({
    delta: z.object({
      content: z.string().nullable().optional(),
      tool_calls: z.array(z.object({
        index: z.number().int().min(0),
        id: z.string().optional(),
        function: z.object({
          name: z.string().optional(),
          arguments: z.string().optional(),
        }).optional(),
      })).optional(),
    }),
  })),
});

type Message = Record<string, unknown>;

const baseUrl = Deno.env.get("LMSTUDIO_BASE_URL") ?? "http://127.0.0.1:1234";
const model = Deno.env.get("FLOOR_MODEL") ?? "qwen2.5-7b-instruct";
const stream = Deno.env.get("FLOOR_STREAM") === "1";

interface Kept {
  client: Client;
  tools: unknown[];
}

let kept: Promise<Kept> | undefined;

async function connect(): Promise<Kept> {
  const spec = Downstream.parse(JSON.parse(Deno.env.get("FLOOR_SERVER") ?? "null"));
  const client = new Client({ name: "floor", version: "1" });
  await client.connect(new StdioClientTransport({ ...spec, stderr: "ignore" }));
  const { tools } = await client.listTools();
  return {
    client,
    tools: tools.map((t) => ({
      type: "function",
      function: { name: t.name, description: t.description ?? "", parameters: t.inputSchema },
    })),
  };
}

function textOf(result: CallToolResult): string {
  return result.content.map((p) => p.type === "text" ? p.text : "").join("");
}

/** One chat request, as chat_completion sends it by default; the answer's text. */
async function chat(prompt: string, model: string): Promise<string> {
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: prompt }],
      temperature: 0.7,
      max_tokens: 1024,
    }),
  });
  if (!response.ok) throw new Error(`model request failed: ${await response.text()}`);
  return Reply.parse(await response.json()).choices[0]!.message.content ?? "";
}

/** What the model answered: its text and the tools it calls. */
interface Answer {
  content: string;
  calls: Call[];
}

async function wholeAnswer(response: Response): Promise<Answer> {
  const message = Reply.parse(await response.json()).choices[0]!.message;
  return { content: message.content ?? "", calls: message.tool_calls ?? [] };
}

/**
 * A streamed reply read up to `data: [DONE]`: the content pieces joined, and each tool call's
 * fragments by `index` (id and name from the first, the arguments concatenated).
 */
async function streamedAnswer(response: Response): Promise<Answer> {
  if (response.body === null) {
    throw new Error("model request failed: a streamed reply with no body");
  }
  const answer: Answer = { content: "", calls: [] };
  // Decoded read by read: the same code as piping through a TextDecoderStream, without a
  // transform stream per reply (that one cost the floor about 1 ms of CPU more per round).
  const decoder = new TextDecoder();
  let rest = "";
  for await (const bytes of response.body) {
    const lines = (rest + decoder.decode(bytes, { stream: true })).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") return answer;
      const delta = Chunk.parse(JSON.parse(data)).choices[0]?.delta;
      answer.content += delta?.content ?? "";
      for (const piece of delta?.tool_calls ?? []) {
        const call = answer.calls[piece.index] ??= {
          id: piece.id ?? "",
          type: "function",
          function: { name: piece.function?.name ?? "", arguments: "" },
        };
        call.function.arguments += piece.function?.arguments ?? "";
      }
    }
  }
  throw new Error("model request failed: the streamed reply ended before data: [DONE]");
}

async function runTask(task: string, maxRounds: number): Promise<string> {
  const { client, tools } = await (kept ??= connect());
  const messages: Message[] = [{ role: "user", content: task }];
  for (let round = 1; round <= maxRounds; round++) {
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(
        stream
          ? { model, messages, tools, stream: true, stream_options: { include_usage: true } }
          : { model, messages, tools },
      ),
    });
    if (!response.ok) throw new Error(`model request failed: ${await response.text()}`);
    const { content, calls } = await (stream ? streamedAnswer(response) : wholeAnswer(response));
    messages.push({ role: "assistant", content, tool_calls: calls });
    if (calls.length === 0) return JSON.stringify({ answer: content, rounds: round });
    const results = await Promise.all(
      calls.map((c) =>
        client.callTool({ name: c.function.name, arguments: JSON.parse(c.function.arguments) })
      ),
    );
    calls.forEach((c, i) => {
      const text = textOf(results[i] as CallToolResult);
      messages.push({ role: "tool", tool_call_id: c.id, content: text });
    });
  }
  return JSON.stringify({ answer: "", rounds: maxRounds });
}

const server = new McpServer({ name: "floor", version: "1" });
server.registerTool("chat", {
  description: "Asks the local model once.",
  inputSchema: { prompt: z.string(), model: z.string() },
}, async ({ prompt, model }) => ({ content: [{ type: "text", text: await chat(prompt, model) }] }));
server.registerTool("run_task", {
  description: "Runs a task with the local model and the downstream server's tools.",
  inputSchema: { task: z.string(), max_rounds: z.number().int().min(1) },
}, async ({ task, max_rounds }) => ({
  content: [{ type: "text", text: await runTask(task, max_rounds) }],
}));
await server.connect(new StdioServerTransport());
// The SDK's stdio transport does not notice the end of stdin: leave when the client does.
process.stdin.once("end", async () => {
  await (await kept)?.client.close();
  Deno.exit(0);
});
