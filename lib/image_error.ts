/**
 * The error every image loader throws ({@linkcode ImageError}, with a machine-readable `kind` and a
 * message that names the input and what to do), and the small helpers those messages share:
 * shortening long inputs, formatting sizes, and recognising a sandbox (permission) denial.
 */
import { shorten } from "./text.ts";
import { BridgeError } from "./errors.ts";

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
