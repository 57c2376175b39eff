/**
 * Progress while a downstream server starts: a caller waiting for a connect hears, about once a
 * second, what is happening and for how long ("starting memory (npx may be downloading it):
 * 12 s"), so an MCP client whose timeout restarts on progress does not give up during a long
 * first `npx` download. The connect says what it is doing through its {@linkcode ConnectPhase}.
 */
import type { ToolProgress } from "./agent_types.ts";
import { basename } from "./path.ts";
import { entryUrl, type ServerEntry } from "./config_entry.ts";

/** What a connect is doing, for the progress of the callers waiting for it. */
export interface ConnectPhase {
  /** "starting" (spawn and handshake), or waiting for the user to authorize at `url`. */
  what: "starting" | "authorizing";
  /** The page to open, while authorizing. */
  url?: string;
}

/** How often a waiting caller hears about the start. */
export const START_PROGRESS_MS = 1000;

/** Launchers that may download the server before starting it. */
const DOWNLOADERS = new Set(["npx", "bunx", "pnpx", "uvx", "pipx"]);
const PULLERS = new Set(["docker", "podman"]);

/** Why a start may take long, from the command: " (npx may be downloading it)". */
export function startHint(entry: Pick<ServerEntry, "command" | "args">): string {
  const command = basename(entry.command ?? "").replace(/\.(exe|cmd)$/i, "");
  if (DOWNLOADERS.has(command)) return ` (${command} may be downloading it)`;
  if (PULLERS.has(command)) return ` (${command} may be pulling its image)`;
  const fetches = entry.args.some((a) => /^(npm|jsr):|^https?:\/\//.test(a));
  if (command === "deno" && fetches) return " (deno may be downloading it)";
  return "";
}

/** The progress message of a connect `seconds` in. */
export function startMessage(entry: ServerEntry, phase: ConnectPhase, seconds: number): string {
  if (phase.what === "authorizing") {
    return `waiting for you to authorize the bridge for ${entry.name}: open ${
      phase.url ?? "the page it named"
    }: ${seconds} s`;
  }
  return entry.transport === "stdio"
    ? `starting ${entry.name}${startHint(entry)}: ${seconds} s`
    : `connecting to ${entry.name} at ${entryUrl(entry)}: ${seconds} s`;
}

/**
 * Reports the connect `pending` to `onProgress` now and every {@linkcode START_PROGRESS_MS}
 * until stopped. The progress value is the whole seconds since the connect started (one more than
 * the last value when the clock has not moved on: it increases strictly, as MCP progress must). A failing callback is passed to `onError`, never thrown.
 */
export function startReporter(
  entry: ServerEntry,
  pending: { startedAt: number; phase: ConnectPhase },
  onProgress: (p: ToolProgress) => void,
  onError: (error: unknown) => void,
): { stop(): void } {
  let last = -1;
  const report = () => {
    const seconds = Math.floor((performance.now() - pending.startedAt) / 1000);
    const progress = Math.max(seconds, last + 1);
    last = progress;
    try {
      onProgress({ progress, message: startMessage(entry, pending.phase, seconds) });
    } catch (error) {
      onError(error);
    }
  };
  report();
  const timer = setInterval(report, START_PROGRESS_MS);
  // The connect itself keeps the process busy; the reports must not.
  Deno.unrefTimer(timer);
  return { stop: () => clearInterval(timer) };
}
