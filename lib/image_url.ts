/**
 * Images from http(s) URLs ({@linkcode loadUrl}), fetched with care because the URL comes from a
 * model: the host must be public, both as a literal and after resolving the name (so a public name
 * that points inside the network is refused too); redirects are followed by hand and every target
 * is checked the same way; the size is capped by Content-Length and while the body streams; one
 * time limit covers redirects and body.
 */
import { isIpLiteral, nonPublicAddressReason, nonPublicHostReason } from "./addresses.ts";
import { ImageError } from "./image_error.ts";
import {
  conversionHint,
  describeContent,
  type LoadedImage,
  MAX_IMAGE_BYTES,
  sniffImageType,
  SUPPORTED_IMAGE_TYPES,
  toDataUri,
} from "./image_type.ts";
import { formatBytes, shorten } from "./text.ts";
import { isSandboxDenial } from "./errors.ts";

/** Default time limit for fetching one URL, redirects included. */
const DEFAULT_FETCH_TIMEOUT_MS = 20_000;
/** Default number of redirects followed (each target re-checked). */
const DEFAULT_MAX_REDIRECTS = 5;

/** Resolves a host name to addresses of one record type (Deno.resolveDns in production). */
export type DnsResolver = (
  hostname: string,
  recordType: "A" | "AAAA",
  options?: { signal?: AbortSignal },
) => Promise<string[]>;

/** Options of {@linkcode loadUrl}; every field has a production default. */
export interface ImageUrlOptions {
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

async function checkHost(input: string, url: URL, o: ImageUrlOptions, signal: AbortSignal) {
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
  const denied = errors.find(isSandboxDenial);
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

/**
 * Fetches one http(s) image URL as a data URI after checking its host (and every redirect's);
 * throws {@linkcode ImageError} naming the URL and what to do.
 */
export async function loadUrl(input: string, o: ImageUrlOptions): Promise<LoadedImage> {
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
        if (isSandboxDenial(error)) throw sandboxUrlError(input, url, "Fetching", error);
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
