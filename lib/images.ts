/**
 * Image inputs for vision models: file paths, `file://` URLs, data URIs and http(s) URLs become
 * base64 data URIs that LM Studio's OpenAI-compatible API accepts in `image_url` parts.
 *
 * Every input is checked before it is sent: the type by its magic bytes (PNG, JPEG, GIF, WebP,
 * BMP), the size (at most {@linkcode MAX_IMAGE_BYTES}, checked by stat before a file is read and
 * while a download streams), and for URLs the address: private, loopback and link-local hosts are
 * refused, both as literals and after resolving the name (so a public name that points inside the
 * network is refused too), and every redirect target is checked the same way.
 */
import { homeDir, isAbsolute, resolve } from "./path.ts";

/** The largest image accepted, in bytes (10 MiB). */
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
/** The most images one call may carry. */
export const MAX_IMAGES = 10;
/** Default time limit for fetching one URL, redirects included. */
export const DEFAULT_FETCH_TIMEOUT_MS = 20_000;
/** Default number of redirects followed (each target re-checked). */
export const DEFAULT_MAX_REDIRECTS = 5;

/** The image types vision models accept here. */
export type ImageMime = "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp";

/** The supported types, for messages. */
export const SUPPORTED_IMAGE_TYPES = "PNG, JPEG, GIF, WebP, BMP";

/** One image ready to send. */
export interface LoadedImage {
  /** `data:<mime>;base64,<data>` */
  dataUri: string;
  /** The type found in the bytes (not the one the name or a header claimed). */
  mime: ImageMime;
  /** Size of the decoded image in bytes. */
  bytes: number;
  source: "file" | "data-uri" | "url";
  /** A short human name: the resolved path, the URL, or `data:<mime>`. */
  label: string;
}

/** Why an image could not be loaded. */
export type ImageErrorKind =
  | "invalid_input"
  | "not_found"
  | "not_a_file"
  | "permission"
  | "sandbox"
  | "too_large"
  | "unsupported_type"
  | "invalid_data_uri"
  | "private_address"
  | "dns"
  | "http"
  | "network"
  | "timeout"
  | "aborted"
  | "too_many_redirects"
  | "too_many_images";

/** An image input that cannot be used; the message names the input and what to do. */
export class ImageError extends Error {
  override name = "ImageError";
  /** What went wrong. */
  readonly kind: ImageErrorKind;
  /** The input as given (shortened when long, e.g. a data URI). */
  readonly input: string;
  /** HTTP status for kind "http". */
  readonly status?: number;
  /** Every failure when several images failed at once. */
  readonly failures: ImageError[];
  constructor(
    kind: ImageErrorKind,
    input: string,
    message: string,
    options?: { cause?: unknown; status?: number; failures?: ImageError[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.input = shorten(input);
    if (options?.status !== undefined) this.status = options.status;
    this.failures = options?.failures ?? [];
  }
}

/** Resolves a host name to addresses of one record type (Deno.resolveDns in production). */
export type DnsResolver = (
  hostname: string,
  recordType: "A" | "AAAA",
  options?: { signal?: AbortSignal },
) => Promise<string[]>;

/** Options for {@linkcode loadImage}; every field has a production default. */
export interface LoadImageOptions {
  /** Base for relative paths (default: the process's working directory). */
  cwd?: string;
  /** Expansion of `~` (default: $HOME / %USERPROFILE%). */
  home?: string;
  /** Used for http(s) inputs (default: global fetch). */
  fetch?: typeof fetch;
  /** Used to check where a host name points (default: Deno.resolveDns). */
  resolveDns?: DnsResolver;
  /** Time limit per URL, redirects and body included (default 20 s). */
  timeoutMs?: number;
  /** Size limit per image (default {@linkcode MAX_IMAGE_BYTES}). */
  maxBytes?: number;
  /** Redirects followed per URL (default 5). */
  maxRedirects?: number;
  signal?: AbortSignal;
}

/** Options for {@linkcode loadImages}. */
export interface LoadImagesOptions extends LoadImageOptions {
  /** Most images per call (default {@linkcode MAX_IMAGES}). */
  maxImages?: number;
}

const TYPE_NAMES: Record<ImageMime, string> = {
  "image/png": "PNG",
  "image/jpeg": "JPEG",
  "image/gif": "GIF",
  "image/webp": "WebP",
  "image/bmp": "BMP",
};

const EXTENSION_TYPES: Record<string, ImageMime> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  jpe: "image/jpeg",
  jfif: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  bmp: "image/bmp",
  dib: "image/bmp",
};

/** How many leading bytes {@linkcode sniffImageType} needs. */
export const SNIFF_BYTES = 32;

function startsWith(bytes: Uint8Array, prefix: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + prefix.length) return false;
  return prefix.every((b, i) => bytes[offset + i] === b);
}

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0));
}

/** The supported image type of these leading bytes, or undefined. Pure. */
export function sniffImageType(bytes: Uint8Array): ImageMime | undefined {
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (startsWith(bytes, ascii("GIF87a")) || startsWith(bytes, ascii("GIF89a"))) return "image/gif";
  if (startsWith(bytes, ascii("RIFF")) && startsWith(bytes, ascii("WEBP"), 8)) return "image/webp";
  if (startsWith(bytes, ascii("BM")) && bytes.length >= 18) {
    // "BM" alone is too weak: also require a known DIB header size at offset 14.
    const dib = (bytes[14] ?? 0) | ((bytes[15] ?? 0) << 8) | ((bytes[16] ?? 0) << 16) |
      ((bytes[17] ?? 0) << 24);
    if ([12, 16, 40, 52, 56, 64, 108, 124].includes(dib)) return "image/bmp";
  }
  return undefined;
}

/** A name for content that is not a supported image, to make errors specific. Pure. */
export function describeContent(bytes: Uint8Array): string {
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, SNIFF_BYTES));
  if (bytes.length === 0) return "empty";
  if (/^\s*(<\?xml[^>]*>\s*)?<svg/i.test(head) || /^\s*<\?xml/i.test(head)) return "SVG/XML";
  if (/^\s*<(!doctype html|html|head|body)/i.test(head)) return "an HTML page";
  if (head.startsWith("%PDF")) return "a PDF document";
  if (head.startsWith("II*\0") || head.startsWith("MM\0*")) return "a TIFF image";
  if (head.slice(4, 8) === "ftyp") {
    const brand = head.slice(8, 12);
    if (/^(heic|heix|hevc|mif1|msf1|heim|heis)$/.test(brand)) return "a HEIC/HEIF image";
    if (/^avi[fs]$/.test(brand)) return "an AVIF image";
    return "a video/ISO media file";
  }
  if (startsWith(bytes, [0, 0, 1, 0])) return "an ICO icon";
  if (startsWith(bytes, ascii("RIFF"))) return "a RIFF file that is not WebP";
  if (startsWith(bytes, ascii("BM"))) return "a BMP-like file with an unknown header";
  if (/^[\t\n\r\x20-\x7e]*$/.test(head)) return "text";
  return "an unknown binary format";
}

function conversionHint(content: string): string {
  if (/HEIC|AVIF|TIFF|SVG/.test(content)) {
    return " Convert it to PNG or JPEG first (e.g. `magick <file> out.png`; on macOS also " +
      "`sips -s format png <file> --out out.png`).";
  }
  return "";
}

// --- addresses ---------------------------------------------------------------------------------

/** The four octets of a dotted IPv4 address, or undefined. Pure. */
export function parseIpv4(text: string): [number, number, number, number] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const octets = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  if (octets.some((o) => !(o >= 0 && o <= 255))) return undefined;
  return octets as [number, number, number, number];
}

/** The eight 16-bit groups of an IPv6 address (embedded IPv4 tail allowed), or undefined. Pure. */
export function parseIpv6(text: string): number[] | undefined {
  let s = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(":")) return undefined;
  const lastColon = s.lastIndexOf(":");
  const maybeV4 = s.slice(lastColon + 1);
  if (maybeV4.includes(".")) {
    // An embedded IPv4 tail (::ffff:127.0.0.1) becomes two hex groups.
    const v4 = parseIpv4(maybeV4);
    if (v4 === undefined) return undefined;
    const hi = ((v4[0] << 8) | v4[1]).toString(16);
    const lo = ((v4[2] << 8) | v4[3]).toString(16);
    s = `${s.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups = part.split(":");
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] ?? "");
  const rest = halves.length === 2 ? parse(halves[1] ?? "") : [];
  if (head === undefined || rest === undefined) return undefined;
  const known = head.length + rest.length;
  if (halves.length === 2) {
    if (known > 7) return undefined;
    return [...head, ...new Array<number>(8 - known).fill(0), ...rest];
  }
  return known === 8 ? head : undefined;
}

function ipv4Reason(o: readonly [number, number, number, number]): string | undefined {
  const [a, b, c] = o;
  if (a === 0) return "an unspecified address (0.0.0.0/8)";
  if (a === 10) return "a private address (10.0.0.0/8)";
  if (a === 127) return "a loopback address (127.0.0.0/8)";
  if (a === 100 && b >= 64 && b <= 127) return "a carrier-grade NAT address (100.64.0.0/10)";
  if (a === 169 && b === 254) return "a link-local address (169.254.0.0/16)";
  if (a === 172 && b >= 16 && b <= 31) return "a private address (172.16.0.0/12)";
  if (a === 192 && b === 168) return "a private address (192.168.0.0/16)";
  if (a === 192 && b === 0 && c === 0) return "a reserved address (192.0.0.0/24)";
  if (a === 198 && (b === 18 || b === 19)) return "a benchmarking address (198.18.0.0/15)";
  if (a >= 224) return "a multicast or reserved address (224.0.0.0/3)";
  return undefined;
}

/**
 * Why an IP address literal is not a public internet address ("a loopback address (127.0.0.0/8)"),
 * or undefined when it is public or not an IP address at all. Covers IPv4 private, loopback,
 * link-local, CGNAT and reserved ranges, IPv6 ::, ::1, fc00::/7, fe80::/10, multicast, and IPv4
 * embedded in IPv6 (mapped ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16).
 * Pure.
 */
export function nonPublicAddressReason(address: string): string | undefined {
  const v4 = parseIpv4(address);
  if (v4 !== undefined) return ipv4Reason(v4);
  const g = parseIpv6(address);
  if (g === undefined) return undefined;
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded = (hi: number, lo: number) => ipv4Reason([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  const upperZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (upperZero && g5 === 0 && g6 === 0 && g7 === 0) return "the unspecified address (::)";
  if (upperZero && g5 === 0 && g6 === 0 && g7 === 1) return "the loopback address (::1)";
  if (upperZero && (g5 === 0xffff || g5 === 0)) {
    const r = embedded(g6, g7);
    if (r !== undefined) return `${r}, as IPv4 inside IPv6`;
    return undefined;
  }
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) {
    const r = embedded(g6, g7);
    return r === undefined ? undefined : `${r}, through NAT64`;
  }
  if (g0 === 0x2002) {
    const r = embedded(g1, g2);
    return r === undefined ? undefined : `${r}, through 6to4`;
  }
  if ((g0 & 0xfe00) === 0xfc00) return "a unique-local address (fc00::/7)";
  if ((g0 & 0xffc0) === 0xfe80) return "a link-local address (fe80::/10)";
  if ((g0 & 0xffc0) === 0xfec0) return "a site-local address (fec0::/10)";
  if ((g0 & 0xff00) === 0xff00) return "a multicast address (ff00::/8)";
  return undefined;
}

/**
 * Why a URL host name is not public judging by the name alone (an address literal, "localhost",
 * `*.local`, ...), or undefined when only DNS can tell. Pure.
 */
export function nonPublicHostReason(hostname: string): string | undefined {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  const literal = nonPublicAddressReason(host);
  if (literal !== undefined) return literal;
  if (host === "" || host === "localhost" || host.endsWith(".localhost")) return "this machine";
  if (host === "localhost.localdomain") return "this machine";
  if (host.endsWith(".local")) return "a local-network (mDNS) name";
  if (host.endsWith(".internal") || host.endsWith(".home.arpa") || host.endsWith(".lan")) {
    return "a local-network name";
  }
  return undefined;
}

function isIpLiteral(hostname: string): boolean {
  return parseIpv4(hostname) !== undefined || parseIpv6(hostname) !== undefined;
}

// --- helpers -----------------------------------------------------------------------------------

function shorten(input: string, max = 80): string {
  return input.length <= max ? input : `${input.slice(0, max - 20)}… (${input.length} chars)`;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function isSandboxError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

function toDataUri(mime: ImageMime, bytes: Uint8Array): string {
  return `data:${mime};base64,${bytes.toBase64()}`;
}

// --- files -------------------------------------------------------------------------------------

function filePathOf(input: string, o: LoadImageOptions): string {
  if (/^file:/i.test(input)) {
    let url: URL;
    try {
      url = new URL(input);
    } catch (cause) {
      throw new ImageError("invalid_input", input, `${shorten(input)} is not a valid file URL.`, {
        cause,
      });
    }
    if (url.hostname !== "" && url.hostname !== "localhost") {
      throw new ImageError(
        "invalid_input",
        input,
        `${input} names a file on another host (${url.hostname}); only local files can be read.`,
      );
    }
    const path = decodeURIComponent(url.pathname);
    return Deno.build.os === "windows" && /^\/[A-Za-z]:/.test(path) ? path.slice(1) : path;
  }
  if (input === "~" || input.startsWith("~/") || input.startsWith("~\\")) {
    const home = o.home ?? homeDir();
    if (home === undefined) {
      throw new ImageError(
        "invalid_input",
        input,
        `Cannot expand "~" in ${input}: the home directory is unknown (HOME is not set). Pass an absolute path.`,
      );
    }
    return resolve(home, input.slice(2));
  }
  return isAbsolute(input) ? input : resolve(o.cwd ?? Deno.cwd(), input);
}

function extensionOf(path: string): string {
  const m = /\.([A-Za-z0-9]+)$/.exec(path);
  return m?.[1]?.toLowerCase() ?? "";
}

async function readInto(file: Deno.FsFile, buffer: Uint8Array, from: number): Promise<number> {
  let filled = from;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

async function loadFile(input: string, o: LoadImageOptions): Promise<LoadedImage> {
  const path = filePathOf(input, o);
  const maxBytes = o.maxBytes ?? MAX_IMAGE_BYTES;
  const relativeNote = isAbsolute(input) || /^(file:|~)/i.test(input)
    ? ""
    : ` (resolved against the bridge's working directory ${
      o.cwd ?? Deno.cwd()
    }; pass an absolute path if you meant another directory)`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ImageError(
        "not_found",
        input,
        `Image file not found: ${path}${relativeNote}. Check the path, or pass a data URI or URL.`,
        { cause: error },
      );
    }
    if (isSandboxError(error)) {
      const sandbox = error instanceof Deno.errors.NotCapable;
      throw new ImageError(
        sandbox ? "sandbox" : "permission",
        input,
        sandbox
          ? `Reading ${path} was blocked by the bridge's sandbox. Run it with --allow-read for that path, or pass the image as a data URI.`
          : `Cannot read ${path}: permission denied by the operating system. Check the file's permissions.`,
        { cause: error },
      );
    }
    throw new ImageError("invalid_input", input, `Cannot open ${path}: ${String(error)}.`, {
      cause: error,
    });
  }
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new ImageError(
        "not_a_file",
        input,
        `${path} is ${
          info.isDirectory ? "a directory" : "not a regular file"
        }, not an image file. Pass the path of an image file.`,
      );
    }
    if (info.size > maxBytes) {
      throw new ImageError(
        "too_large",
        input,
        `${path} is ${formatBytes(info.size)}; images may be at most ${
          formatBytes(maxBytes)
        }. Scale it down or crop it first.`,
      );
    }
    const buffer = new Uint8Array(info.size);
    const head = await readInto(file, buffer.subarray(0, Math.min(SNIFF_BYTES, info.size)), 0);
    const mime = sniffImageType(buffer.subarray(0, head));
    if (mime === undefined) {
      const content = describeContent(buffer.subarray(0, head));
      const claimed = EXTENSION_TYPES[extensionOf(path)];
      const prefix = claimed === undefined
        ? `${path} is not a supported image (its content looks like ${content}).`
        : `${path} is named like a ${
          TYPE_NAMES[claimed]
        } image but its content is ${content}, not ${TYPE_NAMES[claimed]}.`;
      throw new ImageError(
        "unsupported_type",
        input,
        `${prefix} Supported types: ${SUPPORTED_IMAGE_TYPES}.${conversionHint(content)}`,
      );
    }
    const filled = await readInto(file, buffer, head);
    // A file that shrank while being read is sent as it was read; one that grew is not read past
    // the size checked above.
    const bytes = buffer.subarray(0, filled);
    return {
      dataUri: toDataUri(mime, bytes),
      mime,
      bytes: bytes.length,
      source: "file",
      label: path,
    };
  } finally {
    file.close();
  }
}

// --- data URIs and bare base64 -----------------------------------------------------------------

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

function decodeBase64(data: string): Uint8Array | undefined {
  const compact = data.replace(/\s+/g, "");
  let normal = compact;
  if (!BASE64.test(compact)) {
    if (!BASE64URL.test(compact)) return undefined;
    normal = compact.replace(/-/g, "+").replace(/_/g, "/");
  }
  const padded = normal.replace(/=+$/, "");
  if (padded.length % 4 === 1) return undefined;
  try {
    return Uint8Array.fromBase64(padded + "=".repeat((4 - (padded.length % 4)) % 4));
  } catch {
    return undefined;
  }
}

function loadDataUri(input: string, o: LoadImageOptions): LoadedImage {
  const maxBytes = o.maxBytes ?? MAX_IMAGE_BYTES;
  const comma = input.indexOf(",");
  const header = comma < 0 ? input : input.slice(5, comma);
  const bad = (why: string) =>
    new ImageError(
      "invalid_data_uri",
      input,
      `Invalid data URI ${
        shorten(input, 60)
      }: ${why}. Use the form data:image/png;base64,<base64 data>.`,
    );
  if (comma < 0) throw bad("there is no comma before the data");
  const params = header.split(";").map((p) => p.trim().toLowerCase());
  const declared = params[0] === "image/jpg" ? "image/jpeg" : params[0] ?? "";
  if (!params.includes("base64")) {
    throw bad(
      declared === "image/svg+xml"
        ? "SVG is not supported by vision models; convert it to PNG first"
        : "the data is not base64-encoded (add ;base64)",
    );
  }
  if (declared !== "" && !declared.startsWith("image/")) {
    throw bad(`its type is ${declared}, not an image`);
  }
  const data = input.slice(comma + 1);
  // Refuse clearly oversized data before decoding it (base64 is 4 chars per 3 bytes; allow
  // generous slack for line breaks); the exact size is checked after decoding.
  if (data.length > Math.ceil(maxBytes / 3) * 4 * 1.1 + 1024) {
    throw new ImageError(
      "too_large",
      input,
      `The data URI carries about ${
        formatBytes(Math.floor(data.length / 4 * 3))
      }; images may be at most ${formatBytes(maxBytes)}. Scale the image down first.`,
    );
  }
  const bytes = decodeBase64(decodeURIComponentSafe(data));
  if (bytes === undefined) throw bad("the data is not valid base64");
  if (bytes.length === 0) throw bad("the data is empty");
  if (bytes.length > maxBytes) {
    throw new ImageError(
      "too_large",
      input,
      `The data URI carries ${formatBytes(bytes.length)}; images may be at most ${
        formatBytes(maxBytes)
      }. Scale the image down first.`,
    );
  }
  const mime = sniffImageType(bytes);
  if (mime === undefined) {
    const content = describeContent(bytes);
    throw new ImageError(
      "unsupported_type",
      input,
      `The data URI ${
        shorten(input, 40)
      } does not hold a supported image (its content looks like ${content}). Supported types: ${SUPPORTED_IMAGE_TYPES}.${
        conversionHint(content)
      }`,
    );
  }
  // The bytes decide the type: a JPEG labelled image/png is sent as image/jpeg.
  return {
    dataUri: toDataUri(mime, bytes),
    mime,
    bytes: bytes.length,
    source: "data-uri",
    label: `data:${mime}`,
  };
}

function decodeURIComponentSafe(data: string): string {
  if (!data.includes("%")) return data;
  try {
    return decodeURIComponent(data);
  } catch {
    return data;
  }
}

/** Bare base64 of an image (models often pass it without the `data:` prefix), or undefined. */
function bareBase64(input: string): { mime: ImageMime; bytes: Uint8Array } | undefined {
  if (input.length < 24 || !BASE64.test(input.replace(/\s+/g, ""))) return undefined;
  const head = decodeBase64(input.slice(0, 44));
  if (head === undefined || sniffImageType(head) === undefined) return undefined;
  const bytes = decodeBase64(input);
  if (bytes === undefined) return undefined;
  const mime = sniffImageType(bytes);
  return mime === undefined ? undefined : { mime, bytes };
}

// --- URLs --------------------------------------------------------------------------------------

const defaultResolver: DnsResolver = (hostname, recordType, options) =>
  Deno.resolveDns(hostname, recordType, options);

function sandboxUrlError(input: string, url: URL, what: string, cause: unknown): ImageError {
  const detail = cause instanceof Error ? ` (${cause.message})` : "";
  return new ImageError(
    "sandbox",
    input,
    `${what} ${url.href} was blocked by the bridge's sandbox, which allows network access only to this machine${detail}. ` +
      "Download the image and pass its file path, or pass it as a data URI; or run the bridge with --allow-net to let it fetch image URLs.",
    { cause },
  );
}

async function checkHost(input: string, url: URL, o: LoadImageOptions, signal: AbortSignal) {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const literal = nonPublicHostReason(host);
  if (literal !== undefined) {
    throw new ImageError(
      "private_address",
      input,
      `Refusing to fetch ${url.href}: ${url.hostname} is ${literal}. Image URLs must be public; for a local image pass its file path instead.`,
    );
  }
  if (isIpLiteral(host)) return;
  const resolver = o.resolveDns ?? defaultResolver;
  const lookups = await Promise.allSettled(
    (["A", "AAAA"] as const).map((t) => resolver(host, t, { signal })),
  );
  const addresses: string[] = [];
  const errors: unknown[] = [];
  for (const r of lookups) {
    if (r.status === "fulfilled") addresses.push(...r.value);
    else errors.push(r.reason);
  }
  const denied = errors.find(isSandboxError);
  if (denied !== undefined) {
    throw sandboxUrlError(input, url, "Looking up the host of", denied);
  }
  if (signal.aborted) throw abortError(input, url, signal);
  for (const address of addresses) {
    const reason = nonPublicAddressReason(address);
    if (reason !== undefined) {
      throw new ImageError(
        "private_address",
        input,
        `Refusing to fetch ${url.href}: ${url.hostname} resolves to ${address}, ${reason}. Image URLs must point to public hosts; for a local image pass its file path instead.`,
      );
    }
  }
  if (addresses.length === 0) {
    const why = errors[0] instanceof Error ? `: ${errors[0].message}` : "";
    throw new ImageError(
      "dns",
      input,
      `Cannot resolve ${url.hostname}${why}. Check the URL, or download the image and pass its file path.`,
      { cause: errors[0] },
    );
  }
}

function abortError(input: string, url: URL, signal: AbortSignal): ImageError {
  const timedOut = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
  return timedOut
    ? new ImageError(
      "timeout",
      input,
      `Fetching ${url.href} took too long and was stopped. Download the image and pass its file path instead.`,
      { cause: signal.reason },
    )
    : new ImageError("aborted", input, `Fetching ${url.href} was cancelled.`, {
      cause: signal.reason,
    });
}

async function readCapped(
  input: string,
  url: URL,
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {/* already failing; the size error matters */});
        throw new ImageError(
          "too_large",
          input,
          `${url.href} is larger than ${
            formatBytes(maxBytes)
          }, the most an image may be. Use a smaller image.`,
        );
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function loadUrl(input: string, o: LoadImageOptions): Promise<LoadedImage> {
  const maxBytes = o.maxBytes ?? MAX_IMAGE_BYTES;
  const maxRedirects = o.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const fetchFn = o.fetch ?? fetch;
  const original = new URL(input);
  const timeout = new AbortController();
  const timer = setTimeout(
    () => timeout.abort(new DOMException("image fetch timed out", "TimeoutError")),
    o.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
  );
  const signal = o.signal ? AbortSignal.any([o.signal, timeout.signal]) : timeout.signal;
  try {
    let url = original;
    for (let hop = 0;; hop++) {
      await checkHost(input, url, o, signal);
      let response: Response;
      try {
        response = await fetchFn(url.href, {
          redirect: "manual",
          signal,
          headers: {
            accept: "image/png,image/jpeg,image/webp,image/gif,image/bmp;q=0.9,*/*;q=0.1",
          },
        });
      } catch (error: unknown) {
        if (isSandboxError(error)) throw sandboxUrlError(input, url, "Fetching", error);
        if (signal.aborted) throw abortError(input, url, signal);
        throw new ImageError(
          "network",
          input,
          `Cannot fetch ${url.href}: ${
            error instanceof Error ? error.message : String(error)
          }. Check the URL and the network, or pass a file path instead.`,
          { cause: error },
        );
      }
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel().catch(() => {/* the redirect body is not needed */});
        const location = response.headers.get("location");
        if (location === null) {
          throw new ImageError(
            "http",
            input,
            `${url.href} answered ${response.status} without a Location header, so there is no image to fetch.`,
            { status: response.status },
          );
        }
        if (hop >= maxRedirects) {
          throw new ImageError(
            "too_many_redirects",
            input,
            `${original.href} redirected more than ${maxRedirects} times; giving up. Pass the final image URL or a file path.`,
          );
        }
        const next = new URL(location, url);
        if (next.protocol !== "http:" && next.protocol !== "https:") {
          throw new ImageError(
            "invalid_input",
            input,
            `${url.href} redirects to ${next.protocol} URL ${
              shorten(next.href)
            }; only http(s) is followed.`,
          );
        }
        url = next;
        continue;
      }
      if (!response.ok) {
        await response.body?.cancel().catch(() => {/* only the status matters */});
        throw new ImageError(
          "http",
          input,
          `Fetching ${url.href} failed with HTTP ${response.status}${
            response.statusText ? ` ${response.statusText}` : ""
          }. Check that the URL opens the image itself, or pass a file path instead.`,
          { status: response.status },
        );
      }
      const length = Number(response.headers.get("content-length") ?? NaN);
      if (Number.isFinite(length) && length > maxBytes) {
        await response.body?.cancel().catch(() => {/* refusing by size */});
        throw new ImageError(
          "too_large",
          input,
          `${url.href} is ${formatBytes(length)}; images may be at most ${
            formatBytes(maxBytes)
          }. Use a smaller image.`,
        );
      }
      let bytes: Uint8Array;
      try {
        bytes = response.body === null
          ? new Uint8Array()
          : await readCapped(input, url, response.body, maxBytes);
      } catch (error: unknown) {
        if (error instanceof ImageError) throw error;
        if (signal.aborted) throw abortError(input, url, signal);
        throw new ImageError(
          "network",
          input,
          `Reading ${url.href} failed: ${error instanceof Error ? error.message : String(error)}.`,
          { cause: error },
        );
      }
      const mime = sniffImageType(bytes);
      if (mime === undefined) {
        const type = response.headers.get("content-type")?.split(";")[0]?.trim();
        const content = describeContent(bytes);
        throw new ImageError(
          "unsupported_type",
          input,
          `${url.href} did not return a supported image (content-type ${
            type ?? "none"
          }, content looks like ${content}). ${
            content === "an HTML page"
              ? "It is a web page: pass the address of the image itself. "
              : ""
          }Supported types: ${SUPPORTED_IMAGE_TYPES}.${conversionHint(content)}`,
        );
      }
      return {
        dataUri: toDataUri(mime, bytes),
        mime,
        bytes: bytes.length,
        source: "url",
        label: original.href,
      };
    }
  } finally {
    clearTimeout(timer);
  }
}

// --- entry points ------------------------------------------------------------------------------

/**
 * Loads one image from a file path (absolute, relative to `cwd`, `~/...`, `file://`), a data URI,
 * bare base64 image data, or an http(s) URL, as a base64 data URI.
 * Throws {@linkcode ImageError} naming the input and what to do.
 */
export async function loadImage(input: string, o: LoadImageOptions = {}): Promise<LoadedImage> {
  const text = input.trim();
  if (text === "") {
    throw new ImageError(
      "invalid_input",
      input,
      "An image input is empty. Pass a file path, a data URI or an http(s) URL.",
    );
  }
  if (o.signal?.aborted) {
    throw new ImageError("aborted", input, "Loading the image was cancelled.", {
      cause: o.signal.reason,
    });
  }
  if (/^data:/i.test(text)) return loadDataUri(text, o);
  if (/^https?:\/\//i.test(text)) {
    try {
      new URL(text);
    } catch (cause) {
      throw new ImageError("invalid_input", input, `${shorten(text)} is not a valid URL.`, {
        cause,
      });
    }
    return await loadUrl(text, o);
  }
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(text)?.[1];
  if (scheme !== undefined && scheme.toLowerCase() !== "file" && scheme.length > 1) {
    throw new ImageError(
      "invalid_input",
      input,
      `${
        shorten(text)
      } uses the unsupported scheme "${scheme}:". Pass a file path, a data URI or an http(s) URL.`,
    );
  }
  const bare = bareBase64(text);
  if (bare !== undefined) {
    const maxBytes = o.maxBytes ?? MAX_IMAGE_BYTES;
    if (bare.bytes.length > maxBytes) {
      throw new ImageError(
        "too_large",
        input,
        `The base64 image carries ${formatBytes(bare.bytes.length)}; images may be at most ${
          formatBytes(maxBytes)
        }. Scale it down first.`,
      );
    }
    return {
      dataUri: toDataUri(bare.mime, bare.bytes),
      mime: bare.mime,
      bytes: bare.bytes.length,
      source: "data-uri",
      label: `data:${bare.mime}`,
    };
  }
  return await loadFile(text, o);
}

/**
 * Loads several images in parallel (at most `maxImages`, default 10), keeping their order.
 * When any fails, throws one {@linkcode ImageError} listing every failure (`failures`).
 */
export async function loadImages(
  inputs: readonly string[],
  o: LoadImagesOptions = {},
): Promise<LoadedImage[]> {
  const maxImages = o.maxImages ?? MAX_IMAGES;
  if (inputs.length === 0) {
    throw new ImageError(
      "invalid_input",
      "",
      "No images were given. Pass at least one file path, data URI or http(s) URL.",
    );
  }
  if (inputs.length > maxImages) {
    throw new ImageError(
      "too_many_images",
      `${inputs.length} images`,
      `${inputs.length} images were given; at most ${maxImages} fit in one call. Split them into several calls.`,
    );
  }
  const results = await Promise.allSettled(inputs.map((input) => loadImage(input, o)));
  const failures: ImageError[] = [];
  const images: LoadedImage[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") {
      images.push(r.value);
      return;
    }
    const input = inputs[i] ?? "";
    failures.push(
      r.reason instanceof ImageError
        ? r.reason
        : new ImageError("invalid_input", input, `Cannot load ${shorten(input)}: ${r.reason}`, {
          cause: r.reason,
        }),
    );
  });
  const [first] = failures;
  if (first === undefined) return images;
  if (failures.length === 1 && inputs.length === 1) throw first;
  const lines = failures.map((f) => `- ${f.message}`).join("\n");
  throw new ImageError(
    first.kind,
    first.input,
    `${failures.length} of ${inputs.length} images could not be loaded:\n${lines}`,
    { cause: first, failures },
  );
}

/** Supported image types by file extension, for callers that list files. */
export function mimeForExtension(path: string): ImageMime | undefined {
  return EXTENSION_TYPES[extensionOf(path)];
}
