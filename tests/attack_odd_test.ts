/**
 * Attack: odd but valid servers (tool names like `__proto__`, 300 characters, spaces, unicode,
 * duplicates; self-referencing and property-less schemas; a 200 kB description; bursts of
 * list_changed, log messages and server-to-client requests), badly declared tools, and terminal
 * escape sequences in a server's stderr, descriptions and results.
 */
import { assert, assertEquals } from "./assert.ts";
import type { RecordedRequest } from "./fakes/lmstudio.ts";
import { answer, ProgrammableModel, toolCalls, toolMessages } from "./fixtures/attack_model.ts";
import { ODD_NAMES } from "./fixtures/attack_server.ts";
import {
  attackEntry,
  figure,
  resultText,
  startServe,
  tempProject,
} from "./fixtures/attack_support.ts";
import { baseEnv, runCli } from "./helpers.ts";

interface OfferedTool {
  function: { name: string; description?: string };
}
const offered = (req: RecordedRequest): OfferedTool[] =>
  (req.body as { tools?: OfferedTool[] }).tools ?? [];
Deno.test("odd but valid tools: all 11 odd names and schemas are offered and callable, duplicates and a burst of 200 notifications, logs and requests break nothing", async () => {
  // The 200 kB description alone is ~52,000 tokens: a model loaded with a 256k context.
  await using model = await ProgrammableModel.start({
    models: [{
      id: "long-context",
      type: "llm",
      state: "loaded",
      maxContextLength: 262_144,
      loadedContextLength: 262_144,
      toolUse: true,
    }],
  });
  await using project = await tempProject();
  const calls = project.file("calls.txt");
  await project.write({ odd: attackEntry(["--odd", "--calls", calls]) });
  await using serve = await startServe(project.dir, model.baseUrl);
  let told: string[] = [];
  let names: string[] = [];
  model.play((req, n) => {
    if (n === 0) {
      const odd = offered(req).filter((t) =>
        /^(Odd tool|A very long)/.test(t.function.description ?? "")
      );
      names = odd.map((t) => t.function.name);
      return toolCalls(...names.map((name) => ({ name, arguments: {} })));
    }
    if (n === 1) {
      told = toolMessages(req);
      return toolCalls({ name: "burst", arguments: { n: 200 } });
    }
    if (n === 2) return toolCalls({ name: "echo", arguments: { text: "still fine" } });
    return answer(`last: ${toolMessages(req).at(-1)}`);
  });
  const r = await serve.call("autonomous_with_mcp", { mcp_name: "odd", task: "call them all" });
  const ran = (await Deno.readTextFile(calls).catch(() => "")).trim().split("\n");
  assert(ran.length > 1, `no odd tool ran: ${resultText(r).slice(0, 1500)}`);
  figure(
    `offered as: ${
      names.map((n) => n.length > 40 ? `${n.slice(0, 20)}…(${n.length})` : n).join(", ")
    }`,
  );
  for (const name of ODD_NAMES) {
    assert(ran.includes(name), `${name.slice(0, 40)} never reached the server: ${ran.join(", ")}`);
  }
  // The duplicate `echo` goes to the server's one echo (called without text here).
  told.forEach((t, i) =>
    assert(
      t.startsWith("called:") || names[i]!.startsWith("echo"),
      `${names[i]}: ${JSON.stringify(t.slice(0, 300))}`,
    )
  );
  assert(ran.includes("burst"), `burst never ran: ${ran.join(",")} ${resultText(r).slice(0, 800)}`);
  assert(resultText(r).startsWith("last: still fine"), resultText(r).slice(0, 300));
  for (const name of names) assert(/^[a-zA-Z0-9_-]{1,64}$/.test(name), `offered as ${name}`);
  // The CLI lists the same server without choking.
  const tools = await runCli(["tools", "odd", "--json"], {
    env: { HOME: project.dir, DENO_DIR: baseEnv().DENO_DIR! },
    cwd: project.dir,
  });
  assertEquals(tools.code, 0, tools.stderr);
  figure(
    `${ODD_NAMES.length}/${ODD_NAMES.length} odd tools ran; tools --json: ${tools.stdout.length} bytes`,
  );
});

Deno.test({
  name:
    "a tool without inputSchema or with a non-object schema is skipped; the server's other tools still work",
  fn: async () => {
    await using model = await ProgrammableModel.start();
    await using project = await tempProject({ bad: attackEntry(["--bad-schema"]) });
    await using serve = await startServe(project.dir, model.baseUrl);
    model.play((req) =>
      toolMessages(req).length === 0
        ? toolCalls({ name: "echo", arguments: { text: "usable" } })
        : answer(`got ${toolMessages(req)[0]}`)
    );
    const r = await serve.call("autonomous_with_mcp", { mcp_name: "bad", task: "echo" });
    assertEquals(resultText(r).split("\n")[0], "got usable");
  },
});

/** ESC, BEL and the C1 CSI (raw, or escaped in JSON text): what makes a terminal act. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x1b\x07\x9b]|\\u001b|\\u0007|\\u009b/i;

Deno.test({
  name:
    "terminal escapes from a server's stderr, descriptions and results never reach the terminal (call, tools, doctor, run) or the bridge's MCP results",
  fn: async () => {
    await using model = await ProgrammableModel.start();
    await using project = await tempProject({
      esc: attackEntry(["--escapes"]),
      dead: attackEntry(["--escapes", "--exit-at-start", "4"]),
    });
    const env = {
      LMSTUDIO_BASE_URL: model.baseUrl,
      HOME: project.dir,
      DENO_DIR: baseEnv().DENO_DIR!,
      LMSTUDIO_RETRIES: "0",
    };
    const outputs: Record<string, string> = {};
    for (
      const argv of [
        ["call", "esc", "escape"],
        ["call", "esc", "crash"],
        ["tools", "esc"],
        ["doctor"],
      ]
    ) {
      const run = await runCli(argv, { env, cwd: project.dir });
      outputs[argv.join(" ")] = run.stdout + run.stderr;
    }
    model.sequence([toolCalls({ name: "crash", arguments: {} })]);
    const run = await runCli(["run", "--mcp", "esc", "--max-rounds", "1", "go"], {
      env,
      cwd: project.dir,
    });
    outputs["run"] = run.stdout + run.stderr;
    {
      await using serve = await startServe(project.dir, model.baseUrl);
      model.sequence([
        toolCalls({ name: "escape", arguments: {} }),
        toolCalls({ name: "crash", arguments: {} }),
        answer("done"),
      ]);
      const r = await serve.call("autonomous_with_mcp", { mcp_name: "esc", task: "go" });
      outputs["autonomous result"] = resultText(r) + JSON.stringify(r.structuredContent);
      const dead = await serve.call("autonomous_with_mcp", { mcp_name: "dead", task: "go" });
      outputs["failed task"] = resultText(dead);
      const listed = await serve.call("list_available_mcps");
      outputs["list_available_mcps"] = resultText(listed) +
        JSON.stringify(listed.structuredContent);
    }
    const leaked = Object.entries(outputs).filter(([, text]) => CONTROL.test(text)).map(([k]) => k);
    figure(`escape sequences reached: ${leaked.join(", ") || "nothing"}`);
    assertEquals(leaked, []);
  },
});
