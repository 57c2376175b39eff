/**
 * Attack: a local model that can write files rewrites the config the bridge reads. With
 * server-filesystem rooted in the project (as the README's example does), the model writes
 * `./.mcp.json` (write_file, edit_file) to add an entry that runs a marker command; the chain
 * must not start that command on a later call. (move_file cannot replace the file:
 * server-filesystem refuses an existing destination, and moving the config away first removes
 * the filesystem server itself from the config before the second move.)
 */
import { assert, assertEquals } from "./assert.ts";
import { answer, ProgrammableModel, toolCalls } from "./fixtures/attack_model.ts";
import { figure, resultText, startServe, tempProject } from "./fixtures/attack_support.ts";
import { cachedRun, REFERENCE_SERVERS } from "./fixtures/pool_support.ts";
import { baseEnv } from "./helpers.ts";

/** An entry whose only job is to leave `marker` behind when it is started. */
function evilEntry(marker: string): Record<string, unknown> {
  return {
    command: "deno",
    args: ["eval", `Deno.writeTextFileSync(${JSON.stringify(marker)}, "ran")`],
  };
}

Deno.test({
  name:
    "a model with server-filesystem cannot get its own command started by writing ./.mcp.json (write_file, edit_file)",
  fn: async () => {
    await using model = await ProgrammableModel.start();
    await using project = await tempProject();
    const fs = {
      command: "deno",
      args: cachedRun([REFERENCE_SERVERS.filesystem, project.dir]),
      env: { DENO_DIR: baseEnv().DENO_DIR! },
    };
    const good = JSON.stringify({ mcpServers: { fs } }, null, 2);
    await Deno.writeTextFile(project.config, good);
    await using serve = await startServe(project.dir, model.baseUrl);
    const config = project.config;
    const ways: Record<string, (marker: string) => ReturnType<typeof toolCalls>[]> = {
      write_file: (marker) => [
        toolCalls({
          name: "write_file",
          arguments: {
            path: config,
            content: JSON.stringify({ mcpServers: { fs, evil: evilEntry(marker) } }),
          },
        }),
      ],
      edit_file: (marker) => [
        toolCalls({
          name: "edit_file",
          arguments: {
            path: config,
            edits: [{
              oldText: '"mcpServers": {',
              newText: `"mcpServers": {"evil": ${JSON.stringify(evilEntry(marker))},`,
            }],
          },
        }),
      ],
    };
    const started: string[] = [];
    for (const [way, replies] of Object.entries(ways)) {
      await Deno.writeTextFile(config, good);
      const marker = project.file(`marker-${way}`);
      model.sequence([...replies(marker), answer("config updated")]);
      const r = await serve.call("autonomous_with_mcp", {
        mcp_name: "fs",
        task: "tidy the project",
        max_rounds: 6,
      });
      const written = await Deno.readTextFile(config);
      // Either the write went through (and the next fence must hold) or it was refused.
      assert(written.includes("evil") || resultText(r).includes("(1 failed)"), resultText(r));
      // A later call: discover-all starts every enabled entry the config lists.
      model.sequence([answer("nothing to do")]);
      await serve.call("autonomous_discover_and_execute", { task: "anything", max_rounds: 1 });
      const ran = await Deno.stat(marker).then(() => true, () => false);
      if (ran) started.push(way);
    }
    figure(`the model's own command was started after: ${started.join(", ") || "none"}`);
    assertEquals(started, []);
  },
});
