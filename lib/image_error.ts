/**
 * The error every image loader throws ({@linkcode ImageError}, with a machine-readable `kind` and a
 * message that names the input and what to do), and the small helpers those messages share:
 * shortening long inputs, formatting sizes, and recognising a sandbox (permission) denial.
 */

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

/** `input` as is when short, else its start and its length (data URIs can be megabytes). */
export function shorten(input: string, max = 80): string {
  return input.length <= max ? input : `${input.slice(0, max - 20)}… (${input.length} chars)`;
}

/** A byte count for messages: "512 B", "3.5 KiB", "10.0 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** True when Deno's sandbox (NotCapable) or the operating system (PermissionDenied) refused. */
export function isSandboxError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}
