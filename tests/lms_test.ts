import { Lms } from "../lib/lms.ts";
import { LmsError } from "../lib/lms_errors.ts";
import { createLogger } from "../lib/log.ts";
import { denoSpawn, type SpawnFn } from "../lib/spawn.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";
import { FakeLms, type FakeLmsScenario } from "./fakes/lms.ts";

const quiet = createLogger({ level: "silent" });

async function withFake(
  scenario: FakeLmsScenario,
  fn: (fake: FakeLms, lms: Lms) => Promise<void>,
): Promise<void> {
  await using fake = await FakeLms.create(scenario);
  await fn(fake, new Lms({ ...fake.lookup, log: quiet }));
}

Deno.test("lms is found on PATH, then in LM Studio's bin directory, else reported missing", async (t) => {
  await using fake = await FakeLms.create({});
  await t.step("on PATH", async () => {
    const lms = new Lms({ ...fake.lookup, log: quiet });
    assertEquals(await lms.locate(), { path: fake.path, via: "path" });
  });
  await t.step("in ~/.lmstudio/bin when PATH has none", async () => {
    const home = await Deno.makeTempDir();
    try {
      await Deno.mkdir(`${home}/.lmstudio/bin`, { recursive: true });
      await Deno.copyFile(fake.path, `${home}/.lmstudio/bin/lms`);
      await Deno.chmod(`${home}/.lmstudio/bin/lms`, 0o755);
      const lms = new Lms({ searchPath: "/nonexistent", home, log: quiet });
      assertEquals(await lms.locate(), { path: `${home}/.lmstudio/bin/lms`, via: "home" });
      const status = await lms.serverStatus();
      assertEquals(status.running, true);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  });
  await t.step(
    "missing: not installed, with install advice, re-checked after a while",
    async () => {
      let now = 0;
      let lookups = 0;
      const lms = new Lms({
        searchPath: "/nonexistent",
        home: "/nonexistent-home",
        isFile: (path) => {
          lookups++;
          return Promise.resolve(path === "/nonexistent/lms" && now > 60_000);
        },
        now: () => now,
        recheckMs: 30_000,
        log: quiet,
      });
      assertEquals(await lms.available(), false);
      const error = await assertRejects(() => lms.ps(), LmsError, "npx lmstudio install-cli");
      assertEquals(error.kind, "not_installed");
      const afterTwo = lookups;
      now = 10_000;
      assertEquals(await lms.available(), false);
      assertEquals(lookups, afterTwo, "a negative answer is cached");
      now = 70_000;
      assertEquals(await lms.available(), true, "looked again after recheckMs");
    },
  );
});

Deno.test("ps reads loaded instances with identifiers, suffixes and statuses", async () => {
  const embedding = "text-embedding-nomic-embed-text-v1.5";
  await withFake({
    loaded: [
      { identifier: "qwen2.5-7b-instruct", modelKey: "qwen2.5-7b-instruct", contextLength: 8192 },
      {
        identifier: "qwen2.5-7b-instruct:2",
        modelKey: "qwen2.5-7b-instruct",
        status: "processingPrompt",
      },
      {
        identifier: embedding,
        modelKey: embedding,
        type: "embedding",
        status: "computingEmbedding",
      },
      // lms before 0.3.27 prints no status.
      { identifier: "qwen/qwen3-8b", modelKey: "qwen/qwen3-8b", status: null },
    ],
  }, async (_fake, lms) => {
    const instances = await lms.ps();
    assertEquals(instances.map((i) => [i.identifier, i.status, i.type]), [
      ["qwen2.5-7b-instruct", "idle", "llm"],
      ["qwen2.5-7b-instruct:2", "processingPrompt", "llm"],
      [embedding, "computingEmbedding", "embedding"],
      ["qwen/qwen3-8b", "loaded", "llm"],
    ]);
    assertEquals(instances[0]?.contextLength, 8192);
    assertEquals(instances[0]?.maxContextLength, 32768);
    assertEquals(instances[0]?.toolUse, true);
  });
});

Deno.test("ls lists downloaded models and filters by kind", async () => {
  await withFake({}, async (fake, lms) => {
    assertEquals((await lms.ls()).length, 3);
    const llms = await lms.ls({ kind: "llm" });
    assertEquals(llms.map((m) => m.modelKey), ["qwen2.5-7b-instruct", "qwen/qwen3-8b"]);
    const embeddings = await lms.ls({ kind: "embedding" });
    assertEquals(embeddings.map((m) => m.modelKey), ["text-embedding-nomic-embed-text-v1.5"]);
    assertEquals((await fake.invocations()).map((a) => a.join(" ")), [
      "ls --json",
      "ls --json --llm",
      "ls --json --embedding",
    ]);
  });
});

Deno.test("load passes -y, the TTL and the context length; unload takes an identifier", async () => {
  await withFake({}, async (fake, lms) => {
    await lms.load("qwen2.5-7b-instruct", { ttlSeconds: 600, contextLength: 16384 });
    await lms.load("qwen2.5-7b-instruct", { ttlSeconds: 0 });
    const args = await fake.invocations();
    assertEquals(args[0], [
      "load",
      "qwen2.5-7b-instruct",
      "-y",
      "--ttl",
      "600",
      "--context-length",
      "16384",
    ]);
    assertEquals(args[1], ["load", "qwen2.5-7b-instruct", "-y"], "ttl 0 means no --ttl");
    const loaded = await lms.ps();
    assertEquals(loaded.map((i) => [i.identifier, i.contextLength, i.ttlMs]), [
      ["qwen2.5-7b-instruct", 16384, 600_000],
      ["qwen2.5-7b-instruct:2", 4096, undefined],
    ]);
    await lms.unload("qwen2.5-7b-instruct:2");
    assertEquals((await lms.ps()).map((i) => i.identifier), ["qwen2.5-7b-instruct"]);
    const missing = await assertRejects(() => lms.unload("nope"), LmsError, "lms ps");
    assertEquals(missing.kind, "not_found");
    await lms.unloadAll();
    assertEquals(await lms.ps(), []);
  });
});

Deno.test("onModelsChange is told when a command that may change the models starts and ends", async () => {
  await using fake = await FakeLms.create({});
  let told = 0;
  const lms = new Lms({ ...fake.lookup, log: quiet, onModelsChange: () => told++ });
  await lms.ps();
  await lms.ls();
  await lms.serverStatus();
  assertEquals(told, 0, "not by commands that only read");
  await lms.load("qwen2.5-7b-instruct", { ttlSeconds: 0 });
  assertEquals(told, 2);
  await assertRejects(() => lms.unload("nope"), LmsError);
  assertEquals(told, 4, "a failed command too");
  await lms.unloadAll();
  assertEquals(told, 6);
});

Deno.test("a load that does not fit reports how much memory the model needs", async () => {
  await withFake(
    { load: { "qwen/qwen3-8b": { error: "memory", memory: "22.92 GB" } } },
    async (_f, lms) => {
      const error = await assertRejects(() => lms.load("qwen/qwen3-8b"), LmsError, "22.92 GB");
      assertEquals(error.kind, "out_of_memory");
      assertEquals(error.memoryRequired, "22.92 GB");
      assertEquals(error.exitCode, 1);
      assertStringIncludes(error.message, "lms unload --all");
    },
  );
});

Deno.test("loading a model that is not downloaded says how to find one", async () => {
  await withFake({}, async (_f, lms) => {
    const error = await assertRejects(() => lms.load("no-such-model"), LmsError, "lms ls");
    assertEquals(error.kind, "not_found");
  });
});

Deno.test("when LM Studio is not running, lms's stderr and advice are reported", async () => {
  await withFake({ running: false, port: 1234 }, async (_f, lms) => {
    const error = await assertRejects(() => lms.ps(), LmsError, "lms server start");
    assertEquals(error.kind, "not_running");
    assertEquals(error.exitCode, 1);
    assertEquals(error.command, ["lms", "ps", "--json"]);
    assert(error.stderrTail.some((l) => l.includes("Failed to start or connect")));
    // lms prints {"running":false}, without a port.
    assertEquals(await lms.serverStatus(), { running: false });
  });
});

Deno.test("a slow lms is stopped at the timeout and a cancelled call stops at once", async () => {
  await using fake = await FakeLms.create({ delayMs: { ps: 60_000 } });
  // The real spawn, recording how each child ended; `started` runs once the child is running.
  const exits: number[] = [];
  let started = () => {};
  const spawn: SpawnFn = async (request) => {
    const running = denoSpawn(request);
    started();
    const result = await running;
    exits.push(result.code);
    return result;
  };
  const lms = new Lms({ ...fake.lookup, spawn, log: quiet });
  const error = await assertRejects(() => lms.ps({ timeoutMs: 300 }), LmsError, "did not finish");
  assertEquals(error.kind, "timeout");
  assertNotEquals(exits[0], 0, "the child was killed, not waited for");

  const controller = new AbortController();
  started = () => controller.abort();
  const cancelled = await assertRejects(() => lms.ps({ signal: controller.signal }), LmsError);
  assertEquals(cancelled.kind, "aborted");
  assertNotEquals(exits[1], 0, "the child was killed, not waited for");
});

Deno.test("output that is not the expected JSON is a bad_output error", async () => {
  await withFake({ stdout: { ps: "LOADED MODELS\n  qwen" } }, async (_f, lms) => {
    const error = await assertRejects(() => lms.ps(), LmsError, "cannot read");
    assertEquals(error.kind, "bad_output");
  });
});

Deno.test("other failures keep lms's message and exit code", async () => {
  await withFake(
    { fail: { ls: { code: 7, stderr: "Error: something odd happened" } } },
    async (_f, lms) => {
      const error = await assertRejects(() => lms.ls(), LmsError, "something odd happened");
      assertEquals(error.kind, "failed");
      assertEquals(error.exitCode, 7);
    },
  );
});

Deno.test("a sandbox denial names the --allow-run flag that would allow lms", async (t) => {
  await t.step("reported from the spawn function", async () => {
    const lms = new Lms({
      command: "/opt/lms/bin/lms",
      spawn: () => Promise.reject(new Deno.errors.NotCapable("Requires run access")),
      log: quiet,
    });
    const error = await assertRejects(() => lms.ps(), LmsError, "--allow-run=/opt/lms/bin/lms");
    assertEquals(error.kind, "not_permitted");
  });
  await t.step("in a real Deno sandbox that allows only `lms` on PATH", async () => {
    await using fake = await FakeLms.create({});
    const home = await Deno.makeTempDir();
    try {
      await Deno.mkdir(`${home}/.lmstudio/bin`, { recursive: true });
      await Deno.copyFile(fake.path, `${home}/.lmstudio/bin/lms`);
      await Deno.chmod(`${home}/.lmstudio/bin/lms`, 0o755);
      const probe = `${home}/probe.ts`;
      const lmsModule = new URL("../lib/lms.ts", import.meta.url).href;
      await Deno.writeTextFile(
        probe,
        `import { Lms } from ${JSON.stringify(lmsModule)};\n` +
          `const lookup = { searchPath: "/nonexistent", home: ${JSON.stringify(home)} };\n` +
          `try { await new Lms(lookup).ps(); console.log("ran"); }\n` +
          `catch (e) { console.log(JSON.stringify({ kind: e.kind, message: e.message })); }\n`,
      );
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--config",
          new URL("../deno.json", import.meta.url).pathname,
          "--cached-only",
          "--frozen",
          "--no-prompt",
          "--allow-read",
          "--allow-env",
          "--allow-run=lms",
          probe,
        ],
        cwd: new URL("..", import.meta.url).pathname,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(output.stdout).trim();
      const stderr = new TextDecoder().decode(output.stderr);
      assert(text !== "", `the probe printed nothing; stderr: ${stderr}`);
      const result = JSON.parse(text.split("\n").pop() ?? "{}") as {
        kind?: string;
        message?: string;
      };
      assertEquals(result.kind, "not_permitted", new TextDecoder().decode(output.stderr));
      assertMatch(result.message ?? "", /--allow-run=.*\.lmstudio\/bin\/lms/);
      assertStringIncludes(result.message ?? "", "PATH");
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  });
});
