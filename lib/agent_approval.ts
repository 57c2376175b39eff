/**
 * Approval of the tool calls the local model makes: which rule decides a call, and the gate every
 * call of a task passes before it runs (asking the person behind the task when the rule says so).
 *
 * A call is decided on the catalog entry it resolved to, by the tool's real server and name and
 * its MCP annotations, never on the name the model wrote (`FILESYSTEM__Write_File`, a call printed
 * as text, a namespaced or a raw name all end at the same entry, and unknown names run nothing).
 * The rules come on top of `allowed_tools`, which decides what is offered at all.
 *
 * Which rule decides, most specific first ({@linkcode matchRule}):
 * 1. the server and the tool named exactly: `servers.S.tools["t"]`, `tools["S/t"]`;
 * 2. the server named exactly, the tool by a glob: `servers.S.tools["write_*"]`, `tools["S/write_*"]`;
 * 3. the server by a glob, the tool named exactly: `tools["<server glob>/t"]`, `tools["t"]` (a key
 *    without "/" is a tool on every server);
 * 4. globs for both: `tools["<server glob>/<tool glob>"]`, `tools["*"]`.
 * Within one of these, the tool pattern with more literal characters (not `*` or `?`) wins, then
 * the server pattern with more, then a server's own section over the global one, then the
 * stricter rule (deny, then ask, then allow).
 *
 * No rule matches: a tool whose annotations say readOnlyHint runs, any other is asked about.
 * `approveAll` (`run --yes`) turns every ask into allow; a deny rule still refuses.
 *
 * Asking ({@linkcode ApprovalGate}): one question at a time per task, however many calls of a
 * round need one; "for this task" approves later calls of the same tool without asking again.
 * A refused call (a deny rule, the user said no, nobody could be asked) goes back to the model as
 * a tool result saying so; it never ends the task.
 */
import type {
  ApprovalRecord,
  ApprovalRequest,
  ApprovalRule,
  ApprovalRules,
  Approver,
} from "./agent_types.ts";
import type { TraceSink } from "./agent_trace.ts";
import { errorMessage } from "./errors.ts";
import { clause, shorten } from "./text.ts";
import { type CatalogEntry, globToRegExp } from "./tool_catalog.ts";
import { redact } from "./redact.ts";

/** A rule that matched a call, and where it is written (`servers.fs.tools["write_*"]`). */
export interface MatchedRule {
  rule: ApprovalRule;
  source: string;
}

/** How specific a matching rule is; larger wins, field by field. */
interface Candidate extends MatchedRule {
  /** 4: exact server and tool ... 1: globs for both. */
  level: number;
  /** Literal characters of the tool pattern, then of the server pattern. */
  literalTool: number;
  literalServer: number;
  /** From the server's own section. */
  own: boolean;
}

const STRICTNESS: Record<ApprovalRule, number> = { deny: 3, ask: 2, allow: 1 };

const patterns = new Map<string, RegExp>();

/** Whether the glob `pattern` (`*`, `?`) matches `name`; exact text needs no wildcard. */
function globMatches(pattern: string, name: string): boolean {
  if (!/[*?]/.test(pattern)) return pattern === name;
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = globToRegExp(pattern);
    patterns.set(pattern, re);
  }
  return re.test(name);
}

function isGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

function literalChars(pattern: string): number {
  return pattern.replace(/[*?]/g, "").length;
}

/** The rules of `rules` that match `server`/`tool`, with their specificity. */
function candidates(rules: ApprovalRules, server: string, tool: string): Candidate[] {
  const found: Candidate[] = [];
  const own = rules.servers?.[server]?.tools ?? {};
  for (const [pattern, rule] of Object.entries(own)) {
    if (!globMatches(pattern, tool)) continue;
    found.push({
      rule,
      source: `servers.${server}.tools[${JSON.stringify(pattern)}]`,
      level: isGlob(pattern) ? 3 : 4,
      literalTool: literalChars(pattern),
      literalServer: server.length,
      own: true,
    });
  }
  for (const [key, rule] of Object.entries(rules.tools ?? {})) {
    const slash = key.indexOf("/");
    const serverPattern = slash < 0 ? "*" : key.slice(0, slash);
    const toolPattern = slash < 0 ? key : key.slice(slash + 1);
    if (!globMatches(serverPattern, server) || !globMatches(toolPattern, tool)) continue;
    const exactServer = !isGlob(serverPattern);
    const exactTool = !isGlob(toolPattern);
    found.push({
      rule,
      source: `tools[${JSON.stringify(key)}]`,
      level: exactServer ? (exactTool ? 4 : 3) : (exactTool ? 2 : 1),
      literalTool: literalChars(toolPattern),
      literalServer: literalChars(serverPattern),
      own: false,
    });
  }
  return found;
}

/** The rule that decides `server`/`tool` (see the module's documentation), if any matches. */
export function matchRule(
  rules: ApprovalRules | undefined,
  server: string,
  tool: string,
): MatchedRule | undefined {
  if (rules === undefined) return undefined;
  let best: Candidate | undefined;
  for (const c of candidates(rules, server, tool)) {
    if (best === undefined) best = c;
    else {
      const order = c.level - best.level || c.literalTool - best.literalTool ||
        c.literalServer - best.literalServer || Number(c.own) - Number(best.own) ||
        STRICTNESS[c.rule] - STRICTNESS[best.rule];
      if (order > 0) best = c;
    }
  }
  return best === undefined ? undefined : { rule: best.rule, source: best.source };
}

/** What the rules say about one call before anybody is asked, and why. */
export interface Verdict {
  action: ApprovalRule;
  rule: string;
}

/**
 * The verdict on a call of `entry`: its rule, else `fallback` when given, else the default by
 * its annotations.
 */
export function verdictFor(
  entry: Pick<CatalogEntry, "server" | "tool" | "readOnly">,
  o: { rules?: ApprovalRules; approveAll?: boolean; fallback?: Verdict },
): Verdict {
  const matched = matchRule(o.rules, entry.server, entry.tool);
  if (matched?.rule === "deny") return { action: "deny", rule: `${matched.source}: deny` };
  if (o.approveAll) return { action: "allow", rule: "approve_all" };
  if (matched !== undefined) {
    return { action: matched.rule, rule: `${matched.source}: ${matched.rule}` };
  }
  if (o.fallback !== undefined) return o.fallback;
  return entry.readOnly
    ? { action: "allow", rule: "default: read-only" }
    : { action: "ask", rule: "default: not read-only" };
}

/** The settings that allow `server`/`tool`, as JSON to paste into lmstudio-bridge.json. */
export function allowSnippet(server: string, tool: string): string {
  return JSON.stringify({ servers: { [server]: { tools: { [tool]: "allow" } } } });
}

/** How the user allows a call nobody could approve. */
function howToAllow(server: string, tool: string): string {
  return `To allow it, add the rule ${allowSnippet(server, tool)} to lmstudio-bridge.json ` +
    "(beside the MCP config file), or run the task with `run --yes`";
}

/** A call that may not run: the record's error and the tool result the model reads. */
export interface Refusal {
  error: string;
  text: string;
}

/**
 * What a decision is about: the catalog entry of a tool call, or a server's sampling request
 * shaped like one (agent_sampling.ts).
 */
export type GateSubject = Pick<
  CatalogEntry,
  "name" | "server" | "tool" | "readOnly" | "destructive"
>;

/** What {@linkcode ApprovalGate.check} needs of a call. */
export interface GateCall {
  entry: GateSubject;
  /** A server's sampling request rather than a tool call (the approver is told). */
  kind?: "sampling";
  /** The verdict when no rule matches (default: by the tool's annotations). */
  fallback?: Verdict;
  /** The parsed arguments (shown to the approver redacted). */
  args: Record<string, unknown>;
  round: number;
  signal: AbortSignal;
  /** Called just before the approver is asked, and when it has answered (for progress). */
  onAsk?: () => void;
  onAnswer?: () => void;
}

/**
 * The approvals of one task: decides each call ({@linkcode verdictFor}), asks the approver when
 * the verdict is "ask" (one question at a time; an answer "task" approves the tool for the rest
 * of the task), and records every decision (`records`, the trace). Refusals that the user must act
 * on (nobody could be asked) also become notes, once per tool.
 */
export class ApprovalGate {
  readonly records: ApprovalRecord[] = [];
  #rules: ApprovalRules | undefined;
  readonly #approveAll: boolean;
  readonly #approve: Approver | undefined;
  readonly #task: string;
  readonly #trace: TraceSink | undefined;
  readonly #notes: string[];
  /** `server\0tool` of the tools approved for this task, with the round of the answer. */
  readonly #granted = new Map<string, number>();
  /** Tools whose refusal is already in the notes. */
  readonly #noted = new Set<string>();
  /** The end of the last question asked: the next one waits for it. */
  #asking: Promise<void> = Promise.resolve();

  /** Uses `rules` when none were given at construction (the bridge settings in force). */
  useRules(rules: ApprovalRules): void {
    this.#rules ??= rules;
  }

  constructor(o: {
    rules?: ApprovalRules;
    approveAll?: boolean;
    approve?: Approver;
    task: string;
    trace?: TraceSink;
    /** The task's notes: refusals the user can fix are added here. */
    notes: string[];
  }) {
    this.#rules = o.rules;
    this.#approveAll = o.approveAll === true;
    this.#approve = o.approve;
    this.#task = shorten(o.task, 500);
    this.#trace = o.trace;
    this.#notes = o.notes;
  }

  /**
   * Whether the call may run: undefined when it may, else why not. Rejects only when `signal`
   * aborts while the approver is asked.
   */
  async check(call: GateCall): Promise<Refusal | undefined> {
    const { entry } = call;
    const verdict = verdictFor(entry, {
      rules: this.#rules,
      approveAll: this.#approveAll,
      fallback: call.fallback,
    });
    if (verdict.action === "allow") {
      this.#record(call, { rule: verdict.rule, asked: false, answer: "allow" });
      return undefined;
    }
    if (verdict.action === "deny") {
      this.#record(call, { rule: verdict.rule, asked: false, answer: "deny" });
      return {
        error: `denied by the rule ${verdict.rule.replace(/: deny$/, "")}`,
        text: `Error: ${entry.name} was not run: the rule ${verdict.rule} in the bridge ` +
          `settings (lmstudio-bridge.json) refuses ${entry.server}/${entry.tool}. Do not call it ` +
          "again; do the task another way, or say in your final answer that it needs this tool.",
      };
    }
    // One question at a time: wait for the one before, then look again, since its answer may
    // have approved this tool for the task.
    const before = this.#asking;
    const done = Promise.withResolvers<void>();
    this.#asking = done.promise;
    try {
      await before;
      return await this.#ask(call, verdict);
    } finally {
      done.resolve();
    }
  }

  async #ask(call: GateCall, verdict: Verdict): Promise<Refusal | undefined> {
    const { entry, signal } = call;
    const key = `${entry.server}\0${entry.tool}`;
    const grantedIn = this.#granted.get(key);
    if (grantedIn !== undefined) {
      this.#record(call, {
        rule: `approved for this task in round ${grantedIn}`,
        asked: false,
        answer: "task",
      });
      return undefined;
    }
    let answer: Awaited<ReturnType<Approver>>;
    if (this.#approve === undefined) {
      answer = { unavailable: "this caller offers no way to ask" };
    } else {
      signal.throwIfAborted();
      call.onAsk?.();
      const request: ApprovalRequest = {
        server: entry.server,
        tool: entry.tool,
        arguments: redact(call.args) as Record<string, unknown>,
        task: this.#task,
        readOnly: entry.readOnly,
        destructive: entry.destructive,
        ...(call.kind !== undefined ? { kind: call.kind } : {}),
      };
      try {
        answer = await this.#approve(request, signal);
      } catch (error: unknown) {
        if (signal.aborted) throw error;
        answer = { unavailable: `asking failed: ${clause(errorMessage(error))}` };
      } finally {
        call.onAnswer?.();
      }
    }
    if (answer === "once" || answer === "task") {
      if (answer === "task") this.#granted.set(key, call.round);
      this.#record(call, { rule: verdict.rule, asked: true, answer });
      return undefined;
    }
    if (typeof answer === "object" && answer !== null) {
      const why = clause(
        typeof answer.unavailable === "string" ? answer.unavailable : "no reason given",
      );
      this.#record(call, {
        rule: verdict.rule,
        asked: this.#approve !== undefined,
        answer: "unavailable",
        reason: why,
      });
      const needs = `${entry.server}/${entry.tool} needs approval (${verdict.rule}) and nobody ` +
        `could be asked: ${why}. ${howToAllow(entry.server, entry.tool)}.`;
      if (!this.#noted.has(key)) {
        this.#noted.add(key);
        this.#notes.push(`a call was refused: ${needs}`);
      }
      return {
        error: `needs approval; nobody could be asked: ${why}`,
        text: `Error: ${entry.name} was not run: ${needs} Do not call it again in this task; ` +
          "do what you can without it, and say in your final answer that it needs approval.",
      };
    }
    // "deny", or anything an approver should not have answered: refused.
    this.#record(call, { rule: verdict.rule, asked: true, answer: "deny" });
    return {
      error: "declined by the user",
      text: `Error: the user declined this call of ${entry.name}. Do not repeat it; try another ` +
        "way, or explain in your final answer what you needed it for.",
    };
  }

  #record(call: GateCall, o: Omit<ApprovalRecord, "round" | "server" | "tool">): void {
    const record: ApprovalRecord = {
      round: call.round,
      server: call.entry.server,
      tool: call.entry.tool,
      ...o,
    };
    this.records.push(record);
    this.#trace?.write({ type: "approval", ...record });
  }
}
