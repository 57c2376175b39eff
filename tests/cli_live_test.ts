/**
 * `run` and `chat` showing the model's reply as it streams (lib/cli_live.ts): in this process with
 * a client that streams and output streams that record the screen, and for real on a
 * pseudo-terminal (tests/fixtures/live_reply.ts), where the first half of the answer must show
 * before the model has sent the second; piped, stdout stays the answer alone.
 */
import type { AgentLmClient } from "../lib/agent_types.ts";
import { chatCommand } from "../lib/cli.ts";
import { LiveReply } from "../lib/cli_live.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { runCommand } from "../lib/cli_run.ts";
import type { ChatResult, ChatStreamEvent } from "../lib/lmstudio_types.ts";
import { type OutputStream, streamOutput } from "../lib/output.ts";
import { shellWord } from "../lib/text.ts";
import { withHarness } from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { FakeLmStudio, nativeReply } from "./fakes/lmstudio.ts";
import { FIRST_HALF, REASONING, SECOND_HALF } from "./fixtures/live_reply.ts";
import { cachedRun } from "./fixtures/pool_support.ts";
import { baseEnv, REPO, type Terminal, terminal } from "./helpers.ts";
import { quiet } from "./rigs.ts";

const FIXTURE = `${REPO}/tests/fixtures/live_reply.ts`;
const CLEAR = "\r\x1b[2K";

/** stdout and stderr on one recorded terminal screen. */
function screen(o: { stdoutIsTerminal?: boolean; color?: boolean } = {}) {
  const parts: string[] = [];
  let stdout = "";
  const stream = (terminal: boolean, own?: (s: string) => void): OutputStream => ({
    writeSync: (p) => {
      const s = new TextDecoder().decode(p);
      parts.push(s);
      own?.(s);
      return p.length;
    },
    isTerminal: () => terminal,
  });
  const out = streamOutput({
    stdout: stream(o.stdoutIsTerminal ?? true, (s) => void (stdout += s)),
    stderr: stream(true),
    columns: () => 200,
    color: o.color ?? false,
  });
  return { out, text: () => parts.join(""), stdout: () => stdout };
}

/** A client whose replies stream their content in pieces of `piece` characters. */
function streaming(real: AgentLmClient, replies: ChatResult[], piece = 4): AgentLmClient {
  return {
    baseUrl: real.baseUrl,
    resolveModel: (...args) => real.resolveModel(...args),
    listModels: (...args) => real.listModels(...args),
    chat: (_request, options) => {
      const reply = replies.shift();
      if (reply === undefined) return Promise.reject(new Error("no scripted reply left"));
      for (let i = 0; i < reply.content.length; i += piece) {
        options?.onEvent?.({
          type: "delta",
          content: reply.content.slice(i, i + piece),
          tokens: i / piece + 1,
        });
      }
      return Promise.resolve(reply);
    },
  };
}

const SETTINGS = {
  defaultModel: undefined,
  modelTtlSeconds: 600,
  defaultContextLength: 8192,
  depth: 0,
};

Deno.test("LiveReply shows answer pieces as they come, reasoning only when asked, dimmed", () => {
  const delta = (
    e: Omit<Extract<ChatStreamEvent, { type: "delta" }>, "type">,
  ): ChatStreamEvent => ({
    type: "delta",
    ...e,
  });
  const hidden = screen({ color: true });
  const quietly = new LiveReply(hidden.out, { reasoning: false });
  quietly.onEvent(delta({ reasoning: "thinking…", tokens: 1 }));
  quietly.onEvent(delta({ content: "\n\nThe ", tokens: 2 }));
  quietly.onEvent(delta({ content: "answer.", tokens: 3 }));
  quietly.endReply();
  assertEquals(hidden.stdout(), "The answer.\n");
  assert(quietly.shows("The answer."));
  assert(!quietly.shows("Another answer."));

  const shown = screen({ color: true });
  const aloud = new LiveReply(shown.out, { reasoning: true });
  aloud.onEvent(delta({ reasoning: "\nthinking", tokens: 1 }));
  aloud.onEvent(delta({ reasoning: "…", tokens: 2 }));
  aloud.onEvent(delta({ content: "Yes.", tokens: 3 }));
  aloud.endReply();
  assertEquals(shown.stdout(), "\x1b[2mthinking\x1b[22m\x1b[2m…\x1b[22m\n\nYes.\n");
});

Deno.test("run on a terminal streams every reply once, and prints a stop's report after", async (t) => {
  await withHarness(async (h) => {
    const ctx = (client: AgentLmClient, out: ReturnType<typeof screen>["out"]) => ({
      app: {
        client,
        pool: () => Promise.resolve(h.pool),
        config: h.config,
        settings: SETTINGS,
        log: quiet,
      },
      out,
      signal: new AbortController().signal,
    });
    const toolRound: ChatResult = {
      content: "Let me wait.",
      toolCalls: [{ id: "c1", name: "sleep", arguments: { ms: 1 } }],
    };
    await t.step("the answer streams and is not printed again", async () => {
      const s = screen();
      const client = streaming(h.client, [toolRound, { content: "All done here.", toolCalls: [] }]);
      const code = await runCommand(["--mcp", "fixture", "--yes", "t"], ctx(client, s.out));
      assertEquals(code, 0);
      assertEquals(s.stdout(), "Let me wait.\nAll done here.\n");
      assertStringIncludes(s.text(), `${CLEAR}answer after 2 round(s)`);
      // Each reply streamed in pieces of four characters; on the screen they are one line each, so
      // no status line was drawn over an unfinished one.
      assertStringIncludes(s.text(), "Let me wait.\n");
    });
    await t.step("an unfinished task's report follows what streamed", async () => {
      const s = screen();
      const client = streaming(h.client, [toolRound]);
      const code = await runCommand(
        ["--mcp", "fixture", "--yes", "--max-rounds", "1", "t"],
        ctx(client, s.out),
      );
      assertEquals(code, 1);
      assert(s.stdout().startsWith("Let me wait.\nThe task is unfinished"), s.stdout());
    });
    await t.step("piped, stdout is the answer alone, as before", async () => {
      const s = screen({ stdoutIsTerminal: false });
      const client = streaming(h.client, [toolRound, { content: "All done here.", toolCalls: [] }]);
      assertEquals(await runCommand(["--mcp", "fixture", "--yes", "t"], ctx(client, s.out)), 0);
      assertEquals(s.stdout(), "All done here.\n");
    });
  });
});

/**
 * Whether `pattern` shows on `term` within a minute (the programs start in seconds): without live
 * output the first half never shows, since the model waits for the test before it sends the rest.
 */
async function shows(term: Terminal, pattern: RegExp): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 60_000));
  try {
    return await Promise.race([term.waitFor(pattern), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The fixture's command line on a terminal, input not echoed (so typing adds nothing to see). */
function liveCommand(args: string[]): string {
  return `stty -echo; ${["deno", ...cachedRun([FIXTURE, ...args])].map(shellWord).join(" ")}`;
}

Deno.test("run on a pseudo-terminal prints the answer while it streams, under the status line", async () => {
  const term = terminal(liveCommand(["run", "--mcp", "fixture", "greet"]), { env: baseEnv() });
  if (!await shows(term, new RegExp(FIRST_HALF))) {
    await term.close();
    throw new Error(`the first half of the answer did not show while it streamed:\n${term.screen}`);
  }
  // The model has not sent the rest: it waits for a line.
  assert(!term.screen.includes(SECOND_HALF), term.screen);
  await term.type("\n");
  assert(await term.waitFor(/answer after 1 round\(s\)/), term.screen);
  assertEquals(await term.close(), 0);
  const seen = term.screen;
  assertStringIncludes(seen, `${FIRST_HALF}${SECOND_HALF}\n`);
  assertEquals(seen.split(FIRST_HALF).length, 2, "the answer shows once");
  assert(!seen.includes(REASONING), "reasoning is not shown without --reasoning");
  assertStringIncludes(seen, "round 1/100 · ");
});

Deno.test("chat --reasoning on a pseudo-terminal shows the reasoning dimmed, then the answer as it streams", async () => {
  const { NO_COLOR: _, ...env } = baseEnv();
  const term = terminal(liveCommand(["chat", "--reasoning", "hi"]), { env });
  if (!await shows(term, new RegExp(FIRST_HALF))) {
    await term.close();
    throw new Error(`the first half of the answer did not show while it streamed:\n${term.screen}`);
  }
  assert(!term.screen.includes(SECOND_HALF), term.screen);
  await term.type("\n");
  assert(await term.waitFor(new RegExp(SECOND_HALF)), term.screen);
  assertEquals(await term.close(), 0);
  const seen = term.screen;
  assertStringIncludes(seen, `\x1b[2m${REASONING}\x1b[22m\n\n${FIRST_HALF}${SECOND_HALF}\n`);
  assertEquals(seen.split(FIRST_HALF).length, 2, "the answer shows once");
});

Deno.test("piped, run and chat print what they always did, whatever streams", async () => {
  const piped = async (args: string[]) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: cachedRun([FIXTURE, ...args]),
      env: baseEnv(),
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("\n\n"));
    await writer.close();
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  };
  const run = await piped(["run", "--mcp", "fixture", "greet"]);
  assertEquals([run.code, run.stdout], [0, `${FIRST_HALF}${SECOND_HALF}\n`], run.stderr);
  const chat = await piped(["chat", "hi"]);
  assertEquals([chat.code, chat.stdout], [0, `${FIRST_HALF}${SECOND_HALF}\n`], chat.stderr);
  assertEquals(chat.stderr, `[reasoning]\n${REASONING}\n[/reasoning]\n`);
});

Deno.test("chat on a terminal shows LM Studio's load and prompt percentages in its status line", async () => {
  await using fake = await FakeLmStudio.start({
    stream: "sse",
    models: [{ id: "qwen2.5-7b-instruct", type: "llm", state: "not-loaded" }],
  });
  // The screen as it is written; the fake holds its stream until the screen shows what is waited for.
  let written = "";
  const waits: { text: string; resolve: () => void }[] = [];
  const shows = (text: string) => {
    const wait = Promise.withResolvers<void>();
    waits.push({ text, resolve: wait.resolve });
    return wait.promise;
  };
  const stream = (): OutputStream => ({
    writeSync: (p) => {
      written += new TextDecoder().decode(p);
      for (const w of waits) if (written.includes(w.text)) w.resolve();
      return p.length;
    },
    isTerminal: () => true,
  });
  const out = streamOutput({
    stdout: stream(),
    stderr: stream(),
    columns: () => 200,
    color: false,
  });
  fake.script("/api/v1/chat", {
    body: nativeReply({ content: "ready", loadSeconds: 1 }),
    stream: {
      gate: [
        { after: 4, until: shows("loading qwen2.5-7b-instruct 60%") },
        { after: 8, until: shows("reading the prompt 35%") },
      ],
    },
  });
  const client = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log: quiet });
  const code = await chatCommand(["hello"], {
    app: {
      client,
      settings: { defaultModel: undefined, modelTtlSeconds: 600, defaultContextLength: 8192 },
      models: { ensureLoaded: () => Promise.reject(new Error("the request loads the model")) },
    },
    out,
    signal: new AbortController().signal,
  });
  assertEquals(code, 0);
  assertStringIncludes(written, "loading qwen2.5-7b-instruct 60%");
  assertStringIncludes(written, "reading the prompt 35%");
  assertStringIncludes(written, "ready");
});
