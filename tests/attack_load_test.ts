/**
 * Attack: load on one `serve`. 16 autonomous tasks at once sharing one downstream server, 120
 * rewrites of `.mcp.json` while tasks run, and a soak of tasks in a row with 20 kB results and a
 * crashing tool interleaved.
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import {
  answer,
  lastToolMessage as lastTool,
  ProgrammableModel,
  taskOf,
  toolCalls,
} from "./fixtures/attack_model.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import {
  attackEntry,
  descendants,
  figure,
  pidsIn,
  resultText,
  rssKb,
  type Serve,
  startServe,
  survivors,
  tempProject,
} from "./fixtures/attack_support.ts";

/** A model that calls `marker` with its task's text, then answers with what the tool said. */
function markerModel(model: ProgrammableModel): void {
  model.play((req) => {
    const told = lastTool(req);
    if (told !== undefined) return answer(`answer: ${told}`);
    return toolCalls({ name: "marker", arguments: { marker: taskOf(req) } });
  });
}

async function task(serve: Serve, marker: string, server = "a") {
  const r = await serve.call("autonomous_with_mcp", {
    mcp_name: server,
    task: marker,
    max_rounds: 4,
  });
  const stopped = (r.structuredContent as { stopped_because?: string } | undefined)
    ?.stopped_because;
  return { stopped, text: resultText(r), isError: r.isError === true };
}

Deno.test("16 autonomous tasks at once through one serve: 16/16 answers carry their own marker, one spawn, no deadlock", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const starts = project.file("starts.txt");
  await project.write({ a: attackEntry(["--starts", starts]) });
  await using serve = await startServe(project.dir, model.baseUrl);
  markerModel(model);
  const results = await Promise.all(
    Array.from({ length: 16 }, (_, i) => task(serve, `task-${i}-marker`)),
  );
  const pids = new Set<string>();
  results.forEach((r, i) => {
    assertEquals(r.stopped, "answer", r.text);
    assertStringIncludes(r.text, `answer: marker:task-${i}-marker pid:`);
    for (let j = 0; j < 16; j++) {
      if (j !== i) assert(!r.text.includes(`marker:task-${j}-marker `), `cross-talk in ${i}`);
    }
    pids.add(/pid:(\d+)/.exec(r.text)![1]!);
  });
  const spawned = await pidsIn(starts);
  figure(
    `16/16 answers with their own marker; ${spawned.length} spawn(s), ${pids.size} server pid(s)`,
  );
  assertEquals(spawned.length, 1);
  assertEquals(pids.size, 1);
});

Deno.test("120 rewrites of .mcp.json (valid, invalid, half-written, deleted, renamed-over) while tasks run: no crash, last good config in force, final state right", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const starts = project.file("starts.txt");
  const a = attackEntry(["--starts", starts]);
  const valid = (extra: Record<string, unknown>) =>
    JSON.stringify({ mcpServers: { a, ...extra } }, null, 2);
  await project.write({ a });
  const serve = await startServe(project.dir, model.baseUrl);
  markerModel(model);
  const outcomes = { answered: 0, failed: 0 };
  const failures = new Set<string>();
  let churning = true;
  const worker = async (w: number) => {
    for (let n = 0; churning; n++) {
      const r = await task(serve, `w${w}-${n}`);
      if (r.stopped === "answer" && r.text.includes(`marker:w${w}-${n} `)) outcomes.answered++;
      else {
        outcomes.failed++;
        // A task that starts while the file is gone fails, saying so: never anything else.
        failures.add(r.text.split("\n")[0]!.slice(0, 120));
      }
    }
  };
  let workers: Promise<void>[] = [];
  const listing = async () => {
    const r = await serve.call("list_available_mcps");
    return resultText(r);
  };
  const variants: { kind: string; write: () => Promise<void> }[] = [
    {
      kind: "valid + b",
      write: () => Deno.writeTextFile(project.config, valid({ b: attackEntry() })),
    },
    { kind: "invalid", write: () => Deno.writeTextFile(project.config, '{ "mcpServers": { "a": ') },
    {
      kind: "half-written",
      write: () => {
        const text = valid({ c: attackEntry() });
        return Deno.writeTextFile(project.config, text.slice(0, text.length / 2));
      },
    },
    { kind: "valid", write: () => Deno.writeTextFile(project.config, valid({})) },
    { kind: "deleted", write: () => Deno.remove(project.config) },
    {
      kind: "renamed-over",
      write: async () => {
        await Deno.writeTextFile(`${project.config}.tmp`, valid({ renamed: attackEntry() }));
        await Deno.rename(`${project.config}.tmp`, project.config);
      },
    },
  ];
  const REWRITES = 120;
  let before = await listing();
  try {
    for (let i = 0; i < REWRITES; i++) {
      const variant = variants[i % variants.length]!;
      await variant.write();
      // Each state is looked at in the first rounds, alone; then the churn goes on while four
      // workers run tasks. A write is seen once its file-system event has come (well under a
      // millisecond, lib/config.ts), so a listing right after it may still show the state
      // before: each state is waited for (every variant changes what the listing says).
      if (i === variants.length) workers = [0, 1, 2, 3].map(worker);
      if (i < variants.length) {
        let text = before;
        await waitFor(`the listing after the "${variant.kind}" write`, async () => {
          text = await listing();
          return text !== before;
        });
        before = text;
        if (variant.kind === "invalid" || variant.kind === "half-written") {
          assertStringIncludes(text, "Config error");
          // The last good config stays in force: "a" (and "b" from the last good file) work.
          const r = await task(serve, `during-${variant.kind}`);
          assertEquals(r.stopped, "answer", r.text);
          assert(!text.includes("\nc  ["), "the half-written entry was taken");
        }
        if (variant.kind === "renamed-over") assertStringIncludes(text, "renamed  [");
      } else if (i % 10 === 0) await Promise.all([listing(), task(serve, `churn-${i}`)]);
    }
  } finally {
    churning = false;
    await Promise.all(workers);
  }
  await Deno.writeTextFile(project.config, valid({ final: attackEntry() }));
  const final = await listing();
  assertStringIncludes(final, "final  [");
  assert(!final.includes("Config error"), final);
  assert(!final.includes("renamed  ["), final);
  const last = await task(serve, "after-churn");
  assertEquals(last.stopped, "answer", last.text);
  const below = descendants(serve.pid);
  assert(rssKb(serve.pid) > 0, "serve died");
  await serve.close();
  assertEquals(await survivors([serve.pid, ...below]), []);
  figure(
    `${REWRITES} rewrites; ${outcomes.answered} tasks answered, ${outcomes.failed} failed ` +
      `(${[...failures].join(" | ") || "none"}); server "a" spawned ${
        (await pidsIn(starts)).length
      } times`,
  );
  // Only the file's state may fail a task: gone, or broken right after it was gone (then no good
  // config is left to fall back on).
  for (const failure of failures) assert(/config|\.mcp\.json/i.test(failure), failure);
});

/** Tasks in the soak; every CRASH_EVERY-th one calls the crashing tool. */
const SOAK_TASKS = 1_200;
const CRASH_EVERY = 100;

Deno.test(`soak: ${SOAK_TASKS} tasks in a row with 20 kB results and a crash every ${CRASH_EVERY}: all answered, one spawn plus one per crash, RSS flat over the second half`, async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const starts = project.file("starts.txt");
  await project.write({ a: attackEntry(["--starts", starts]) });
  await using serve = await startServe(project.dir, model.baseUrl, { LOG_LEVEL: "error" });
  model.play((req) => {
    const told = lastTool(req);
    const n = Number(taskOf(req).replace("soak ", ""));
    if (told !== undefined) return answer(`soak ${n} done (${told.length} chars)`);
    return n % CRASH_EVERY === CRASH_EVERY / 2
      ? toolCalls({ name: "crash", arguments: { code: 9 } })
      : toolCalls({ name: "big", arguments: { mb: 20 / 1024 } });
  });
  const rss: number[] = [];
  let answered = 0;
  const started = performance.now();
  for (let n = 0; n < SOAK_TASKS; n++) {
    const r = await serve.call("autonomous_with_mcp", {
      mcp_name: "a",
      task: `soak ${n}`,
      max_rounds: 3,
    });
    const text = resultText(r);
    if (text.startsWith(`soak ${n} done`)) answered++;
    else throw new Error(`task ${n} was not answered: ${text.slice(0, 300)}`);
    if ((n + 1) % (SOAK_TASKS / 12) === 0) rss.push(rssKb(serve.pid));
  }
  const seconds = (performance.now() - started) / 1000;
  const crashes = Math.floor(SOAK_TASKS / CRASH_EVERY);
  const spawned = (await pidsIn(starts)).length;
  const half = rss.slice(rss.length / 2 - 1);
  const growth = Math.max(...half) - half[0]!;
  figure(
    `${answered}/${SOAK_TASKS} answered in ${seconds.toFixed(0)} s; ${spawned} spawns for ` +
      `${crashes} crashes; RSS (MB) ${rss.map((k) => Math.round(k / 1024)).join(" ")}`,
  );
  assertEquals(answered, SOAK_TASKS);
  assertEquals(spawned, 1 + crashes);
  // Flat: the second half grows by less than 64 MB (a leak of 20 kB per task would be 12 MB per
  // 600 tasks; a leak of the results kept whole would be far more).
  assert(growth < 64 * 1024, `RSS grew by ${growth} kB over the second half: ${rss.join(", ")}`);
});
