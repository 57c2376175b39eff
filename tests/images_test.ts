import { ImageError, MAX_IMAGE_BYTES, sniffImageType } from "../lib/image_type.ts";
import {
  type DnsResolver,
  nonPublicAddressReason,
  nonPublicHostReason,
  parseIpv6,
} from "../lib/image_url.ts";
import { loadImage, loadImages } from "../lib/images.ts";
import { loadFile } from "../lib/image_file.ts";
import { join, resolve } from "../lib/path.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./assert.ts";

const FIXTURES = resolve(import.meta.dirname ?? ".", "fixtures/images");
const fixture = (name: string) => join(FIXTURES, name);
const fixtureBytes = (name: string) => Deno.readFileSync(fixture(name));

/** A resolver that answers from a table and records the questions. */
function fakeDns(table: Record<string, { A?: string[]; AAAA?: string[] }>) {
  const asked: string[] = [];
  const resolver: DnsResolver = (host, type) => {
    asked.push(`${type} ${host}`);
    const answers = table[host]?.[type];
    if (answers === undefined) {
      return Promise.reject(new Deno.errors.NotFound(`no ${type} record for ${host}`));
    }
    return Promise.resolve(answers);
  };
  return { resolver, asked };
}

/** A fetch that serves a table of URLs and records what it was asked. */
function fakeFetch(routes: Record<string, () => Response>) {
  const calls: { url: string; redirect: RequestRedirect | undefined }[] = [];
  const fetchFn: typeof fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    calls.push({ url, redirect: init?.redirect });
    const route = routes[url];
    return Promise.resolve(route ? route() : new Response("missing", { status: 404 }));
  };
  return { fetchFn, calls };
}

const PUBLIC_DNS = {
  "images.example.com": { A: ["93.184.215.14"], AAAA: ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"] },
};

Deno.test("sniffImageType recognises each supported type by its bytes", () => {
  assertEquals(sniffImageType(fixtureBytes("red.png")), "image/png");
  assertEquals(sniffImageType(fixtureBytes("blue.jpg")), "image/jpeg");
  assertEquals(sniffImageType(fixtureBytes("green.gif")), "image/gif");
  assertEquals(sniffImageType(fixtureBytes("yellow.webp")), "image/webp");
  assertEquals(sniffImageType(fixtureBytes("white.bmp")), "image/bmp");
  assertEquals(sniffImageType(fixtureBytes("not-really.png")), undefined);
  assertEquals(sniffImageType(fixtureBytes("vector.svg")), undefined);
  assertEquals(sniffImageType(new TextEncoder().encode("BM but not a bitmap header")), undefined);
});

Deno.test("address checks know which addresses are not public", () => {
  for (
    const address of [
      "127.0.0.1",
      "10.2.3.4",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::ffff:10.0.0.1",
      "64:ff9b::a00:1",
      "2002:c0a8:101::1",
    ]
  ) {
    assert(nonPublicAddressReason(address) !== undefined, `${address} must be refused`);
  }
  for (const address of ["8.8.8.8", "93.184.215.14", "172.32.0.1", "2606:4700::1111"]) {
    assertEquals(nonPublicAddressReason(address), undefined, `${address} is public`);
  }
  assertEquals(parseIpv6("::ffff:127.0.0.1"), [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
  assertEquals(parseIpv6("1:2:3:4:5:6:7:8:9"), undefined);
  for (const host of ["localhost", "LOCALHOST.", "app.localhost", "printer.local", "[::1]"]) {
    assert(nonPublicHostReason(host.replace(/^\[|\]$/g, "")) !== undefined, host);
  }
  assertEquals(nonPublicHostReason("images.example.com"), undefined);
});

Deno.test("loadImage reads files", async (t) => {
  const png = fixtureBytes("red.png");
  const expectedUri = `data:image/png;base64,${png.toBase64()}`;

  await t.step("by absolute path, as a base64 data URI of the exact bytes", async () => {
    const image = await loadImage(fixture("red.png"));
    assertEquals(image, {
      dataUri: expectedUri,
      mime: "image/png",
      bytes: png.length,
      source: "file",
      label: fixture("red.png"),
    });
  });

  await t.step("by path relative to the given working directory", async () => {
    const image = await loadImage("images/green.gif", { cwd: resolve(FIXTURES, "..") });
    assertEquals(image.mime, "image/gif");
    assertEquals(image.label, fixture("green.gif"));
  });

  await t.step("by ~/ path against the home directory", async () => {
    const image = await loadImage("~/yellow.webp", { home: FIXTURES });
    assertEquals(image.mime, "image/webp");
    assertEquals(image.bytes, fixtureBytes("yellow.webp").length);
  });

  await t.step("by file:// URL, percent-decoded", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "my photo.jpg");
      await Deno.copyFile(fixture("blue.jpg"), path);
      const image = await loadImage(`file://${dir}/my%20photo.jpg`);
      assertEquals(image.mime, "image/jpeg");
      assertEquals(image.label, path);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("BMP files too", async () => {
    assertEquals((await loadImage(fixture("white.bmp"))).mime, "image/bmp");
  });

  await t.step("by content, not by name: a JPEG named .png is sent as image/jpeg", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(fixture("blue.jpg"), join(dir, "actually-jpeg.png"));
      const image = await loadImage(join(dir, "actually-jpeg.png"));
      assertEquals(image.mime, "image/jpeg");
      assert(image.dataUri.startsWith("data:image/jpeg;base64,/9j/"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("loadImage explains files it cannot use", async (t) => {
  await t.step("a missing file names the resolved path and the working directory", async () => {
    const error = await assertRejects(
      () => loadImage("nope/missing.png", { cwd: "/srv/work" }),
      ImageError,
      "Image file not found: /srv/work/nope/missing.png",
    );
    assertEquals(error.kind, "not_found");
    assertStringIncludes(error.message, "working directory /srv/work");
  });

  await t.step("text named .png is a type mismatch listing the supported types", async () => {
    const error = await assertRejects(() => loadImage(fixture("not-really.png")), ImageError);
    assertEquals(error.kind, "unsupported_type");
    assertStringIncludes(error.message, fixture("not-really.png"));
    assertStringIncludes(error.message, "named like a PNG image but its content is text");
    assertStringIncludes(error.message, "PNG, JPEG, GIF, WebP, BMP");
  });

  await t.step("SVG is unsupported, with a conversion hint", async () => {
    const error = await assertRejects(() => loadImage(fixture("vector.svg")), ImageError, "SVG");
    assertEquals(error.kind, "unsupported_type");
    assertStringIncludes(error.message, "Convert it to PNG or JPEG");
  });

  await t.step("a directory is not an image", async () => {
    const error = await assertRejects(() => loadImage(FIXTURES), ImageError, "is a directory");
    assertEquals(error.kind, "not_a_file");
  });

  await t.step("a named pipe is refused before it is opened (opening it would block)", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const fifo = join(dir, "pipe.png");
      const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
      assert(made.success, "mkfifo works");
      // No writer ever opens the pipe: a read would wait forever.
      const error = await assertRejects(
        () => loadImage(fifo),
        ImageError,
        "is a named pipe (FIFO), not an image file",
      );
      assertEquals(error.kind, "not_a_file");
      const device = await assertRejects(() => loadImage("/dev/zero"), ImageError, "is a device");
      assertEquals(device.kind, "not_a_file");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("a read cancelled once the file is found stops with an aborted error", async () => {
    const controller = new AbortController();
    controller.abort(new DOMException("cancelled by the client", "AbortError"));
    const error = await assertRejects(
      () => loadFile(fixture("red.png"), { signal: controller.signal }),
      ImageError,
      "cancelled",
    );
    assertEquals(error.kind, "aborted");
  });

  await t.step("a file over 10 MiB is refused by size without being read", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "huge.png");
      await Deno.writeFile(path, fixtureBytes("red.png"));
      await Deno.truncate(path, MAX_IMAGE_BYTES + 1); // sparse: instant, no disk use
      const started = performance.now();
      const error = await assertRejects(() => loadImage(path), ImageError, "at most 10.0 MiB");
      assertEquals(error.kind, "too_large");
      assertStringIncludes(error.message, path);
      assert(performance.now() - started < 1000, "the size check must not read the file");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("an unsupported scheme is named", async () => {
    await assertRejects(() => loadImage("ftp://example.com/a.png"), ImageError, '"ftp:"');
  });
});

Deno.test("loadImage accepts data URIs and bare base64", async (t) => {
  const png = fixtureBytes("red.png");
  const b64 = png.toBase64();

  await t.step("a valid data URI is re-encoded canonically", async () => {
    const image = await loadImage(`data:image/png;base64,${b64}`);
    assertEquals(image.source, "data-uri");
    assertEquals(image.dataUri, `data:image/png;base64,${b64}`);
    assertEquals(image.bytes, png.length);
  });

  await t.step("line breaks inside the base64 are tolerated", async () => {
    const wrapped = b64.replace(/(.{20})/g, "$1\n");
    const image = await loadImage(`data:image/png;base64,${wrapped}`);
    assertEquals(image.dataUri, `data:image/png;base64,${b64}`);
  });

  await t.step("the bytes decide the type when the declared type is wrong", async () => {
    const jpeg = fixtureBytes("blue.jpg").toBase64();
    const image = await loadImage(`data:image/png;base64,${jpeg}`);
    assertEquals(image.mime, "image/jpeg");
    assert(image.dataUri.startsWith("data:image/jpeg;base64,"));
  });

  await t.step("bare base64 of an image (no data: prefix) is accepted", async () => {
    const image = await loadImage(fixtureBytes("green.gif").toBase64() + "   ");
    assertEquals(image.mime, "image/gif");
    assertEquals(image.source, "data-uri");
  });

  await t.step("invalid base64 is refused", async () => {
    const error = await assertRejects(
      () => loadImage("data:image/png;base64,iVBORw0K!!!not*base64"),
      ImageError,
      "not valid base64",
    );
    assertEquals(error.kind, "invalid_data_uri");
  });

  await t.step("a non-image type is refused", async () => {
    await assertRejects(
      () => loadImage("data:text/plain;base64,aGVsbG8="),
      ImageError,
      "text/plain, not an image",
    );
  });

  await t.step("a non-base64 (SVG text) data URI is refused", async () => {
    await assertRejects(
      () => loadImage("data:image/svg+xml,<svg/>"),
      ImageError,
      "SVG is not supported",
    );
  });

  await t.step("base64 of something that is not an image is refused", async () => {
    const error = await assertRejects(
      () => loadImage(`data:image/png;base64,${new TextEncoder().encode("hello").toBase64()}`),
      ImageError,
      "does not hold a supported image",
    );
    assertEquals(error.kind, "unsupported_type");
  });

  await t.step("an oversized data URI is refused", async () => {
    const error = await assertRejects(
      () => loadImage(`data:image/png;base64,${b64}`, { maxBytes: 10 }),
      ImageError,
      "at most 10 B",
    );
    assertEquals(error.kind, "too_large");
  });
});

Deno.test("loadImage fetches public URLs safely", async (t) => {
  const png = fixtureBytes("red.png");
  const pngResponse = () => new Response(png, { headers: { "content-type": "image/png" } });

  await t.step("a public URL is fetched without following redirects blindly", async () => {
    const { resolver, asked } = fakeDns(PUBLIC_DNS);
    const { fetchFn, calls } = fakeFetch({ "https://images.example.com/cat.png": pngResponse });
    const image = await loadImage("https://images.example.com/cat.png", {
      fetch: fetchFn,
      resolveDns: resolver,
    });
    assertEquals(image.source, "url");
    assertEquals(image.mime, "image/png");
    assertEquals(image.dataUri, `data:image/png;base64,${png.toBase64()}`);
    assertEquals(image.label, "https://images.example.com/cat.png");
    assertEquals(calls, [{ url: "https://images.example.com/cat.png", redirect: "manual" }]);
    assertEquals(asked.sort(), ["A images.example.com", "AAAA images.example.com"]);
  });

  await t.step("a public redirect is followed after checking its target", async () => {
    const { resolver, asked } = fakeDns({
      ...PUBLIC_DNS,
      "cdn.example.net": { A: ["151.101.1.1"] },
    });
    const { fetchFn, calls } = fakeFetch({
      "https://images.example.com/cat": () =>
        new Response(null, { status: 302, headers: { location: "https://cdn.example.net/c.png" } }),
      "https://cdn.example.net/c.png": pngResponse,
    });
    const image = await loadImage("https://images.example.com/cat", {
      fetch: fetchFn,
      resolveDns: resolver,
    });
    assertEquals(image.mime, "image/png");
    assertEquals(calls.length, 2);
    assert(asked.includes("A cdn.example.net"));
  });

  for (
    const url of [
      "http://127.0.0.1:1234/v1/models",
      "http://[::1]/a.png",
      "http://10.0.0.8/a.png",
      "http://169.254.169.254/latest/meta-data/",
      "http://[::ffff:127.0.0.1]/a.png",
      "http://2130706433/a.png",
      "http://localhost:8080/a.png",
      "http://nas.local/a.png",
    ]
  ) {
    await t.step(`the literal private host of ${url} is refused before any request`, async () => {
      const { resolver, asked } = fakeDns({});
      const { fetchFn, calls } = fakeFetch({});
      const error = await assertRejects(
        () => loadImage(url, { fetch: fetchFn, resolveDns: resolver }),
        ImageError,
        "Refusing to fetch",
      );
      assertEquals(error.kind, "private_address");
      assertEquals(calls.length, 0);
      assertEquals(asked.length, 0);
    });
  }

  await t.step("a host name resolving to 127.0.0.1 is refused (DNS rebinding)", async () => {
    const { resolver } = fakeDns({ "evil.example.com": { A: ["127.0.0.1"] } });
    const { fetchFn, calls } = fakeFetch({});
    const error = await assertRejects(
      () => loadImage("https://evil.example.com/a.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "evil.example.com resolves to 127.0.0.1",
    );
    assertEquals(error.kind, "private_address");
    assertEquals(calls.length, 0);
  });

  await t.step("one private address among public ones is enough to refuse", async () => {
    const { resolver } = fakeDns({
      "mixed.example.com": { A: ["93.184.215.14"], AAAA: ["fd12::1"] },
    });
    const { fetchFn, calls } = fakeFetch({});
    await assertRejects(
      () => loadImage("https://mixed.example.com/a.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "resolves to fd12::1",
    );
    assertEquals(calls.length, 0);
  });

  await t.step("a redirect to a private address is refused", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const { fetchFn, calls } = fakeFetch({
      "https://images.example.com/a.png": () =>
        new Response(null, {
          status: 301,
          headers: { location: "http://169.254.169.254/latest/meta-data/" },
        }),
    });
    const error = await assertRejects(
      () => loadImage("https://images.example.com/a.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "169.254.169.254 is a link-local address",
    );
    assertEquals(error.kind, "private_address");
    assertEquals(calls.length, 1);
  });

  await t.step("a redirect to a name that resolves privately is refused", async () => {
    const { resolver } = fakeDns({ ...PUBLIC_DNS, "internal.corp.com": { A: ["10.1.1.1"] } });
    const { fetchFn, calls } = fakeFetch({
      "https://images.example.com/a.png": () =>
        new Response(null, { status: 307, headers: { location: "//internal.corp.com/a.png" } }),
    });
    await assertRejects(
      () => loadImage("https://images.example.com/a.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "internal.corp.com resolves to 10.1.1.1",
    );
    assertEquals(calls.length, 1);
  });

  await t.step("redirect loops stop after the limit", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const { fetchFn, calls } = fakeFetch({
      "https://images.example.com/loop": () =>
        new Response(null, { status: 302, headers: { location: "/loop" } }),
    });
    const error = await assertRejects(
      () =>
        loadImage("https://images.example.com/loop", {
          fetch: fetchFn,
          resolveDns: resolver,
          maxRedirects: 3,
        }),
      ImageError,
      "redirected more than 3 times",
    );
    assertEquals(error.kind, "too_many_redirects");
    assertEquals(calls.length, 4);
  });

  await t.step("a body over the size limit is cut off while streaming", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    let pulled = 0;
    const endless = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            pulled++;
            controller.enqueue(pulled === 1 ? png : new Uint8Array(4096));
          },
        }),
      );
    const { fetchFn } = fakeFetch({ "https://images.example.com/big.png": endless });
    const error = await assertRejects(
      () =>
        loadImage("https://images.example.com/big.png", {
          fetch: fetchFn,
          resolveDns: resolver,
          maxBytes: 64 * 1024,
        }),
      ImageError,
      "larger than 64.0 KiB",
    );
    assertEquals(error.kind, "too_large");
    assert(pulled < 40, `stopped reading early (pulled ${pulled} chunks)`);
  });

  await t.step("a declared Content-Length over the limit is refused up front", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const { fetchFn } = fakeFetch({
      "https://images.example.com/big.png": () =>
        new Response(png, { headers: { "content-length": String(MAX_IMAGE_BYTES + 1) } }),
    });
    await assertRejects(
      () =>
        loadImage("https://images.example.com/big.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "at most 10.0 MiB",
    );
  });

  await t.step("a web page instead of an image is explained", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const { fetchFn } = fakeFetch({
      "https://images.example.com/page": () =>
        new Response("<!DOCTYPE html><html><body>hi</body></html>", {
          headers: { "content-type": "text/html; charset=utf-8" },
        }),
    });
    const error = await assertRejects(
      () => loadImage("https://images.example.com/page", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "It is a web page",
    );
    assertStringIncludes(error.message, "content-type text/html");
  });

  await t.step("an HTTP error status is reported", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const { fetchFn } = fakeFetch({});
    const error = await assertRejects(
      () =>
        loadImage("https://images.example.com/gone.png", { fetch: fetchFn, resolveDns: resolver }),
      ImageError,
      "HTTP 404",
    );
    assertEquals(error.status, 404);
  });

  await t.step("a slow server hits the time limit", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const hanging: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    const error = await assertRejects(
      () =>
        loadImage("https://images.example.com/slow.png", {
          fetch: hanging,
          resolveDns: resolver,
          timeoutMs: 30,
        }),
      ImageError,
      "took too long",
    );
    assertEquals(error.kind, "timeout");
  });

  await t.step("a sandbox denial says how to proceed", async () => {
    const { resolver } = fakeDns(PUBLIC_DNS);
    const denied: typeof fetch = () =>
      Promise.reject(new Deno.errors.NotCapable('Requires net access to "images.example.com:443"'));
    const error = await assertRejects(
      () => loadImage("https://images.example.com/a.png", { fetch: denied, resolveDns: resolver }),
      ImageError,
      "blocked by the bridge's sandbox",
    );
    assertEquals(error.kind, "sandbox");
    assertMatch(error.message, /file path.*data URI.*--allow-net/);
  });
});

Deno.test("the bridge's real sandbox blocks public image URLs with an explanation", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = join(dir, "probe.ts");
    const images = new URL("../lib/images.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadImage } from ${JSON.stringify(images)};\n` +
        `try { await loadImage("https://93.184.215.14/cat.png"); Deno.stdout.writeSync(new TextEncoder().encode("loaded")); }\n` +
        `catch (e) { Deno.stdout.writeSync(new TextEncoder().encode(e.kind + "\\n" + e.message)); }\n`,
    );
    const config = new URL("../deno.json", import.meta.url).pathname;
    const { stdout, code } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        config,
        "-P=bridge",
        "--no-prompt",
        "--cached-only",
        "--frozen",
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assertEquals(code, 0, out);
    assert(out.startsWith("sandbox\n"), out);
    assertStringIncludes(out, "--allow-net");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadImages loads in parallel, keeps order and reports every failure", async (t) => {
  await t.step("order is kept", async () => {
    const images = await loadImages([
      fixture("red.png"),
      fixture("blue.jpg"),
      fixture("green.gif"),
    ]);
    assertEquals(images.map((i) => i.mime), ["image/png", "image/jpeg", "image/gif"]);
  });

  await t.step("more than the limit is refused, naming the limit", async () => {
    const error = await assertRejects(
      () => loadImages(new Array<string>(11).fill(fixture("red.png"))),
      ImageError,
      "at most 10 fit in one call",
    );
    assertEquals(error.kind, "too_many_images");
  });

  await t.step("all failures are listed together", async () => {
    const error = await assertRejects(
      () =>
        loadImages([
          fixture("red.png"),
          fixture("missing-one.png"),
          fixture("not-really.png"),
        ]),
      ImageError,
      "2 of 3 images could not be loaded",
    );
    assertEquals(error.failures.map((f) => f.kind), ["not_found", "unsupported_type"]);
    assertStringIncludes(error.message, "missing-one.png");
    assertStringIncludes(error.message, "not-really.png");
  });

  await t.step("parallel loads overlap in time", async () => {
    const { resolver } = fakeDns({
      "a.example.com": { A: ["93.184.215.14"] },
      "b.example.com": { A: ["93.184.215.15"] },
    });
    let inFlight = 0;
    let peak = 0;
    const slow: typeof fetch = async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return new Response(fixtureBytes("red.png"));
    };
    await loadImages(["https://a.example.com/1.png", "https://b.example.com/2.png"], {
      fetch: slow,
      resolveDns: resolver,
    });
    assertEquals(peak, 2);
  });
});
