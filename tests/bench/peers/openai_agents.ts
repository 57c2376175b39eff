/**
 * Peer loop: the OpenAI Agents SDK (`@openai/agents`: an Agent with an MCPServerStdio, `run`)
 * on the Chat Completions API of a local server, tracing off, the server's tool list cached:
 * the setup its docs give for a local model.
 */
import { moduleUrl, type PeerJob, type PeerLoop, runPeer } from "./peer_support.ts";

interface McpServerStdio {
  connect(): Promise<void>;
  close(): Promise<void>;
}
/** The members of `@openai/agents` used here. */
interface Agents {
  Agent: new (o: {
    name: string;
    instructions: string;
    model: string;
    mcpServers: McpServerStdio[];
  }) => unknown;
  MCPServerStdio: new (o: {
    command: string;
    args: string[];
    env: Record<string, string>;
    cacheToolsList: boolean;
  }) => McpServerStdio;
  run(agent: unknown, input: string, o: { maxTurns: number }): Promise<{ finalOutput?: unknown }>;
  setDefaultOpenAIClient(client: unknown): void;
  setOpenAIAPI(api: "chat_completions"): void;
  setTracingDisabled(disabled: boolean): void;
}
interface OpenAi {
  default: new (o: { baseURL: string; apiKey: string }) => unknown;
}

async function setup(job: PeerJob): Promise<PeerLoop> {
  const load = (specifier: string) => import(moduleUrl(job.modules, specifier));
  const agents: Agents = await load("@openai/agents");
  const openai: OpenAi = await load("openai");
  agents.setTracingDisabled(true);
  agents.setOpenAIAPI("chat_completions");
  agents.setDefaultOpenAIClient(
    new openai.default({ baseURL: `${job.baseUrl}/v1`, apiKey: "lm-studio" }),
  );
  const server = new agents.MCPServerStdio({ ...job.server, cacheToolsList: true });
  await server.connect();
  const agent = new agents.Agent({
    name: "bench",
    instructions: "Use the tools to do the task.",
    model: job.model,
    mcpServers: [server],
  });
  return {
    async task(text, maxTurns) {
      const result = await agents.run(agent, text, { maxTurns });
      return String(result.finalOutput ?? "");
    },
    close: () => server.close(),
  };
}

await runPeer(setup);
