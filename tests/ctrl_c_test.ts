/**
 * Ctrl-C on a terminal, as a user presses it: `deno task --quiet cli run ...` runs on a
 * pseudo-terminal (util-linux `script`), a tool call is under way (the status line says so), and
 * ^C goes into the terminal, whose line discipline sends SIGINT to the whole foreground process
 * group (deno task, the bridge, and whatever shares the group). Every time, the run stops with
 * its "cancelled after ..." summary printed once, and the downstream tool is cancelled.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, REPO } from "./helpers.ts";
import {
  assertGone,
  cachedRun,
  denoChildEnv,
  processTree,
  waitFor,
} from "./fixtures/pool_support.ts";
import { join } from "../lib/path.ts";
import { shellWord } from "../lib/text.ts";

const FIXTURE = `${REPO}/tests/fixtures/agent_server.ts`;
const CHAT = "/v1/chat/completions";
// 12 runs (CTRL_C_RUNS to change): the duplicate signal showed in about one run of three.
const RUNS = Number(Deno.env.get("CTRL_C_RUNS") ?? 12);

/** Reads `reader` until `pattern` shows in what was read (or the stream ends); returns it all. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  seen: { text: string },
  pattern: RegExp,
): Promise<boolean> {
  while (!pattern.test(seen.text)) {
    const { value, done } = await reader.read();
    if (done) return false;
    seen.text += value;
  }
  return true;
}

Deno.test({
  name:
    `Ctrl-C under deno task cli run prints the summary once and cancels the tool (${RUNS} runs)`,
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using fake = await FakeLmStudio.start();
    const dir = await Deno.makeTempDir({ prefix: "ctrl_c_test_" });
    try {
      const log = join(dir, "fixture.log");
      await Deno.writeTextFile(
        join(dir, ".mcp.json"),
        JSON.stringify({
          mcpServers: {
            fixture: {
              command: "deno",
              args: cachedRun([FIXTURE]),
              env: {
                ...denoChildEnv(),
                DENO_DIR: baseEnv().DENO_DIR ?? "",
                AGENT_FIXTURE_LOG: log,
              },
            },
          },
        }),
      );
      const command = `deno task --quiet --cwd ${shellWord(REPO)} cli run --mcp fixture "wait"`;
      for (let i = 1; i <= RUNS; i++) {
        await Deno.writeTextFile(log, "");
        fake.script(CHAT, {
          body: chatReply({
            content: "",
            toolCalls: [{ name: "sleep", arguments: { ms: 60_000 } }],
          }),
        });
        const child = new Deno.Command("script", {
          args: ["-q", "-e", "-c", command, "/dev/null"],
          cwd: dir,
          env: baseEnv({
            LMSTUDIO_BASE_URL: fake.baseUrl,
            HOME: dir,
            DENO_NO_UPDATE_CHECK: "1",
            TERM: "dumb",
          }),
          clearEnv: true,
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = child.stdin.getWriter();
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        const seen = { text: "" };
        // The status line names the running tool: the call is under way.
        const running = await readUntil(reader, seen, /calling sleep/);
        assert(running, `run ${i}: no status line before the end:\n${seen.text}`);
        // ... and the server has begun it.
        await waitFor(
          "the fixture to start the sleep",
          async () => (await Deno.readTextFile(log)).includes('"start"'),
        );
        const tree = processTree(child.pid);
        await writer.write(new Uint8Array([0x03]));
        await readUntil(reader, seen, /\$^/); // to the end
        const status = await child.status;
        await writer.close().catch(() => undefined);
        const text = seen.text.replace(/\r/g, "");
        const summaries = text.match(/cancelled after \d+ round\(s\)/g) ?? [];
        assertEquals(summaries.length, 1, `run ${i}: one summary:\n${text}`);
        assertMatch(text, /Interrupted: stopping/);
        assertEquals(status.code, 130, `run ${i}: exit code:\n${text}`);
        const events = (await Deno.readTextFile(log)).trim().split("\n").filter((l) => l !== "")
          .map((l) => JSON.parse(l).event);
        assertEquals(events, ["start", "cancelled"], `run ${i}: the sleep was cancelled`);
        // Nothing is left running: not deno task, not the bridge, not the server.
        for (const pid of tree) await assertGone(pid);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
