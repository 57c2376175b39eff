/**
 * Approval of the local model's tool calls (lib/agent_approval.ts): which rule decides, the
 * defaults by MCP annotations, and the gate through runAgent against the fixture server (see
 * tests/agent_harness.ts), whose `note` tool is not read-only and records each note it takes, so
 * a test sees from the server's side whether a call ran.
 */
import { allowSnippet, matchRule, verdictFor } from "../lib/agent_approval.ts";
import type { ApprovalRequest, ApprovalRules, Approver } from "../lib/agent_types.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import {
  answer,
  calls,
  CHAT,
  type Harness,
  settlesWithin,
  toolMessages,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { chatReply } from "./fakes/lmstudio.ts";
import { waitFor } from "./fixtures/pool_support.ts";
import { REDACTED } from "../lib/redact.ts";

Deno.test("the most specific rule decides, in the documented order", async (t) => {
  const rules: ApprovalRules = {
    tools: {
      "*": "ask",
      "*/*": "allow",
      "*/read_*": "allow",
      "*/delete_file": "deny",
      "fs/write_*": "ask",
      "fs/write_file": "deny",
      "f?/write_notes": "allow",
      "move_file": "allow",
    },
    servers: {
      fs: { tools: { "write_*": "allow", "write_notes": "ask", "move_*": "deny" } },
      memory: { tools: { "*": "allow", "create_*": "ask" } },
    },
  };
  const cases: [string, string, string | undefined][] = [
    // 1. exact server and tool: the server's own section and the global one tie; stricter wins.
    ["fs", "write_file", 'tools["fs/write_file"]: deny'],
    ["fs", "write_notes", 'servers.fs.tools["write_notes"]: ask'],
    // 2. exact server, tool glob: the server's own section wins a tie.
    ["fs", "write_data", 'servers.fs.tools["write_*"]: allow'],
    ["memory", "create_entities", 'servers.memory.tools["create_*"]: ask'],
    ["memory", "read_graph", 'servers.memory.tools["*"]: allow'],
    // An exact server with a glob beats an exact tool on any server.
    ["fs", "move_file", 'servers.fs.tools["move_*"]: deny'],
    // 3. exact tool on any server; a key without "/" is a tool on every server.
    ["git", "delete_file", 'tools["*/delete_file"]: deny'],
    ["git", "move_file", 'tools["move_file"]: allow'],
    // 4. globs for both: more literal characters win; on a tie, the stricter rule.
    ["git", "read_log", 'tools["*/read_*"]: allow'],
    ["git", "status", 'tools["*"]: ask'],
  ];
  for (const [server, tool, expected] of cases) {
    await t.step(`${server}/${tool}`, () => {
      const matched = matchRule(rules, server, tool);
      assertEquals(matched && `${matched.source}: ${matched.rule}`, expected);
    });
  }
  await t.step("globs are anchored and exact names are exact", () => {
    assertEquals(matchRule({ tools: { "fs/write": "deny" } }, "fs", "write_file"), undefined);
    assertEquals(matchRule({ tools: { "fs/write": "deny" } }, "fs", "Write"), undefined);
    assertEquals(
      matchRule({ servers: { fs: { tools: { "w*": "deny" } } } }, "fs2", "w"),
      undefined,
    );
  });
});

Deno.test("without a rule, read-only tools run and others are asked about; approveAll allows all but deny rules", () => {
  const read = { server: "fs", tool: "read_file", readOnly: true };
  const write = { server: "fs", tool: "write_file", readOnly: false };
  assertEquals(verdictFor(read, {}), { action: "allow", rule: "default: read-only" });
  assertEquals(verdictFor(write, {}), { action: "ask", rule: "default: not read-only" });
  const rules: ApprovalRules = { tools: { "fs/read_*": "ask", "*/write_*": "deny" } };
  assertEquals(verdictFor(read, { rules }), { action: "ask", rule: 'tools["fs/read_*"]: ask' });
  assertEquals(verdictFor(read, { rules, approveAll: true }), {
    action: "allow",
    rule: "approve_all",
  });
  assertEquals(verdictFor(write, { rules, approveAll: true }), {
    action: "deny",
    rule: 'tools["*/write_*"]: deny',
  });
});

/** An approver that answers from a list and keeps what it was asked. */
function scriptedApprover(
  ...answers: Awaited<ReturnType<Approver>>[]
): { approve: Approver; asked: ApprovalRequest[] } {
  const asked: ApprovalRequest[] = [];
  return {
    asked,
    approve: (request) => {
      asked.push(request);
      return Promise.resolve(answers.shift() ?? "deny");
    },
  };
}

/** The notes the fixture server took, in order. */
async function notesTaken(h: Harness): Promise<string[]> {
  return (await h.fixtureEvents()).filter((e) => e.event === "note").map((e) => e.text ?? "");
}

Deno.test("a call nobody can approve goes back to the model with how to allow it", async (t) => {
  await withHarness(async (h) => {
    for (
      const [label, approve] of [
        ["no approver given", undefined],
        ["the approver cannot ask", () => Promise.resolve({ unavailable: "stdin is not a TTY" })],
        ["the approver fails", () => Promise.reject(new Error("elicitation broke"))],
      ] as [string, Approver | undefined][]
    ) {
      await t.step(label, async () => {
        let seen: ChatMessage[] = [];
        h.fake.script(CHAT, calls({ name: "note", arguments: { text: "x" } }), (req) => {
          seen = toolMessages(req);
          return answer("could not take the note");
        });
        const result = await h.run(approve ? { approve } : {});
        assertEquals(result.stopped_because, "answer");
        assertEquals(result.tool_calls.map((c) => c.ok), [false]);
        const text = String(seen[0]!.content);
        assertStringIncludes(text, "note was not run");
        assertStringIncludes(text, allowSnippet("fixture", "note"));
        assertStringIncludes(text, "lmstudio-bridge.json");
        assertStringIncludes(text, "`run --yes`");
        assertStringIncludes(text, "Do not call it again");
        // The user reads the same advice in the notes.
        const note = result.notes.find((n) =>
          n.startsWith("a call was refused: fixture/note needs approval")
        );
        assertStringIncludes(note ?? "", allowSnippet("fixture", "note"));
        const [record] = result.approvals;
        assertEquals(record?.answer, "unavailable");
        assertEquals(record?.asked, approve !== undefined);
        assertEquals(record?.rule, "default: not read-only");
        assertStringIncludes(
          record?.reason ?? "",
          approve === undefined
            ? "no way to ask"
            : label.includes("fails")
            ? "elicitation broke"
            : "stdin is not a TTY",
        );
        assertEquals(await notesTaken(h), []);
      });
    }
  });
});

Deno.test("the approver sees which tool, which server, the redacted arguments and the task; its answer decides", async (t) => {
  await withHarness(async (h) => {
    await t.step("once: the call runs with the real arguments", async () => {
      const approver = scriptedApprover("once");
      h.fake.script(
        CHAT,
        calls({ name: "note", arguments: { text: "keep", password: "hunter2" } }),
        answer("noted"),
      );
      const result = await h.run({ task: "take a note", approve: approver.approve });
      assertEquals(result.tool_calls.map((c) => c.ok), [true]);
      assertEquals(approver.asked, [{
        server: "fixture",
        tool: "note",
        arguments: { text: "keep", password: REDACTED },
        task: "take a note",
        readOnly: false,
        destructive: false,
      }]);
      assertEquals(result.approvals.map((a) => [a.rule, a.asked, a.answer]), [
        ["default: not read-only", true, "once"],
      ]);
      assertEquals(await notesTaken(h), ["keep"]);
    });

    await t.step("deny: the model hears it and the task goes on", async () => {
      const approver = scriptedApprover("deny");
      let seen: ChatMessage[] = [];
      h.fake.script(CHAT, calls({ name: "note", arguments: { text: "no" } }), (req) => {
        seen = toolMessages(req);
        return answer("the user said no");
      });
      const result = await h.run({ approve: approver.approve });
      assertEquals(result.stopped_because, "answer");
      assertEquals(result.tool_calls.map((c) => [c.ok, c.error]), [
        [false, "declined by the user"],
      ]);
      assertStringIncludes(String(seen[0]!.content), "the user declined this call of note");
      assertEquals(await notesTaken(h), ["keep"]);
    });

    await t.step("read-only tools run without asking", async () => {
      const approver = scriptedApprover();
      h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 1 } }), answer("slept"));
      const result = await h.run({ approve: approver.approve });
      assertEquals(result.tool_calls.map((c) => c.ok), [true]);
      assertEquals(approver.asked, []);
    });
  });
});

Deno.test("calls of a round are asked about one at a time, and 'for this task' covers later calls", async () => {
  await withHarness(async (h) => {
    let open = 0;
    let most = 0;
    const asked: string[] = [];
    const first = Promise.withResolvers<void>();
    const approve: Approver = async (request) => {
      open += 1;
      most = Math.max(most, open);
      asked.push(String(request.arguments.text));
      // The first question stays open until the others have had every chance to start.
      if (asked.length === 1) await first.promise;
      open -= 1;
      return asked.length === 1 ? "once" : "task";
    };
    h.fake.script(
      CHAT,
      calls(
        { name: "note", arguments: { text: "a" } },
        { name: "note", arguments: { text: "b" } },
        { name: "note", arguments: { text: "c" } },
        { name: "sleep", arguments: { ms: 1 } },
      ),
      calls({ name: "note", arguments: { text: "d" } }),
      answer("four notes"),
    );
    const running = h.run({ approve });
    // The read-only call runs while the first question is open.
    await waitFor(
      "the read-only call to run while a question is open",
      async () => (await h.fixtureEvents()).some((e) => e.event === "end"),
    );
    first.resolve();
    const result = await running;
    assertEquals(result.stopped_because, "answer");
    assertEquals(most, 1, "one question at a time");
    assertEquals(asked, ["a", "b"], "after 'task' for b, c and d are not asked about");
    assertEquals(result.approvals.map((a) => [a.round, a.tool, a.asked, a.answer, a.rule]), [
      // Recorded as decided: the read-only call while the first question was open.
      [1, "sleep", false, "allow", "default: read-only"],
      [1, "note", true, "once", "default: not read-only"],
      [1, "note", true, "task", "default: not read-only"],
      [1, "note", false, "task", "approved for this task in round 1"],
      [2, "note", false, "task", "approved for this task in round 1"],
    ]);
    assertEquals((await notesTaken(h)).sort(), ["a", "b", "c", "d"]);
  });
});

Deno.test("rules decide on the tool the call resolved to, however the model spells it", async () => {
  await withHarness(async (h) => {
    const approver = scriptedApprover();
    h.fake.script(
      CHAT,
      calls(
        { name: "NOTE", arguments: { text: "upper" } },
        { name: "fixture__note", arguments: { text: "namespaced" } },
        { name: "fixture/note", arguments: { text: "slashed" } },
      ),
      { body: chatReply({ content: '<tool_call>{"name": "Note", "arguments": {"text": "t"}}' }) },
      answer("nothing noted"),
    );
    const result = await h.run({
      approve: approver.approve,
      approveAll: true,
      rules: { servers: { fixture: { tools: { note: "deny" } } } },
    });
    assertEquals(result.stopped_because, "answer");
    assertEquals(result.tool_calls.map((c) => [c.tool, c.ok]), [
      ["note", false],
      ["note", false],
      ["note", false],
      ["note", false],
    ]);
    assert(result.tool_calls.every((c) => c.error?.startsWith("denied by the rule")));
    assertEquals(approver.asked, []);
    assertEquals(await notesTaken(h), []);
  });
});

Deno.test("an approver's answer it should not give refuses the call, and the task goes on", async () => {
  await withHarness(async (h) => {
    for (const odd of [{} as { unavailable: string }, "maybe" as "once"]) {
      h.fake.script(CHAT, calls({ name: "note", arguments: { text: "odd" } }), answer("went on"));
      const result = await h.run({ approve: () => Promise.resolve(odd) });
      assertEquals(result.stopped_because, "answer");
      assertEquals(result.tool_calls.map((c) => c.ok), [false]);
      assertEquals(result.approvals.map((a) => a.answer), [
        typeof odd === "object" ? "unavailable" : "deny",
      ]);
    }
    assertEquals(await notesTaken(h), []);
  });
});

Deno.test("approveAll runs what would be asked about without asking", async () => {
  await withHarness(async (h) => {
    const approver = scriptedApprover();
    h.fake.script(CHAT, calls({ name: "note", arguments: { text: "yes" } }), answer("noted"));
    const result = await h.run({ approve: approver.approve, approveAll: true });
    assertEquals(result.tool_calls.map((c) => c.ok), [true]);
    assertEquals(result.approvals.map((a) => [a.rule, a.answer]), [["approve_all", "allow"]]);
    assertEquals(approver.asked, []);
    assertEquals(await notesTaken(h), ["yes"]);
  });
});

Deno.test("cancelling while a question is open ends the task as cancelled", async () => {
  await withHarness(async (h) => {
    const controller = new AbortController();
    const asked = Promise.withResolvers<void>();
    const approve: Approver = (_request, signal) => {
      asked.resolve();
      return new Promise((_, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    };
    h.fake.script(CHAT, calls({ name: "note", arguments: { text: "never" } }));
    const running = h.run({ approve, signal: controller.signal });
    await settlesWithin(asked.promise, "the question");
    controller.abort();
    const result = await settlesWithin(running, "the cancelled task");
    assertEquals(result.stopped_because, "cancelled");
    assertEquals(await notesTaken(h), []);
  });
});
