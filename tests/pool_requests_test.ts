/**
 * Requests downstream servers send the bridge during a tool call (sampling, elicitation): the
 * pool advertises them, hands each to the handler the call in flight registered (the oldest, with
 * several), refuses them with a reason when none can answer, never lets a sampling handler answer
 * an elicitation, and does not time a call out while the bridge is answering its server.
 * Against the reference server-everything and our fixture.
 */
import type { CreateMessageResult, ElicitResult } from "../lib/sdk.ts";
import type { McpPool } from "../lib/pool.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { fixtureEntry, TempConfig } from "./fixtures/pool_config.ts";
import {
  cachedEntry,
  fileExists,
  REFERENCE_SERVERS,
  textOf,
  waitFor,
} from "./fixtures/pool_support.ts";
import { join } from "../lib/path.ts";

async function withPool(
  servers: Record<string, unknown>,
  body: (pool: McpPool, dir: string) => Promise<void>,
): Promise<void> {
  const cfg = new TempConfig(servers);
  const pool = cfg.pool();
  try {
    await body(pool, cfg.dir);
  } finally {
    await pool.close();
    cfg.remove();
  }
}

const reply = (text: string): CreateMessageResult => ({
  role: "assistant",
  model: "local-test-model",
  content: { type: "text", text },
});

Deno.test("server-everything's sampling and elicitation reach the call's handlers", async (t) => {
  const everything = cachedEntry([REFERENCE_SERVERS.everything, "stdio"]);
  await withPool({ everything }, async (pool) => {
    await t.step("it offers its sampling and elicitation tools to the bridge", async () => {
      const names = (await pool.listTools("everything")).map((tool) => tool.name);
      for (const name of ["trigger-sampling-request", "trigger-elicitation-request"]) {
        assert(names.includes(name), `${name} is offered: ${names.join(", ")}`);
      }
    });
    await t.step("a sampling request is answered by the call's sample handler", async () => {
      const asked: unknown[] = [];
      const result = await pool.callTool("everything", "trigger-sampling-request", {
        prompt: "name a colour",
        maxTokens: 20,
      }, {
        onServerRequest: {
          sample: (params) => {
            asked.push(params);
            return Promise.resolve(reply("teal"));
          },
        },
      });
      assertEquals(result.isError, undefined);
      assertStringIncludes(textOf(result), '"text": "teal"');
      assertEquals(asked.length, 1);
      assertEquals(JSON.stringify(asked[0]).includes("name a colour"), true);
    });
    await t.step("an elicitation is answered by the call's elicit handler", async () => {
      let message = "";
      const result = await pool.callTool("everything", "trigger-elicitation-request", {}, {
        onServerRequest: {
          elicit: (params) => {
            message = params.message;
            const answer: ElicitResult = {
              action: "accept",
              content: { name: "Ada", check: true, email: "ada@example.com" },
            };
            return Promise.resolve(answer);
          },
        },
      });
      assertEquals(message, "Please provide inputs for the following fields:");
      assertStringIncludes(textOf(result), "Ada");
    });
    await t.step("without handlers both are refused, saying why", async () => {
      const sampled = await pool.callTool("everything", "trigger-sampling-request", {
        prompt: "x",
      });
      assertEquals(sampled.isError, true);
      assertStringIncludes(textOf(sampled), "no task is running that could answer it");
      const elicited = await pool.callTool("everything", "trigger-elicitation-request", {});
      assertEquals(elicited.isError, true);
      assertStringIncludes(textOf(elicited), "the caller cannot answer elicitation");
    });
    await t.step("a sample handler never answers an elicitation", async () => {
      let sampled = 0;
      const result = await pool.callTool("everything", "trigger-elicitation-request", {}, {
        onServerRequest: {
          sample: () => {
            sampled++;
            return Promise.resolve(reply("I am the model"));
          },
        },
      });
      assertEquals(sampled, 0);
      assertEquals(result.isError, true);
      assertStringIncludes(textOf(result), "The local model never answers elicitation.");
    });
    await t.step("status counts what the server asked", async () => {
      const requests = (await pool.status()).servers[0]?.requests;
      assertEquals(requests, { sampling: 2, elicitation: 3, refused: 3 });
    });
  });
});

Deno.test("a server's request goes to the oldest call in flight that can answer it", async () => {
  await withPool({ fx: fixtureEntry(["--extras"]) }, async (pool, dir) => {
    const started = join(dir, "started");
    const release = join(dir, "release");
    const answered: string[] = [];
    const handler = (who: string) => ({
      sample: () => {
        answered.push(who);
        return Promise.resolve(reply(`from ${who}`));
      },
    });
    // The oldest call waits on the server; the one after it asks for a sampling.
    const oldest = pool.callTool("fx", "slow", { ms: 1, started, release }, {
      onServerRequest: handler("oldest"),
    });
    await waitFor("the first call to reach the server", () => fileExists(started));
    const asking = await pool.callTool("fx", "sample", { text: "hi" }, {
      onServerRequest: handler("newer"),
    });
    assertStringIncludes(textOf(asking), "from oldest");
    Deno.writeTextFileSync(release, "");
    assertEquals(textOf(await oldest), "done after 1 steps");
    // With the oldest call done, the next one answers its own request.
    const alone = await pool.callTool("fx", "sample", { text: "hi" }, {
      onServerRequest: handler("alone"),
    });
    assertStringIncludes(textOf(alone), "from alone");
    assertEquals(answered, ["oldest", "alone"]);
  });
});

Deno.test("a handler's signal aborts when its call is cancelled", async () => {
  await withPool({ fx: fixtureEntry(["--extras"]) }, async (pool) => {
    const cancel = new AbortController();
    let asked!: () => void;
    const askedOnce = new Promise<void>((resolve) => asked = resolve);
    let aborted!: () => void;
    const abortSeen = new Promise<void>((resolve) => aborted = resolve);
    const call = pool.callTool("fx", "elicit", { question: "Your name?" }, {
      signal: cancel.signal,
      onServerRequest: {
        elicit: (_params, signal) =>
          new Promise<ElicitResult>((_, reject) => {
            asked();
            signal.addEventListener("abort", () => {
              aborted();
              reject(signal.reason);
            }, { once: true });
          }),
      },
    });
    await askedOnce;
    cancel.abort();
    await abortSeen;
    const error = await call.then(() => undefined, (e: unknown) => e);
    assert(error instanceof Error);
    assertStringIncludes(error.message, 'Call to tool "elicit" on MCP server "fx" was cancelled.');
  });
});

Deno.test("a call does not time out while the bridge answers its server", async () => {
  await withPool({ fx: fixtureEntry(["--extras"]) }, async (pool) => {
    const timeoutMs = 1000;
    const result = await pool.callTool("fx", "elicit", { question: "Slow human?" }, {
      timeoutMs,
      onServerRequest: {
        // A person takes well over the call's timeout to answer.
        elicit: async () => {
          await new Promise((resolve) => setTimeout(resolve, 3 * timeoutMs));
          return { action: "accept", content: { answer: "finally" } };
        },
      },
    });
    assertEquals(result.isError, undefined);
    assertStringIncludes(textOf(result), '"answer":"finally"');
  });
});
