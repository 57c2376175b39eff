/** Help texts of the program and of each command (printed by `--help` and on misuse). */
import { LMS_HELP } from "./cli_lms.ts";
import { CALL_HELP, MCPS_HELP, TOOLS_HELP } from "./cli_mcp.ts";
import { RUN_HELP } from "./cli_run.ts";
import { NAME, VERSION } from "./version.ts";

/** The top-level help. */
export const MAIN_HELP = `${NAME} ${VERSION}
A bridge between local LLMs (LM Studio, Ollama, llama.cpp) and the Model Context Protocol.

Usage:
  ${NAME} serve                         stdio MCP server (what Claude Code runs)
  ${NAME} run [options] TASK            let the local model do TASK with MCP tools
  ${NAME} chat [options] PROMPT         one chat completion
  ${NAME} models [--json]               models the server knows, with type and state
  ${NAME} mcps [--json]                 configured MCP servers and the config file
  ${NAME} tools NAME [--json]           tools of one configured MCP server
  ${NAME} call NAME TOOL [--args JSON]  call one downstream tool directly, no LLM
  ${NAME} lms ps|ls|load|unload|status  manage models through LM Studio's \`lms\`
  ${NAME} doctor                        check LM Studio, lms, config, servers, permissions

Global options:
  --config FILE    MCP config file (default: search, see README)
  -h, --help       help (also \`${NAME} COMMAND --help\`)
  -V, --version    version

Environment:
  LMSTUDIO_BASE_URL  server URL (default http://127.0.0.1:1234; Ollama http://127.0.0.1:11434)
  LM_API_TOKEN       bearer token when LM Studio requires authentication
  DEFAULT_MODEL      model used when none is named
  MCP_JSON_PATH      MCP config file
  LOG_LEVEL          debug | info | warn | error | silent (default info)

Exit codes: 0 success, 1 the work failed, 2 usage error.
`;

const HELP: Readonly<Record<string, string>> = {
  run: RUN_HELP,
  mcps: MCPS_HELP,
  tools: TOOLS_HELP,
  call: CALL_HELP,
  lms: LMS_HELP,
  serve: `Usage: ${NAME} serve

Runs the stdio MCP server: JSON-RPC on stdin/stdout, diagnostics on stderr.
Add it to Claude Code with:
  claude mcp add lmstudio -- deno task --cwd /path/to/lmstudio-bridge start
`,
  chat:
    `Usage: ${NAME} chat [--model M] [--system S] [--temperature T] [--max-tokens N] [--json] PROMPT

One chat completion. PROMPT may be several words, or - to read it from stdin.
The answer goes to stdout; the model's reasoning (if any) to stderr.
  --model M         model id (default: DEFAULT_MODEL, else the loaded model)
  --system S        system prompt
  --temperature T   sampling temperature (default 0.7)
  --max-tokens N    answer length limit (default 1024)
  --json            print {answer, reasoning, model, usage} as JSON
`,
  models: `Usage: ${NAME} models [--json]

Lists the models the server knows: id, type, load state and context length where the server
tells (LM Studio's REST API; plain OpenAI-compatible servers report ids only).
`,
  doctor: `Usage: ${NAME} doctor [--json]

Checks LM Studio (reachable, auth, models), the \`lms\` command, the MCP config file, each
configured server (connects and lists its tools) and the sandbox permissions. Exit 1 when a
check fails.
`,
};

/** The help of one command, or undefined when there is no such command. */
export function commandHelp(command: string): string | undefined {
  return HELP[command];
}
