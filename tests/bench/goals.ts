/**
 * The summary at the end of `deno task bench`: one row per measure, the bridge's figure beside
 * what it is compared with in the same run, their ratio, and PASS or MISS against the goal.
 * Ratios, not absolute times, are what carries from one machine to another; the absolute
 * figures are printed to show what the ratio is made of.
 */

/** One line of the summary. */
export interface Row {
  /** What is measured. */
  measure: string;
  /** The bridge's figure (or the peer's, on a comparison row). */
  value: string;
  /** What it is compared with, and that figure. */
  against: string;
  /** value / against, when both are numbers of the same kind. */
  ratio?: number;
  /** The goal, as printed ("<= 1.2x", "<= 1 us"). */
  goal?: string;
  /** PASS, MISS, or "not measured: why". */
  verdict?: string;
}

/** Milliseconds, with a precision that suits the size. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "?";
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(1)} ms`;
  if (value >= 1) return `${value.toFixed(2)} ms`;
  return `${(value * 1000).toFixed(value >= 0.01 ? 0 : 2)} us`;
}

/** Bytes as MiB (or GiB past 1 GiB). */
export function mib(bytes: number): string {
  const m = bytes / 2 ** 20;
  return m >= 1024 ? `${(m / 1024).toFixed(2)} GiB` : `${m.toFixed(0)} MiB`;
}

/** A row comparing `value` with `against` as a ratio, with a PASS/MISS when `goal` is given. */
export function ratioRow(
  measure: string,
  value: { text: string; n: number },
  against: { label: string; text: string; n: number },
  goal?: number,
): Row {
  const ratio = value.n / against.n;
  return {
    measure,
    value: value.text,
    against: `${against.label} ${against.text}`,
    ratio,
    ...(goal === undefined ? {} : {
      goal: `<= ${goal}x`,
      verdict: Number.isFinite(ratio) && ratio <= goal ? "PASS" : "MISS",
    }),
  };
}

/**
 * A row with an absolute goal (`value <= limit`); `against`, when given, is shown with the ratio
 * to it for reference (`note` instead: a plain remark in that column).
 */
export function limitRow(
  measure: string,
  value: { text: string; n: number },
  limit: { text: string; n: number },
  against: { label: string; text: string; n: number } | { note: string },
): Row {
  return {
    measure,
    value: value.text,
    ...("note" in against
      ? { against: against.note }
      : { against: `${against.label} ${against.text}`, ratio: value.n / against.n }),
    goal: `<= ${limit.text}`,
    verdict: value.n <= limit.n ? "PASS" : "MISS",
  };
}

/** A row that could not be measured here, saying why. */
export function notMeasured(measure: string, why: string, goal?: string): Row {
  return { measure, value: "-", against: "-", goal, verdict: `not measured: ${why}` };
}

function ratioText(ratio: number): string {
  if (ratio >= 10) return ratio.toFixed(1);
  return ratio >= 0.01 ? ratio.toFixed(2) : ratio.toPrecision(2);
}

/** The rows as a Markdown table (what the README's Performance section quotes). */
export function table(rows: readonly Row[]): string {
  const head = ["measure", "bridge", "compared with", "ratio", "goal", "verdict"];
  const cells = rows.map((r) => [
    r.measure,
    r.value,
    r.against,
    r.ratio === undefined ? "" : `${ratioText(r.ratio)}x`,
    r.goal ?? "",
    r.verdict ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}
