/**
 * Whether `lms` manages the server the bridge talks to: `lms` is installed, the base URL is on this
 * machine (loopback), and `lms server status` reports a running server on the same port. Only then
 * do `lms ps` and `lms load` speak about that server.
 */
import type { Lms } from "./lms.ts";
import type { LmsServerStatus } from "./lms_output.ts";
import { errorMessage } from "./errors.ts";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** Whether to use `lms`, and why (a sentence for status reports and logs). */
export interface LmsDecision {
  useLms: boolean;
  reason: string;
  /** What `lms server status` said, when the decision asked it (installed, loopback URL). */
  server?: LmsServerStatus;
  /** Why `lms server status` failed, when it was asked. */
  serverError?: string;
}

/** Decides whether `lms` applies to the server at `baseUrl`; a failing `lms` just means no. */
export async function lmsManages(
  { lms, baseUrl }: { lms: Lms; baseUrl: string },
): Promise<LmsDecision> {
  const decide = (useLms: boolean, reason: string, server?: LmsServerStatus): LmsDecision =>
    server === undefined ? { useLms, reason } : { useLms, reason, server };
  const location = await lms.locate();
  if (!location) return decide(false, "`lms` is not installed.");
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return decide(false, `The base URL ${baseUrl} is not a URL.`);
  }
  if (!LOOPBACK.has(url.hostname)) {
    return decide(
      false,
      `\`lms\` manages this machine's LM Studio, not the server at ${url.origin}.`,
    );
  }
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  let status: LmsServerStatus;
  try {
    status = await lms.serverStatus({ timeoutMs: 15_000 });
  } catch (error: unknown) {
    const serverError = errorMessage(error);
    return { useLms: false, reason: `\`lms server status\` failed: ${serverError}`, serverError };
  }
  if (!status.running) {
    // `lms ps` / `lms load` would only fail or wake LM Studio without its server: the bridge's
    // requests go to the server, so use its REST API once it answers.
    return decide(
      false,
      "`lms` reports that LM Studio's server is not running, so `lms` is not used; start it " +
        "with `lms server start`.",
      status,
    );
  }
  if (status.port !== undefined && status.port !== port) {
    return decide(
      false,
      `\`lms\` manages the LM Studio server on port ${status.port}, but the bridge uses ` +
        `${url.origin}.`,
      status,
    );
  }
  return decide(true, `\`lms\` (${location.path}) manages the server at ${url.origin}.`, status);
}
