/**
 * Where CLI results go. Results are written to stdout, everything else to stderr; commands take an
 * {@linkcode Output} so tests can capture both separately. Everything written passes through
 * `safeText`: a server's stderr, a tool's text or a model's answer cannot move the cursor, retitle
 * the terminal or write the clipboard.
 */

/** The two streams of a CLI command. */
export interface Output {
  /** Writes result text to stdout as-is (add your own newline). */
  stdout(text: string): void;
  /** Writes a human message line to stderr (a newline is added). */
  stderr(line: string): void;
  /** Rewrites the single live status line on stderr (only when stderr is a terminal). */
  status(line: string): void;
  readonly stdoutIsTerminal: boolean;
  readonly stderrIsTerminal: boolean;
}

import { safeText } from "./text.ts";

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

/** The process's real stdout and stderr. */
export function processOutput(): Output {
  const stderrIsTerminal = Deno.stderr.isTerminal();
  let statusShown = false;
  const clearStatus = () => {
    if (statusShown) writeAll(Deno.stderr, "\r\x1b[2K");
    statusShown = false;
  };
  return {
    stdout: (text) => {
      clearStatus();
      writeAll(Deno.stdout, safeText(text));
    },
    stderr: (line) => {
      clearStatus();
      writeAll(Deno.stderr, safeText(line) + "\n");
    },
    status: (line) => {
      if (!stderrIsTerminal || (line === "" && !statusShown)) return;
      const width = safeColumns();
      const plain = safeText(line).replaceAll("\n", " ");
      const clipped = plain.length > width - 1 ? plain.slice(0, width - 2) + "…" : plain;
      writeAll(Deno.stderr, `\r\x1b[2K${clipped}`);
      statusShown = line !== "";
    },
    stdoutIsTerminal: Deno.stdout.isTerminal(),
    stderrIsTerminal,
  };
}

function safeColumns(): number {
  try {
    // A pseudo-terminal nobody sized (a `script` session, some CI runners) reports 0 columns.
    const { columns } = Deno.consoleSize();
    return columns >= 20 ? columns : 100;
  } catch {
    return 100;
  }
}

/** An Output that records what was written, for tests. */
export interface CapturedOutput extends Output {
  readonly out: string;
  readonly err: string;
}

/** An in-memory {@linkcode Output}. */
export function captureOutput(): CapturedOutput {
  let out = "";
  let err = "";
  return {
    stdout: (text) => void (out += safeText(text)),
    stderr: (line) => void (err += safeText(line) + "\n"),
    status: () => {},
    stdoutIsTerminal: false,
    stderrIsTerminal: false,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}
