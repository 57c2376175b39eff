/**
 * Ctrl-C on a terminal, as a user presses it: `deno task --quiet cli run ...` runs on a
 * pseudo-terminal (util-linux `script`), a tool call is under way (the status line says so), and
 * ^C goes into the terminal, whose line discipline sends SIGINT to the whole foreground process
 * group (deno task, the bridge, and whatever shares the group). Every time, the run stops with
 * its "cancelled after ..." summary printed once, and the downstream tool is cancelled.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { baseEnv, REPO, terminal } from "./helpers.ts";
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
        const term = terminal(command, {
          cwd: dir,
          env: baseEnv({ LMSTUDIO_BASE_URL: fake.baseUrl, HOME: dir, DENO_NO_UPDATE_CHECK: "1" }),
        });
        // The status line names the running tool: the call is under way...
        const running = await term.waitFor(/calling sleep/);
        assert(running, `run ${i}: no status line before the end:\n${term.screen}`);
        // ... and the server has begun it.
        await waitFor(
          "the fixture to start the sleep",
          async () => (await Deno.readTextFile(log)).includes('"start"'),
        );
        const tree = processTree(term.pid);
        await term.type("\x03");
        await term.waitFor(/cancelled after .* model /);
        const code = await term.close();
        const text = term.screen;
        const summaries = text.match(/cancelled after \d+ round\(s\)/g) ?? [];
        assertEquals(summaries.length, 1, `run ${i}: one summary:\n${text}`);
        assertMatch(text, /Interrupted: stopping/);
        assertEquals(code, 130, `run ${i}: exit code:\n${text}`);
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
