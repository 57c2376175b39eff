/**
 * CLI start-up, as a user or Claude Code pays it: wall time of spawning
 * `deno run -P=bridge main.ts ...` until it exits, against the floor of starting Deno at all.
 * `models` talks to the fake LM Studio (three requests). Few iterations: each one is a process.
 * `serve`'s start-up (until `initialize` is answered, what Claude Code waits for) is in the
 * summary (versus_bench.ts), against a minimal server on the same SDK and as `deno task start`.
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { runCli } from "../helpers.ts";
import { check, Shared } from "./support.ts";

const lmstudio = new Shared(async () => {
  const fake = await FakeLmStudio.start();
  const home = await Deno.makeTempDir({ prefix: "cli_bench_" });
  return {
    value: { fake, home },
    async close() {
      await fake.close();
      await Deno.remove(home, { recursive: true });
    },
    abandon: () => Deno.removeSync(home, { recursive: true }),
  };
});

const group = "CLI start-up (process wall time)";
const n = 8;

Deno.bench({
  name: "deno eval 0 (floor: the runtime alone)",
  group,
  baseline: true,
  n,
  warmup: 1,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "0"],
      stdout: "null",
      stderr: "null",
    }).output();
    check(out.code === 0, "deno eval exits 0");
  },
});

Deno.bench({
  name: "lmstudio-bridge --version",
  group,
  n,
  warmup: 1,
  async fn() {
    const r = await runCli(["--version"]);
    check(r.code === 0 && r.stdout.startsWith("lmstudio-bridge "), `--version: ${r.stderr}`);
  },
});

Deno.bench({
  name: "lmstudio-bridge models (fake LM Studio)",
  group,
  n,
  warmup: 1,
  async fn(b) {
    const { fake, home } = await lmstudio.get();
    fake.requests.length = 0;
    b.start();
    const r = await runCli(["models"], { env: { LMSTUDIO_BASE_URL: fake.baseUrl, HOME: home } });
    b.end();
    check(r.code === 0 && r.stdout.includes("qwen2.5-7b-instruct"), `models: ${r.stderr}`);
  },
});
