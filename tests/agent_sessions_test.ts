/**
 * Continuing a conversation: runAgent with the session of an earlier result (through the fixture
 * server, see tests/agent_harness.ts), and the session store and its JSON form
 * (lib/agent_sessions.ts) against a clock the test moves.
 */
import type { AgentSession } from "../lib/agent_types.ts";
import {
  DEFAULT_MAX_SESSION_BYTES,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_SESSION_IDLE_MS,
  SessionError,
  sessionFromJson,
  SessionStore,
  sessionToJson,
} from "../lib/agent_sessions.ts";
import type { ChatMessage } from "../lib/lmstudio_types.ts";
import { answer, calls, CHAT, messagesOf, toolMessages, withHarness } from "./agent_harness.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";

Deno.test("a task continues the conversation of an earlier result, with its servers and model", async () => {
  await withHarness(async (h) => {
    h.fake.script(
      CHAT,
      calls({ name: "typed", arguments: { path: "a.txt", count: 1 } }),
      answer("first done"),
    );
    const first = await h.run({ task: "first task", servers: ["fixture"] });
    assertEquals(first.session.servers, ["fixture"]);
    assertEquals(first.session.model, "qwen2.5-7b-instruct");
    assertEquals(first.session.tasks, 1);
    assertEquals(first.session.rounds, 2);
    assertEquals(first.session.messages.at(-1), { role: "assistant", content: "first done" });

    let seen: ChatMessage[] = [];
    h.fake.script(CHAT, (req) => {
      seen = messagesOf(req);
      return answer("second done");
    });
    const second = await h.run({
      task: "second task",
      servers: ["memory"],
      model: "other-model",
      session: first.session,
    });
    assertEquals(second.stopped_because, "answer");
    assertEquals(second.servers, ["fixture"]);
    assertEquals(second.model, "qwen2.5-7b-instruct");
    assert(
      second.notes.some((n) => n.startsWith("continued with the session's servers (fixture)")),
    );
    assert(second.notes.some((n) => n.startsWith("continued with the session's model")));
    // The whole conversation so far, then the new task.
    assertEquals(seen.map((m) => m.role), [
      "system",
      "user",
      "assistant",
      "tool",
      "assistant",
      "user",
    ]);
    assertEquals(seen[1]!.content, "first task");
    assertStringIncludes(String(seen[3]!.content), 'typed got {"path":"a.txt","count":1}');
    assertEquals(seen.at(-1), { role: "user", content: "second task" });
    assertEquals(second.rounds, 1);
    assertEquals(second.session.tasks, 2);
    assertEquals(second.session.rounds, 3);
    // The first session is left as it was.
    assertEquals(first.session.messages.length, 5);
  });
});

Deno.test("a task that stopped before its calls ran can be continued: those calls get results", async () => {
  await withHarness(async (h) => {
    const same = () => calls({ name: "sleep", arguments: { ms: 1 } });
    h.fake.script(CHAT, same(), same(), same());
    const stopped = await h.run({});
    assertEquals(stopped.stopped_because, "repeated_call");
    let seen: ChatMessage[] = [];
    h.fake.script(CHAT, (req) => {
      seen = messagesOf(req);
      return answer("ok");
    });
    await h.run({ task: "go on", session: stopped.session });
    // Every call in the history has its result, the one never run included.
    const ids = seen.flatMap((m) => (m.tool_calls ?? []).map((c) => c.id));
    const answered = seen.filter((m) => m.role === "tool").map((m) => m.tool_call_id);
    assertEquals(answered, ids);
    assertEquals(
      String(seen.findLast((m) => m.role === "tool")?.content),
      "[not run: the task stopped before this call ran]",
    );
    // New calls get ids of their own.
    h.fake.script(CHAT, calls({ name: "sleep", arguments: { ms: 2 }, id: ids[0] }), (req) => {
      seen = messagesOf(req);
      return answer("done");
    });
    await h.run({ task: "once more", session: stopped.session });
    const all = seen.flatMap((m) => (m.tool_calls ?? []).map((c) => c.id));
    assertEquals(new Set(all).size, all.length);
  });
});

Deno.test("a continued conversation stays in the context window, the oldest tool results condensed first", async () => {
  await withHarness(async (h) => {
    h.fake.script(CHAT, calls({ name: "huge", arguments: { chars: 12_000 } }), answer("read one"));
    const first = await h.run({ task: "read a huge thing" });
    let last: ChatMessage[] = [];
    h.fake.script(CHAT, calls({ name: "huge", arguments: { chars: 12_001 } }), (req) => {
      last = toolMessages(req);
      return answer("read two");
    });
    const second = await h.run({ task: "read another", session: first.session });
    assertEquals(second.stopped_because, "answer");
    assertEquals(last.length, 2);
    assertStringIncludes(String(last[0]!.content), "[condensed: this earlier result of huge");
    assert(String(last[1]!.content).endsWith("END"), "the new task's result is kept");
  });
});

Deno.test("the session of a task cancelled before it began keeps, and continues afresh", async () => {
  await withHarness(async (h) => {
    const stopped = await h.run({ signal: AbortSignal.abort() });
    assertEquals(stopped.stopped_because, "cancelled");
    const kept = sessionFromJson(sessionToJson(stopped.session));
    assertEquals(kept.messages, []);
    h.fake.script(CHAT, answer("fresh"));
    const result = await h.run({ task: "start over", servers: ["fixture"], session: kept });
    assertEquals(result.answer, "fresh");
    assertEquals(result.servers, ["fixture"]);
    assertEquals(result.session.messages.map((m) => m.role), ["system", "user", "assistant"]);
  });
});

/** A session of `n` messages of `chars` characters each after the system message and task. */
function sessionOf(o: { tools?: number; chars?: number } = {}): AgentSession {
  const messages: ChatMessage[] = [
    { role: "system", content: "system" },
    { role: "user", content: "task" },
  ];
  for (let i = 0; i < (o.tools ?? 1); i++) {
    messages.push({
      role: "assistant",
      content: "",
      tool_calls: [{ id: `c${i}`, type: "function", function: { name: "huge", arguments: "{}" } }],
    });
    messages.push({
      role: "tool",
      tool_call_id: `c${i}`,
      name: "huge",
      content: "x".repeat(o.chars ?? 10),
    });
  }
  messages.push({ role: "assistant", content: "done" });
  return { servers: ["fixture"], model: "m", messages, tasks: 1, rounds: 2 };
}

/** A store on a clock the test moves. */
function storeOn(o: { maxSessions?: number; maxBytes?: number; idleMs?: number } = {}) {
  let t = 1_000_000;
  const store = new SessionStore({ ...o, now: () => t });
  return { store, advance: (ms: number) => void (t += ms) };
}

Deno.test("the session store keeps, lists and closes sessions; unknown and closed ids say why", () => {
  assertEquals([DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSION_BYTES, DEFAULT_SESSION_IDLE_MS], [
    32,
    2 * 1024 * 1024,
    30 * 60_000,
  ]);
  const { store, advance } = storeOn();
  const a = store.create(sessionOf());
  advance(1000);
  const b = store.create(sessionOf({ tools: 2 }));
  assert(a !== b && /^s_[0-9a-f]{32}$/.test(a), a);
  assertEquals(store.get(a).messages.length, 5);
  const listed = store.list();
  assertEquals(listed.map((s) => [s.id, s.messages, s.tasks, s.busy]), [
    [a, 5, 1, false],
    [b, 7, 1, false],
  ]);
  assertEquals(listed[1]!.idle_ms, 0);
  assertEquals(listed[1]!.expires_in_ms, DEFAULT_SESSION_IDLE_MS);
  store.close(a);
  const closed = assertThrows(() => store.get(a), SessionError, "was closed");
  assertEquals(closed.kind, "closed");
  const unknown = assertThrows(() => store.get("s_nope"), SessionError, 'No session "s_nope"');
  assertEquals(unknown.kind, "unknown");
  assertStringIncludes(unknown.message, "Start a new task without a session id");
  assertEquals(store.list().map((s) => s.id), [b]);
});

Deno.test("sessions expire after the idle time, and the oldest makes room when the store is full", () => {
  const { store, advance } = storeOn({ maxSessions: 2, idleMs: 60_000 });
  const a = store.create(sessionOf());
  advance(10);
  const b = store.create(sessionOf());
  advance(10);
  store.get(a); // a is now the more recently used
  const c = store.create(sessionOf());
  const evicted = assertThrows(() => store.get(b), SessionError, "closed to make room");
  assertStringIncludes(evicted.message, "at most 2 sessions are kept");
  assertEquals(store.list().map((s) => s.id).sort(), [a, c].sort());
  advance(60_001);
  const expired = assertThrows(() => store.get(a), SessionError, "expired after 1 min without use");
  assertEquals(expired.kind, "expired");
  assertEquals(store.list(), []);
});

Deno.test("the store's order of use: busy sessions are passed over, a use or an end makes one recent", () => {
  const { store, advance } = storeOn({ maxSessions: 3, idleMs: 60_000 });
  const [a, b, c] = [
    store.create(sessionOf()),
    store.create(sessionOf()),
    store.create(sessionOf()),
  ];
  store.begin(a); // the oldest created, busy: never closed to make room
  store.end(b); // an end is a use: b is now the most recent
  const d = store.create(sessionOf());
  assertThrows(() => store.get(c), SessionError, "closed to make room");
  assertEquals(store.list().map((s) => s.id).sort(), [a, b, d].sort());
  // Expiry: the busy one (used first) does not expire, and the walk goes on past it.
  advance(30_000);
  store.get(d);
  advance(30_001);
  assertThrows(() => store.get(b), SessionError, "expired");
  assertEquals(store.list().map((s) => [s.id, s.busy]), [[d, false], [a, true]]);
  store.end(a);
  const e = store.create(sessionOf());
  assertEquals(store.list().map((s) => s.id).sort(), [a, d, e].sort());
});

Deno.test("a session runs one task at a time and keeps the result's conversation", () => {
  const { store, advance } = storeOn({ idleMs: 1000 });
  const id = store.create(sessionOf());
  const session = store.begin(id);
  assertEquals(assertThrows(() => store.begin(id), SessionError, "is running a task").kind, "busy");
  // A busy session does not expire while its task runs.
  advance(5000);
  assertEquals(store.list().map((s) => s.busy), [true]);
  store.end(id, { ...session, tasks: 2, rounds: 5 });
  assertEquals(store.get(id).tasks, 2);
  store.begin(id);
  store.end(id); // the task failed: the session stays as it was
  assertEquals(store.begin(id).rounds, 5);
});

Deno.test("a session larger than the limit is condensed, oldest tool results first, or refused", () => {
  const { store } = storeOn({ maxBytes: 64 * 1024 });
  const id = store.create(sessionOf({ tools: 4, chars: 20_000 }));
  const kept = store.get(id);
  const results = kept.messages.filter((m) => m.role === "tool").map((m) => String(m.content));
  assertStringIncludes(results[0]!, "[condensed");
  assert(store.list()[0]!.bytes <= 64 * 1024);
  const huge = sessionOf({ tools: 1, chars: 400_000 });
  huge.messages[1] = { role: "user", content: "y".repeat(200_000) }; // the task is never condensed
  const refused = assertThrows(() => store.create(huge), SessionError, "too large to keep");
  assertEquals(refused.kind, "too_large");
});

Deno.test("the size check counts escapes: a task of control characters and lone surrogates", () => {
  const { store } = storeOn({ maxBytes: 4096 });
  // 700 characters that JSON writes as 6 bytes each (\u0000, \ud800): 4,200 bytes of task alone.
  for (const char of ["\u0000", "\ud800"]) {
    const session = sessionOf();
    session.messages[1] = { role: "user", content: char.repeat(700) };
    const refused = assertThrows(() => store.create(session), SessionError, "too large to keep");
    assertEquals(refused.kind, "too_large");
  }
  // One that fits is listed with its exact size as JSON.
  const fits = sessionOf();
  fits.messages[1] = { role: "user", content: '\u0000\u{1F600}é"'.repeat(50) };
  const id = store.create(fits);
  const bytes = new TextEncoder().encode(sessionToJson(fits)).length;
  assertEquals(store.list().find((s) => s.id === id)?.bytes, bytes);
});

Deno.test("a session goes to JSON and back; anything else is refused saying what is wrong", () => {
  const session = sessionOf({ tools: 2 });
  assertEquals(sessionFromJson(sessionToJson(session)), session);
  assertEquals(JSON.parse(sessionToJson(session)).version, 1);
  const notJson = assertThrows(() => sessionFromJson("{oops"), SessionError, "not JSON");
  assertEquals(notJson.kind, "invalid");
  const wrong = JSON.parse(sessionToJson(session));
  wrong.messages[0].role = "wizard";
  wrong.servers = [""];
  const invalid = assertThrows(() => sessionFromJson(JSON.stringify(wrong)), SessionError);
  assertStringIncludes(invalid.message, "messages[0].role");
  assertStringIncludes(invalid.message, "servers[0]");
  const noSystem = {
    ...JSON.parse(sessionToJson(session)),
    messages: [{ role: "user", content: "x" }],
  };
  assertThrows(
    () => sessionFromJson(JSON.stringify(noSystem)),
    SessionError,
    "the first message must be the system message",
  );
  const later = { ...JSON.parse(sessionToJson(session)), version: 2 };
  assertThrows(() => sessionFromJson(JSON.stringify(later)), SessionError, "format version 1");
});
