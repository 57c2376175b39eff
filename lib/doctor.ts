/**
 * `doctor`: checks LM Studio, `lms`, the MCP config, every configured server and the sandbox
 * permissions, in parallel, and says what to do about each problem.
 */
import type { App, CommandContext } from "./app.ts";
import { flag, parseArgs, UsageError } from "./args.ts";
import { isFile, pathCandidates } from "./lms_locate.ts";
import { entryTarget, type ServerEntry } from "./config_entry.ts";
import { errorMessage } from "./errors.ts";

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
  if (!health.ok) {
    return [{ name: "LM Studio", status: "fail", detail: health.error ?? "not answering" }];
  }
  const checks: Check[] = [{
    name: "LM Studio",
    status: "ok",
    detail: `${health.baseUrl} answers in ${health.latencyMs} ms` +
      (app.settings.token ? " (with LM_API_TOKEN)" : ""),
  }];
  try {
    const list = await app.client.listModels({ signal, timeoutMs: 5000 });
    const llms = list.models.filter((m) => m.type !== "embedding");
    const loaded = llms.filter((m) => m.state === "loaded");
    const known = list.source === "openai" ? "load state unknown" : `${loaded.length} loaded`;
    checks.push({
      name: "models",
      status: llms.length ? "ok" : "fail",
      detail: llms.length
        ? `${list.models.length} models (${known}; via ${list.source})` +
          (list.notes.length ? `. ${list.notes.join(" ")}` : "")
        : "no chat model is available: download one in LM Studio (Discover tab) or `lms get`",
    });
    const wanted = app.settings.defaultModel;
    if (wanted !== undefined) {
      const found = list.models.some((m) => m.id === wanted);
      checks.push({
        name: "DEFAULT_MODEL",
        status: found ? "ok" : "fail",
        detail: found
          ? wanted
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

/** Whether `command` names an existing file directly or through PATH. */
async function onPath(command: string): Promise<boolean> {
  if (command.includes("/")) return await isFile(command);
  for (const candidate of pathCandidates(command)) {
    if (await isFile(candidate)) return true;
  }
  return false;
}

async function checkPermissions(app: App, servers: ServerEntry[]): Promise<Check[]> {
  const checks: Check[] = [];
  const url = new URL(app.settings.baseUrl);
  if (!await permission({ name: "net", host: url.host })) {
    checks.push({
      name: "sandbox: network",
      status: "fail",
      detail: `${url.host} is outside the sandbox; run with --allow-net=${url.hostname} ` +
        "(or use the loopback address 127.0.0.1)",
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
          detail: `${entryTarget(s)} is outside the sandbox; rebuild with --allow-net=${
            new URL(s.url).hostname
          }`,
        });
      }
    }
  }
  for (const command of commands) {
    // A launcher that is not installed is reported by its server's own check ("not found");
    // Deno also answers "not granted" for it, which would wrongly blame the sandbox.
    if (!await onPath(command)) continue;
    if (!await permission({ name: "run", command })) {
      const users = servers.filter((s) => s.command === command).map((s) => s.name).join(", ");
      checks.push({
        name: `sandbox: ${command}`,
        status: "fail",
        detail: `${users} needs to run \`${command}\`, which the sandbox does not allow; ` +
          `rebuild with --allow-run=${command} (add it to "run" in deno.json's "bridge" permission set)`,
      });
    }
  }
  if (checks.length === 0) {
    checks.push({
      name: "sandbox",
      status: "ok",
      detail: `network to ${url.hostname} and every configured launcher allowed`,
    });
  }
  return checks;
}

async function checkServer(app: App, entry: ServerEntry, signal: AbortSignal): Promise<Check> {
  const name = `server ${entry.name}`;
  if (entry.disabled) return { name, status: "ok", detail: "disabled (skipped)" };
  if (entry.problem) return { name, status: "fail", detail: entry.problem };
  const started = performance.now();
  try {
    const tools = await (await app.pool()).listTools(entry.name, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(60_000)]),
    });
    const ms = Math.round(performance.now() - started);
    return {
      name,
      status: "ok",
      detail: `${tools.length} tools, connected in ${ms} ms (${entryTarget(entry)})`,
    };
  } catch (error: unknown) {
    return { name, status: "fail", detail: errorMessage(error) };
  }
}

/** Runs every check; independent checks run in parallel. */
async function runChecks(app: App, signal: AbortSignal): Promise<Check[]> {
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
  const [lmstudio, lms, permissions, ...servers] = await Promise.all([
    checkLmStudio(app, signal),
    checkLms(app, signal),
    checkPermissions(app, config.servers),
    ...config.servers.map((s) => checkServer(app, s, signal)),
  ]);
  return [...lmstudio, ...lms, ...configChecks, ...servers, ...permissions];
}

/** `doctor [--json]` */
export async function doctorCommand(argv: string[], ctx: CommandContext): Promise<number> {
  const args = parseArgs(argv, { json: { type: "boolean" } }, "doctor");
  if (args.positionals.length > 0) {
    throw new UsageError(`doctor takes no arguments, got ${args.positionals.join(" ")}.`, "doctor");
  }
  const checks = await runChecks(ctx.app, ctx.signal);
  const failed = checks.some((c) => c.status === "fail");
  if (flag(args, "json")) {
    ctx.out.stdout(JSON.stringify({ ok: !failed, checks }, null, 2) + "\n");
  } else {
    const width = Math.max(...checks.map((c) => c.name.length));
    const indent = " ".repeat(MARK.ok.length + width + 4);
    ctx.out.stdout(
      checks.map((c) => {
        // Details with several lines (a server's stderr) stay inside their check's block.
        const lines = c.detail.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "");
        const [first = "", ...more] = lines;
        return [
          `${MARK[c.status]}  ${c.name.padEnd(width)}  ${first}`,
          ...more.map((l) => indent + l),
        ]
          .join("\n");
      }).join("\n") + "\n",
    );
  }
  return failed ? 1 : 0;
}
