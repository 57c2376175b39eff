/**
 * `run`: the autonomous loop from the command line. The answer goes to stdout (or one JSON document
 * with `--json`); a live status line, notes and the closing summary go to stderr. `--session FILE`
 * and `--continue FILE` continue a conversation kept in a file (cli_session.ts).
 */
import type {
  AgentProgress,
  AgentResult,
  ApprovalAnswer,
  Approver,
  StartingPrompt,
} from "./agent_types.ts";
import { raceAbort } from "./abort.ts";
import type { Output } from "./output.ts";
import type { CommandContext } from "./app.ts";
import {
  flag,
  integerOption,
  parseArgs,
  type ParsedArgs,
  stringListOption,
  stringOption,
  temperatureOption,
  UsageError,
} from "./args.ts";
import { agentResultJson } from "./agent.ts";
import { type AgentApp, approvalQuestion, runTask } from "./server_agent.ts";
import { liveClient, LiveReply } from "./cli_live.ts";
import { keepSession, openSessionFile } from "./cli_session.ts";
import { listNames, plural, shellWord } from "./text.ts";
import { cliElicitor, type LineReader, oneAtATime } from "./cli_elicit.ts";
import { type Elicitor } from "./agent_types.ts";

const OPTIONS = {
  mcp: { type: "string", multiple: true },
  all: { type: "boolean" },
  model: { type: "string" },
  system: { type: "string", short: "s" },
  temperature: { type: "string", short: "t" },
  "max-rounds": { type: "string" },
  "max-tokens": { type: "string" },
  "allow-tools": { type: "string", multiple: true },
  "time-budget": { type: "string" },
  trace: { type: "string" },
  session: { type: "string" },
  continue: { type: "string" },
  prompt: { type: "string" },
  "prompt-arg": { type: "string", multiple: true },
  yes: { type: "boolean", short: "y" },
  reasoning: { type: "boolean" },
  json: { type: "boolean" },
} as const;

async function readAllStdin(): Promise<string> {
  return await new Response(Deno.stdin.readable).text();
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** "round 2/100 · calling x · 3.1 s · 812 tokens" (or what a running tool last reported). */
function statusLine(p: AgentProgress): string {
  const what = p.message.replace(/^round \d+\/\d+: /, "");
  return `round ${p.round}/${p.total} · ${what} · ${
    seconds(p.elapsedMs)
  } · ${p.usage.total_tokens} tokens`;
}

function summaryLine(result: AgentResult, ms: number): string {
  const failed = result.tool_calls.filter((c) => !c.ok).length;
  return `${result.stopped_because} after ${result.rounds} round(s), ${result.tool_calls.length} ` +
    `tool call(s)${failed ? ` (${failed} failed)` : ""}, ${result.usage.total_tokens} tokens, ` +
    `${seconds(ms)}, model ${result.model}`;
}

/** Lines of standard input, read as they come. */
function stdinLines(): LineReader {
  let reader: ReadableStreamDefaultReader<string> | undefined;
  let buffered = "";
  return async (signal) => {
    reader ??= Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const newline = buffered.indexOf("\n");
      if (newline !== -1) {
        const line = buffered.slice(0, newline).replace(/\r$/, "");
        buffered = buffered.slice(newline + 1);
        return line;
      }
      const { value, done } = await raceAbort(reader.read(), signal);
      if (done) return buffered === "" ? null : buffered;
      buffered += value;
    }
  };
}

/** What a typed answer means: o(nce)/y(es), t(ask)/a(lways), d(eny)/n(o)/nothing; else undefined. */
function typedAnswer(line: string): ApprovalAnswer | undefined {
  const word = line.trim().toLowerCase();
  if (["o", "once", "y", "yes"].includes(word)) return "once";
  if (["t", "task", "a", "always"].includes(word)) return "task";
  if (["", "d", "deny", "n", "no"].includes(word)) return "deny";
  return undefined;
}

/**
 * An {@linkcode Approver} that asks on the terminal: the question on stderr, the answer typed on
 * stdin (once, for this task, or deny; Enter denies). The end of input denies.
 */
export function terminalApprover(out: Output, readLine: LineReader = stdinLines()): Approver {
  return async (req, signal) => {
    out.status("");
    out.stderr("");
    for (const line of approvalQuestion(req).split("\n")) out.stderr(line);
    for (let attempt = 0; attempt < 3; attempt++) {
      out.stderr("Allow it? [o]nce, for this [t]ask, or [d]eny (Enter denies):");
      const line = await readLine(signal);
      if (line === null) return "deny";
      const answer = typedAnswer(line);
      if (answer !== undefined) return answer;
      out.stderr(`"${line.trim()}" is not an answer.`);
    }
    return "deny";
  };
}

/**
 * How `run` gets approvals: `--yes` allows everything; on a terminal the user is asked; otherwise
 * nobody can be asked, and the loop hears why.
 */
export function cliApproval(
  o: { yes: boolean; stdinIsTerminal: boolean; out: Output; readLine?: LineReader },
): { approveAll: boolean; approve: Approver } {
  if (o.yes) return { approveAll: true, approve: () => Promise.resolve("once") };
  if (o.stdinIsTerminal) return { approveAll: false, approve: terminalApprover(o.out, o.readLine) };
  return {
    approveAll: false,
    approve: () =>
      Promise.resolve({
        unavailable: "standard input is not a terminal, so nobody can be asked; run with --yes " +
          "to allow every tool call of this run",
      }),
  };
}

/** `run` without --mcp, --all or a session that names servers. */
function needsTools(): UsageError {
  return new UsageError(
    "run needs tools: name MCP servers with --mcp NAME (repeatable), or use --all for every " +
      "enabled server in the config, or continue a session with --continue FILE. (For a plain " +
      "answer without tools, use `chat`.)",
    "run",
  );
}

/**
 * What `run` asks its user: approvals ({@linkcode cliApproval}) and servers' elicitation
 * ({@linkcode cliElicitor}), one question at a time on the one terminal.
 */
function terminalQuestions(
  o: { yes: boolean; stdinIsTerminal: boolean; out: Output; readLine: LineReader },
): { approveAll: boolean; approve: Approver; elicit: Elicitor } {
  const turn = oneAtATime();
  const approval = cliApproval(o);
  const elicit = cliElicitor(o);
  return {
    approveAll: approval.approveAll,
    approve: (req, signal) => turn(() => approval.approve(req, signal)),
    elicit: (req, signal) => turn(() => elicit(req, signal)),
  };
}

/**
 * The prompt of `--prompt SERVER/NAME` with its `--prompt-arg KEY=VALUE` arguments, or undefined
 * without `--prompt`; misuse is a {@linkcode UsageError}.
 */
export function promptOption(args: ParsedArgs): StartingPrompt | undefined {
  const given = stringOption(args, "prompt");
  const raw = args.values["prompt-arg"];
  const pairs = Array.isArray(raw) ? raw.filter((x): x is string => typeof x === "string") : [];
  if (given === undefined) {
    if (pairs.length > 0) throw new UsageError("--prompt-arg needs --prompt SERVER/NAME.", "run");
    return undefined;
  }
  const slash = given.indexOf("/");
  if (slash <= 0 || slash === given.length - 1) {
    throw new UsageError(
      `--prompt takes SERVER/NAME (a prompt of an MCP server), got ${JSON.stringify(given)}.`,
      "run",
    );
  }
  const values: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`--prompt-arg takes KEY=VALUE, got ${JSON.stringify(pair)}.`, "run");
    }
    values[pair.slice(0, eq).trim()] = pair.slice(eq + 1);
  }
  return {
    server: given.slice(0, slash),
    name: given.slice(slash + 1),
    ...(pairs.length > 0 ? { arguments: values } : {}),
  };
}

/**
 * Runs `run`. Returns 0 when the model answered, 1 when it stopped for another reason; usage
 * errors throw {@linkcode UsageError}; failures before the first round (unknown server, LM Studio
 * not reachable, trace not writable) throw with a message that says what to do.
 */
export async function runCommand(
  argv: string[],
  ctx: CommandContext<AgentApp>,
  seams: {
    /** Reads the whole of stdin (for TASK `-`). */
    readStdin?: () => Promise<string>;
    /** Clock in milliseconds (default performance.now). */
    now?: () => number;
    /** Whether stdin is a terminal (default: asks Deno). */
    stdinIsTerminal?: boolean;
    /** The lines typed on the terminal (default: stdin). */
    readLine?: LineReader;
  } = {},
): Promise<number> {
  const args = parseArgs(argv, OPTIONS, "run");
  const servers = stringListOption(args, "mcp");
  const all = flag(args, "all");
  if (servers.length > 0 && all) {
    throw new UsageError("Use either --mcp NAME or --all, not both.", "run");
  }
  const sessionNamed = stringOption(args, "session") ?? stringOption(args, "continue");
  if (servers.length === 0 && !all && sessionNamed === undefined) throw needsTools();
  const maxRounds = integerOption(args, "max-rounds", { min: 1, max: 10_000 });
  const maxTokens = integerOption(args, "max-tokens", { min: 1, max: 10_000_000 });
  const budgetText = stringOption(args, "time-budget");
  let timeBudgetMs: number | undefined;
  if (budgetText !== undefined) {
    const value = Number(budgetText);
    if (!Number.isFinite(value) || value <= 0) {
      throw new UsageError(
        `--time-budget must be a positive number of seconds, got ${JSON.stringify(budgetText)}.`,
        "run",
      );
    }
    timeBudgetMs = Math.round(value * 1000);
  }
  const prompt = promptOption(args);
  let task = args.positionals.join(" ").trim();
  if (task === "-") task = (await (seams.readStdin ?? readAllStdin)()).trim();
  // A prompt may say all there is to do.
  if (task === "" && (prompt === undefined || args.positionals.length > 0)) {
    throw new UsageError(
      args.positionals.join(" ").trim() === "-"
        ? "The task read from stdin is empty."
        : "Give the TASK as the last argument (or - to read it from stdin).",
      "run",
    );
  }

  const file = await openSessionFile(args, ctx.app.settings.workDir ?? Deno.cwd());
  // A continued session brings its servers.
  if (servers.length === 0 && !all && !file?.session?.servers.length) throw needsTools();

  const { out } = ctx;
  const json = flag(args, "json");
  // On a terminal the replies show as they stream; piped or as JSON, the answer comes at the end.
  const live = out.stdoutIsTerminal && !json
    ? new LiveReply(out, { reasoning: flag(args, "reasoning") })
    : undefined;
  const app = live === undefined
    ? ctx.app
    : { ...ctx.app, client: liveClient(ctx.app.client, live) };
  const now = seams.now ?? (() => performance.now());
  const started = now();
  // Servers can take a while to start (a first npx download, a slow handshake): say so.
  const starting = file?.session?.servers.length ? file.session.servers : servers;
  out.status(
    all && !file?.session?.servers.length
      ? "starting the enabled MCP servers…"
      : `starting MCP server${starting.length === 1 ? "" : "s"} ${listNames(starting)}…`,
  );
  const { result, tracePath } = await runTask(app, {
    task,
    ...(prompt !== undefined ? { prompt } : {}),
    servers: all ? "all" : servers,
    session: file?.session,
    model: stringOption(args, "model"),
    instructions: stringOption(args, "system"),
    temperature: temperatureOption(args, "run"),
    maxRounds,
    maxTokens,
    allowedTools: stringListOption(args, "allow-tools"),
    timeBudgetMs,
    signal: ctx.signal,
    onProgress: out.stderrIsTerminal ? (p) => out.status(statusLine(p)) : undefined,
    tracePath: stringOption(args, "trace"),
    ...terminalQuestions({
      yes: flag(args, "yes"),
      // With the task read from stdin, stdin is not there to answer.
      stdinIsTerminal: (seams.stdinIsTerminal ?? Deno.stdin.isTerminal()) &&
        args.positionals.join(" ").trim() !== "-",
      out,
      readLine: seams.readLine ?? stdinLines(),
    }),
  }).finally(() => out.status(""));

  const ms = now() - started;
  // The answer is shown even when the session cannot be kept; that failure comes last.
  let keptIn: string | undefined;
  let keepFailure: { error: unknown } | undefined;
  if (file !== undefined) {
    try {
      await keepSession(file, result.session);
      keptIn = file.path;
    } catch (error: unknown) {
      keepFailure = { error };
    }
  }
  if (json) {
    out.stdout(
      JSON.stringify(
        {
          ...agentResultJson(result),
          duration_ms: Math.round(ms),
          ...(keptIn !== undefined ? { session_file: keptIn } : {}),
        },
        null,
        2,
      ) + "\n",
    );
  } else {
    for (const note of result.notes) out.stderr(`note: ${note}`);
    // The last reply's answer showed as it streamed; any other (a stop's report) is printed.
    if (!live?.shows(result.answer)) {
      out.stdout(result.answer.endsWith("\n") ? result.answer : `${result.answer}\n`);
    }
    out.stderr(summaryLine(result, ms));
    if (tracePath !== undefined) out.stderr(`trace written to ${tracePath}`);
    if (keptIn !== undefined) {
      out.stderr(
        `session kept in ${keptIn} (${plural(result.session.tasks, "task")}); continue it ` +
          `with: run --continue ${shellWord(keptIn)} TASK`,
      );
    }
  }
  if (keepFailure !== undefined) throw keepFailure.error;
  return result.stopped_because === "answer" ? 0 : 1;
}
