/**
 * ConfigSource with `watch`: an unchanged config is answered without a stat, an event makes the
 * next call look, the seconds after an event stat on every call, and where watching is not
 * possible every call stats. The watcher is a controllable fake (the rules, without event timing)
 * or the real one with each event awaited as it is delivered (no sleeps).
 */
import { assert, assertEquals, assertStrictEquals, assertStringIncludes } from "./assert.ts";
import { type ConfigFs, ConfigSource, SETTLE_MS, VERIFY_MS } from "../lib/config.ts";
import { type ConfigWatcher, watchDirs, type WatchFactory } from "../lib/config_watch.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { basename, dirname, join } from "../lib/path.ts";

const silent = createLogger({ level: "silent" });

interface Layout {
  root: string;
  home: string;
  cwd: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** <root>/home is $HOME (without ~/.lmstudio), <root>/work/project the cwd. */
async function layout(): Promise<Layout> {
  const root = await Deno.makeTempDir({ prefix: "config_watch_test_" });
  const home = join(root, "home");
  const cwd = join(root, "work", "project");
  await Deno.mkdir(home, { recursive: true });
  await Deno.mkdir(cwd, { recursive: true });
  return { root, home, cwd, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

async function writeConfig(path: string, ...names: string[]): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const servers = Object.fromEntries(names.map((n) => [n, { command: "echo", args: [n] }]));
  await Deno.writeTextFile(path, JSON.stringify({ mcpServers: servers }));
}

/** The real file system, counting stats (and with `exists`, when given). */
function countingFs(exists?: (path: string) => boolean): ConfigFs & { stats: number } {
  const fs = {
    stats: 0,
    stat(path: string) {
      fs.stats++;
      return Deno.stat(path);
    },
    readTextFile: (path: string) => Deno.readTextFile(path),
    ...(exists !== undefined ? { exists } : {}),
  };
  return fs;
}

/** A clock well past every file's mtime, moved by hand. */
function clock(): { now: () => number; advance(ms: number): void } {
  let t = Date.now() + 60_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** A watching source for the layout `t` with a clock past every mtime. */
function watching(
  t: Layout,
  o: { watch: WatchFactory; now: () => number; fs?: ConfigFs; log?: Logger },
): ConfigSource {
  return new ConfigSource({ cwd: t.cwd, home: t.home, env: {}, log: o.log ?? silent, ...o });
}

/** A watcher the test feeds; `emit` resolves once the consumer has handled the event. */
class FakeWatcher implements ConfigWatcher {
  readonly #queue: Deno.FsEvent[] = [];
  #take?: (r: IteratorResult<Deno.FsEvent>) => void;
  #handled?: () => void;
  closed = false;
  constructor(readonly dirs: string[]) {}

  emit(kind: Deno.FsEvent["kind"], path: string): Promise<void> {
    const handled = new Promise<void>((resolve) => this.#handled = resolve);
    const take = this.#take;
    this.#take = undefined;
    if (take) take({ value: { kind, paths: [path] }, done: false });
    else this.#queue.push({ kind, paths: [path] });
    return handled;
  }

  close(): void {
    this.closed = true;
    this.#take?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Deno.FsEvent> {
    return {
      next: () => {
        // Asking for the next event means the previous one was handled.
        this.#handled?.();
        this.#handled = undefined;
        const queued = this.#queue.shift();
        if (queued) return Promise.resolve({ value: queued, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.#take = resolve);
      },
    };
  }
}

function fakeWatchers(): { factory: WatchFactory; all: FakeWatcher[]; last(): FakeWatcher } {
  const all: FakeWatcher[] = [];
  return {
    factory: (dirs) => {
      const w = new FakeWatcher(dirs);
      all.push(w);
      return w;
    },
    all,
    last: () => {
      const w = all.at(-1);
      assert(w !== undefined, "a watcher was opened");
      return w;
    },
  };
}

/**
 * The real watcher, with a way to wait until an event naming a file has been delivered and
 * handled by the source (a signal, not a sleep).
 */
function realWatchers(): { factory: WatchFactory; seen(name: string): Promise<void> } {
  const waiting: { name: string; resolve: () => void }[] = [];
  const factory: WatchFactory = (dirs) => {
    const inner = watchDirs(dirs);
    return {
      close: () => inner.close(),
      async *[Symbol.asyncIterator]() {
        for await (const event of inner) {
          yield event;
          // Resumed: the source handled the event.
          const names = event.paths.map((p) => basename(p));
          for (const w of waiting.splice(0)) {
            if (event.kind !== "access" && names.includes(w.name)) w.resolve();
            else waiting.push(w);
          }
        }
      },
    };
  };
  return {
    factory,
    seen: (name) => new Promise((resolve) => waiting.push({ name, resolve })),
  };
}

Deno.test("watching: an unchanged config costs no stat; an event makes the next call see the edit", async () => {
  await using t = await layout();
  const project = join(t.cwd, ".mcp.json");
  await writeConfig(project, "one");
  const fs = countingFs();
  const time = clock();
  const w = fakeWatchers();
  using source = watching(t, { fs, now: time.now, watch: w.factory });
  const first = await source.current();
  assertEquals(first.servers.map((s) => s.name), ["one"]);
  // The project dir, home (for ~/.lmstudio and ~/.mcp.json) and the parent dir are watched.
  assertEquals(new Set(w.last().dirs), new Set([t.cwd, t.home, dirname(t.cwd)]));
  const stats = fs.stats;
  assertStrictEquals(await source.current(), first);
  assertStrictEquals(await source.current(), first);
  assertEquals(fs.stats, stats, "no stat while nothing changed");

  // Each write another size: the clock is past every mtime (no racy re-read), and two writes may
  // share one timestamp tick.
  await writeConfig(project, "second");
  await w.last().emit("modify", project);
  const second = await source.current();
  assertEquals(second.servers.map((s) => s.name), ["second"], "the call right after the event");

  // In the seconds after an event every call stats: a write whose event is still on its way is
  // seen by the next call.
  await writeConfig(project, "three");
  assertEquals((await source.current()).servers.map((s) => s.name), ["three"]);
  const during = fs.stats;
  await source.current();
  assert(fs.stats > during, "stats while an event is recent");

  time.advance(SETTLE_MS);
  await source.current();
  const settled = fs.stats;
  await source.current();
  assertEquals(fs.stats, settled, "trusted again once the burst is over");
  assertStrictEquals(w.all.length, 1, "one watcher");

  // `verify` always stats; so does the first call after VERIFY_MS.
  await source.current({ verify: true });
  assert(fs.stats > settled);
  const verified = fs.stats;
  time.advance(VERIFY_MS);
  await source.current();
  assert(fs.stats > verified, "stat-checked again after VERIFY_MS");

  // The bridge settings file beside the config is watched too.
  const settings = join(t.cwd, "lmstudio-bridge.json");
  time.advance(SETTLE_MS);
  await source.current();
  await Deno.writeTextFile(settings, JSON.stringify({ tools: { "*/*": "allow" } }));
  await w.last().emit("create", settings);
  assertEquals((await source.current()).bridge.path, settings);

  source.close();
  assert(w.last().closed, "close() closes the watcher");
});

Deno.test("watching: deleting and creating candidates moves to the file that wins", async () => {
  await using t = await layout();
  const project = join(t.cwd, ".mcp.json");
  const home = join(t.home, ".mcp.json");
  await writeConfig(project, "project");
  await writeConfig(home, "home");
  const time = clock();
  const w = fakeWatchers();
  using source = watching(t, { now: time.now, watch: w.factory });
  assertEquals((await source.current()).path, project);
  await Deno.remove(project);
  await w.last().emit("remove", project);
  assertEquals((await source.current()).path, home);
  time.advance(SETTLE_MS);
  await source.current();
  await writeConfig(project, "again");
  await w.last().emit("create", project);
  const back = await source.current();
  assertEquals([back.path, back.servers.map((s) => s.name)], [project, ["again"]]);
  // An event about another file in a watched directory (~/.bash_history) does not count.
  time.advance(SETTLE_MS);
  await source.current();
  await writeConfig(project, "unseen");
  await w.last().emit("modify", join(t.home, ".bash_history"));
  assertEquals((await source.current()).servers.map((s) => s.name), ["again"]);
});

Deno.test("watching for real: an edit of ~/.mcp.json and a new ~/.lmstudio/mcp.json are seen", async () => {
  await using t = await layout();
  const home = join(t.home, ".mcp.json");
  await writeConfig(home, "home");
  const time = clock();
  const fs = countingFs();
  const w = realWatchers();
  using source = watching(t, { fs, now: time.now, watch: w.factory });
  const first = await source.current();
  assertEquals(first.path, home);
  const stats = fs.stats;
  assertStrictEquals(await source.current(), first);
  assertEquals(fs.stats, stats, "found in home, and still no stat while unchanged");

  // Another file in a watched directory does not count (real events carry `flag: null`).
  let seen = w.seen(".bash_history");
  await Deno.writeTextFile(join(t.home, ".bash_history"), "ls\n");
  await seen;
  assertStrictEquals(await source.current(), first);
  assertEquals(fs.stats, stats, "an unrelated file's event costs no stat");

  seen = w.seen(".mcp.json");
  await writeConfig(home, "edited");
  await seen;
  assertEquals((await source.current()).servers.map((s) => s.name), ["edited"]);

  // ~/.lmstudio does not exist: its appearance is seen from home, and then it is watched.
  time.advance(SETTLE_MS);
  await source.current();
  const lmstudio = join(t.home, ".lmstudio", "mcp.json");
  seen = w.seen(".lmstudio");
  await Deno.mkdir(dirname(lmstudio));
  await seen;
  await source.current();
  time.advance(SETTLE_MS);
  await source.current();
  seen = w.seen("mcp.json");
  await writeConfig(lmstudio, "lmstudio");
  await seen;
  const now = await source.current();
  assertEquals([now.path, now.servers.map((s) => s.name)], [lmstudio, ["lmstudio"]]);
});

Deno.test("watching: where no watcher can start, every call stats, and why is logged once", async () => {
  await using t = await layout();
  const project = join(t.cwd, ".mcp.json");
  await writeConfig(project, "one");
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (line) => lines.push(line) });
  const fs = countingFs();
  let tries = 0;
  using source = watching(t, {
    log,
    fs,
    now: clock().now,
    watch: () => {
      tries++;
      throw new Error("inotify watch limit reached");
    },
  });
  await source.current();
  const stats = fs.stats;
  await source.current();
  assert(fs.stats > stats, "a stat per call");
  // Another size: the clock is past every mtime (no racy re-read), and the two writes may share
  // one timestamp tick.
  await writeConfig(project, "three");
  assertEquals((await source.current()).servers.map((s) => s.name), ["three"]);
  assertEquals(tries, 1, "not tried again on every call");
  const notes = lines.filter((l) => l.includes("stat on every call"));
  assertEquals(notes.length, 1, lines.join("\n"));
  assertStringIncludes(notes[0]!, "inotify watch limit reached");
});

Deno.test("verify: an unchanged config is one stat of each file in use; what a call created or changed is seen without an event", async () => {
  await using t = await layout();
  const home = join(t.home, ".mcp.json");
  await writeConfig(home, "home");
  const time = clock();
  const checked: string[] = [];
  const fs = countingFs((path) => {
    checked.push(path);
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  });
  // Events are never delivered: only the verify checks can see the changes.
  const w = fakeWatchers();
  using source = watching(t, { fs, now: time.now, watch: w.factory });
  const first = await source.current();
  assertEquals(first.path, home);

  let stats = fs.stats;
  assertStrictEquals(await source.current({ verify: true }), first);
  assertEquals(fs.stats - stats, 1, "one stat: the file in use");
  const project = join(t.cwd, ".mcp.json");
  const beside = join(t.home, "lmstudio-bridge.json");
  for (const missing of [project, join(t.home, ".lmstudio", "mcp.json"), beside]) {
    assert(checked.includes(missing), `${missing} checked without a stat`);
  }

  // A call made the project's config, which comes first in the search.
  await writeConfig(project, "made");
  const made = await source.current({ verify: true });
  assertEquals(made.path, project);
  assertEquals(made.servers.map((s) => s.name), ["made"]);
  stats = fs.stats;
  assertStrictEquals(await source.current({ verify: true }), made);
  assertEquals(fs.stats - stats, 1, "unchanged again: one stat");

  // Settings beside it, then an edit of the config in use.
  const settings = join(t.cwd, "lmstudio-bridge.json");
  await Deno.writeTextFile(settings, JSON.stringify({ toolShare: 0.3 }));
  assertEquals((await source.current({ verify: true })).bridge.path, settings);
  await writeConfig(project, "made", "edited");
  assertEquals((await source.current({ verify: true })).servers.map((s) => s.name), [
    "made",
    "edited",
  ]);
  // Gone: the search goes on to the home config.
  await Deno.remove(project);
  assertEquals((await source.current({ verify: true })).path, home);
});
