/**
 * Image inputs for vision models: file paths, `file://` URLs, data URIs and http(s) URLs become
 * base64 data URIs that LM Studio's OpenAI-compatible API accepts in `image_url` parts.
 *
 * Every input is checked before it is sent: the type by its magic bytes (PNG, JPEG, GIF, WebP,
 * BMP; image_type.ts), the size (at most `MAX_IMAGE_BYTES`, checked by stat before a file is read
 * and while a download streams), and for URLs the address (image_url.ts): private, loopback and
 * link-local hosts are refused, both as literals and after resolving the name (so a public name
 * that points inside the network is refused too), and every redirect target is checked the same
 * way. This module picks the loader for each input (image_file.ts for files, data
 * URIs and bare base64; image_url.ts for URLs) and loads several at once.
 */
import { type ImageFileOptions, loadBareBase64, loadDataUri, loadFile } from "./image_file.ts";
import { ImageError, type LoadedImage, MAX_IMAGES } from "./image_type.ts";
import { type ImageUrlOptions, loadUrl } from "./image_url.ts";
import { shorten } from "./text.ts";

export { MAX_IMAGES };

/** Options for {@linkcode loadImage}; every field has a production default. */
export interface LoadImageOptions extends ImageFileOptions, ImageUrlOptions {}

/** Options for {@linkcode loadImages}. */
export interface LoadImagesOptions extends LoadImageOptions {
  /** Most images per call (default {@linkcode MAX_IMAGES}). */
  maxImages?: number;
}

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
  const bare = loadBareBase64(text, input, o);
  if (bare !== undefined) return bare;
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
