/**
 * JSON with comments and trailing commas (JSONC, as VS Code writes it): {@linkcode stripJsonc}
 * blanks comments and trailing commas in place, and {@linkcode parseJsonc} parses the result and,
 * on a syntax error, throws a {@linkcode JsoncSyntaxError} with line, column and what was
 * expected. The position comes from a small scanner ({@linkcode locateJsonError}) because the
 * engine's message often has none.
 */
import { BridgeError } from "./errors.ts";
import { closingQuote } from "./json.ts";

/** A syntax error in JSONC text, at a 1-based line and column. */
export class JsoncSyntaxError extends BridgeError<"syntax"> {
  override name = "JsoncSyntaxError";
  readonly line: number;
  readonly column: number;
  /** What is wrong there: what was expected and what was found (no final period). */
  readonly detail: string;
  /** How to fix it, when the error itself tells ("Close it with *\/ or remove it."). */
  readonly fix?: string;
  constructor(
    detail: string,
    options: { line: number; column: number; fix?: string; cause?: unknown },
  ) {
    const { line, column, fix } = options;
    super("syntax", `${line}:${column}: invalid JSON: ${detail}.${fix ? ` ${fix}` : ""}`, options);
    this.line = line;
    this.column = column;
    this.detail = detail;
    this.fix = fix;
  }
}

/**
 * The JSONC text of the file at `path`, parsed; or, for a syntax error, its message
 * ("path:line:column: invalid JSON: what was expected and found. How to fix it."), position and
 * the engine's own SyntaxError (`cause`), when there is one.
 */
export function parseJsoncFile(
  text: string,
  path: string,
):
  | { ok: true; value: unknown }
  | { ok: false; error: string; line: number; column: number; cause?: unknown } {
  try {
    return { ok: true, value: parseJsonc(text) };
  } catch (error) {
    if (!(error instanceof JsoncSyntaxError)) throw error;
    const { line, column } = error;
    const message = `${path}:${line}:${column}: invalid JSON: ${error.detail}. ` +
      (error.fix ?? "Fix the file; it is re-read on the next use.");
    return { ok: false, error: message, line, column, cause: error.cause };
  }
}

/**
 * Blanks out `//` and `/* *\/` comments and trailing commas, keeping every other character at its
 * offset (so JSON.parse positions still point into the original text). Throws
 * {@linkcode JsoncSyntaxError} on an unterminated block comment.
 */
export function stripJsonc(text: string): string {
  const out = text.split("");
  if (out[0] === "\uFEFF") out[0] = " ";
  let i = 0;
  let pendingComma = -1;
  const n = text.length;
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n" && out[k] !== "\r") out[k] = " ";
  };
  while (i < n) {
    const c = text[i]!;
    if (c === '"') {
      pendingComma = -1;
      i++;
      while (i < n && text[i] !== '"' && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
      i++;
      continue;
    }
    if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      const stop = end === -1 ? n : end;
      blank(i, stop);
      i = stop;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end === -1) {
        throw new JsoncSyntaxError("a /* comment is never closed", {
          ...lineColumn(text, i),
          fix: "Close it with */ or remove it.",
        });
      }
      blank(i, end + 2);
      i = end + 2;
      continue;
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if ((c === "}" || c === "]") && pendingComma >= 0) out[pendingComma] = " ";
    pendingComma = c === "," ? i : -1;
    i++;
  }
  return out.join("");
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const stop = Math.min(Math.max(offset, 0), text.length);
  for (let k = 0; k < stop; k++) {
    if (text[k] === "\n") {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: stop - lineStart + 1 };
}

/**
 * The position a JSON.parse SyntaxError message gives: V8 writes "... at position N (line L
 * column C)" or just "... at position N"; some messages have none ("Unexpected token '}', ... is
 * not valid JSON") and then this returns undefined.
 */
export function jsonErrorPosition(
  message: string,
  text: string,
): { line: number; column: number; offset?: number } | undefined {
  const lc = /line (\d+) column (\d+)/.exec(message);
  const pos = /at position (\d+)/.exec(message);
  if (lc) {
    return {
      line: Number(lc[1]),
      column: Number(lc[2]),
      offset: pos ? Number(pos[1]) : undefined,
    };
  }
  if (pos) {
    const offset = Number(pos[1]);
    return { ...lineColumn(text, offset), offset };
  }
  if (/unexpected end of json input/i.test(message)) {
    return { ...lineColumn(text, text.trimEnd().length), offset: text.trimEnd().length };
  }
  return undefined;
}

class JsonLocate {
  constructor(readonly offset: number, readonly expected: string) {}
}

/**
 * Finds the first syntax error of (comment-stripped) JSON text with a small recursive-descent
 * scanner; used when the engine's message carries no position. Undefined when the text is valid.
 */
export function locateJsonError(text: string): { offset: number; expected: string } | undefined {
  let i = 0;
  const n = text.length;
  const fail = (expected: string): never => {
    throw new JsonLocate(i, expected);
  };
  const ws = () => {
    while (i < n && " \t\n\r".includes(text[i]!)) i++;
  };
  const str = () => {
    i++;
    while (i < n) {
      const c = text[i]!;
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail("four hex digits after \\u");
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          fail('a valid escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
        }
        i += 2;
        continue;
      }
      if (c.charCodeAt(0) < 0x20) fail("no raw control characters or line breaks inside a string");
      i++;
    }
    fail('a closing " for the string');
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") return obj();
    if (c === "[") return arr();
    if (c === '"') return str();
    for (const lit of ["true", "false", "null"]) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return;
      }
    }
    const num = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    num.lastIndex = i;
    if ((c === "-" || (c !== undefined && c >= "0" && c <= "9")) && num.exec(text)) {
      i = num.lastIndex;
      return;
    }
    fail("a value (string, number, object, array, true, false or null)");
  };
  const obj = () => {
    i++;
    ws();
    if (text[i] === "}") {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail("a property name in double quotes");
      str();
      ws();
      if (text[i] !== ":") fail("':' after the property name");
      i++;
      value();
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return;
      }
      fail("',' or '}' after the property value");
    }
  };
  const arr = () => {
    i++;
    ws();
    if (text[i] === "]") {
      i++;
      return;
    }
    for (;;) {
      value();
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return;
      }
      fail("',' or ']' after the array element");
    }
  };
  try {
    value();
    ws();
    if (i < n) fail("the end of the file (there is more text after the JSON value)");
    return undefined;
  } catch (error) {
    if (error instanceof JsonLocate) return { offset: error.offset, expected: error.expected };
    // Nesting deeper than the stack: give up on locating; the engine's message is used instead.
    if (error instanceof RangeError) return undefined;
    throw error;
  }
}

function describeAt(text: string, offset: number): string {
  if (offset >= text.length) return "the end of the file";
  const c = text[offset]!;
  if (c === "\n" || c === "\r") return "a line break";
  return JSON.stringify(text.slice(offset, offset + 12).split(/[\r\n]/)[0]);
}

/**
 * Parses JSONC text. Throws {@linkcode JsoncSyntaxError} with line, column, what was expected and
 * what was found on a syntax error (the engine's SyntaxError chained as `cause`).
 */
export function parseJsonc(text: string): unknown {
  const stripped = stripJsonc(text);
  try {
    return JSON.parse(stripped);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const located = locateJsonError(stripped);
    const engine = jsonErrorPosition(error.message, stripped);
    let line: number;
    let column: number;
    let detail: string;
    if (located) {
      ({ line, column } = lineColumn(stripped, located.offset));
      detail = `expected ${located.expected}, found ${describeAt(stripped, located.offset)}`;
    } else if (engine) {
      ({ line, column } = engine);
      detail = error.message.replace(/ in JSON at position \d+.*$/, "");
    } else {
      line = 1;
      column = 1;
      detail = error.message;
    }
    throw new JsoncSyntaxError(detail, { line, column, cause: error });
  }
}

/**
 * The 1-based line and column of what `path` names in JSONC `text`: an object member's key (so a
 * message points at the name), an array element, or the whole value for the empty path. Undefined
 * when the text does not parse or has nothing at `path`. For messages about a valid file's
 * content (a setting with a wrong value, an unknown key).
 */
export function locateJsonPath(
  text: string,
  path: readonly PropertyKey[],
): { line: number; column: number } | undefined {
  let stripped: string;
  try {
    stripped = stripJsonc(text);
  } catch {
    return undefined;
  }
  let i = 0;
  const ws = () => {
    while (i < stripped.length && " \t\n\r".includes(stripped[i]!)) i++;
  };
  const skipString = () => {
    const close = closingQuote(stripped, i);
    if (close === undefined) throw new RangeError("unterminated string");
    i = close + 1;
  };
  const skipValue = (): void => {
    ws();
    const c = stripped[i];
    if (c === '"') return skipString();
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      for (ws(); stripped[i] !== close; ws()) {
        if (i >= stripped.length) throw new RangeError("unterminated");
        if (c === "{") {
          skipString();
          ws();
          i++; // ':'
        }
        skipValue();
        ws();
        if (stripped[i] === ",") i++;
      }
      i++;
      return;
    }
    while (i < stripped.length && !",}] \t\n\r".includes(stripped[i]!)) i++;
  };
  /** From the value at `i`, the offset of what path[depth...] names. */
  const find = (depth: number): number | undefined => {
    ws();
    if (depth === path.length) return i;
    const want = path[depth];
    const c = stripped[i];
    if (c !== "{" && c !== "[") return undefined;
    const close = c === "{" ? "}" : "]";
    i++;
    for (let index = 0;; index++) {
      ws();
      if (stripped[i] === close || i >= stripped.length) return undefined;
      const at = i;
      let here = index === want;
      if (c === "{") {
        skipString();
        here = String(JSON.parse(stripped.slice(at, i))) === String(want);
        ws();
        i++; // ':'
      }
      if (here) return depth + 1 === path.length ? at : find(depth + 1);
      skipValue();
      ws();
      if (stripped[i] === ",") i++;
    }
  };
  try {
    const offset = find(0);
    return offset === undefined ? undefined : lineColumn(stripped, offset);
  } catch {
    // Not valid JSON after all (the caller's text did not parse): no position.
    return undefined;
  }
}
