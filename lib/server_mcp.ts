/**
 * The `list_available_mcps` MCP tool, and the one rendering of the configured servers that both
 * it and the `mcps` CLI command use.
 */
import type { App } from "./app.ts";
import type { BridgeConfig, McpConfig } from "./config.ts";
import type { ServerState, ServerStatus } from "./pool.ts";
import type { McpServer } from "./sdk.ts";
import { errorResult, textResult } from "./server_result.ts";
import { TOOL_DEFINITIONS as TOOLS } from "./server_tools.ts";
import { launcherProblem } from "./launch.ts";
import { plural } from "./text.ts";

/** What `McpPool.status` returns. */
export interface PoolReport {
  config: McpConfig;
  servers: ServerStatus[];
  /** Servers that cannot start here (launcher not installed, or refused by the sandbox), why. */
  launchProblems?: Readonly<Record<string, string>>;
}

/**
 * `report` with the servers that cannot start here, found before starting them: a stdio
 * server whose command is not installed, or that the sandbox does not allow to run.
 */
export async function withLaunchProblems(report: PoolReport): Promise<PoolReport> {
  const problems: Record<string, string> = {};
  for (const entry of report.config.servers) {
    const status = report.servers.find((s) => s.name === entry.name);
    if (entry.transport !== "stdio" || entry.command === undefined || entry.disabled) continue;
    if (status === undefined || status.state === "connected" || status.state === "invalid") {
      continue;
    }
    const problem = await launcherProblem(entry.command);
    if (problem !== undefined) problems[entry.name] = problem;
  }
  return { ...report, launchProblems: problems };
}

const STATE_LABEL: Record<ServerState, string> = {
  "not-started": "not started",
  connecting: "connecting",
  connected: "connected",
  restarting: "restarting",
  failed: "failed",
  disabled: "disabled",
  invalid: "invalid",
  held: "held",
};

function indent(text: string, prefix: string): string {
  return text.split("\n").map((line) => prefix + line).join("\n");
}

/** A human- and model-readable summary of the configured servers and the config file. */
export function formatPoolReport(report: PoolReport): string {
  const { config, servers } = report;
  const lines: string[] = [];
  if (config.path === undefined) {
    lines.push(
      `No MCP config file found (searched: ${config.searched.join(", ") || "nothing"}).`,
      'Create .mcp.json with {"mcpServers": {"NAME": {"command": "...", "args": []}}} or set ' +
        "MCP_JSON_PATH.",
    );
  } else {
    lines.push(`Config: ${config.path}`);
  }
  // The config module's message names the file, the position and what stays in force.
  if (config.error !== undefined) lines.push(`Config error: ${config.error}`);
  lines.push(...bridgeLines(config.bridge));
  if (servers.length === 0) {
    // With an error, the file is missing or unusable: it does not "have no servers".
    if (config.path !== undefined && config.error === undefined) {
      lines.push("No servers are configured in it.");
    }
    return lines.join("\n");
  }
  const launch = report.launchProblems ?? {};
  const usable =
    servers.filter((s) =>
      s.state !== "disabled" && s.state !== "invalid" && s.state !== "held" &&
      launch[s.name] === undefined
    ).length;
  lines.push(`${plural(servers.length, "server")} (${usable} usable):`, "");
  for (const s of servers) {
    const facts = [s.transport, STATE_LABEL[s.state]];
    if (s.pid !== undefined) facts.push(`pid ${s.pid}`);
    if (s.toolCount !== undefined) facts.push(plural(s.toolCount, "tool"));
    facts.push(...offerFacts(s));
    lines.push(`${s.name}  [${facts.join(", ")}]`);
    lines.push(`  ${s.target}`);
    if (s.state !== "disabled" && s.state !== "invalid") {
      const note = s.sandbox.note === undefined ? "" : ` (${s.sandbox.note})`;
      lines.push(`  sandbox: ${s.sandbox.confinement}: ${s.sandbox.allows}${note}`);
    }
    if (s.envNames.length > 0) lines.push(`  env: ${s.envNames.join(", ")}`);
    if (s.timeoutMs !== undefined) lines.push(`  timeout: ${s.timeoutMs} ms (its config entry)`);
    const asked = requestsLine(s);
    if (asked !== undefined) lines.push(`  ${asked}`);
    for (const note of s.notes ?? []) lines.push(indent(`note: ${note}`, "  "));
    if (s.reason !== undefined) {
      const label = s.state === "invalid"
        ? "problem"
        : s.state === "failed" || s.state === "held"
        ? s.state
        : "note";
      lines.push(indent(`${label}: ${s.reason}`, "  "));
    }
    const problem = launch[s.name];
    if (problem !== undefined) lines.push(indent(`cannot start: ${problem}`, "  "));
  }
  return lines.join("\n");
}

/**
 * What a connected server offers beyond tools, for its line: "7 resources", "2 resource
 * templates", "4 prompts" once listed, the bare kind while only declared.
 */
function offerFacts(s: ServerStatus): string[] {
  const offers = s.offers;
  if (offers === undefined) return [];
  const facts: string[] = [];
  if (offers.resources) {
    facts.push(
      offers.resourceCount === undefined ? "resources" : plural(offers.resourceCount, "resource"),
    );
    if (offers.resourceTemplateCount !== undefined && offers.resourceTemplateCount > 0) {
      facts.push(plural(offers.resourceTemplateCount, "resource template"));
    }
  }
  if (offers.prompts) {
    facts.push(offers.promptCount === undefined ? "prompts" : plural(offers.promptCount, "prompt"));
  }
  return facts;
}

/** "asked for sampling 2 times, elicitation once (1 refused)" once a server asked anything. */
function requestsLine(s: ServerStatus): string | undefined {
  const r = s.requests;
  if (r === undefined) return undefined;
  const times = (n: number) => n === 1 ? "once" : `${n} times`;
  const asked = [
    r.sampling > 0 ? `sampling ${times(r.sampling)}` : "",
    r.elicitation > 0 ? `elicitation ${times(r.elicitation)}` : "",
  ].filter((x) => x !== "").join(", ");
  return `asked the bridge for ${asked}${
    r.refused > 0 ? ` (${r.refused} refused: no call running could answer)` : ""
  }`;
}

/** Which bridge settings file is in force, and what is wrong with it. */
function bridgeLines(bridge: BridgeConfig): string[] {
  const lines = [
    bridge.path !== undefined
      ? `Bridge settings: ${bridge.path}`
      : `Bridge settings: none, the defaults apply${
        bridge.searched === undefined ? "" : ` (no ${bridge.searched})`
      }`,
  ];
  if (bridge.error !== undefined) lines.push(`Bridge settings error: ${bridge.error}`);
  if (bridge.held !== undefined) lines.push(`Bridge settings held: ${bridge.held}`);
  for (const warning of bridge.warnings) lines.push(`Bridge settings warning: ${warning}`);
  return lines;
}

/** The report as plain JSON (the `mcps --json` document and the tool's structuredContent). */
export function poolReportJson(report: PoolReport): Record<string, unknown> {
  const { config, servers } = report;
  return {
    config: {
      path: config.path ?? null,
      searched: config.searched,
      error: config.error ?? null,
      errorPath: config.errorPath ?? null,
    },
    bridge: {
      path: config.bridge.path ?? null,
      searched: config.bridge.searched ?? null,
      error: config.bridge.error ?? null,
      errorPath: config.bridge.errorPath ?? null,
      warnings: config.bridge.warnings,
      held: config.bridge.held ?? null,
    },
    servers: servers.map((s) => ({
      name: s.name,
      transport: s.transport,
      target: s.target,
      state: s.state,
      reason: s.reason ?? null,
      envNames: s.envNames,
      toolCount: s.toolCount ?? null,
      offers: s.offers ?? null,
      requests: s.requests ?? null,
      timeoutMs: s.timeoutMs ?? null,
      notes: s.notes ?? [],
      pid: s.pid ?? null,
      usable: s.state !== "disabled" && s.state !== "invalid" &&
        report.launchProblems?.[s.name] === undefined,
      launchProblem: report.launchProblems?.[s.name] ?? null,
      confinement: s.sandbox.confinement,
      sandbox: { allows: s.sandbox.allows, note: s.sandbox.note ?? null },
    })),
  };
}

/** Registers `list_available_mcps`. */
export function registerListAvailableMcpsTool(server: McpServer, app: Pick<App, "pool">): void {
  server.registerTool("list_available_mcps", TOOLS.list_available_mcps, async () => {
    try {
      const report = await withLaunchProblems(await (await app.pool()).status());
      return textResult(formatPoolReport(report), poolReportJson(report));
    } catch (error: unknown) {
      return errorResult(error, "Could not read the MCP configuration");
    }
  });
}
