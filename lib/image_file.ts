/**
 * Images the bridge reads itself rather than fetches: local files ({@linkcode loadFile}: an
 * absolute path, a path relative to the working directory, `~/...` or a `file://` URL; the size is
 * checked by stat before anything is read, and the type by the first bytes before the rest is
 * read) and images passed inline ({@linkcode loadDataUri} for `data:image/...;base64,...` URIs,
 * {@linkcode loadBareBase64} for bare base64 image data without the `data:` prefix, as models often
 * send it; standard and URL-safe base64 are accepted, line breaks tolerated, and the decoded bytes
 * decide the type, whatever the URI declares).
 */
import {
  conversionHint,
  describeContent,
  ImageError,
  type ImageMime,
  type LoadedImage,
  MAX_IMAGE_BYTES,
  mimeForExtension,
  SNIFF_BYTES,
  sniffImageType,
  SUPPORTED_IMAGE_TYPES,
  toDataUri,
  TYPE_NAMES,
} from "./image_type.ts";
import { homeDir, isAbsolute, resolve } from "./path.ts";
import { formatBytes, shorten } from "./text.ts";
import { isSandboxDenial } from "./errors.ts";
import { raceAbort } from "./abort.ts";

/** Options of {@linkcode loadFile}; every field has a production default. */
export interface ImageFileOptions {
  /** Base for relative paths (default: the process's working directory). */
  cwd?: string;
  /** Expansion of `~` (default: $HOME / %USERPROFILE%). */
  home?: string;
  /** Size limit per image (default {@linkcode MAX_IMAGE_BYTES}). */
  maxBytes?: number;
  /** Cancels the read (also a read stuck on a file that turned into a FIFO after the check). */
  signal?: AbortSignal;
}

function filePathOf(input: string, o: ImageFileOptions): string {
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
async function readInto(
  file: Deno.FsFile,
  buffer: Uint8Array,
  from: number,
  signal: AbortSignal | undefined,
): Promise<number> {
  let filled = from;
  while (filled < buffer.length) {
    if (signal?.aborted) throw signal.reason;
    const n = await raceAbort(file.read(buffer.subarray(filled)), signal);
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/** Why `path` cannot be read: not found, blocked by the sandbox or the OS, or another error. */
function openFailure(
  error: unknown,
  input: string,
  path: string,
  relativeNote: string,
): ImageError {
  if (error instanceof Deno.errors.NotFound) {
    return new ImageError(
      "not_found",
      input,
      `Image file not found: ${path}${relativeNote}. Check the path, or pass a data URI or URL.`,
      { cause: error },
    );
  }
  if (isSandboxDenial(error)) {
    return new ImageError(
      "sandbox",
      input,
      `Reading ${path} was blocked by the bridge's sandbox. Run it with --allow-read for that path, or pass the image as a data URI.`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new ImageError(
      "permission",
      input,
      `Cannot read ${path}: permission denied by the operating system. Check the file's permissions.`,
      { cause: error },
    );
  }
  return new ImageError("invalid_input", input, `Cannot open ${path}: ${String(error)}.`, {
    cause: error,
  });
}

/** The refusal of something that is not a regular file (a directory, a FIFO, a device). */
function notAFile(input: string, path: string, info: Deno.FileInfo): ImageError {
  const what = info.isDirectory
    ? "a directory"
    : info.isFifo
    ? "a named pipe (FIFO)"
    : info.isCharDevice || info.isBlockDevice
    ? "a device"
    : info.isSocket
    ? "a socket"
    : "not a regular file";
  return new ImageError(
    "not_a_file",
    input,
    `${path} is ${what}, not an image file. Pass the path of an image file.`,
  );
}

function cancelled(input: string, signal: AbortSignal): ImageError {
  return new ImageError("aborted", input, "Loading the image was cancelled.", {
    cause: signal.reason,
  });
}

/** Reads one image file as a data URI; throws {@linkcode ImageError} naming the file and what to do. */
export async function loadFile(input: string, o: ImageFileOptions): Promise<LoadedImage> {
  const path = filePathOf(input, o);
  const maxBytes = o.maxBytes ?? MAX_IMAGE_BYTES;
  const relativeNote = isAbsolute(input) || /^(file:|~)/i.test(input)
    ? ""
    : ` (resolved against the bridge's working directory ${
      o.cwd ?? Deno.cwd()
    }; pass an absolute path if you meant another directory)`;
  // Stat before opening: opening a FIFO or a device for reading can block forever.
  let before: Deno.FileInfo;
  try {
    before = await Deno.stat(path);
  } catch (error: unknown) {
    throw openFailure(error, input, path, relativeNote);
  }
  if (!before.isFile) throw notAFile(input, path, before);
  let file: Deno.FsFile;
  try {
    file = await raceAbort(Deno.open(path, { read: true }), o.signal);
  } catch (error: unknown) {
    if (o.signal?.aborted) throw cancelled(input, o.signal);
    throw openFailure(error, input, path, relativeNote);
  }
  try {
    const info = await file.stat();
    if (!info.isFile) throw notAFile(input, path, info);
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
    const head = await readInto(
      file,
      buffer.subarray(0, Math.min(SNIFF_BYTES, info.size)),
      0,
      o.signal,
    );
    const mime = sniffImageType(buffer.subarray(0, head));
    if (mime === undefined) {
      const content = describeContent(buffer.subarray(0, head));
      const claimed = mimeForExtension(path);
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
    const filled = await readInto(file, buffer, head, o.signal);
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
  } catch (error: unknown) {
    if (o.signal?.aborted && !(error instanceof ImageError)) throw cancelled(input, o.signal);
    throw error;
  } finally {
    file.close();
  }
}

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
