/**
 * Tools on demand (lib/tool_demand.ts): the pure offer (when it applies, the catalogue, loading
 * and unloading), and a task end to end over the real server-everything, server-filesystem and
 * server-memory with a model whose window is 8192 tokens, the fake LM Studio scripted to load
 * tools, call one and answer.
 */
import { agentResultJson } from "../lib/agent.ts";
import { planBudget, toolOverflowMessage, toolsTokens } from "../lib/agent_budget.ts";
import { memoryTrace } from "../lib/agent_trace.ts";
import type { OpenAiTool } from "../lib/lmstudio_types.ts";
import type { Tool } from "../lib/sdk.ts";
import { ToolCatalog } from "../lib/tool_catalog.ts";
import { DEFAULT_TOOL_SHARE, LOAD_TOOLS, ToolOffer } from "../lib/tool_demand.ts";
import {
  answer,
  calls,
  CHAT,
  messagesOf,
  toolMessages,
  toolNamesOf,
  withHarness,
} from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import type { FakeModel, RecordedRequest } from "./fakes/lmstudio.ts";
import { cachedEntry, REFERENCE_SERVERS } from "./fixtures/pool_support.ts";

/** A tool whose definition takes about `chars` characters. */
function tool(name: string, chars = 400, description = `Does ${name}.`): Tool {
  return {
    name,
    description,
    inputSchema: {
      type: "object",
      properties: { text: { type: "string", description: "x".repeat(chars) } },
      required: ["text"],
    },
  } as Tool;
}

function catalogOf(...tools: Tool[]): ToolCatalog {
  return ToolCatalog.build([{ server: "s", tools }], { namespaced: false });
}

const names = (tools: readonly OpenAiTool[]) => tools.map((t) => t.function.name);

Deno.test("tools on demand: every definition when they fit the share, else a catalogue", async (t) => {
  const catalog = catalogOf(tool("alpha"), tool("beta"), tool("gamma"));
  const all = toolsTokens(catalog.openaiTools);
  await t.step("within the share: all definitions, nothing on demand", () => {
    const offer = ToolOffer.plan({ catalog, contextTokens: all * 10, share: 0.1 });
    assert(!offer.onDemand);
    assertEquals(offer.tools(), catalog.openaiTools);
    assertEquals(offer.loadName, undefined);
  });
  await t.step("over the share: load_tools with one line per tool", () => {
    const offer = ToolOffer.plan({ catalog, contextTokens: all * 2, share: 0.4 });
    assert(offer.onDemand);
    assertEquals(names(offer.tools()), [LOAD_TOOLS]);
    const description = offer.tools()[0]!.function.description ?? "";
    assertStringIncludes(description, "- alpha: Does alpha.\n- beta: Does beta.\n- gamma: Does");
    assert(toolsTokens(offer.tools()) < all / 2, "the catalogue is much smaller");
    assertEquals(offer.limit, Math.floor(0.4 * all * 2));
  });
  await t.step("a share of 1 never sends on demand, even when nothing fits", () => {
    const offer = ToolOffer.plan({ catalog, contextTokens: 10, share: 1 });
    assert(!offer.onDemand);
    assertEquals(offer.tools(), catalog.openaiTools);
  });
  await t.step("a share of 0 always does", () => {
    const offer = ToolOffer.plan({ catalog, contextTokens: 1_000_000, share: 0 });
    assert(offer.onDemand);
  });
  await t.step("a tool named load_tools makes the catalogue bridge__load_tools", () => {
    const own = catalogOf(tool("load_tools"), tool("alpha"));
    const offer = ToolOffer.plan({ catalog: own, contextTokens: 100, share: 0.4 });
    assertEquals(offer.loadName, "bridge__load_tools");
    assertEquals(names(offer.tools()), ["bridge__load_tools"]);
  });
  assertEquals(DEFAULT_TOOL_SHARE, 0.4);
});

Deno.test("tools on demand: loading, calls without loading, and the room", async (t) => {
  // Each definition ~130 tokens; the room (share of the window less the catalogue) holds two.
  const catalog = catalogOf(tool("alpha"), tool("beta"), tool("gamma"), tool("delta"));
  const one = toolsTokens([catalog.openaiTools[0]!]);
  const plan = () => {
    const probe = ToolOffer.plan({ catalog, contextTokens: 1000, share: 0.01 });
    const loadTokens = toolsTokens(probe.tools());
    return ToolOffer.plan({
      catalog,
      contextTokens: 1000,
      share: (loadTokens + 2 * one + 5) / 1000,
    });
  };
  await t.step("load_tools loads what it names, sent from then on", () => {
    const offer = plan();
    const out = offer.load({ names: ["alpha", "beta"] }, 1);
    assert(out.ok, out.text);
    assertEquals(out.text, "Loaded alpha, beta: call them now.");
    assertEquals(names(offer.tools()), [LOAD_TOOLS, "alpha", "beta"]);
    assertEquals(offer.history, [
      { round: 1, tool: "alpha", via: "load_tools" },
      { round: 1, tool: "beta", via: "load_tools" },
    ]);
  });
  await t.step("more than the room unloads the least recently used", () => {
    const offer = plan();
    offer.load({ names: ["alpha", "beta"] }, 1);
    offer.touch(catalog.resolve("alpha")!, 2);
    const out = offer.load({ names: ["gamma"] }, 3);
    assertEquals(
      out.text,
      "Loaded gamma: call it now.\nUnloaded to make room: beta (load again when needed).",
    );
    assertEquals(offer.loaded, ["alpha", "gamma"]);
    assertEquals(offer.history.slice(2), [
      { round: 3, tool: "beta", via: "load_tools", unloaded: true },
      { round: 3, tool: "gamma", via: "load_tools" },
    ]);
  });
  await t.step("a request larger than the room loads what fits and says so", () => {
    const offer = plan();
    const out = offer.load({ names: ["alpha", "beta", "gamma"] }, 1);
    assert(out.ok);
    assertStringIncludes(out.text, "Loaded alpha, beta");
    assertStringIncludes(out.text, "Not loaded, no room left in the context window: gamma");
  });
  await t.step("unknown names and no names are errors naming the fix", () => {
    const offer = plan();
    const unknown = offer.load({ names: ["zeta"] }, 1);
    assert(!unknown.ok);
    assertStringIncludes(unknown.text, "No such tools: zeta. Use the names in the description");
    const none = offer.load({}, 1);
    assertEquals(none.error, "no tool names given");
    assertStringIncludes(none.text, '{"names": ["alpha"]}');
    // A comma-separated string, as small models send it.
    assert(offer.load({ names: "alpha, beta" }, 2).ok);
    assertEquals(offer.loaded, ["alpha", "beta"]);
  });
  await t.step("a tool called without loading is loaded", () => {
    const offer = plan();
    offer.touch(catalog.resolve("delta")!, 4);
    assertEquals(names(offer.tools()), [LOAD_TOOLS, "delta"]);
    assertEquals(offer.history, [{ round: 4, tool: "delta", via: "call" }]);
    // Called again: already loaded, nothing new in the history.
    offer.touch(catalog.resolve("delta")!, 5);
    assertEquals(offer.history.length, 1);
  });
});

Deno.test("tools on demand: the budget keeps the share for the tools; when even that does not fit, it says so", () => {
  const catalog = catalogOf(tool("alpha"), tool("beta"), tool("gamma"));
  const offer = ToolOffer.plan({ catalog, contextTokens: 400, share: 0.4 });
  assert(offer.onDemand);
  const budget = planBudget({
    contextTokens: 400,
    tools: offer.tools(),
    toolReserve: offer.limit,
    messages: [{ role: "user", content: "t".repeat(1000) }],
  });
  assertEquals(budget.toolTokens, 160);
  assert(budget.fixedTokens > budget.promptBudget);
  const text = toolOverflowMessage(budget, offer.tools(), { tools: 3 });
  assertStringIncludes(text, "even sent on demand, the catalogue of 3 tools");
  assertStringIncludes(text, "lower tools_on_demand.share in lmstudio-bridge.json");
});

/** A model loaded with an 8k window. */
const SMALL: FakeModel[] = [{
  id: "small-8k",
  type: "llm",
  state: "loaded",
  maxContextLength: 8192,
  loadedContextLength: 8192,
}];
/**
 * The task: the three servers' definitions (about 4000 tokens) and 4096 tokens kept for the reply
 * are more than the window holds.
 */
const TASK = {
  servers: ["everything", "filesystem", "memory"],
  task: "read notes.txt",
  maxTokens: 4096,
};

/** The tool definitions a recorded chat request carried. */
function toolsOf(req: RecordedRequest): OpenAiTool[] {
  return (req.body as { tools?: OpenAiTool[] }).tools ?? [];
}

Deno.test("a task over server-everything, -filesystem and -memory at 8k gets its tools on demand", async (t) => {
  await withHarness(async (h) => {
    await Deno.writeTextFile(`${h.dir}/notes.txt`, "The launch code is 4711.");
    await t.step("off (share 1), the definitions do not fit: context_overflow", async () => {
      const result = await h.run({ ...TASK, toolShare: 1 });
      assertEquals(result.stopped_because, "context_overflow");
      assertEquals(h.fake.requestsTo(CHAT).length, 0);
      assertEquals(result.tools_on_demand, undefined);
    });
    await t.step("on (the default), load_tools, a call, the answer", async () => {
      h.fake.script(
        CHAT,
        calls({ name: "load_tools", arguments: { names: ["filesystem__read_text_file"] } }),
        calls({
          name: "filesystem__read_text_file",
          arguments: { path: `${h.dir}/notes.txt` },
        }),
        // Never loaded: it runs, its arguments checked, and is loaded.
        calls({ name: "memory__read_graph", arguments: {} }),
        (req) => answer(String(toolMessages(req).at(-2)?.content ?? "nothing")),
      );
      const trace = memoryTrace();
      const result = await h.run({ ...TASK, trace });
      assertEquals(result.stopped_because, "answer");
      assertStringIncludes(result.answer, "The launch code is 4711.");
      assertEquals(result.rounds, 4);
      assertEquals(result.tool_calls.map((c) => [c.name, c.ok]), [
        ["load_tools", true],
        ["filesystem__read_text_file", true],
        ["memory__read_graph", true],
      ]);

      const requests = h.fake.requestsTo(CHAT);
      assertEquals(requests.length, 4);
      // The first request: only the catalogue, naming tools of all three servers.
      assertEquals(toolNamesOf(requests[0]!), ["load_tools"]);
      const catalogue = toolsOf(requests[0]!)[0]!.function.description ?? "";
      for (const name of ["everything__echo", "filesystem__read_text_file", "memory__read_graph"]) {
        assertStringIncludes(catalogue, `- ${name}: `);
      }
      assertStringIncludes(
        String(toolMessages(requests[1]!)[0]!.content),
        "Loaded filesystem__read_text_file",
      );
      // Then the loaded definitions, in full, as the servers published them.
      assertEquals(toolNamesOf(requests[1]!), ["load_tools", "filesystem__read_text_file"]);
      const full = toolsOf(requests[1]!)[1]!;
      assert(JSON.stringify(full.function.parameters).includes('"path"'));
      assertEquals(toolNamesOf(requests[3]!), [
        "load_tools",
        "filesystem__read_text_file",
        "memory__read_graph",
      ]);

      // The result says what was loaded and when; each round what its request carried.
      const demand = result.tools_on_demand!;
      assertEquals(demand.load_tool, "load_tools");
      assertEquals(demand.share, 0.4);
      assertEquals(demand.loads, [
        { round: 1, tool: "filesystem__read_text_file", via: "load_tools" },
        { round: 3, tool: "memory__read_graph", via: "call" },
      ]);
      assert(demand.all_tokens > 0.4 * 8192, `all definitions: ${demand.all_tokens} tokens`);
      assertEquals(result.rounds_detail.map((r) => r.tools_loaded), [
        [],
        ["filesystem__read_text_file"],
        ["filesystem__read_text_file"],
        ["filesystem__read_text_file", "memory__read_graph"],
      ]);
      assertEquals(
        result.rounds_detail.map((r) => r.tool_tokens),
        requests.map((r) => toolsTokens(toolsOf(r))),
      );
      // The catalogue and the two definitions loaded: about a third of all definitions at most.
      const sent = result.rounds_detail.map((r) => r.tool_tokens);
      assert(sent.every((n) => n < demand.all_tokens / 3), JSON.stringify(sent));
      assert(result.notes.some((n) => n.includes("tools_on_demand.share")), result.notes.join());
      assertEquals(agentResultJson(result).tools_on_demand, demand);
      // The trace has each round's loads and what is loaded after it.
      assertEquals(trace.events.filter((e) => e.type === "tools_loaded"), [
        {
          type: "tools_loaded",
          round: 1,
          loads: [demand.loads[0]],
          loaded: ["filesystem__read_text_file"],
        },
        {
          type: "tools_loaded",
          round: 3,
          loads: [demand.loads[1]],
          loaded: ["filesystem__read_text_file", "memory__read_graph"],
        },
      ]);
      const start = trace.events.find((e) => e.type === "start")!;
      assertEquals(start.tools_on_demand, { all_tokens: demand.all_tokens, share: 0.4 });
      // The system message and task stay first.
      assertEquals(messagesOf(requests[0]!).map((m) => m.role), ["system", "user"]);
    });
    await t.step("the setting in lmstudio-bridge.json decides", async () => {
      await Deno.writeTextFile(
        `${h.dir}/lmstudio-bridge.json`,
        '{"tools": {"*/*": "allow"}, "tools_on_demand": {"share": 1}}',
      );
      const off = await h.run(TASK);
      assertEquals(off.stopped_because, "context_overflow");
    });
  }, {
    models: SMALL,
    servers: { everything: cachedEntry([REFERENCE_SERVERS.everything]) },
  });
});
