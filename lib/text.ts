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

// -- redaction ------------------------------------------------------------------------------------

/** What a credential is shown as. */
export const REDACTED = "***";

/** A name that says its value is a credential: api_key, token, secret, password, auth... */
const SECRET_WORD = "(?:api[-_]?key|apikey|access[-_]?key|private[-_]?key|token|secret|" +
  "passw(?:or)?d|pwd|auth(?:orization)?|credentials?|cookie|signature)";
const SECRET_NAME = new RegExp(`^[\\w.-]*${SECRET_WORD}[\\w.-]*$`, "i");
/** Query parameters that carry credentials, also under short names. */
const SECRET_QUERY = new RegExp(`^(?:[\\w.-]*${SECRET_WORD}[\\w.-]*|key|code|sig|session)$`, "i");
/** A `${VAR}` reference as the config writes it: shown as it is, never its value. */
const REFERENCE = /\$\{[^}]*\}/g;
/** An auth scheme word before a credential ("Bearer X"). */
const SCHEME = /^\s*(Bearer|Basic|Token)\s+/i;
/** Tokens with a well-known shape (OpenAI, GitHub, Slack, AWS, GitLab, Hugging Face, JWTs). */
const TOKEN_SHAPES = new RegExp(
  "\\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\\w{20,}|" +
    "xox[abpors]-[\\w-]{10,}|AKIA[0-9A-Z]{16}|glpat-[\\w-]{20,}|hf_[A-Za-z0-9]{20,}|" +
    "eyJ[\\w-]{8,}\\.[\\w-]{8,}\\.[\\w-]{8,})",
  "g",
);

/**
 * A credential's value as it may be shown: kept when it is only `${VAR}` references (after an
 * auth scheme word such as "Bearer"), with any default written in the file hidden; else
 * {@linkcode REDACTED} (after its scheme word).
 */
function redactValue(value: string): string {
  const rest = value.replace(SCHEME, "").replace(REFERENCE, "").trim();
  if (rest === "" && value.trim() !== "") {
    // A default written in the file (`${TOKEN:-literal}`) is a literal too.
    return value.replace(/(\$\{[^}:]*:-)[^}]+\}/g, `$1${REDACTED}}`);
  }
  const scheme = SCHEME.exec(value);
  return scheme ? `${scheme[1]} ${REDACTED}` : REDACTED;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

/**
 * `url` with its credentials hidden: its userinfo (user and password), and the values of query
 * parameters named like credentials (`api_key`, `token`, `key`, `sig`...). `${VAR}` references
 * stay as written. Works on the text, so the rest of the URL is shown as written.
 */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#@\s]*)@/i, (whole, scheme: string, info: string) => {
      const references = info.replace(REFERENCE, "").replace(":", "") === "";
      return references ? whole : `${scheme}${REDACTED}@`;
    })
    .replace(
      /([?&;])([^=&#\s]+)=([^&#\s]*)/g,
      (whole, sep: string, name: string, value: string) =>
        SECRET_QUERY.test(decodeName(name)) && value !== ""
          ? `${sep}${name}=${redactValue(value)}`
          : whole,
    );
}

/**
 * Whether the word after a credential's name (`--token X`, `API_KEY: X`) is its value: always
 * after `=`; after a space or a colon only when it looks like one (digits in 6 characters or
 * more, or 16 characters or more), so that prose ("--token is required") stays readable.
 */
function hidesValue(separator: string, value: string): boolean {
  if (
    value.startsWith(REDACTED) || value.startsWith("-") || /^(?:Bearer|Basic|Token)$/i.test(value)
  ) {
    return false;
  }
  if (separator === "=") return true;
  return (value.length >= 6 && /\d/.test(value)) || value.length >= 16;
}

const FLAG_VALUE = new RegExp(
  `(--?[\\w.-]*${SECRET_WORD}[\\w.-]*)(=|\\s+)("?)([^\\s"',;$]+)`,
  "gi",
);
const NAME_VALUE = new RegExp(
  `\\b([A-Za-z0-9_]*${SECRET_WORD}[A-Za-z0-9_]*)(=|:\\s*)("?)([^\\s"',;$&]+)`,
  "gi",
);

/**
 * Free text (an error message, a log line) with whatever looks like a credential hidden: URL
 * userinfo and credential query parameters, `Bearer X`, `--token=X` / `--api-key X`, `API_KEY=X`,
 * `Authorization: X`, and tokens of a well-known shape.
 */
export function redactText(text: string): string {
  const hide = (whole: string, name: string, sep: string, quote: string, value: string) => {
    // Punctuation closing a sentence or a parenthesis is not part of the value.
    const end = /[.:)!?]+$/.exec(value)?.[0] ?? "";
    const bare = value.slice(0, value.length - end.length);
    return hidesValue(sep, bare) ? `${name}${sep}${quote}${REDACTED}${end}` : whole;
  };
  return text
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`)]+/gi, (url) => {
      // Punctuation after a URL in a sentence ("at http://h/x: refused") is not part of it.
      const end = /[.,:;!?]+$/.exec(url)?.[0] ?? "";
      return redactUrl(url.slice(0, url.length - end.length)) + end;
    })
    .replace(
      /\b(Bearer|Basic|Token)(\s+)([A-Za-z0-9._~+/=-]{4,})/g,
      (whole, scheme, space, value) => value === REDACTED ? whole : `${scheme}${space}${REDACTED}`,
    )
    .replace(FLAG_VALUE, hide)
    .replace(NAME_VALUE, hide)
    .replace(TOKEN_SHAPES, REDACTED);
}

/**
 * The arguments of a command line with credentials hidden: the value of `--token=X`, of
 * `--api-key X` (the next argument), of `NAME=X` and `Header: X` arguments whose name says it is
 * a credential, URLs as {@linkcode redactUrl} shows them, and tokens of a well-known shape.
 * `${VAR}` references are kept: they show where a secret comes from, not what it is. `found`
 * collects the literal values hidden, each with what is shown instead.
 */
export function redactArgs(
  args: readonly string[],
  found: { value: string; shown: string }[] = [],
): string[] {
  const out: string[] = [];
  const hide = (value: string): string => {
    const shown = redactValue(value);
    if (shown.endsWith(REDACTED)) found.push({ value: value.replace(SCHEME, ""), shown: REDACTED });
    return shown;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const flag = /^(-{1,2}[\w.-]+)=(.*)$/s.exec(arg);
    const pair = /^([A-Za-z_][\w.-]*)(\s*[:=]\s*)(.+)$/s.exec(arg);
    if (flag && SECRET_NAME.test(flag[1]!)) {
      out.push(`${flag[1]}=${hide(flag[2]!)}`);
    } else if (/^-{1,2}[\w.-]+$/.test(arg) && SECRET_NAME.test(arg) && i + 1 < args.length) {
      out.push(arg);
      const value = args[++i]!;
      out.push(value.startsWith("-") ? value : hide(value));
    } else if (pair && !arg.includes("://") && SECRET_NAME.test(pair[1]!)) {
      out.push(`${pair[1]}${pair[2]}${hide(pair[3]!)}`);
    } else {
      const shown = redactText(arg);
      if (shown !== arg) found.push({ value: arg, shown });
      out.push(shown);
    }
  }
  return out;
}
