/**
 * Images from http(s) URLs ({@linkcode loadUrl}), fetched with care because the URL comes from a
 * model: the host must be public, both as a literal and after resolving the name (so a public name
 * that points inside the network is refused too); redirects are followed by hand and every target
 * is checked the same way; the size is capped by Content-Length and while the body streams; one
 * time limit covers redirects and body. The address checks are pure: parsing IPv4 and IPv6
 * literals and saying why an address or host name is not on the public internet (loopback,
 * private, link-local, CGNAT, reserved, IPv4 embedded in IPv6, `localhost`, `*.local`, ...;
 * {@linkcode nonPublicAddressReason}, {@linkcode nonPublicHostReason}).
 */
import { concatBytes } from "./byte_stream.ts";
import {
  conversionHint,
  describeContent,
  ImageError,
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

/** The four octets of a dotted IPv4 address, or undefined. Pure. */
function parseIpv4(text: string): [number, number, number, number] | undefined {
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

/** True when `hostname` is an IPv4 or IPv6 address literal (brackets and zone allowed). Pure. */
export function isIpLiteral(hostname: string): boolean {
  return parseIpv4(hostname) !== undefined || parseIpv6(hostname) !== undefined;
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
  return concatBytes(chunks, total);
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
