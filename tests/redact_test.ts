/**
 * Secrets never shown: a config full of credentials (URL userinfo, `?api_key=`, `--api-key=X`,
 * `--token X`, `Authorization: Bearer X` in args, `${VAR}` expanding to secrets in args and urls,
 * env and header values), run through every listing, report and error path (mcps, mcps --json,
 * tools, call, doctor, doctor --json, list_available_mcps text and structuredContent, a task's
 * result, notes and trace, debug logs), and all the output searched for each secret.
 */
import { runAgent } from "../lib/agent.ts";
import { agentResultJson } from "../lib/agent.ts";
import { openTraceFile } from "../lib/agent_trace.ts";
import { ConfigSource } from "../lib/config.ts";
import { entryTarget, redactEntryText, resolveEntry } from "../lib/config_entry.ts";
import { LmStudioClient } from "../lib/lmstudio.ts";
import { createLogger } from "../lib/log.ts";
import { join } from "../lib/path.ts";
import { McpPool } from "../lib/pool.ts";
import { McpServer } from "../lib/sdk.ts";
import { registerListAvailableMcpsTool } from "../lib/server_mcp.ts";
import { errorMessage } from "../lib/errors.ts";
import { answer, CHAT } from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { chatReply, FakeLmStudio } from "./fakes/lmstudio.ts";
import { cachedRun, denoChildEnv } from "./fixtures/pool_support.ts";
import { runCli } from "./helpers.ts";
import { connectInMemory } from "./rigs.ts";
import { redactArgs, redactText, redactUrl } from "../lib/redact.ts";

const RAW = new URL("./fixtures/pool_raw_server.ts", import.meta.url).pathname;

/** Every secret of the config; none may appear in any output. */
const SECRET = {
  fromVar: "var-secret-1a2b3c4d5e",
  apiKey: "lit-apikey-9f8e7d6c",
  token: "lit-token-5a6b7c8d",
  bearer: "lit-bearer-1q2w3e4r",
  password: "url-password-0o9i8u7y",
  query: "url-query-3e4r5t6y",
  urlVar: "url-var-7u8i9o0p",
  env: "env-value-2w3e4r5t",
  header: "header-value-6y7u8i9o",
};

/** The environment the bridge runs with: what the `${VAR}` references expand to. */
const VARS = { TOKEN_A: SECRET.fromVar, URL_SECRET: SECRET.urlVar };

function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The servers: one that works, one that dies at start, remote ones nobody answers. */
function servers(port: number): Record<string, unknown> {
  const secretArgs = [
    `--api-key=${SECRET.apiKey}`,
    "--token",
    SECRET.token,
    `Authorization: Bearer ${SECRET.bearer}`,
    "--auth=${TOKEN_A}",
  ];
  const raw = (env: Record<string, string>) => ({
    // By name, as the bridge permission set allows it.
    command: "deno",
    args: cachedRun([RAW, ...secretArgs]),
    env: {
      ...denoChildEnv(),
      RAW_TOOLS: JSON.stringify([{ name: "crash", inputSchema: { type: "object" } }]),
      API_TOKEN: SECRET.env,
      ...env,
    },
  });
  return {
    raw: raw({}),
    failing: raw({ RAW_FAIL_START: "1" }),
    dead_http: {
      type: "http",
      url: `http://admin:${SECRET.password}@127.0.0.1:${port}/mcp?api_key=${SECRET.query}`,
      headers: { "X-Api-Key": SECRET.header },
    },
    dead_var: { type: "http", url: `http://127.0.0.1:${port}/mcp?token=\${URL_SECRET}&page=1` },
    dead_sse: { type: "sse", url: `http://127.0.0.1:${port}/sse?key=${SECRET.query}` },
    bad_url: { type: "http", url: "notaurl-${URL_SECRET}" },
    off: { command: "x", args: [`--token=${SECRET.token}`], disabled: true },
  };
}

function assertNoSecret(output: string, where: string): void {
  for (const [name, value] of Object.entries(SECRET)) {
    assert(!output.includes(value), `${where} shows the ${name} secret:\n${output}`);
  }
}

Deno.test("redactArgs, redactUrl and redactText hide credentials and keep ${VAR} references", () => {
  assertEquals(
    redactArgs([
      "--api-key=abc123",
      "--token",
      "tok123",
      "--token",
      "${T}",
      "Authorization: Bearer lit-1234",
      "Authorization: Bearer ${TOKEN}",
      "API_KEY=xyz789",
      "--password=${P:-default-pw}",
      "--port",
      "8080",
      "ghp_abcdefghijklmnopqrstuvwx",
    ]),
    [
      "--api-key=***",
      "--token",
      "***",
      "--token",
      "${T}",
      "Authorization: Bearer ***",
      "Authorization: Bearer ${TOKEN}",
      "API_KEY=***",
      "--password=${P:-***}",
      "--port",
      "8080",
      "***",
    ],
  );
  assertEquals(
    redactUrl("https://u:p@h/mcp?api_key=abc&token=${T}&page=2"),
    "https://***@h/mcp?api_key=***&token=${T}&page=2",
  );
  assertEquals(redactUrl("https://${USER}:${PASS}@h/x"), "https://${USER}:${PASS}@h/x");
  assertEquals(
    redactText("failed for url (http://a:b@h:9/x?key=k1): Bearer abcdef; --token=zz9 API_KEY=q1"),
    "failed for url (http://***@h:9/x?key=***): Bearer ***; --token=*** API_KEY=***",
  );
  // An entry is shown as written: references, never their values.
  const entry = resolveEntry("s", {
    command: "npx",
    args: ["--key", "${K}", "--token=${X:-dflt1}"],
  }, {
    path: "/p/.mcp.json",
    env: { K: "sekrit-123" },
  });
  assertEquals(entry.args, ["--key", "sekrit-123", "--token=dflt1"]);
  assertEquals(entryTarget(entry), 'npx --key "${K}" "--token=${X:-***}"');
  assertEquals(redactEntryText(entry, "it said sekrit-123 and dflt1"), "it said ${K} and ${X}");
  // Prose stays readable.
  assertEquals(
    redactText("--api-key is required; token expired"),
    "--api-key is required; token expired",
  );
});

Deno.test("no listing, report, error, trace or debug log shows a server's secrets", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "redact_test_" });
  const configPath = join(dir, ".mcp.json");
  await Deno.writeTextFile(configPath, JSON.stringify({ mcpServers: servers(deadPort()) }));
  const cliEnv = {
    ...VARS,
    LOG_LEVEL: "debug",
    MCP_JSON_PATH: configPath,
    LMSTUDIO_BASE_URL: `http://127.0.0.1:${deadPort()}`,
    MCP_CONNECT_TIMEOUT_MS: "20000",
  };
  const everything: string[] = [];
  try {
    await t.step("the CLI: mcps, tools, call, doctor (LOG_LEVEL=debug)", async () => {
      const runs = [
        ["mcps"],
        ["mcps", "--json"],
        ["tools", "raw"],
        ["call", "raw", "crash"],
        ...["failing", "dead_http", "dead_var", "dead_sse", "bad_url"].map((s) => ["tools", s]),
        ["doctor"],
        ["doctor", "--json"],
      ];
      for (const args of runs) {
        const run = await runCli(args, { env: cliEnv });
        const output = `$ ${args.join(" ")}\n${run.stdout}\n${run.stderr}`;
        everything.push(output);
        assertNoSecret(output, args.join(" "));
      }
      const mcps = everything[0]!;
      // What is shown instead: the references, and *** for literals.
      assertStringIncludes(mcps, "--auth=${TOKEN_A}");
      assertStringIncludes(mcps, "--api-key=***");
      assertStringIncludes(mcps, '"Authorization: Bearer ***"');
      assertStringIncludes(mcps, "http://***@127.0.0.1:");
      assertStringIncludes(mcps, "/mcp?token=${URL_SECRET}&page=1");
      assertStringIncludes(everything.join("\n"), "raw fixture started with:");
      assertStringIncludes(everything.join("\n"), "DEBUG");
      assertStringIncludes(everything.join("\n"), "/mcp?api_key=***: connection refused");
    });

    await t.step(
      "in process: errors, list_available_mcps, a task's result, notes and trace",
      async () => {
        const lines: string[] = [];
        const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
        const config = new ConfigSource({ explicitPath: configPath, env: VARS, cwd: dir, log });
        const pool = new McpPool({ config, log, connectTimeoutMs: 20_000 });
        const fake = await FakeLmStudio.start();
        try {
          for (const server of ["raw", "failing", "dead_http", "dead_var", "dead_sse", "bad_url"]) {
            try {
              await pool.callTool(server, "crash", {});
            } catch (error) {
              everything.push(errorMessage(error));
              if (error instanceof Error) everything.push(String(error.stack));
            }
          }
          const server = new McpServer({ name: "t", version: "0" });
          registerListAvailableMcpsTool(server, { pool: () => Promise.resolve(pool) });
          await using client = await connectInMemory(server);
          const listed = await client.call("list_available_mcps");
          everything.push(JSON.stringify(listed));
          assertStringIncludes(JSON.stringify(listed.structuredContent), "${TOKEN_A}");

          fake.script(
            CHAT,
            { body: chatReply({ toolCalls: [{ name: "crash", arguments: "{}" }] }) },
            answer("done"),
          );
          const tracePath = join(dir, "trace.jsonl");
          const trace = await openTraceFile(tracePath);
          const client2 = new LmStudioClient({ baseUrl: fake.baseUrl, retries: 0, log });
          const result = await runAgent({
            task: "crash it",
            servers: "all",
            ttlSeconds: 600,
            trace,
            deps: { client: client2, pool, config, log },
          });
          await trace.close();
          const traced = await Deno.readTextFile(tracePath);
          assertStringIncludes(traced, "raw fixture started with:");
          everything.push(JSON.stringify(agentResultJson(result)), traced);
        } finally {
          await pool.close();
          await fake.close();
        }
        everything.push(...lines);
        assertNoSecret(everything.join("\n"), "the in-process output");
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
