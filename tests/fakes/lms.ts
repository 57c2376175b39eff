/**
 * A fake `lms` (LM Studio's CLI) for tests: a real executable that prints the real JSON shapes.
 *
 * {@linkcode FakeLms.create} writes a temp dir with `bin/lms` (a shell script that execs this file
 * under Deno) and `scenario.json`. The program reads the scenario named by `LMS_FAKE_SCENARIO`
 * (the script sets it), acts on it, writes the changed state back (loads, unloads) and appends
 * its argv as one JSON line to `invocations.log` beside the scenario, so tests can count spawns.
 *
 * Supported: `ps --json`, `ls --json [--llm|--embedding]`, `load KEY [-y] [--ttl S]
 * [-c|--context-length N] [--identifier ID]`, `unload ID | --all`, `server status --json`.
 * Run by hand: `LMS_FAKE_SCENARIO=/tmp/s.json deno run -A tests/fakes/lms.ts ps --json`.
 */

/** A downloaded model, as `lms ls --json` prints it. */
export interface FakeDownloaded {
  modelKey: string;
  type?: "llm" | "embedding";
  displayName?: string;
  sizeBytes?: number;
  maxContextLength?: number;
  paramsString?: string;
  architecture?: string;
  vision?: boolean;
  trainedForToolUse?: boolean;
  /** Keys of its variants (`model@q8_0`); `lms load <variant key>` loads that one. */
  variants?: string[];
  /** The variant `lms load <modelKey>` loads. */
  selectedVariant?: string;
}

/**
 * The processing statuses `lms ps --json` prints (lmstudio-js `ModelProcessingStatus`). There is
 * no "loaded" and no "loading": every listed instance is loaded.
 */
export type FakeStatus = "idle" | "processingPrompt" | "generating" | "computingEmbedding";

/** A loaded instance, as `lms ps --json` prints it. */
export interface FakeLoaded {
  identifier: string;
  modelKey: string;
  type?: "llm" | "embedding";
  /**
   * Printed as is (default "idle"); null prints no status at all, like lms before 0.3.27. Any
   * other string stands for a status a later lms may add.
   */
  status?: FakeStatus | string | null;
  contextLength?: number;
  maxContextLength?: number;
  ttlMs?: number | null;
  /** The variant key loaded, printed as `selectedVariant`. */
  selectedVariant?: string;
}

/** How `lms load KEY` behaves for one model key. */
export interface FakeLoadBehaviour {
  /** "memory": fail like LM Studio's guardrails; any other string: fail with that message. */
  error?: "memory" | string;
  /** The memory figure of a "memory" failure (default "15.89 GB"). */
  memory?: string;
  /** Extra time the load takes (the instance is listed only once it is loaded). */
  delayMs?: number;
}

/** The scenario file: LM Studio's state plus failure knobs. Mutated by the fake as it runs. */
export interface FakeLmsScenario {
  /** LM Studio running? When false, every command but `server status` fails like the real lms. */
  running?: boolean;
  /** Port `server status` reports while the server runs (none is printed when it does not). */
  port?: number | null;
  downloaded?: FakeDownloaded[];
  loaded?: FakeLoaded[];
  load?: Record<string, FakeLoadBehaviour>;
  /** Per-command delay before answering ("ps", "ls", "load", "unload", "server"). */
  delayMs?: Record<string, number>;
  /** Per-command forced failure: exit code and stderr text. */
  fail?: Record<string, { code: number; stderr: string; stdout?: string }>;
  /** Per-command raw stdout instead of the normal answer (for malformed-output tests). */
  stdout?: Record<string, string>;
}

const DEFAULT_DOWNLOADED: FakeDownloaded[] = [
  {
    modelKey: "qwen2.5-7b-instruct",
    type: "llm",
    displayName: "Qwen2.5 7B Instruct",
    sizeBytes: 4_683_073_952,
    maxContextLength: 32768,
    paramsString: "7B",
    architecture: "qwen2",
    vision: false,
    trainedForToolUse: true,
  },
  {
    modelKey: "qwen/qwen3-8b",
    type: "llm",
    displayName: "Qwen3 8B",
    sizeBytes: 5_027_784_384,
    maxContextLength: 40960,
    paramsString: "8B",
    architecture: "qwen3",
    vision: false,
    trainedForToolUse: true,
  },
  {
    modelKey: "text-embedding-nomic-embed-text-v1.5",
    type: "embedding",
    displayName: "Nomic Embed Text v1.5",
    sizeBytes: 84_106_624,
    maxContextLength: 2048,
    architecture: "nomic-bert",
  },
];

// ---------------------------------------------------------------------------------------------
// The program

function dirOf(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return i <= 0 ? "." : path.slice(0, i);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function out(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text + "\n"));
}

function err(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(text + "\n"));
}

function flagValue(args: string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    for (const name of names) {
      if (arg === name) return args[i + 1];
      if (arg.startsWith(name + "=")) return arg.slice(name.length + 1);
    }
  }
  return undefined;
}

function positionals(args: string[]): string[] {
  const withValue = new Set(["--ttl", "-c", "--context-length", "--identifier", "--gpu", "--port"]);
  const result: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (withValue.has(arg)) i++;
    else if (!arg.startsWith("-")) result.push(arg);
  }
  return result;
}

function psRow(instance: FakeLoaded, downloaded: FakeDownloaded[]): Record<string, unknown> {
  const model = downloaded.find((d) => d.modelKey === instance.modelKey);
  const status = instance.status === undefined ? "idle" : instance.status;
  return {
    type: instance.type ?? model?.type ?? "llm",
    modelKey: instance.modelKey,
    format: "gguf",
    displayName: model?.displayName ?? instance.modelKey,
    path: `lmstudio-community/${instance.modelKey}-GGUF/${instance.modelKey}-Q4_K_M.gguf`,
    sizeBytes: model?.sizeBytes ?? 1_000_000_000,
    paramsString: model?.paramsString ?? null,
    architecture: model?.architecture ?? "llama",
    quantization: { name: "Q4_K_M", bits: 4 },
    vision: model?.vision ?? false,
    trainedForToolUse: model?.trainedForToolUse ?? false,
    maxContextLength: instance.maxContextLength ?? model?.maxContextLength ?? 4096,
    identifier: instance.identifier,
    ...(instance.selectedVariant ? { selectedVariant: instance.selectedVariant } : {}),
    ttlMs: instance.ttlMs ?? null,
    lastUsedTime: null,
    contextLength: instance.contextLength ?? 4096,
    ...(status === null ? {} : { status, queued: 0 }),
    parallel: 4,
  };
}

function lsRow(model: FakeDownloaded): Record<string, unknown> {
  return {
    type: model.type ?? "llm",
    modelKey: model.modelKey,
    format: "gguf",
    displayName: model.displayName ?? model.modelKey,
    path: `lmstudio-community/${model.modelKey}-GGUF/${model.modelKey}-Q4_K_M.gguf`,
    sizeBytes: model.sizeBytes ?? 1_000_000_000,
    paramsString: model.paramsString ?? null,
    architecture: model.architecture ?? "llama",
    vision: model.vision ?? false,
    trainedForToolUse: model.trainedForToolUse ?? false,
    maxContextLength: model.maxContextLength ?? 4096,
    ...(model.variants ? { variants: model.variants } : {}),
    ...(model.selectedVariant ? { selectedVariant: model.selectedVariant } : {}),
  };
}

/** Runs one invocation of the fake; returns the exit code. */
export async function fakeLmsMain(args: string[], scenarioPath: string): Promise<number> {
  await Deno.writeTextFile(
    `${dirOf(scenarioPath)}/invocations.log`,
    JSON.stringify(args) + "\n",
    { append: true },
  );
  const s = JSON.parse(await Deno.readTextFile(scenarioPath)) as FakeLmsScenario;
  const save = () => Deno.writeTextFile(scenarioPath, JSON.stringify(s, null, 2));
  const command = args[0] ?? "";
  const delay = s.delayMs?.[command];
  if (delay) await sleep(delay);
  const forced = s.fail?.[command];
  if (forced) {
    if (forced.stdout) out(forced.stdout);
    err(forced.stderr);
    return forced.code;
  }
  const raw = s.stdout?.[command];
  if (raw !== undefined) {
    out(raw);
    return 0;
  }
  if (command === "server" && args[1] === "status") {
    const running = s.running ?? true;
    err(
      running ? `The server is running on port ${s.port ?? 1234}.` : "The server is not running.",
    );
    // A server that is not running has no port: lms prints {"running":false}.
    if (args.includes("--json")) {
      out(JSON.stringify(running ? { running, port: s.port ?? 1234 } : { running }));
    }
    return 0;
  }
  if (s.running === false) {
    err("Waking up LM Studio service...");
    err("Failed to start or connect to local LM Studio API server.");
    return 1;
  }
  const downloaded = s.downloaded ?? DEFAULT_DOWNLOADED;
  const loaded = s.loaded ?? [];
  switch (command) {
    case "ps": {
      out(JSON.stringify(loaded.map((i) => psRow(i, downloaded))));
      return 0;
    }
    case "ls": {
      let rows = downloaded;
      if (args.includes("--llm")) rows = rows.filter((m) => (m.type ?? "llm") === "llm");
      if (args.includes("--embedding")) rows = rows.filter((m) => m.type === "embedding");
      out(JSON.stringify(rows.map(lsRow)));
      return 0;
    }
    case "load": {
      const [, wanted] = positionals(args);
      if (wanted === undefined || !args.some((a) => a === "-y" || a === "--yes")) {
        err("Error: interactive selection needs a terminal (the fake always requires KEY and -y)");
        return 1;
      }
      const needle = wanted.toLowerCase();
      const variantOf = downloaded.find((m) =>
        (m.variants ?? []).some((v) => v.toLowerCase() === needle)
      );
      const model = downloaded.find((m) => m.modelKey.toLowerCase() === needle) ?? variantOf ??
        downloaded.find((m) => m.modelKey.toLowerCase().includes(needle));
      if (!model) {
        err("Error: Model not found");
        err(`No model found that matches path "${wanted}".`);
        err("To see a list of all downloaded models, run:\n\n    lms ls");
        return 1;
      }
      const behaviour = s.load?.[model.modelKey] ?? {};
      if (behaviour.delayMs) await sleep(behaviour.delayMs);
      if (behaviour.error === "memory") {
        err(
          "Error: Model loading was stopped due to insufficient system resources. Under the " +
            `current settings, this model requires approximately ${
              behaviour.memory ?? "15.89 GB"
            } of memory, and continuing to load it would likely overload your system and cause ` +
            "it to freeze. If you think this is incorrect, you can adjust the model loading " +
            "guardrails in settings.",
        );
        return 1;
      }
      if (behaviour.error) {
        err(`Error: ${behaviour.error}`);
        return 1;
      }
      const base = flagValue(args, "--identifier") ?? model.modelKey;
      let identifier = base;
      for (let n = 2; loaded.some((i) => i.identifier === identifier); n++) {
        identifier = `${base}:${n}`;
      }
      const ttl = flagValue(args, "--ttl");
      const ctx = flagValue(args, "-c", "--context-length");
      loaded.push({
        identifier,
        modelKey: model.modelKey,
        type: model.type ?? "llm",
        status: "idle",
        contextLength: ctx === undefined ? 4096 : Number(ctx),
        maxContextLength: model.maxContextLength,
        ttlMs: ttl === undefined ? null : Number(ttl) * 1000,
        ...(variantOf ? { selectedVariant: wanted } : {}),
      });
      s.loaded = loaded;
      await save();
      err(`Model loaded successfully in 1.23s. (${((model.sizeBytes ?? 0) / 1e9).toFixed(2)} GB)`);
      err(`To use the model in the API/SDK, use the identifier "${identifier}".`);
      return 0;
    }
    case "unload": {
      if (args.includes("--all") || args.includes("-a")) {
        err(loaded.length ? `Unloaded ${loaded.length} models.` : "No models to unload.");
        s.loaded = [];
        await save();
        return 0;
      }
      const [, identifier] = positionals(args);
      const index = loaded.findIndex((i) => i.identifier === identifier);
      if (identifier === undefined || index < 0) {
        // Like the real lms: an error message, but exit code 0.
        err(`Model Not Found\nCannot find a model with the identifier "${identifier}".`);
        return 0;
      }
      loaded.splice(index, 1);
      s.loaded = loaded;
      await save();
      err(`Model "${identifier}" unloaded.`);
      return 0;
    }
    default:
      err(`error: unknown command '${command}'`);
      return 1;
  }
}

if (import.meta.main) {
  const scenario = Deno.env.get("LMS_FAKE_SCENARIO");
  if (!scenario) {
    err("LMS_FAKE_SCENARIO is not set");
    Deno.exit(3);
  }
  Deno.exit(await fakeLmsMain(Deno.args, scenario));
}

// ---------------------------------------------------------------------------------------------
// The test helper

/** A fake `lms` installed in a temp dir; remove it with `cleanup()` or `await using`. */
export class FakeLms {
  /** The temp dir (scenario.json, invocations.log, bin/). */
  readonly dir: string;
  /** The directory holding the `lms` script; put it first on PATH. */
  readonly binDir: string;
  /** The `lms` script. */
  readonly path: string;
  readonly scenarioPath: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.binDir = `${dir}/bin`;
    this.path = `${dir}/bin/lms`;
    this.scenarioPath = `${dir}/scenario.json`;
  }

  /** Creates the temp dir, the script and the scenario. */
  static async create(scenario: FakeLmsScenario = {}): Promise<FakeLms> {
    const fake = new FakeLms(await Deno.makeTempDir({ prefix: "fake-lms-" }));
    await Deno.mkdir(fake.binDir);
    await fake.setScenario(scenario);
    const program = new URL(import.meta.url).pathname;
    const script = [
      "#!/bin/sh",
      `LMS_FAKE_SCENARIO="\${LMS_FAKE_SCENARIO:-${fake.scenarioPath}}"`,
      "export LMS_FAKE_SCENARIO",
      `exec "${Deno.execPath()}" run -A --no-config --no-lock --cached-only --quiet "${program}" "$@"`,
      "",
    ].join("\n");
    await Deno.writeTextFile(fake.path, script, { mode: 0o755 });
    await Deno.chmod(fake.path, 0o755);
    return fake;
  }

  /** Where `new Lms({ ...fake.lookup })` looks for `lms`, so that it finds this fake first. */
  get lookup(): { searchPath: string; home: string } {
    return { searchPath: `${this.binDir}:/nonexistent-bin`, home: this.dir };
  }

  /** Replaces the scenario (the state the next invocation sees). */
  async setScenario(scenario: FakeLmsScenario): Promise<void> {
    await Deno.writeTextFile(this.scenarioPath, JSON.stringify(scenario, null, 2));
  }

  /** Changes some fields of the current scenario. */
  async update(patch: Partial<FakeLmsScenario>): Promise<void> {
    await this.setScenario({ ...await this.scenario(), ...patch });
  }

  /** The current state, as the fake last wrote it. */
  async scenario(): Promise<FakeLmsScenario> {
    return JSON.parse(await Deno.readTextFile(this.scenarioPath)) as FakeLmsScenario;
  }

  /** Every invocation's argv, in order. */
  async invocations(): Promise<string[][]> {
    let text = "";
    try {
      text = await Deno.readTextFile(`${this.dir}/invocations.log`);
    } catch (error: unknown) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as string[]);
  }

  /** Removes the temp dir. */
  async cleanup(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }
}
