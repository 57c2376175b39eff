/**
 * Peer loop: the Vercel AI SDK (`ai`, generateText with a step limit) with its MCP client
 * (`@ai-sdk/mcp`, stdio transport) and the OpenAI-compatible provider, the way its docs write a
 * tool loop against a local server. The MCP client and its tools are made once and kept.
 */
import { moduleUrl, type PeerJob, type PeerLoop, runPeer } from "./peer_support.ts";

/** The members of `ai` used here. */
interface Ai {
  generateText(o: {
    model: unknown;
    tools: unknown;
    prompt: string;
    stopWhen: unknown;
  }): Promise<{ text: string; steps: unknown[] }>;
  isStepCount(count: number): unknown;
}
interface McpClient {
  tools(): Promise<unknown>;
  close(): Promise<void>;
}
interface AiMcp {
  createMCPClient(o: { transport: unknown }): Promise<McpClient>;
}
interface AiMcpStdio {
  Experimental_StdioMCPTransport: new (
    o: { command: string; args: string[]; env: Record<string, string>; stderr: "ignore" },
  ) => unknown;
}
interface OpenAiCompatible {
  createOpenAICompatible(o: { name: string; baseURL: string; apiKey: string }): {
    chatModel(id: string): unknown;
  };
}

async function setup(job: PeerJob): Promise<PeerLoop> {
  const load = (specifier: string) => import(moduleUrl(job.modules, specifier));
  const ai: Ai = await load("ai");
  const mcp: AiMcp = await load("@ai-sdk/mcp");
  const stdio: AiMcpStdio = await load("@ai-sdk/mcp/mcp-stdio");
  const compatible: OpenAiCompatible = await load("@ai-sdk/openai-compatible");
  const client = await mcp.createMCPClient({
    transport: new stdio.Experimental_StdioMCPTransport({ ...job.server, stderr: "ignore" }),
  });
  const tools = await client.tools();
  const provider = compatible.createOpenAICompatible({
    name: "lmstudio",
    baseURL: `${job.baseUrl}/v1`,
    apiKey: "lm-studio",
  });
  const model = provider.chatModel(job.model);
  return {
    async task(text, maxTurns) {
      const result = await ai.generateText({
        model,
        tools,
        prompt: text,
        stopWhen: ai.isStepCount(maxTurns),
      });
      if (result.steps.length !== maxTurns) {
        throw new Error(`expected ${maxTurns} steps, got ${result.steps.length}`);
      }
      return result.text;
    },
    close: () => client.close(),
  };
}

await runPeer(setup);
