/**
 * Attack: secrets, nesting and the walls the bridge puts up. A secret in the bridge's environment
 * never reaches a downstream server; secrets in a config (args, URLs, `${VAR}` values, env,
 * headers) never show in a listing, log or result; an entry's `env` cannot reset the recursion
 * depth; `analyze_image` refuses loopback, private, link-local and metadata addresses in every
 * spelling, and files that are not images; `allowed_tools` holds against every trick a model has.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { defaultFakeModels } from "./fakes/lmstudio.ts";
import {
  answer,
  lastToolMessage as lastTool,
  ProgrammableModel,
  taskOf,
  toolCalls,
} from "./fixtures/attack_model.ts";
import {
  attackEntry,
  descendants,
  figure,
  resultText,
  startServe,
  survivors,
  tempProject,
} from "./fixtures/attack_support.ts";
import { baseEnv, bridgeCommand, runCli } from "./helpers.ts";

Deno.test("a secret in the bridge's environment never reaches a downstream server", async () => {
  await using model = await ProgrammableModel.start({ token: "lm-token-SECRET-0001" });
  await using project = await tempProject({ a: attackEntry() });
  await using serve = await startServe(project.dir, model.baseUrl, {
    LM_API_TOKEN: "lm-token-SECRET-0001",
    BRIDGE_ONLY_SECRET: "env-SECRET-0002",
    AWS_SECRET_ACCESS_KEY: "aws-SECRET-0003",
  });
  model.play((req) => {
    const told = lastTool(req);
    return told === undefined ? toolCalls({ name: "env", arguments: {} }) : answer(told);
  });
  const r = await serve.call("autonomous_with_mcp", { mcp_name: "a", task: "dump env" });
  const env = JSON.parse(resultText(r).split("\n\n[stopped_because")[0]!) as Record<string, string>;
  const names = Object.keys(env).sort();
  figure(`the downstream server saw: ${names.join(", ")}`);
  for (const secret of ["lm-token-SECRET-0001", "env-SECRET-0002", "aws-SECRET-0003"]) {
    assert(!JSON.stringify(env).includes(secret), `${secret} reached the server`);
  }
  assertEquals(env["LMSTUDIO_BRIDGE_DEPTH"], "1");
});

/** The secrets of the config below, by where they are written. */
const SECRETS = {
  argEquals: "argeq-SECRET-1001",
  argSpace: "argsp-SECRET-1002",
  urlQuery: "query-SECRET-1003",
  userinfo: "userinfo-SECRET-1004",
  varInArgs: "vararg-SECRET-1005",
  varInUrl: "varurl-SECRET-1006",
  envLiteral: "envlit-SECRET-1007",
  varInEnv: "varenv-SECRET-1008",
  headerLiteral: "hdrlit-SECRET-1009",
  varInHeader: "varhdr-SECRET-1010",
} as const;
type Where = keyof typeof SECRETS;

/** Where a config can carry secrets: in args, URLs, `${VAR}` values, env and headers. */
function secretConfig(): Record<string, unknown> {
  return {
    args: attackEntry(
      [`--api-key=${SECRETS.argEquals}`, "--token", SECRETS.argSpace, "--key", "${ATTACK_ARG}"],
      { API_KEY: SECRETS.envLiteral, OTHER_KEY: "${ATTACK_ENV}" },
    ),
    query: { type: "http", url: `http://127.0.0.1:9/mcp?api_key=${SECRETS.urlQuery}` },
    userinfo: { type: "http", url: `http://admin:${SECRETS.userinfo}@127.0.0.1:9/mcp` },
    varurl: { type: "sse", url: "http://127.0.0.1:9/sse?token=${ATTACK_URL}" },
    headers: {
      type: "http",
      url: "http://127.0.0.1:9/mcp",
      headers: { Authorization: `Bearer ${SECRETS.headerLiteral}`, "X-Key": "${ATTACK_HDR}" },
    },
  };
}
const SECRET_ENV = {
  ATTACK_ARG: SECRETS.varInArgs,
  ATTACK_URL: SECRETS.varInUrl,
  ATTACK_ENV: SECRETS.varInEnv,
  ATTACK_HDR: SECRETS.varInHeader,
};

/** Every output that shows the config: the MCP listing, the CLI listings, doctor, a debug log. */
async function everyOutput(): Promise<Record<string, string>> {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject(secretConfig());
  const outputs: Record<string, string> = {};
  const env = {
    LMSTUDIO_BASE_URL: model.baseUrl,
    HOME: project.dir,
    DENO_DIR: baseEnv().DENO_DIR!,
    LMSTUDIO_RETRIES: "0",
    ...SECRET_ENV,
  };
  {
    await using serve = await startServe(project.dir, model.baseUrl, {
      ...SECRET_ENV,
      LOG_LEVEL: "debug",
    });
    const listed = await serve.call("list_available_mcps");
    outputs["list_available_mcps text"] = resultText(listed);
    outputs["list_available_mcps structuredContent"] = JSON.stringify(listed.structuredContent);
    model.play((req) =>
      lastTool(req) === undefined ? toolCalls({ name: "pid", arguments: {} }) : answer("done")
    );
    const task = await serve.call("autonomous_with_mcp", { mcp_name: "args", task: "t" });
    outputs["autonomous result"] = resultText(task) + JSON.stringify(task.structuredContent);
    for (const name of ["query", "userinfo", "varurl", "headers"]) {
      const failed = await serve.call("autonomous_with_mcp", { mcp_name: name, task: "t" });
      outputs[`failed task (${name})`] = resultText(failed);
    }
    await serve.close();
    outputs["serve stderr (LOG_LEVEL=debug)"] = serve.stderr();
  }
  for (const argv of [["mcps"], ["mcps", "--json"], ["doctor", "--json"], ["tools", "args"]]) {
    const run = await runCli(argv, { env, cwd: project.dir });
    outputs[argv.join(" ")] = run.stdout + run.stderr;
  }
  return outputs;
}

/** Which secrets (by where they were written) each output shows. */
function leaks(outputs: Record<string, string>): Map<Where, string[]> {
  const found = new Map<Where, string[]>();
  for (const [where, secret] of Object.entries(SECRETS) as [Where, string][]) {
    const shownIn = Object.entries(outputs).filter(([, text]) => text.includes(secret));
    if (shownIn.length > 0) found.set(where, shownIn.map(([name]) => name));
  }
  return found;
}

let outputsOnce: Promise<Record<string, string>> | undefined;
const outputs = () => outputsOnce ??= everyOutput();

Deno.test("env and header values of a config never show in a listing, log or result", async () => {
  const found = leaks(await outputs());
  const rows = [...found].map(([where, names]) => `${where} in ${names.join(", ")}`);
  figure(
    `${Object.keys(await outputs()).length} outputs read; shown: ${rows.join("; ") || "none"}`,
  );
  for (const where of ["envLiteral", "varInEnv", "headerLiteral", "varInHeader"] as Where[]) {
    assertEquals(found.get(where), undefined, `${where} shown`);
  }
});

Deno.test({
  name:
    "secrets in args, URL queries, URL userinfo and ${VAR} values never show in a listing, log or result",
  fn: async () => {
    const found = leaks(await outputs());
    const rows = [...found].map(([where, names]) => `${where} in ${names.join(", ")}`);
    assertEquals(rows, []);
  },
});

/**
 * A chain of bridges: the config's "bridge" entry is this bridge itself (with `entryEnv`), and
 * the model of every level hands its task to the next level. Answers how many levels ran.
 */
async function nestingLevels(entryEnv: Record<string, string>): Promise<number> {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const { args } = bridgeCommand(["serve"]);
  await project.write({
    bridge: {
      command: "deno",
      args,
      env: {
        LMSTUDIO_BASE_URL: model.baseUrl,
        DENO_DIR: baseEnv().DENO_DIR!,
        LMSTUDIO_RETRIES: "0",
        LOG_LEVEL: "error",
        NO_COLOR: "1",
        ...entryEnv,
      },
    },
  });
  const LIMIT = 6;
  let deepest = 0;
  model.play((req) => {
    const told = lastTool(req);
    const level = Number(taskOf(req).replace("level ", "")) || 0;
    deepest = Math.max(deepest, level + 1);
    if (told !== undefined) return answer(`level ${level}: ${told.slice(0, 200)}`);
    if (level + 1 >= LIMIT) return answer(`level ${level}: deep enough`);
    return toolCalls({
      name: "autonomous_with_mcp",
      arguments: { mcp_name: "bridge", task: `level ${level + 1}`, max_rounds: 2 },
    });
  });
  await using serve = await startServe(project.dir, model.baseUrl);
  const r = await serve.call("autonomous_with_mcp", {
    mcp_name: "bridge",
    task: "level 0",
    max_rounds: 2,
  });
  const text = resultText(r);
  const below = descendants(serve.pid);
  await serve.close();
  await survivors(below);
  figure(`${deepest} level(s) of bridges ran a model; outer answer: ${text.slice(0, 160)}`);
  return deepest;
}

Deno.test("the recursion guard holds: a bridge that hands its task to itself stops at depth 2", async () => {
  const levels = await nestingLevels({});
  assertEquals(levels, 2, `${levels} levels`);
});

Deno.test({
  name: 'an entry\'s env "LMSTUDIO_BRIDGE_DEPTH": "0" does not allow deeper nesting',
  fn: async () => {
    const levels = await nestingLevels({ LMSTUDIO_BRIDGE_DEPTH: "0" });
    assertEquals(levels, 2, `${levels} levels`);
  },
});

Deno.test("analyze_image refuses 26 loopback, private, link-local and metadata address forms and non-image files", async () => {
  await using model = await ProgrammableModel.start({
    models: [...defaultFakeModels(), { id: "vision-7b", type: "vlm", state: "loaded" }],
  });
  await using project = await tempProject();
  await Deno.writeTextFile(project.file("notes.txt"), "plain text, not an image");
  await Deno.writeTextFile(project.file("fake.png"), "<html>not a png</html>");
  await Deno.mkdir(project.file("dir.png"));
  await using serve = await startServe(project.dir, model.baseUrl);
  const port = model.fake.port;
  const hosts = [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    `[::1]:${port}`,
    `[::ffff:127.0.0.1]:${port}`,
    `[::ffff:7f00:1]:${port}`,
    `0x7f.1:${port}`,
    `0x7f000001:${port}`,
    `2130706433:${port}`,
    `0177.0.0.1:${port}`,
    `127.1:${port}`,
    `127.0.0.2:${port}`,
    `0.0.0.0:${port}`,
    `[::]:${port}`,
    "169.254.169.254",
    "[fe80::1]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "[fd00::1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
  ];
  const urls = hosts.map((h) => `http://${h}/latest/meta-data/image.png`);
  const files = [
    project.file("notes.txt"),
    project.file("fake.png"),
    project.file("dir.png"),
    "/etc/passwd",
  ];
  const refused: string[] = [];
  for (const image of [...urls, ...files]) {
    const r = await serve.call("analyze_image", {
      images: [image],
      prompt: "what is it?",
      model: "vision-7b",
    });
    if (r.isError === true) refused.push(image);
    else figure(`accepted: ${image}: ${resultText(r).slice(0, 120)}`);
  }
  const fetched = model.fake.requests.filter((q) => q.path.includes("meta-data"));
  figure(`${refused.length}/${urls.length + files.length} refused; ${fetched.length} fetched`);
  assertEquals(fetched.length, 0, "the bridge fetched a loopback image URL");
  assertEquals(refused.length, urls.length + files.length);
  assertEquals(model.chats, 0, "an image reached the model");
});

Deno.test("allowed_tools holds: 12 bypasses (case, namespacing, look-alikes, text tool calls) run nothing but the allowed tool", async () => {
  await using model = await ProgrammableModel.start();
  await using project = await tempProject();
  const calls = project.file("calls.txt");
  await project.write({ a: attackEntry(["--calls", calls]), b: attackEntry(["--calls", calls]) });
  await using serve = await startServe(project.dir, model.baseUrl);
  const forbidden = { marker: "bypass" };
  const bypasses = [
    "marker",
    "MARKER",
    "Marker",
    "a__marker",
    "a__echo__marker",
    "marker ",
    "m\u0430rker", // Cyrillic a
    "echo\u200b",
    "a/marker",
    "b__echo",
  ];
  const text = (name: string) =>
    answer(`<tool_call>{"name":"${name}","arguments":{"marker":"text"}}</tool_call>`);
  model.sequence([
    toolCalls(
      { name: "a__echo", arguments: { text: "allowed" } },
      ...bypasses.map((name) => ({ name, arguments: forbidden })),
    ),
    text("a__marker"),
    answer('```json\n{"name": "a__env", "arguments": {}}\n```'),
    answer("done"),
  ]);
  const r = await serve.call("autonomous_with_multiple_mcps", {
    mcp_names: ["a", "b"],
    task: "try everything",
    allowed_tools: ["a__echo"],
    max_rounds: 6,
  });
  const ran = (await Deno.readTextFile(calls).catch(() => "")).trim().split("\n");
  figure(`tools that ran: ${ran.join(", ")}; result: ${resultText(r).slice(-160)}`);
  assertEquals(ran, ["echo"]);
  assertMatch(resultText(r), /stopped_because: answer/);
});
