/**
 * Images from local files: an absolute path, a path relative to the working directory, `~/...`
 * or a `file://` URL ({@linkcode loadFile}). The size is checked by stat before anything is read,
 * and the type by the first bytes before the rest is read.
 */
import { ImageError } from "./image_error.ts";
import {
  conversionHint,
  describeContent,
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

/** Options of {@linkcode loadFile}; every field has a production default. */
export interface ImageFileOptions {
  /** Base for relative paths (default: the process's working directory). */
  cwd?: string;
  /** Expansion of `~` (default: $HOME / %USERPROFILE%). */
  home?: string;
  /** Size limit per image (default {@linkcode MAX_IMAGE_BYTES}). */
  maxBytes?: number;
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
async function readInto(file: Deno.FsFile, buffer: Uint8Array, from: number): Promise<number> {
  let filled = from;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
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
    if (isSandboxDenial(error)) {
      throw new ImageError(
        "sandbox",
        input,
        `Reading ${path} was blocked by the bridge's sandbox. Run it with --allow-read for that path, or pass the image as a data URI.`,
        { cause: error },
      );
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new ImageError(
        "permission",
        input,
        `Cannot read ${path}: permission denied by the operating system. Check the file's permissions.`,
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
