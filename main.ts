/**
 * lmstudio-bridge entry point: parse argv, pick `serve` or a CLI command, map errors to exit codes
 * (0 success, 1 the work failed, 2 usage error). Results go to stdout, everything else to stderr.
 */
import type { App, AppOptions, CommandContext } from "./lib/app.ts";
import { commandHelp, MAIN_HELP } from "./lib/help.ts";
import { log } from "./lib/log.ts";
import { type Output, processOutput } from "./lib/output.ts";
import { settingsFromEnv } from "./lib/settings.ts";
import { serveToolsOption } from "./lib/tool_groups.ts";
import { NAME, VERSION } from "./lib/version.ts";
import { BridgeError, errorMessage, UsageError } from "./lib/errors.ts";

/** Within this time after a Ctrl-C, another SIGINT is the same Ctrl-C delivered twice. */
const DUPLICATE_SIGNAL_MS = 1000;

/** A CLI command: its arguments and context in, the exit code out. */
type Command = (argv: string[], ctx: CommandContext) => Promise<number>;

// Each command's module is loaded only when the command runs: `--version`, `chat` or `models`
// never pay for loading the MCP SDK.
const COMMANDS: Record<string, () => Promise<Command>> = {
  chat: async () => (await import("./lib/cli.ts")).chatCommand,
  models: async () => (await import("./lib/cli.ts")).modelsCommand,
  doctor: async () => (await import("./lib/doctor.ts")).doctorCommand,
  mcps: async () => {
    const { mcpsCommand, mcpsEditCommand } = await import("./lib/cli_mcp.ts");
    return (argv, ctx) =>
      argv[0] === "add" || argv[0] === "remove"
        ? mcpsEditCommand(argv, ctx)
        : mcpsCommand(argv, ctx);
  },
  tools: async () => (await import("./lib/cli_mcp.ts")).toolsCommand,
  call: async () => (await import("./lib/cli_mcp.ts")).callCommand,
  lms: async () => (await import("./lib/cli_lms.ts")).lmsCommand,
  run: async () => (await import("./lib/cli_run.ts")).runCommand,
};

/** Splits global options (`--config FILE`, `--help`, `--version`) from the command and its args. */
function splitGlobal(argv: string[]): {
  command?: string;
  rest: string[];
  configPath?: string;
  help: boolean;
  version: boolean;
} {
  let command: string | undefined;
  const rest: string[] = [];
  let configPath: string | undefined;
  let help = false;
  let version = false;
  // `--config` and `--help` count before and after the command name, `--version` only before it.
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (command !== undefined && arg === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === "--help" || arg === "-h") help = true;
    else if (command === undefined && (arg === "--version" || arg === "-V")) version = true;
    else if (arg === "--config") {
      configPath = argv[++i];
      if (configPath === undefined) throw new UsageError("--config needs a file path.", command);
    } else if (arg.startsWith("--config=")) configPath = arg.slice("--config=".length);
    else if (command === undefined) command = arg;
    else rest.push(arg);
  }
  return { command, rest, configPath, help, version };
}

/** The exit code for a failure: 2 for misuse (the command line, the settings), else 1. */
function exitCode(error: unknown): number {
  return error instanceof BridgeError && (error.kind === "usage" || error.kind === "settings")
    ? 2
    : 1;
}

/** Runs the program; returns the exit code. */
export async function main(argv: string[], out: Output = processOutput()): Promise<number> {
  let app: App | undefined;
  const controller = new AbortController();
  let interrupts = 0;
  let firstInterrupt = 0;
  const onSignal = () => {
    const now = performance.now();
    // One Ctrl-C can arrive twice: the terminal signals the whole process group, and `deno task`
    // sometimes forwards its own copy to the bridge a moment later. A second press counts only
    // after DUPLICATE_SIGNAL_MS, so a single Ctrl-C always gets the orderly stop and its summary.
    if (interrupts > 0 && now - firstInterrupt < DUPLICATE_SIGNAL_MS) return;
    interrupts += 1;
    if (interrupts > 1) Deno.exit(130); // a second Ctrl-C means "now"
    firstInterrupt = now;
    out.stderr("Interrupted: stopping (press Ctrl-C again to quit at once).");
    controller.abort(new DOMException("Interrupted by the user", "AbortError"));
  };
  let command: string | undefined;
  try {
    const global = splitGlobal(argv);
    command = global.command;
    if (global.version) {
      out.stdout(`${NAME} ${VERSION}\n`);
      return 0;
    }
    if (command === undefined && !global.help) {
      // No command is misuse: help on stderr, exit 2 (stdout stays empty for scripts).
      out.stderr("error: a command is required.\n");
      out.stderr(MAIN_HELP);
      return 2;
    }
    if (command === undefined || command === "help") {
      const topic = command === "help" ? global.rest[0] : undefined;
      out.stdout(topic ? commandHelp(topic) ?? MAIN_HELP : MAIN_HELP);
      return 0;
    }
    if (global.help) {
      out.stdout(commandHelp(command) ?? MAIN_HELP);
      return 0;
    }
    let settings = settingsFromEnv();
    if (command === "serve") {
      // `serve --tools LIST` chooses the tools served, over LMSTUDIO_BRIDGE_TOOLS.
      const { tools, rest } = serveToolsOption(global.rest);
      if (tools !== undefined) settings = { ...settings, tools };
      global.rest = rest;
    }
    const options: AppOptions = {
      configPath: global.configPath,
      watchConfig: true,
      // Someone at a terminal can open an authorization page while the command waits.
      waitForAuthorization: command !== "serve" && Deno.stdin.isTerminal() &&
        Deno.stderr.isTerminal(),
    };
    // The services are loaded with the command: `serve` on stdio loads them after it has
    // answered `initialize`, on the first call that needs them (or for the banner).
    const appSettings = settings;
    const build = async () => (await import("./lib/app.ts")).createApp(appSettings, options);
    if (command === "serve" && global.rest.length === 0) {
      const { serveStdio } = await import("./lib/server.ts");
      let building: Promise<App> | undefined;
      await serveStdio({
        settings,
        log,
        app: () =>
          building ??= build().then((built) => app = built, (error: unknown) => {
            building = undefined; // the next call tries again
            throw error;
          }),
        close: async () => {
          await building?.then((built) => built.close(), () => undefined);
        },
      });
      return 0;
    }
    app = await build();
    if (command === "serve") {
      // `serve --http [HOST:]PORT [--token-file FILE]`; anything else is a usage error there.
      const { httpAccess, serveHttp } = await import("./lib/server_http.ts");
      await serveHttp(app, await httpAccess(global.rest));
      return 0;
    }
    const load = COMMANDS[command];
    if (!load) throw new UsageError(`Unknown command "${command}".`);
    Deno.addSignalListener("SIGINT", onSignal);
    try {
      const run = await load();
      const code = await run(global.rest, { app, out, signal: controller.signal });
      // Interrupted work ends as a shell reports Ctrl-C (128 + SIGINT), whether it ran under
      // `deno task` (which reports that for its child too) or directly.
      return interrupts > 0 && code !== 0 ? 130 : code;
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
    }
  } catch (error: unknown) {
    const code = exitCode(error);
    if (error instanceof UsageError) {
      const topic = error.command ?? command;
      out.stderr(`error: ${error.message}\n`);
      out.stderr((topic ? commandHelp(topic) : undefined) ?? MAIN_HELP);
    } else out.stderr(`error: ${errorMessage(error)}`);
    if (code === 1) {
      log.debug("command failed", { error: error instanceof Error ? error.stack : String(error) });
    }
    return code;
  } finally {
    await app?.close();
  }
}

if (import.meta.main) {
  // Exit explicitly: a downstream server that ignores SIGTERM must not keep the CLI alive.
  Deno.exit(await main(Deno.args));
}
