/**
 * Hiding secrets wherever the bridge shows something it did not write itself: command lines and
 * URLs of configured servers (`${VAR}` references stay as written, values never shown), free text
 * (errors, logs, stderr lines) and structured values (a tool call's arguments in an approval
 * prompt). One list of what a credential looks like serves them all.
 */
import { plural, shorten } from "./text.ts";

/** What a credential is shown as. */
export const REDACTED = "***";

/** A name that says its value is a credential: api_key, token, secret, password, auth... */
const SECRET_WORD = "(?:api[-_]?key|apikey|access[-_]?key|private[-_]?key|token|secret|" +
  "passw(?:or)?d|pwd|auth(?:orization)?|credentials?|cookie|signature)";
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
    return secretName(name) && hidesValue(sep, bare)
      ? `${name}${sep}${quote}${REDACTED}${end}`
      : whole;
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
    if (flag && secretName(flag[1]!)) {
      out.push(`${flag[1]}=${hide(flag[2]!)}`);
    } else if (/^-{1,2}[\w.-]+$/.test(arg) && secretName(arg) && i + 1 < args.length) {
      out.push(arg);
      const value = args[++i]!;
      out.push(value.startsWith("-") ? value : hide(value));
    } else if (pair && !arg.includes("://") && secretName(pair[1]!)) {
      out.push(`${pair[1]}${pair[2]}${hide(pair[3]!)}`);
    } else {
      const shown = redactText(arg);
      if (shown !== arg) found.push({ value: arg, shown });
      out.push(shown);
    }
  }
  return out;
}

/**
 * Whether a name (an argument, a flag, a key, a query parameter) says its value is a credential:
 * `password`, `api_key`, `--token`, `authToken`, `Authorization`, `client_secret`... but not the
 * counts and limits of tokens (`max_tokens`, `tokenCount`) nor words that only contain "auth"
 * (`author`).
 */
function secretName(name: string): boolean {
  const plain = name.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (/^(?:max|min|num|total|count)\w*tokens?$|^tokens?(?:count|limit|used|total)$/.test(plain)) {
    return false;
  }
  if (
    /password|passwd|passphrase|secret|apikey|accesskey|privatekey|authorization|credential|cookie|sessionid|bearer|signature|token|pwd/
      .test(plain)
  ) return true;
  return /^(?:x)?auth(?:key|header)?$|auth$/.test(plain) || plain === "pin";
}

/**
 * `value` fit to show a person (an approval prompt, a log): values of secret-named keys
 * (`password`, `api_key`, `token`, `authorization`...) and values shaped like keys or tokens
 * (`sk-...`, `ghp_...`, JWTs, private keys) become {@linkcode REDACTED}, the password of a URL
 * (`https://user:pw@host`) too; strings longer than `maxChars` (default 200) are shortened with
 * their length, lists longer than `maxItems` (default 20) say how many more there are, and
 * nesting deeper than `maxDepth` (default 8) is cut. Never changes `value`.
 */
export function redact(
  value: unknown,
  o: { maxChars?: number; maxItems?: number; maxDepth?: number } = {},
): unknown {
  const maxChars = o.maxChars ?? 200;
  const maxItems = o.maxItems ?? 20;
  const maxDepth = o.maxDepth ?? 8;
  const walk = (node: unknown, depth: number): unknown => {
    if (typeof node === "string") {
      if (isTokenShaped(node)) return REDACTED;
      return shorten(node.replace(/(\w+:\/\/[^\s:/@]+:)[^\s/@]+@/g, `$1${REDACTED}@`), maxChars);
    }
    if (typeof node !== "object" || node === null) return node;
    if (depth >= maxDepth) return Array.isArray(node) ? "[…]" : "{…}";
    if (Array.isArray(node)) {
      const shown = node.slice(0, maxItems).map((v) => walk(v, depth + 1));
      return node.length > maxItems
        ? [...shown, `… ${plural(node.length - maxItems, "more item")}`]
        : shown;
    }
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(node)) {
      out[key] = secretName(key) && v !== null && v !== "" ? REDACTED : walk(v, depth + 1);
    }
    return out;
  };
  return walk(value, 0);
}

/** Whether `value` as a whole is a credential of a well-known shape (or `Bearer X`, a key). */
function isTokenShaped(value: string): boolean {
  const v = value.trim();
  if (
    /^(?:Bearer|Basic|Token)\s+\S{8,}$/i.test(v) || /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v)
  ) {
    return true;
  }
  TOKEN_SHAPES.lastIndex = 0;
  const match = TOKEN_SHAPES.exec(v);
  TOKEN_SHAPES.lastIndex = 0;
  return match !== null && match.index === 0 && match[0].length === v.length;
}
