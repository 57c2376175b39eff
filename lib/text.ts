/**
 * Small text helpers every message builder shares: cutting long text, counting nouns, listing
 * names, sizes, quoting a shell word and guessing the name that was meant.
 */
import { stableStringify } from "./json.ts";

/** `s` cut to `max` characters, ending in "…" when cut. */
export function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** `input` as is when short, else its start and its length (data URIs can be megabytes). */
export function shorten(input: string, max = 80): string {
  return input.length <= max ? input : `${input.slice(0, max - 20)}… (${input.length} chars)`;
}

/** `value` as compact JSON (strings as they are), cut to `max` characters. */
export function shortJson(value: unknown, max = 200): string {
  return clip(typeof value === "string" ? value : stableStringify(value), max);
}

/** The first line of `text`, trimmed and cut to `max` characters. */
export function firstLine(text: string | undefined, max = 160): string {
  return clip((text ?? "").trim().split(/\r?\n/)[0]?.trim() ?? "", max);
}

/** `text` without its final period, to be joined into a longer sentence. */
export function clause(text: string): string {
  return text.trim().replace(/\.+$/, "");
}

/** "1 model", "2 models". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** `names` for a message: the first `max`, and how many more there are; "none" for none. */
export function listNames(names: readonly string[], max = 12): string {
  if (names.length === 0) return "none";
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/** A byte count: "512 B", "3.5 KiB", "10.0 MiB", "4.37 GiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A duration: "45 s", "30 min", "2 h 5 min". */
export function formatDuration(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return `${Math.round(ms / 1000)} s`;
  if (minutes < 60) return `${minutes} min`;
  const rest = minutes % 60;
  return `${Math.floor(minutes / 60)} h${rest ? ` ${rest} min` : ""}`;
}

/** A duration in seconds: "30 s" for whole seconds, else "1.5 s". */
export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** How many bytes base64 `data` decodes to. */
export function base64Bytes(data: string): number {
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor(data.length * 3 / 4) - padding);
}

/** `word` as one POSIX shell word: as is when safe, else single-quoted. */
export function shellWord(word: string): string {
  return /^[\w.@:+/=-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * The listed name `name` was most likely meant as: the same letters ignoring case and `-_. `, or
 * (for names of 4 letters or more) one a typo or two away.
 */
export function closestName(name: string, names: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_.\s]/g, "");
  const wanted = plain(name);
  const same = names.find((n) => plain(n) === wanted);
  if (same !== undefined) return same;
  if (wanted.length < 4) return undefined;
  let best: { name: string; distance: number } | undefined;
  for (const n of names) {
    const distance = editDistance(wanted, plain(n));
    if (distance <= 2 && (best === undefined || distance < best.distance)) {
      best = { name: n, distance };
    }
  }
  return best?.name;
}

/** Levenshtein distance of two short strings. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * Terminal escape sequences: CSI (`ESC [` or 8-bit `\x9b`, parameters, final byte), OSC, DCS, SOS,
 * PM and APC strings (`ESC ]`, `ESC P`, ... or their 8-bit forms, up to BEL or ST, or to the end
 * when unterminated), and the other two-character escapes (`ESC c`, `ESC 7`, `ESC (B`, ...).
 */
const ESCAPE_SEQUENCES =
  // deno-lint-ignore no-control-regex
  /(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[ -/]*[0-~]?/g;
/** C0 controls except tab and newline, DEL, and C1 controls. */
// deno-lint-ignore no-control-regex
const CONTROL_CHARACTERS = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;
/**
 * Whether a text has any of {@linkcode CONTROL_CHARACTERS} (the same class, without the global
 * flag's state): every escape sequence begins with one (ESC, or an 8-bit C1 introducer), so a
 * text without them is safe as it is.
 */
const ANY_CONTROL = new RegExp(CONTROL_CHARACTERS.source);

/**
 * `text` from outside (a server's stderr, a tool's description or result, a model's answer) made
 * safe for a terminal and an MCP result: escape sequences (colours, cursor moves, an OSC title or
 * clipboard write) and control characters other than `\n` and `\t` are removed; all other Unicode
 * text is kept.
 */
export function safeText(text: string): string {
  if (!ANY_CONTROL.test(text)) return text;
  return text.replace(ESCAPE_SEQUENCES, "").replace(CONTROL_CHARACTERS, "");
}

/**
 * `value` with {@linkcode safeText} applied to every string in it (keys included), as plain
 * arrays and objects. What needs no change is returned as it is (the same array or object), so a
 * clean result (nearly every one) costs a walk and no copy.
 */
export function safeValue(value: unknown): unknown {
  if (typeof value === "string") return safeText(value);
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const safe = safeValue(item);
      if (out === undefined && safe !== item) out = value.slice(0, i);
      out?.push(safe);
    }
    return out ?? value;
  }
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    const proto: unknown = Object.getPrototypeOf(record);
    // Anything but a plain object (a Date, a Map) becomes one, as JSON would see its fields.
    let out: Array<[string, unknown]> | undefined = proto === Object.prototype || proto === null
      ? undefined
      : [];
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const item = record[k];
      const key = safeText(k);
      const safe = safeValue(item);
      if (out === undefined && (key !== k || safe !== item)) {
        out = keys.slice(0, i).map((kept) => [kept, record[kept]]);
      }
      out?.push([key, safe]);
    }
    return out === undefined ? value : Object.fromEntries(out);
  }
  return value;
}
