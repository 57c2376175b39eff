/**
 * `doctor`: checks LM Studio, `lms`, the MCP config, every configured server and the sandbox
 * permissions, in parallel, and says what to do about each problem. Each check is printed as it
 * finishes (a status line names what is still running), so a server that hangs in its handshake
 * does not hold back the rest; `--json` prints the whole report at the end.
 */
import type { App, CommandContext } from "./app.ts";
import { flag, parseArgs, UsageError } from "./args.ts";
import { entryTarget, isBridgeEntry, type ServerEntry } from "./config_entry.ts";
import { errorMessage } from "./errors.ts";
import { currentLaunch, extraFlags, onPath, widenCommand } from "./launch.ts";
import { clause, listNames, plural } from "./text.ts";
import type { McpConfig } from "./config.ts";
import { sandboxStatus } from "./sandbox.ts";
import type { EndpointHealth } from "./lmstudio_endpoints.ts";

/** ok: fine; warn: works with less; fail: something the user must fix. */
export type CheckStatus = "ok" | "warn" | "fail";

/** One line of the report. */
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}

const MARK: Record<CheckStatus, string> = { ok: "ok  ", warn: "warn", fail: "FAIL" };

async function checkLmStudio(app: App, signal: AbortSignal): Promise<Check[]> {
  const health = await app.client.health({ signal, timeoutMs: 5000 });
  if (health.endpoints) return await checkEndpoints(app, health.endpoints, signal);
  if (!health.ok) {
    return [{ name: "LM Studio", status: "fail", detail: health.error ?? "not answering" }];
  }
  return [{
    name: "LM Studio",
    status: "ok",
    detail: `${health.baseUrl} answers in ${health.latencyMs} ms` +
      (app.settings.token ? " (with LM_API_TOKEN)" : "") +
      (health.note ? `. ${health.note}` : ""),
  }, ...await checkModels(app, signal)];
}

/** The check's name for endpoint `name` of LMSTUDIO_ENDPOINTS. */
function endpointCheckName(name: string): string {
  return `endpoint ${name}`;
}

/**
 * One check per endpoint of LMSTUDIO_ENDPOINTS, then the merged model list. An endpoint that is
 * not healthy fails only when none is: while another answers, requests for the models it has go
 * on, and it is tried again after a back-off.
 */
async function checkEndpoints(
  app: App,
  endpoints: EndpointHealth[],
  signal: AbortSignal,
): Promise<Check[]> {
  const anyUp = endpoints.some((e) => e.ok);
  const checks = endpoints.map((e): Check => {
    const setting = app.settings.endpoints.find((s) => s.name === e.name);
    const name = endpointCheckName(e.name);
    if (!e.ok) {
      return {
        name,
        status: anyUp ? "warn" : "fail",
        detail: clause(e.error ?? `${e.baseUrl} is not answering`) +
          (anyUp
            ? "; its models are unavailable until it answers, the other endpoints serve on"
            : ""),
      };
    }
    return {
      name,
      status: "ok",
      detail: `${e.baseUrl} answers in ${e.latencyMs} ms, ` +
        (e.modelCount === undefined ? "model count unknown" : plural(e.modelCount, "model")) +
        (setting?.token ? ` (with ${setting.tokenVariable})` : "") +
        (e.note ? `. ${e.note}` : ""),
    };
  });
  return anyUp ? [...checks, ...await checkModels(app, signal)] : checks;
}

/** The model list (merged, with several endpoints) and DEFAULT_MODEL in it. */
async function checkModels(app: App, signal: AbortSignal): Promise<Check[]> {
  const checks: Check[] = [];
  try {
    const list = await app.client.listModels({ signal, timeoutMs: 5000 });
    const llms = list.models.filter((m) => m.type !== "embedding");
    const loaded = llms.filter((m) => m.state === "loaded");
    const known = list.source === "openai" ? "load state unknown" : `${loaded.length} loaded`;
    const via = list.endpoints
      ? list.endpoints.map((e) => `${e.name}: ${e.modelCount ?? "none"} via ${e.source ?? "-"}`)
        .join(", ")
      : `via ${list.source}`;
    // An endpoint that gave no list has its own check saying why.
    const said = new Set(list.endpoints?.flatMap((e) => e.error === null ? [] : [e.error]));
    const notes = list.notes.filter((n) => !said.has(n));
    checks.push({
      name: "models",
      status: llms.length ? "ok" : "fail",
      detail: llms.length
        ? `${list.models.length} models (${known}; ${via})` +
          (notes.length ? `. ${notes.map(clause).join("; ")}` : "")
        : "no chat model is available: download one in LM Studio (Discover tab) or `lms get`",
    });
    const wanted = app.settings.defaultModel;
    if (wanted !== undefined) {
      const found = list.models.find((m) => m.id === wanted);
      checks.push({
        name: "DEFAULT_MODEL",
        status: found ? "ok" : "fail",
        detail: found
          ? wanted + (found.endpoint ? ` (on ${found.endpoint})` : "")
          : `${wanted} is not among the server's models (${
            list.models.map((m) => m.id).join(", ") || "none"
          }); fix DEFAULT_MODEL`,
      });
    }
  } catch (error: unknown) {
    checks.push({ name: "models", status: "fail", detail: errorMessage(error) });
  }
  return checks;
}

async function checkLms(app: App, signal: AbortSignal): Promise<Check[]> {
  const where = await app.lms.locate();
  if (!where) {
    return [{
      name: "lms",
      status: "warn",
      detail: "not installed; model tools use LM Studio's REST API, else JIT loading. " +
        "Install it with `npx lmstudio install-cli` for load/unload with TTL.",
    }];
  }
  try {
    const status = await app.lms.serverStatus({ signal, timeoutMs: 10_000 });
    return [{
      name: "lms",
      status: "ok",
      detail: `${where.path}; server ${
        status.running ? `running on port ${status.port ?? "?"}` : "not running"
      }`,
    }];
  } catch (error: unknown) {
    return [{ name: "lms", status: "warn", detail: `${where.path}: ${errorMessage(error)}` }];
  }
}

async function permission(descriptor: Deno.PermissionDescriptor): Promise<boolean> {
  return (await Deno.permissions.query(descriptor)).state === "granted";
}

async function checkPermissions(app: App, servers: ServerEntry[]): Promise<Check[]> {
  const checks: Check[] = [];
  const url = new URL(app.settings.baseUrl);
  if (app.settings.namedEndpoints) {
    checks.push(...await checkEndpointHosts(app));
  } else if (!await permission({ name: "net", host: url.host })) {
    checks.push({
      name: "sandbox: network",
      status: "fail",
      detail: `${url.host} is outside the sandbox; allow it with: ` +
        `${widenCommand({ net: [url.host] })} (or use the loopback address 127.0.0.1)`,
    });
  }
  const commands = new Set<string>();
  for (const s of servers) {
    if (s.transport === "stdio" && s.command && !s.disabled && !s.problem) commands.add(s.command);
    if (s.transport !== "stdio" && s.url && !s.disabled && !s.problem) {
      const host = new URL(s.url).host;
      if (!await permission({ name: "net", host })) {
        checks.push({
          name: `sandbox: ${s.name}`,
          status: "fail",
          detail: `${entryTarget(s)} is outside the sandbox; allow it with: ${
            widenCommand({ net: [host] })
          }`,
        });
      }
    }
  }
  const refused: string[] = [];
  for (const command of commands) {
    // A launcher that is not installed is reported by its server's own check ("not found");
    // Deno also answers "not granted" for it, which would wrongly blame the sandbox.
    if (!await onPath(command)) continue;
    if (!await permission({ name: "run", command })) {
      const users = servers.filter((s) => s.command === command).map((s) => s.name).join(", ");
      refused.push(command);
      checks.push({
        name: `sandbox: ${command}`,
        status: "fail",
        detail: `${users} needs to run \`${command}\`, which the sandbox does not allow; ` +
          `allow it with: ${widenCommand({ run: [command] })}`,
      });
    }
  }
  if (refused.length > 1) {
    checks.push({
      name: "sandbox: all at once",
      status: "fail",
      detail: `allow ${listNames(refused)} with: ${widenCommand({ run: refused })}`,
    });
  }
  if (checks.length === 0) {
    const hosts = [...new Set(app.settings.endpoints.map((e) => new URL(e.baseUrl).hostname))];
    checks.push({
      name: "sandbox",
      status: "ok",
      detail: `network to ${listNames(hosts)} and every configured launcher allowed`,
    });
  }
  return checks;
}

/**
 * The endpoints of LMSTUDIO_ENDPOINTS the sandbox does not let the bridge reach (it allows
 * loopback only, plus what the install added), with the one command that allows them all.
 */
async function checkEndpointHosts(app: App): Promise<Check[]> {
  const blocked: Array<{ name: string; host: string }> = [];
  for (const e of app.settings.endpoints) {
    const host = new URL(e.baseUrl).host;
    if (!await permission({ name: "net", host })) blocked.push({ name: e.name, host });
  }
  if (blocked.length === 0) return [];
  const hosts = [...new Set(blocked.map((b) => b.host))];
  return [{
    name: "sandbox: network",
    status: "fail",
    detail: `${listNames(blocked.map((b) => `${b.name} (${b.host})`))} ${
      blocked.length === 1 ? "is" : "are"
    } outside the sandbox, which allows loopback only; allow ${
      hosts.length === 1 ? "it" : "them"
    } with: ${widenCommand({ net: hosts })}`,
  }];
}

async function checkServer(
  app: App,
  entry: ServerEntry,
  o: { config: McpConfig; signal: AbortSignal },
): Promise<Check> {
  const name = `server ${entry.name}`;
  if (entry.disabled) return { name, status: "ok", detail: "disabled (skipped)" };
  if (entry.problem) return { name, status: "fail", detail: entry.problem };
  // The autonomous tools skip it too: starting it here would start a second bridge.
  if (isBridgeEntry(entry)) {
    return { name, status: "ok", detail: "this bridge itself (not started; --all skips it too)" };
  }
  const started = performance.now();
  const sandbox = await sandboxStatus(entry, { config: o.config });
  const confined = `sandbox: ${sandbox.confinement}: ${sandbox.allows}` +
    (sandbox.note === undefined ? "" : ` (${sandbox.note})`);
  try {
    const tools = await (await app.pool()).listTools(entry.name, {
      signal: AbortSignal.any([o.signal, AbortSignal.timeout(60_000)]),
    });
    const ms = Math.round(performance.now() - started);
    return {
      name,
      status: sandbox.confinement === "none" ? "warn" : "ok",
      detail: `${tools.length} tools, connected in ${ms} ms (${entryTarget(entry)})\n${confined}`,
    };
  } catch (error: unknown) {
    return { name, status: "fail", detail: errorMessage(error) };
  }
}

/** How the bridge runs and whether Deno's update check (a query to Deno's host) is off. */
function checkLaunch(): Check[] {
  const launch = currentLaunch();
  const how = launch.via === "install"
    ? `installed command (deno task install${
      extraFlags(launch.allow).map((f) => ` ${f}`).join("")
    }, from ${launch.repo})`
    : launch.via === "compiled"
    ? "compiled binary"
    : `from source (${launch.repo}); \`deno task --quiet --cwd ${launch.repo} install\` puts a ` +
      "lmstudio-bridge command on PATH";
  let updateCheckOff = false;
  try {
    updateCheckOff = Deno.env.get("DENO_NO_UPDATE_CHECK") !== undefined;
  } catch {
    // Without env access the answer is unknown; report it as on.
  }
  return [
    { name: "launch", status: "ok", detail: how },
    updateCheckOff || launch.via === "compiled"
      ? { name: "update check", status: "ok", detail: "off (nothing leaves the machine)" }
      : {
        name: "update check",
        status: "warn",
        detail: "Deno's update check is on: each start asks Deno's download host for the newest " +
          "version, outside the sandbox. Set DENO_NO_UPDATE_CHECK=1 (the installed command and " +
          "the deno tasks do)",
      },
  ];
}

/** The checks, each group in parallel, each handed to `onDone` as it finishes. */
async function runChecks(
  app: App,
  signal: AbortSignal,
  onDone: (checks: Check[], pending: string[]) => void,
): Promise<Check[]> {
  const config = await app.config.current();
  const configChecks: Check[] = [];
  if (config.path === undefined) {
    configChecks.push({
      name: "MCP config",
      status: config.error ? "fail" : "warn",
      detail: config.error ??
        `no config file found (searched ${config.searched.join(", ")}); autonomous tools need one`,
    });
  } else {
    const enabled = config.servers.filter((s) => !s.disabled).length;
    configChecks.push({
      name: "MCP config",
      status: config.error ? "fail" : "ok",
      detail: config.error ??
        `${config.path}: ${config.servers.length} servers (${enabled} enabled)`,
    });
  }
  const groups: Array<{ label: string; run: Promise<Check[]> }> = [
    { label: "LM Studio", run: checkLmStudio(app, signal) },
    { label: "lms", run: checkLms(app, signal) },
    ...config.servers.map((s) => ({
      label: s.name,
      run: checkServer(app, s, { config, signal }).then((c) => [c]),
    })),
    { label: "sandbox", run: checkPermissions(app, config.servers) },
  ];
  const known = [...configChecks, ...checkLaunch()];
  onDone(known, groups.map((g) => g.label));
  const pending = new Set(groups.map((g) => g.label));
  const results = await Promise.all(groups.map(async (g) => {
    const checks = await g.run;
    pending.delete(g.label);
    onDone(checks, [...pending]);
    return checks;
  }));
  // The report's order: LM Studio, lms, the config, each server, the sandbox, the launch.
  const [lmstudio = [], lms = [], ...rest] = results;
  return [
    ...lmstudio,
    ...lms,
    ...configChecks,
    ...rest.flat(),
    ...known.slice(configChecks.length),
  ];
}

function checkLines(checks: Check[], width: number): string {
  const indent = " ".repeat(MARK.ok.length + width + 4);
  return checks.map((c) => {
    // Details with several lines (a server's stderr) stay inside their check's block.
    const lines = c.detail.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "");
    const [first = "", ...more] = lines;
    return [`${MARK[c.status]}  ${c.name.padEnd(width)}  ${first}`, ...more.map((l) => indent + l)]
      .join("\n");
  }).join("\n");
}

/** `doctor [--json]` */
export async function doctorCommand(argv: string[], ctx: CommandContext): Promise<number> {
  const args = parseArgs(argv, { json: { type: "boolean" } }, "doctor");
  if (args.positionals.length > 0) {
    throw new UsageError(`doctor takes no arguments, got ${args.positionals.join(" ")}.`, "doctor");
  }
  const json = flag(args, "json");
  const { out } = ctx;
  // The names are known before the checks run, except those of sandbox findings.
  const servers = (await ctx.app.config.current()).servers.map((s) => `server ${s.name}`);
  const endpoints = ctx.app.settings.namedEndpoints
    ? ctx.app.settings.endpoints.map((e) => endpointCheckName(e.name))
    : [];
  const width = Math.max(15, ...[...servers, ...endpoints].map((n) => n.length));
  const checks = await runChecks(ctx.app, ctx.signal, (done, pending) => {
    if (json) return;
    if (done.length > 0) out.stdout(checkLines(done, width) + "\n");
    out.status(pending.length === 0 ? "" : `checking ${listNames(pending, 4)}…`);
  });
  const failed = checks.some((c) => c.status === "fail");
  if (json) out.stdout(JSON.stringify({ ok: !failed, checks }, null, 2) + "\n");
  return failed ? 1 : 0;
}
