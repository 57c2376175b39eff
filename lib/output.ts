/**
 * Where CLI results go. Results are written to stdout, everything else to stderr; commands take an
 * {@linkcode Output} so tests can capture both separately. Everything written passes through
 * `safeText`: a server's stderr, a tool's text or a model's answer cannot move the cursor, retitle
 * the terminal or write the clipboard.
 *
 * On a terminal an answer can be written as it streams, a piece at a time, while one status line
 * on stderr says what is going on: the status line lives on the line below the text, so while the
 * streamed text is in the middle of a line the status line waits, and is drawn again once the line
 * ends (or the next message line on stderr starts a new one).
 */

/** The two streams of a CLI command. */
export interface Output {
  /**
   * Writes result text to stdout as-is (add your own newline); `dim` shows it dimmed on a colour
   * terminal (a model's reasoning), and changes nothing elsewhere.
   */
  stdout(text: string, style?: "dim"): void;
  /** Writes a human message line to stderr (a newline is added). */
  stderr(line: string): void;
  /** Rewrites the single live status line on stderr (only when stderr is a terminal). */
  status(line: string): void;
  readonly stdoutIsTerminal: boolean;
  readonly stderrIsTerminal: boolean;
}

import { safeText } from "./text.ts";

const encoder = new TextEncoder();

/** A stream {@linkcode streamOutput} writes to: the process's stdout and stderr, or a test's. */
export interface OutputStream {
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

function writeAll(file: OutputStream, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

/**
 * An {@linkcode Output} on two streams: `columns` is the terminal's width (the status line is cut
 * to it), `color` whether dimmed text may use escape sequences (default: NO_COLOR is not set).
 */
export function streamOutput(o: {
  stdout: OutputStream;
  stderr: OutputStream;
  columns?: () => number;
  color?: boolean;
}): Output {
  const stdoutIsTerminal = o.stdout.isTerminal();
  const stderrIsTerminal = o.stderr.isTerminal();
  // Both on the terminal: the status line and the streamed text share the screen.
  const sameScreen = stdoutIsTerminal && stderrIsTerminal;
  const dim = stdoutIsTerminal && (o.color ?? noColorUnset());
  const columns = o.columns ?? safeColumns;
  let statusShown = false;
  /** stdout's last text on the terminal did not end its line. */
  let midLine = false;
  /** The status line waiting for the streamed text's line to end. */
  let held: string | undefined;
  const clearStatus = () => {
    if (statusShown) writeAll(o.stderr, "\r\x1b[2K");
    statusShown = false;
  };
  const drawStatus = (line: string) => {
    const width = columns();
    const plain = safeText(line).replaceAll("\n", " ");
    const clipped = plain.length > width - 1 ? plain.slice(0, width - 2) + "…" : plain;
    writeAll(o.stderr, `\r\x1b[2K${clipped}`);
    statusShown = line !== "";
  };
  const drawHeld = () => {
    const line = held;
    held = undefined;
    if (line !== undefined) drawStatus(line);
  };
  return {
    stdout: (text, style) => {
      clearStatus();
      const safe = safeText(text);
      if (safe === "") return;
      writeAll(o.stdout, style === "dim" && dim ? `\x1b[2m${safe}\x1b[22m` : safe);
      midLine = sameScreen && !safe.endsWith("\n");
      if (!midLine) drawHeld();
    },
    stderr: (line) => {
      clearStatus();
      // A message never continues the streamed text's line.
      writeAll(o.stderr, (midLine ? "\n" : "") + safeText(line) + "\n");
      midLine = false;
      drawHeld();
    },
    status: (line) => {
      if (!stderrIsTerminal) return;
      if (midLine) {
        held = line === "" ? undefined : line;
        return;
      }
      if (line === "" && !statusShown) return;
      drawStatus(line);
    },
    stdoutIsTerminal,
    stderrIsTerminal,
  };
}

/** The process's real stdout and stderr. */
export function processOutput(): Output {
  return streamOutput({ stdout: Deno.stdout, stderr: Deno.stderr });
}

function noColorUnset(): boolean {
  try {
    return Deno.env.get("NO_COLOR") === undefined;
  } catch {
    return false;
  }
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
