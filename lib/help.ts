/** Help texts of the program and of each command (printed by `--help` and on misuse). */
import { DEFAULT_MAX_ROUNDS } from "./agent_types.ts";
import { GROUP_NAMES } from "./tool_groups.ts";
import { NAME, VERSION } from "./version.ts";

/** Help of `run`. */
const RUN_HELP =
  `Usage: lmstudio-bridge run (--mcp NAME... | --all | --continue FILE) [options] TASK

Lets the local model do TASK with the tools of MCP servers from the MCP config: it calls tools
(in parallel within a round), reads the results and continues until it has an answer.
TASK may be several words, or - to read it from stdin; with --prompt it may be left out.

  --mcp NAME          use this server's tools (repeatable, or NAME,NAME)
  --all               use every enabled server in the config (except this bridge)
  --model M           model id (default: DEFAULT_MODEL, else the loaded model)
  --system S          your instructions, added to the system message (e.g. "Answer in French")
  --temperature T     sampling temperature, 0 to 2 (default: the server's)
  --max-rounds N      most model turns before stopping unfinished (default ${DEFAULT_MAX_ROUNDS})
  --max-tokens N      length limit of each model reply
  --allow-tools GLOB  only offer matching tools (*, ?; raw or server__tool names; repeatable)
  --time-budget S     stop unfinished after S seconds
  --prompt SERVER/NAME  start from this prompt of an MCP server (its messages come first)
  --prompt-arg K=V    an argument of the prompt (repeatable)
  --trace FILE        write a JSONL trace of requests, replies, tool calls and results
                      (the default sandbox writes nothing: install with
                      \`deno task --quiet install --allow-write=DIR\` for traces in DIR)
  --session FILE      keep the conversation in FILE: continue the one kept there (same servers
                      and model, earlier rounds remembered), or start one if FILE does not exist
  --continue FILE     the same, but FILE must hold a session already (a typo is an error)
                      (the sandbox writes nothing: a deno allowed to write only FILE writes it;
                      where that cannot run, the error shows the command that allows FILE)
  --yes, -y           allow every tool call of this run without asking (otherwise calls the
                      rules do not allow are asked about on the terminal, or refused when
                      stdin is not a terminal)
  --reasoning         on a terminal, show the model's reasoning too (dimmed)
  --json              print {answer, rounds, tool_calls, usage, stopped_because, ...} as JSON

On a terminal the model's replies show as they stream (what it says between tool calls too),
under one status line on stderr; piped, stdout gets only the final answer, at the end.

Exit codes: 0 the model answered; 1 it stopped otherwise (max rounds, repeated call, time
budget, context overflow, error) or could not start; 2 usage error; 130 stopped by Ctrl-C
(the summary is printed first; a second Ctrl-C quits at once).

Examples:
  lmstudio-bridge run --mcp filesystem "Summarise README.md in three bullet points"
  lmstudio-bridge run --mcp memory --mcp filesystem "Store the authors listed in AUTHORS as people"
  echo "What changed in CHANGELOG.md?" | lmstudio-bridge run --all --json -
  lmstudio-bridge run --mcp filesystem --session notes.json "List the TODOs in src/"
  lmstudio-bridge run --continue notes.json "Which of them is the oldest?"
  lmstudio-bridge run --mcp everything --prompt everything/args-prompt --prompt-arg city=Paris
`;

/** Help of `mcps`. */
const MCPS_HELP = `Usage: ${NAME} mcps [--json]
       ${NAME} mcps add NAME [--env K=V]... [--force] -- COMMAND [ARGS...]
       ${NAME} mcps add NAME --url URL [--type http|sse] [--force]
       ${NAME} mcps remove NAME

Lists the MCP servers of the config file in force: name, transport, command line or URL, state
(not started, connected, failed with the reason, disabled, invalid with the problem) and the
names (never values) of their environment variables. Says which file was used, where it
searched, and shows the parse error when the newest edit of the file is broken. Starts nothing.
A server whose launcher is not installed or not allowed by the sandbox is not counted as usable.
  --json   print {config, servers} as one JSON document

add and remove edit the config file in force (else create .mcp.json here), keeping its
comments and formatting; a running bridge picks the change up at its next use.
  --env K=V   an environment variable of the server (repeatable)
  --force     replace a server of that name
Example:
  ${NAME} mcps add memory -- npx -y @modelcontextprotocol/server-memory
`;

/** Help of `tools`. */
const TOOLS_HELP = `Usage: ${NAME} tools NAME [--json]

Starts (or reuses) the MCP server NAME from the config and lists its tools: name, parameters
(? marks optional ones) and the first line of the description.
  --json   print the full tool definitions (with input schemas) as JSON
`;

/** Help of `call`. */
const CALL_HELP = `Usage: ${NAME} call NAME TOOL [--args JSON] [--timeout SECONDS] [--json]

Calls TOOL on the MCP server NAME directly, without a model, and prints what it returns: text
as text, other content (images, audio, resources) as a one-line summary.
  --args JSON         the tool's arguments as a JSON object (default {})
  --timeout SECONDS   give up when the tool sends neither result nor progress for this long
                      (default 300)
  --json              print the whole MCP result as JSON
Exit code 1 when the tool reports an error (isError) or the server fails.
Example:
  ${NAME} call memory create_entities --args '{"entities":[{"name":"x","entityType":"t","observations":[]}]}'
`;

/** Help of `lms` and its subcommands. */
export const LMS_HELP = `Usage: lmstudio-bridge lms <command> [options]

Model management, through LM Studio's \`lms\` when it is installed and manages the configured
server, else LM Studio's REST API (LM Studio 0.4+). Other servers (Ollama, llama.cpp) load
models on their first request; a model their list does not have is an error.

Commands:
  ps                         loaded models (status, context length)
  ls [--llm|--embedding]     downloaded models
  load MODEL [--ttl S] [--context-length N]
                             load a model (nothing happens if it is loaded); --ttl 0 = no TTL;
                             without --context-length: LMSTUDIO_CONTEXT_LENGTH (default 8192),
                             capped at the model's maximum
  ensure MODEL [--context-length N]
                             make sure MODEL is ready: at once if loaded, waits if loading,
                             loads it otherwise (as the lms_ensure_model_loaded tool)
  unload MODEL               unload every instance of MODEL (or one: MODEL:2)
  status                     server reachability, lms installation, how models are managed

Options:
  --json                     print one JSON document on stdout (every key always present;
                             null when not known)

If \`lms\` is not installed (the REST API is used meanwhile), install LM Studio's CLI with
\`npx lmstudio install-cli\` or run \`~/.lmstudio/bin/lms bootstrap\` once, then open a new
terminal so \`lms\` is on PATH.
`;

/** The top-level help. */
export const MAIN_HELP = `${NAME} ${VERSION}
A bridge between local LLMs (LM Studio, Ollama, llama.cpp) and the Model Context Protocol.

Usage:
  ${NAME} serve                         stdio MCP server (what Claude Code runs)
  ${NAME} serve --http [HOST:]PORT      one MCP server over HTTP for every client
  ${NAME} run [options] TASK            let the local model do TASK with MCP tools
  ${NAME} chat [options] PROMPT         one chat completion
  ${NAME} models [--json]               models the server knows, with type and state
  ${NAME} mcps [--json]                 configured MCP servers and the config file
  ${NAME} mcps add NAME -- CMD ARGS...  add a server to the config (mcps remove NAME)
  ${NAME} tools NAME [--json]           tools of one configured MCP server
  ${NAME} call NAME TOOL [--args JSON]  call one downstream tool directly, no LLM
  ${NAME} lms ps|ls|load|ensure|unload|status  manage models (LM Studio's \`lms\` or REST)
  ${NAME} doctor                        check LM Studio, lms, config, servers, permissions

Install (in the repository): deno task --quiet install [--allow-run=CMD] [--allow-net=HOST]
  [--allow-write=PATH] puts ${NAME} on PATH with the sandbox plus those additions.

Global options:
  --config FILE    MCP config file (default: search, see README)
  -h, --help       help (also \`${NAME} COMMAND --help\`)
  -V, --version    version

Environment:
  LMSTUDIO_BASE_URL  server URL (default http://127.0.0.1:1234; Ollama http://127.0.0.1:11434)
  LM_API_TOKEN       bearer token when LM Studio requires authentication
  LMSTUDIO_ENDPOINTS several servers instead: "laptop=http://127.0.0.1:1234, gpu=http://HOST:1234"
                     (requests go to the one that has the model; tokens in
                     LMSTUDIO_ENDPOINT_<NAME>_TOKEN, e.g. LMSTUDIO_ENDPOINT_GPU_TOKEN)
  DEFAULT_MODEL      model used when none is named
  MCP_JSON_PATH      MCP config file
  LMSTUDIO_BRIDGE_TOKEN  bearer token clients of serve --http must send
  LMSTUDIO_BRIDGE_TOOLS  the tools serve exposes, as serve --tools (default: all)
  LOG_LEVEL          debug | info | warn | error | silent (default info)

Exit codes: 0 success, 1 the work failed, 2 usage error.
`;

const HELP: Readonly<Record<string, string>> = {
  run: RUN_HELP,
  mcps: MCPS_HELP,
  tools: TOOLS_HELP,
  call: CALL_HELP,
  lms: LMS_HELP,
  serve: `Usage: ${NAME} serve [--tools LIST] [--http [HOST:]PORT [--token-file FILE]]

Runs the MCP server. Without options: on stdio (JSON-RPC on stdin/stdout, diagnostics on
stderr), one bridge per client. Add it to Claude Code with:
  claude mcp add lmstudio -- ${NAME} serve
(after \`deno task --quiet install\` in the repository put ${NAME} on PATH).
  --tools LIST         serve only these of the bridge's tools (else LMSTUDIO_BRIDGE_TOOLS, else
                       all): groups and tool names, comma-separated. Groups:
                       ${GROUP_NAMES.join(", ")}.
                       E.g. --tools autonomous,mcp for the delegating tools alone (fewer
                       tools take less of the client model's context)

With --http, one bridge serves every client over MCP streamable HTTP at /mcp, each in its own
session, sharing one pool of downstream servers (each starts once for all clients), one config
and one model manager. GET /health answers version, uptime, LM Studio and pool state (JSON).
  --http [HOST:]PORT   listen address; PORT alone is 127.0.0.1:PORT (loopback, no token
                       needed). Any other address needs a bearer token, and the sandbox
                       widened for that address only (\`deno task --quiet install
                       --allow-net=HOST:PORT\`)
  --token-file FILE    the bearer token (else LMSTUDIO_BRIDGE_TOKEN); when set, every request
                       to /mcp (and beyond loopback to /health) needs
                       "Authorization: Bearer TOKEN"
Host and Origin headers are checked against DNS rebinding. SIGINT/SIGTERM cancel what is in
flight (the clients are told why) and close the downstream servers.
Examples:
  ${NAME} serve --http 8765
  claude mcp add --transport http lmstudio http://127.0.0.1:8765/mcp
`,
  chat:
    `Usage: ${NAME} chat [--model M] [--system S] [--temperature T] [--max-tokens N] [--reasoning]
            [--json] PROMPT

One chat completion. PROMPT may be several words, or - to read it from stdin.
On a terminal the answer shows as it streams, under a status line, and the model's reasoning
only with --reasoning (dimmed). Piped, the answer goes to stdout at the end and the reasoning
(if any) to stderr.
  --model M         model id (default: DEFAULT_MODEL, else the loaded model)
  --system S        system prompt
  --temperature T   sampling temperature (default 0.7)
  --max-tokens N    answer length limit (default 1024)
  --reasoning       on a terminal, show the model's reasoning too (dimmed)
  --json            print {answer, reasoning, model, usage} as JSON
`,
  models: `Usage: ${NAME} models [--json]

Lists the models the server knows: id, type, load state and context length where the server
tells (LM Studio's REST API; plain OpenAI-compatible servers report ids only).
`,
  doctor: `Usage: ${NAME} doctor [--json]

Checks LM Studio (reachable, auth, models), the \`lms\` command, the MCP config file, each
configured server (connects and lists its tools; not the bridge's own entry), the sandbox
permissions (with the exact command that allows what is refused), how the bridge was installed
and that Deno's update check is off. Each check is printed as it finishes. Exit 1 when a check
fails.
`,
};

/** The help of one command, or undefined when there is no such command. */
export function commandHelp(command: string): string | undefined {
  return HELP[command];
}
