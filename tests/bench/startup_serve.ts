/**
 * Start-up and idle memory of `serve` the ways users launch it, interleaved with the minimal
 * server on the same SDK so a busy moment hits every launch alike: spawn until the `initialize`
 * answer arrived, and the memory of the whole process tree (the `deno task` wrapper included,
 * shared pages once) after `tools/list` (sampleStarts); the minimal server also through a `deno
 * task` of its own, and the installed command (installed into a temporary root when there is none
 * on PATH). Medians of REPS start-ups of each launch. The goal summary's start-up rows measure
 * the same; this prints them alone, faster.
 *
 * Not a bench file. Run it alone:
 *
 *   deno run -A tests/bench/startup_serve.ts [REPS] [--env=NAME=VALUE ...]
 *
 * The installed command is the `lmstudio-bridge` on PATH (or in dist/) when there is one.
 */
import { FakeLmStudio } from "../fakes/lmstudio.ts";
import { join } from "../../lib/path.ts";
import {
  benchInstalledLaunch,
  benchServerLaunch,
  bridgeRunLaunch,
  bridgeTaskLaunch,
  type Launch,
  sampleStarts,
  type StartSamples,
  throughTask,
} from "./serve_rig.ts";
import { benchChildrenCached, median } from "./support.ts";

/** One line on stdout (the lint allows no console). */
function print(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

const reps = Number(Deno.args.find((a) => !a.startsWith("--")) ?? 9);
const extra: Record<string, string> = {};
for (const arg of Deno.args.filter((a) => a.startsWith("--env="))) {
  const pair = arg.slice("--env=".length);
  const at = pair.indexOf("=");
  extra[pair.slice(0, at)] = pair.slice(at + 1);
}
await benchChildrenCached();
await using fake = await FakeLmStudio.start();
const dir = await Deno.makeTempDir({ prefix: "startup_serve_" });
const minimal = benchServerLaunch("minimal server", "minimal_server.ts");
let samples: StartSamples;
let launches: Launch[];
try {
  launches = [
    minimal,
    await throughTask(minimal, join(dir, "minimal-task")),
    bridgeRunLaunch(),
    bridgeTaskLaunch(),
    await benchInstalledLaunch(join(dir, "installed")),
  ];
  samples = await sampleStarts(launches, reps, {
    cwd: dir,
    env: { LMSTUDIO_BASE_URL: fake.baseUrl, ...extra },
  });
} finally {
  await Deno.remove(dir, { recursive: true });
}
const { start, cpu, rss } = samples;
const floorMs = median(start[minimal.label]!);
const floorCpu = median(cpu[minimal.label]!);
const floorRss = median(rss[minimal.label]!);
print(
  `medians of ${reps}: spawn to initialize answered | CPU time by then | memory after tools/list (ratios to minimal)`,
);
for (const launch of launches) {
  const s = median(start[launch.label]!);
  const c = median(cpu[launch.label]!);
  const r = median(rss[launch.label]!) / 2 ** 20;
  print(
    `${s.toFixed(0).padStart(6)} ms (${(s / floorMs).toFixed(2)}x) ` +
      `${c.toFixed(0).padStart(6)} ms (${(c / floorCpu).toFixed(2)}x) ${
        r.toFixed(1).padStart(7)
      } ` +
      `MiB (${(r * 2 ** 20 / floorRss).toFixed(2)}x)  ${launch.label}`,
  );
}
