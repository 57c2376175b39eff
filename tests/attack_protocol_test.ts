/**
 * Attack: garbage on `serve`'s stdin. Thousands of broken lines, wrong JSON-RPC shapes, huge
 * lines, unknown methods, batches and requests before initialize, interleaved with valid
 * requests: every valid request is answered, stdout carries JSON-RPC only, the process stays up
 * and its memory stays bounded.
 */
import { assert, assertEquals } from "./assert.ts";
import { defaultFakeModels, FakeLmStudio } from "./fakes/lmstudio.ts";
import { figure, RawServe, rssKb, tempProject } from "./fixtures/attack_support.ts";

/** A deterministic pseudo-random source, so a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s / 2 ** 32;
  };
}

/** One line of garbage of a kind picked by `r`: none of them is a valid request with an id. */
function garbageLine(r: () => number, i: number): string {
  const kinds: (() => string)[] = [
    () => "this is not json " + "#".repeat(Math.floor(r() * 200)),
    () => `{"jsonrpc":"2.0","id":"g${i}","method":"tools/li`, // truncated
    () => `{"jsonrpc":"2.0","id":`,
    () => "[" + "{".repeat(Math.floor(r() * 50)),
    () => "null",
    () => String(Math.floor(r() * 1e9)),
    () => `"a bare string ${i}"`,
    () => "[]",
    () => JSON.stringify({ jsonrpc: "1.0", id: `g${i}`, method: "ping" }),
    () => JSON.stringify({ jsonrpc: "2.0", id: { nested: i }, method: 42 }),
    () => JSON.stringify({ jsonrpc: "2.0", result: {}, id: `nobody-${i}` }), // a stray response
    () => JSON.stringify({ jsonrpc: "2.0", error: { code: 1, message: "x" }, id: `e-${i}` }),
    () => JSON.stringify([{ jsonrpc: "2.0", id: `b${i}`, method: "ping" }]), // a batch
    () => JSON.stringify({ jsonrpc: "2.0", method: "notifications/unknown_thing", params: [] }),
    () => JSON.stringify({ jsonrpc: "2.0", method: "notifications/cancelled", params: {} }),
    () => "\u0000\u0001\u0002\u001b[2J binary \uFFFD\uD800",
    () => "   ",
    () => "\r",
    () => JSON.stringify({ jsonrpc: "2.0", id: `g${i}`, method: "x".repeat(5000) }).slice(0, 3000),
  ];
  return kinds[Math.floor(r() * kinds.length)]!();
}

/** A valid request: ping, tools/list or a health_check call. */
function validRequest(n: number): Record<string, unknown> {
  const id = `v-${n}`;
  switch (n % 3) {
    case 0:
      return { id, method: "ping" };
    case 1:
      return { id, method: "tools/list" };
    default:
      return { id, method: "tools/call", params: { name: "health_check", arguments: {} } };
  }
}

/** Every stdout line is one JSON-RPC 2.0 message. */
function assertOnlyJsonRpc(lines: string[]): void {
  for (const line of lines) {
    let parsed: { jsonrpc?: unknown } | undefined;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`stdout carried a line that is not JSON: ${line.slice(0, 200)}`);
    }
    assertEquals(parsed?.jsonrpc, "2.0", `not JSON-RPC: ${line.slice(0, 200)}`);
  }
}

Deno.test("serve answers 500/500 valid requests among 5,000 garbage lines, stdout JSON-RPC only, memory bounded", async () => {
  await using fake = await FakeLmStudio.start();
  await using project = await tempProject();
  await using serve = new RawServe(project.dir, fake.baseUrl);
  const r = random(17);
  // Requests before initialize: the server answers (or refuses) them, and does not die.
  await serve.send({ id: "early-1", method: "tools/list" });
  await serve.send({ id: "early-2", method: "tools/call", params: { name: "health_check" } });
  const init = await serve.initialize();
  assert(init.result !== undefined, JSON.stringify(init));
  const VALID = 500;
  const GARBAGE = 5_000;
  const rssBefore = rssKb(serve.pid);
  let valid = 0;
  let chunk = "";
  for (let i = 0; i < GARBAGE; i++) {
    chunk += garbageLine(r, i) + "\n";
    if (i % (GARBAGE / VALID) === 0) {
      chunk += JSON.stringify({ jsonrpc: "2.0", ...validRequest(valid++) }) + "\n";
    }
    if (chunk.length > 64 * 1024) {
      await serve.write(chunk);
      chunk = "";
    }
  }
  await serve.write(chunk);
  // Unknown methods and a bad tools/call get error answers, not silence.
  await serve.send({ id: "unknown-method", method: "no/such/method", params: {} });
  await serve.send({ id: "bad-params", method: "tools/call", params: "not an object" });
  await serve.send({ id: "unknown-tool", method: "tools/call", params: { name: "nope" } });
  const answers = await Promise.all(
    Array.from({ length: valid }, (_, n) => serve.answer(`v-${n}`)),
  );
  const ok = answers.filter((a) => a.result !== undefined && a.error === undefined).length;
  assertEquals(`${ok}/${valid} answered`, `${VALID}/${VALID} answered`);
  const unknown = await serve.answer("unknown-method");
  assertEquals(unknown.error?.code, -32601);
  const tool = await serve.answer("unknown-tool");
  assert(tool.error !== undefined || JSON.stringify(tool.result).includes("isError"));
  // A message the SDK's schema rejects (params not an object) is dropped; a later ping is the
  // signal that everything before it was read.
  await serve.send({ id: "sentinel", method: "ping" });
  await serve.answer("sentinel");
  const dropped = ["bad-params", "early-1", "early-2"].filter((id) => !serve.seen(id));
  const rssAfter = rssKb(serve.pid);
  assert(serve.running(), "serve died");
  // Generous: a bridge that keeps garbage around grows far past this.
  assert(rssAfter < 400_000, `RSS grew from ${rssBefore} kB to ${rssAfter} kB`);
  const status = await serve.close();
  assertEquals(status.code, 0);
  assertOnlyJsonRpc(serve.lines);
  figure(
    `${VALID}/${VALID} valid among ${GARBAGE} garbage lines; ${serve.lines.length} stdout lines, ` +
      `all JSON-RPC; RSS ${rssBefore} -> ${rssAfter} kB; unanswered: ${
        dropped.join(", ") || "none"
      }`,
  );
});

Deno.test("serve survives 1 MB and 9 MB garbage lines and answers the request after each", async () => {
  await using fake = await FakeLmStudio.start();
  await using project = await tempProject();
  await using serve = new RawServe(project.dir, fake.baseUrl);
  await serve.initialize();
  const peaks: string[] = [];
  for (const mb of [1, 9]) {
    // A line that is nearly JSON: a request whose string never ends.
    const started = performance.now();
    await serve.write(
      `{"jsonrpc":"2.0","id":"big-${mb}","method":"ping","x":"${"a".repeat(mb << 20)}\n`,
    );
    await serve.send({ id: `after-${mb}`, method: "ping" });
    const answer = await serve.answer(`after-${mb}`);
    assertEquals(answer.result, {});
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    peaks.push(
      `${mb} MB line: ${Math.round(rssKb(serve.pid) / 1024)} MB RSS, read in ${seconds} s`,
    );
  }
  assert(serve.running());
  assertEquals((await serve.close()).code, 0);
  assertOnlyJsonRpc(serve.lines);
  figure(peaks.join("; "));
});

Deno.test({
  name: "serve survives an 11 MB stdin line and still answers the next request",
  fn: async () => {
    await using fake = await FakeLmStudio.start();
    await using project = await tempProject();
    await using serve = new RawServe(project.dir, fake.baseUrl, { LOG_LEVEL: "info" });
    await serve.initialize();
    // Writes fail with a broken pipe once serve has gone; the answer check says what happened.
    await serve.write(JSON.stringify({ big: "c".repeat(11 << 20) }) + "\n").catch(() => {});
    await serve.send({ id: "after", method: "ping" }).catch(() => {});
    const answer = await serve.answer("after").catch(async (e: Error) =>
      `${e.message}; exit code ${(await serve.close()).code}; stderr: ${serve.stderr}`
    );
    assertEquals(answer, { jsonrpc: "2.0", id: "after", result: {} });
  },
});

/** An 8 MB PNG (a valid signature and IHDR, then filler): under the 10 MiB image limit. */
function bigPng(bytes: number): Uint8Array {
  const png = new Uint8Array(bytes);
  png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  png.set([0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 4, 0, 0, 0, 4, 0, 8, 2, 0, 0, 0], 8);
  for (let i = 29; i < bytes; i++) png[i] = (i * 2654435761) >>> 24;
  return png;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

Deno.test({
  name:
    "analyze_image with an 8 MB PNG data URI (README allows 10 MiB) is answered; serve survives",
  fn: async () => {
    await using fake = await FakeLmStudio.start({
      models: [...defaultFakeModels(), { id: "vision-7b", type: "vlm", state: "loaded" }],
    });
    await using project = await tempProject();
    await using serve = new RawServe(project.dir, fake.baseUrl, { LOG_LEVEL: "info" });
    await serve.initialize();
    const uri = `data:image/png;base64,${base64(bigPng(8_000_000))}`;
    await serve.send({
      id: "image",
      method: "tools/call",
      params: {
        name: "analyze_image",
        arguments: { images: [uri], prompt: "describe", model: "vision-7b" },
      },
    }).catch(() => {});
    await serve.send({ id: "after", method: "ping" }).catch(() => {});
    const answer = await serve.answer("image").catch(async (e: Error) =>
      `${e.message}; exit code ${(await serve.close()).code}; stderr: ${serve.stderr}`
    );
    assert(typeof answer !== "string", `no answer to the image request: ${answer}`);
    assertEquals((await serve.answer("after")).result, {});
    assert(serve.running(), `serve exited; stderr: ${serve.stderr}`);
  },
});
