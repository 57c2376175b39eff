/**
 * Edits of an MCP config file that keep the rest of it as it was: comments, key order,
 * indentation and trailing commas. {@linkcode addServer} inserts (or replaces) one entry of the
 * `mcpServers` (or VS Code's `servers`) object, {@linkcode removeServer} takes one out; every other
 * byte of the text stays. The text is read with jsonc.ts: `parseJsonc` refuses a broken file
 * (line and column, before anything is written) and `stripJsonc` blanks comments in place, so the
 * positions found in its output are positions in the original text.
 *
 * Run as a program (`deno run --allow-write=FILE lib/config_edit.ts FILE [MODE]`), it writes
 * standard input to FILE (created with the octal permission bits MODE, when given): the bridge's
 * sandbox writes nothing, so `mcps add` (the edited text) and `run --session` (the session) hand
 * what they write to a deno allowed to write that one file and nothing else (`writeFileNarrowly`
 * in launch.ts).
 */
import { BridgeError } from "./errors.ts";
import { parseJsonc, stripJsonc } from "./jsonc.ts";
import { isRecord } from "./json.ts";

/** An edit that cannot be made: no such server, one already there, a file of another shape. */
export class ConfigEditError extends BridgeError<"config-edit"> {
  override name = "ConfigEditError";
  constructor(message: string) {
    super("config-edit", message);
  }
}

/** A member of an object in the text: its key, where the member starts and where its value ends. */
interface Member {
  key: string;
  /** Offset of the key's opening quote. */
  start: number;
  /** Offset just past the value. */
  end: number;
  valueStart: number;
}

/** An object in the text: its braces and members. */
interface ObjectSpan {
  open: number;
  close: number;
  members: Member[];
}

/** Positions in JSON text without comments (the output of stripJsonc). */
class Spans {
  constructor(readonly text: string) {}

  skipSpace(i: number): number {
    while (i < this.text.length && /\s/.test(this.text[i]!)) i++;
    return i;
  }

  /** The end of the string starting at `i` (its opening quote). */
  stringEnd(i: number): number {
    let k = i + 1;
    while (k < this.text.length && this.text[k] !== '"') k += this.text[k] === "\\" ? 2 : 1;
    return k + 1;
  }

  /** The end of the value starting at `i`. */
  valueEnd(i: number): number {
    const c = this.text[i];
    if (c === '"') return this.stringEnd(i);
    if (c === "{" || c === "[") {
      let depth = 0;
      let k = i;
      while (k < this.text.length) {
        const d = this.text[k]!;
        if (d === '"') {
          k = this.stringEnd(k);
          continue;
        }
        if (d === "{" || d === "[") depth++;
        if (d === "}" || d === "]") {
          depth--;
          if (depth === 0) return k + 1;
        }
        k++;
      }
      return k;
    }
    let k = i;
    while (k < this.text.length && !/[\s,}\]]/.test(this.text[k]!)) k++;
    return k;
  }

  /** The object whose `{` is at `open`. */
  object(open: number): ObjectSpan {
    const members: Member[] = [];
    let i = this.skipSpace(open + 1);
    while (i < this.text.length && this.text[i] !== "}") {
      if (this.text[i] === ",") {
        i = this.skipSpace(i + 1);
        continue;
      }
      const keyEnd = this.stringEnd(i);
      const key = String(JSON.parse(this.text.slice(i, keyEnd)));
      const colon = this.skipSpace(keyEnd);
      const valueStart = this.skipSpace(colon + 1);
      const end = this.valueEnd(valueStart);
      members.push({ key, start: i, end, valueStart });
      i = this.skipSpace(end);
    }
    return { open, close: i, members };
  }
}

/** The indentation of the line that holds `offset`. */
function indentAt(text: string, offset: number): string {
  const lineStart = text.lastIndexOf("\n", offset - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart))?.[0] ?? "";
}

/** The indentation unit of the file: its first indented line's, else two spaces. */
function indentUnit(text: string): string {
  return /\n([ \t]+)\S/.exec(text)?.[1] ?? "  ";
}

/** `value` as JSON indented by `unit`, its lines after the first prefixed with `base`. */
function render(value: unknown, unit: string, base: string): string {
  // Short lists of strings or numbers (an entry's "args") stay on one line, as people write them.
  const json = JSON.stringify(value, null, unit).replace(
    /\[\n\s*((?:"(?:[^"\\\n]|\\.)*"|-?[\d.]+)(?:,\n\s*(?:"(?:[^"\\\n]|\\.)*"|-?[\d.]+))*)\n\s*\]/g,
    (whole: string, items: string) => {
      const line = `[${items.split(/,\n\s*/).join(", ")}]`;
      return line.length <= 80 ? line : whole;
    },
  );
  return json.replaceAll("\n", `\n${base}`);
}

/** The servers object of the file: `mcpServers`, else `servers`; undefined when neither. */
function serversObject(
  spans: Spans,
  root: ObjectSpan,
): { key: string; span: ObjectSpan } | undefined {
  const member = root.members.find((m) => m.key === "mcpServers") ??
    root.members.find((m) => m.key === "servers");
  if (member === undefined) return undefined;
  if (spans.text[member.valueStart] !== "{") {
    throw new ConfigEditError(`"${member.key}" is not an object; fix the file by hand first.`);
  }
  return { key: member.key, span: spans.object(member.valueStart) };
}

function rootObject(text: string): { spans: Spans; root: ObjectSpan } {
  const data = parseJsonc(text); // throws JsoncSyntaxError with line and column
  if (!isRecord(data)) {
    throw new ConfigEditError("the file is not a JSON object; fix it by hand first.");
  }
  const spans = new Spans(stripJsonc(text));
  return { spans, root: spans.object(spans.skipSpace(0)) };
}

/**
 * `text` with the server `name` set to `entry` in its servers object (created when missing; an
 * empty text becomes a new config). A server of that name is replaced only with `replace`.
 */
export function addServer(
  text: string,
  name: string,
  entry: Record<string, unknown>,
  options: { replace?: boolean } = {},
): string {
  if (text.trim() === "") {
    return JSON.stringify({ mcpServers: { [name]: entry } }, null, 2) + "\n";
  }
  const { spans, root } = rootObject(text);
  const unit = indentUnit(text);
  const servers = serversObject(spans, root);
  if (servers === undefined) {
    // A new "mcpServers" member at the end of the top-level object.
    const base = root.members.length > 0 ? indentAt(text, root.members[0]!.start) : unit;
    const member = `"mcpServers": ${render({ [name]: entry }, unit, base)}`;
    return insertMember(text, root, member, base, indentAt(text, root.close));
  }
  const existing = servers.span.members.find((m) => m.key === name);
  if (existing !== undefined) {
    if (!options.replace) {
      throw new ConfigEditError(
        `a server named "${name}" is already in the file; remove it first (mcps remove ${name}) ` +
          "or add it with --force to replace it.",
      );
    }
    const base = indentAt(text, existing.start);
    return text.slice(0, existing.valueStart) + render(entry, unit, base) +
      text.slice(existing.end);
  }
  const parentIndent = indentAt(text, servers.span.open);
  const base = servers.span.members.length > 0
    ? indentAt(text, servers.span.members[0]!.start)
    : parentIndent + unit;
  const member = `${JSON.stringify(name)}: ${render(entry, unit, base)}`;
  return insertMember(text, servers.span, member, base, indentAt(text, servers.span.close));
}

/** `text` with `member` added as the last member of `object`. */
function insertMember(
  text: string,
  object: ObjectSpan,
  member: string,
  base: string,
  closeIndent: string,
): string {
  const last = object.members.at(-1);
  if (last === undefined) {
    // `{}` or `{ }` (maybe spread over lines): lay the member out on its own line.
    return text.slice(0, object.open + 1) + `\n${base}${member}\n${closeIndent}` +
      text.slice(object.close);
  }
  return text.slice(0, last.end) + `,\n${base}${member}` + text.slice(last.end);
}

/** `text` without the server `name`; throws {@linkcode ConfigEditError} when it is not there. */
export function removeServer(text: string, name: string): string {
  const { spans, root } = rootObject(text);
  const servers = serversObject(spans, root);
  const members = servers?.span.members ?? [];
  const index = members.findIndex((m) => m.key === name);
  if (servers === undefined || index === -1) {
    const names = members.map((m) => m.key);
    throw new ConfigEditError(
      `no server named "${name}" in the file (it has: ${names.join(", ") || "none"}).`,
    );
  }
  const member = members[index]!;
  const next = members[index + 1];
  const previous = members[index - 1];
  // From the start of the member's line (when only space precedes it) to the next member, or,
  // for the last one, from the end of the previous member (taking its comma).
  const lineStart = text.lastIndexOf("\n", member.start - 1) + 1;
  const ownLine = /^[ \t]*$/.test(text.slice(lineStart, member.start));
  if (next !== undefined) {
    const from = ownLine ? lineStart : member.start;
    const nextLineStart = text.lastIndexOf("\n", next.start - 1) + 1;
    const to = ownLine && /^[ \t]*$/.test(text.slice(nextLineStart, next.start))
      ? nextLineStart
      : next.start;
    return text.slice(0, from) + text.slice(to);
  }
  if (previous !== undefined) {
    // Keep a trailing comma the member had (stripJsonc blanked it), so the file's style stays.
    let after = member.end;
    while (after < text.length && /\s/.test(spans.text[after]!) && text[after] !== ",") after++;
    const trailing = text[after] === ",";
    return text.slice(0, previous.end) + (trailing ? "," : "") +
      text.slice(trailing ? after + 1 : member.end);
  }
  // The only member: leave an empty object.
  return text.slice(0, servers.span.open + 1) + text.slice(servers.span.close);
}

if (import.meta.main) {
  const [path, mode] = Deno.args;
  if (path === undefined) {
    throw new Error("usage: deno run --allow-write=FILE lib/config_edit.ts FILE [MODE] < NEW_TEXT");
  }
  await Deno.writeTextFile(
    path,
    await new Response(Deno.stdin.readable).text(),
    mode !== undefined ? { mode: parseInt(mode, 8) } : {},
  );
}
