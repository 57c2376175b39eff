/**
 * Hot reload of the MCP config: every tool call asks ConfigSource.current(), which only stats the
 * file when nothing changed; after an edit it reads and parses it again, and for the next 2 s
 * (while the file's timestamp cannot be trusted) it re-reads it on every call to compare. With
 * `watch` (what the bridge runs with), an unchanged config costs no stat at all, and for
 * SETTLE_MS (250 ms) after a file-system event every call stats again.
 * Measured on a 50-server file (stdio entries with `${VAR}` expansion and env, HTTP and SSE
 * entries with headers), found as ./.mcp.json (the first candidate) and as ~/.mcp.json (after
 * two candidates that do not exist).
 */
import { ConfigSource, parseConfigText } from "../../lib/config.ts";
import { watchDirs, type WatchFactory } from "../../lib/config_watch.ts";
import { join } from "../../lib/path.ts";
import { check, quiet, Shared } from "./support.ts";

const SERVERS = 50;
const ENV = { API_TOKEN: "secret", WORKSPACE: "/srv/work" };

/** A config in Claude Code's shape: 40 stdio servers, 5 HTTP, 5 SSE, JSONC comments. */
function configText(): string {
  const servers: Record<string, unknown> = {};
  for (let i = 0; i < SERVERS; i++) {
    const name = `server-${String(i).padStart(2, "0")}`;
    if (i % 10 === 8) {
      servers[name] = {
        type: "http",
        url: `http://127.0.0.1:${8000 + i}/mcp`,
        headers: { Authorization: "Bearer ${API_TOKEN}" },
      };
    } else if (i % 10 === 9) {
      servers[name] = { type: "sse", url: `http://localhost:${8000 + i}/sse` };
    } else {
      servers[name] = {
        command: i % 2 === 0 ? "npx" : "uvx",
        args: ["-y", `@example/mcp-server-${i}@1.2.${i}`, "--root", "${WORKSPACE:-/tmp}/p${i}"],
        env: { TOKEN: "${API_TOKEN}", LOG_LEVEL: "${LOG_LEVEL:-info}", INDEX: String(i) },
        ...(i % 7 === 0 ? { disabled: true } : {}),
      };
    }
  }
  const json = JSON.stringify({ mcpServers: servers }, null, 2);
  return `// Project MCP servers (JSONC)\n${json}\n`;
}

const TEXT = configText();

interface ConfigFixture {
  dir: string;
  path: string;
  source: ConfigSource;
  /** Finds the file as ~/.mcp.json: its cwd has no .mcp.json, nor its parent. */
  inHome: ConfigSource;
  /** A clock that keeps the file "just edited" (half a second old) for every call. */
  justEdited: ConfigSource;
  /** Watching, found as ./.mcp.json. */
  watched: ConfigSource;
  /** Watching, found as ~/.mcp.json. */
  watchedInHome: ConfigSource;
  /** Watching, with a clock that stays within SETTLE_MS of an event: right after an edit. */
  watchedAfterEdit: ConfigSource;
}

/** The real watcher, which reports one change of `path` as soon as it starts. */
function editedAtStart(path: string): WatchFactory {
  return (dirs) => {
    const inner = watchDirs(dirs);
    return {
      close: () => inner.close(),
      async *[Symbol.asyncIterator]() {
        yield { kind: "modify", paths: [path] };
        yield* inner;
      },
    };
  };
}

const fixture = new Shared<ConfigFixture>(async () => {
  const dir = await Deno.makeTempDir({ prefix: "config_bench_" });
  const path = join(dir, ".mcp.json");
  await Deno.writeTextFile(path, TEXT);
  // A file written less than 2 s ago is re-read on every call (its timestamp may not change on
  // the next edit); a file edited a minute ago is the steady state.
  const past = new Date(Date.now() - 60_000);
  await Deno.utime(path, past, past);
  const source = newSource(dir);
  const elsewhere = join(dir, "elsewhere", "cwd");
  await Deno.mkdir(elsewhere, { recursive: true });
  const inHome = new ConfigSource({ env: ENV, cwd: elsewhere, home: dir, log: quiet });
  const justEdited = new ConfigSource({
    env: ENV,
    cwd: dir,
    home: dir,
    log: quiet,
    now: () => past.getTime() + 500,
  });
  const watched = new ConfigSource({ env: ENV, cwd: dir, home: dir, log: quiet, watch: true });
  const watchedInHome = new ConfigSource({
    env: ENV,
    cwd: elsewhere,
    home: dir,
    log: quiet,
    watch: true,
  });
  const fixed = Date.now();
  const watchedAfterEdit = new ConfigSource({
    env: ENV,
    cwd: dir,
    home: dir,
    log: quiet,
    now: () => fixed,
    watch: editedAtStart(path),
  });
  const all = [source, inHome, justEdited, watched, watchedInHome, watchedAfterEdit];
  for (const s of all) {
    const config = await s.current();
    check(config.servers.length === SERVERS && config.path === path, `50 servers from ${path}`);
  }
  const closeAll = () => all.forEach((s) => s.close());
  return {
    value: { dir, path, source, inHome, justEdited, watched, watchedInHome, watchedAfterEdit },
    close: () => {
      closeAll();
      return Deno.remove(dir, { recursive: true });
    },
    abandon: () => {
      closeAll();
      Deno.removeSync(dir, { recursive: true });
    },
  };
});

/** A source that finds ./.mcp.json in `dir` (the project file, first in the search order). */
function newSource(dir: string): ConfigSource {
  return new ConfigSource({ env: ENV, cwd: dir, home: dir, log: quiet });
}

const group = "config: 50 servers";

const unchanged = [
  ["current() when unchanged (stat only)", "source"],
  ["current() when unchanged, found as ~/.mcp.json", "inHome"],
  ["current() in the 2 s after an edit (stat + read + compare)", "justEdited"],
  ["watching: current() when unchanged (no stat)", "watched"],
  ["watching: current() when unchanged, found as ~/.mcp.json", "watchedInHome"],
  ["watching: current() right after an event (stat)", "watchedAfterEdit"],
] as const;

for (const [name, key] of unchanged) {
  Deno.bench({
    name,
    group,
    baseline: key === "source",
    async fn(b) {
      const source = (await fixture.get())[key];
      b.start();
      const config = await source.current();
      b.end();
      check(config.servers.length === SERVERS, "same config");
    },
  });
}

Deno.bench({
  name: "current() after a change (stat + read + parse)",
  group,
  async fn(b) {
    const { dir } = await fixture.get();
    // A new source has no snapshot: exactly what a changed file costs.
    const source = newSource(dir);
    b.start();
    const config = await source.current();
    b.end();
    check(config.servers.length === SERVERS && config.error === undefined, "parsed");
  },
});

Deno.bench({
  name: "parseConfigText alone (JSONC, validation, ${VAR} expansion)",
  group,
  async fn(b) {
    const { path } = await fixture.get();
    b.start();
    const servers = parseConfigText(TEXT, { path, env: ENV, home: "/home/user" });
    b.end();
    check(servers.length === SERVERS, "parsed");
  },
});
