/**
 * Images passed inline: `data:image/...;base64,...` URIs ({@linkcode loadDataUri}) and bare base64
 * image data without the `data:` prefix, as models often send it ({@linkcode loadBareBase64}).
 * Standard and URL-safe base64 are accepted, line breaks tolerated; the decoded bytes decide the
 * type, whatever the URI declares. Pure (no I/O).
 */
import { ImageError } from "./image_error.ts";
import {
  conversionHint,
  describeContent,
  type ImageMime,
  type LoadedImage,
  MAX_IMAGE_BYTES,
  sniffImageType,
  SUPPORTED_IMAGE_TYPES,
  toDataUri,
} from "./image_type.ts";
import { formatBytes, shorten } from "./text.ts";

/** Options of the inline loaders. */
export interface InlineImageOptions {
  /** Size limit per image (default {@linkcode MAX_IMAGE_BYTES}). */
  maxBytes?: number;
}

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

/**
 * Loads a `data:` URI holding a base64 image; throws {@linkcode ImageError} (`invalid_data_uri`,
 * `too_large`, `unsupported_type`) saying what is wrong with it.
 */
export function loadDataUri(input: string, o: InlineImageOptions): LoadedImage {
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

/**
 * Bare base64 of an image as a loaded image, or undefined when `text` is not that (then it is
 * taken for a file path). Throws {@linkcode ImageError} when it is an image over the size limit;
 * `input` is the input as given, for the error.
 */
export function loadBareBase64(
  text: string,
  input: string,
  o: InlineImageOptions,
): LoadedImage | undefined {
  const bare = bareBase64(text);
  if (bare === undefined) return undefined;
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
