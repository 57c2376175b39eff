/**
 * What an image is to the bridge: the supported types ({@linkcode ImageMime}), recognised by their
 * magic bytes ({@linkcode sniffImageType}) rather than by name or header, a description of content
 * that is not one ({@linkcode describeContent}), the size limit, the loaded form sent to LM Studio
 * ({@linkcode LoadedImage}, a base64 data URI), and the error every image loader throws
 * ({@linkcode ImageError}, with a machine-readable `kind` and a message that names the input and
 * what to do). Pure.
 */
import { BridgeError } from "./errors.ts";
import { shorten } from "./text.ts";

/** The largest image accepted, in bytes (10 MiB). */
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;

/** The most images one call may carry. */
export const MAX_IMAGES = 10;

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
export class ImageError extends BridgeError<ImageErrorKind> {
  override name = "ImageError";
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
    super(kind, message, options);
    this.input = shorten(input);
    if (options?.status !== undefined) this.status = options.status;
    this.failures = options?.failures ?? [];
  }
}

/** Short names of the supported types ("PNG", "JPEG"...), for messages. */
export const TYPE_NAMES: Record<ImageMime, string> = {
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

/** A hint on how to convert content that is a common unsupported image type; "" otherwise. Pure. */
export function conversionHint(content: string): string {
  if (/HEIC|AVIF|TIFF|SVG/.test(content)) {
    return " Convert it to PNG or JPEG first (e.g. `magick <file> out.png`; on macOS also " +
      "`sips -s format png <file> --out out.png`).";
  }
  return "";
}

/** `data:<mime>;base64,<data>` of these bytes. */
export function toDataUri(mime: ImageMime, bytes: Uint8Array): string {
  return `data:${mime};base64,${bytes.toBase64()}`;
}

function extensionOf(path: string): string {
  const m = /\.([A-Za-z0-9]+)$/.exec(path);
  return m?.[1]?.toLowerCase() ?? "";
}

/** The supported image type a file name's extension claims (`.jpg`: image/jpeg), or undefined. Pure. */
export function mimeForExtension(path: string): ImageMime | undefined {
  return EXTENSION_TYPES[extensionOf(path)];
}
