/**
 * JSONL traces of autonomous runs: one JSON object per line for every model request and response,
 * tool call and result, with timings. Written only when asked (`--trace FILE` / `trace_path`), and
 * only when the process may write there: the default "bridge" permission set grants no writes.
 */
import { BridgeError, errorMessage } from "./errors.ts";

/** Receives trace events; `close` flushes and releases the file. */
export interface TraceSink {
  write(event: Record<string, unknown>): void;
  close(): Promise<void>;
}

/** The trace file cannot be opened (permission denied, missing directory, ...). */
export class TraceError extends BridgeError<"trace"> {
  override name = "TraceError";
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super("trace", message, options);
    this.path = path;
  }
}

/** Permission lookup; injectable so tests can simulate a denied write. */
export type WritePermissionQuery = (path: string) => Promise<Deno.PermissionState>;

async function queryWrite(path: string): Promise<Deno.PermissionState> {
  const status = await Deno.permissions.query({ name: "write", path });
  return status.state;
}

/** Options of {@linkcode openTraceFile}. */
export interface TraceFileOptions {
  queryPermission?: WritePermissionQuery;
  /** Clock for the `t` (milliseconds since open) field. */
  now?: () => number;
}

const encoder = new TextEncoder();

/**
 * One event as a line of JSON; an event `JSON.stringify` refuses (a BigInt, a cycle, a throwing
 * `toJSON`) becomes its type and why it could not be written, so a trace never stops a task.
 */
export function traceLine(event: Record<string, unknown>): string {
  try {
    return JSON.stringify(event);
  } catch (error: unknown) {
    return JSON.stringify({
      t: typeof event.t === "number" ? event.t : undefined,
      type: typeof event.type === "string" ? event.type : "unknown",
      trace_error: `this event could not be written as JSON: ${errorMessage(error)}`,
    });
  }
}

/**
 * Opens (creates or truncates) a JSONL trace file. Checks the write permission first and fails fast
 * with a {@linkcode TraceError} naming the flag that would allow it, instead of a prompt or a
 * half-finished run.
 */
export async function openTraceFile(
  path: string,
  options: TraceFileOptions = {},
): Promise<TraceSink> {
  const query = options.queryPermission ?? queryWrite;
  const state = await query(path);
  if (state !== "granted") {
    throw new TraceError(
      path,
      `Cannot write the trace to ${path}: write permission is not granted. Run with ` +
        `--allow-write=${path} (the default "bridge" permission set allows no writes), ` +
        "or leave out the trace option.",
    );
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, create: true, truncate: true });
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message : String(error);
    throw new TraceError(
      path,
      `Cannot open the trace file ${path}: ${why}. Check that the directory exists and is writable.`,
      { cause: error },
    );
  }
  const now = options.now ?? (() => performance.now());
  const start = now();
  let closed = false;
  return {
    write(event) {
      if (closed) return;
      const line = traceLine({ t: Math.round(now() - start), ...event }) + "\n";
      const bytes = encoder.encode(line);
      let written = 0;
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    },
    close() {
      if (!closed) {
        closed = true;
        file.close();
      }
      return Promise.resolve();
    },
  };
}

/** A trace kept in memory (tests, or callers that want the events). */
export function memoryTrace(): TraceSink & { readonly events: Record<string, unknown>[] } {
  const events: Record<string, unknown>[] = [];
  return {
    events,
    write: (event) => void events.push(event),
    close: () => Promise.resolve(),
  };
}
