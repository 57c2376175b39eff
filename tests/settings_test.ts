import { assertEquals, assertThrows } from "./assert.ts";
import { resolveSettings, SettingsError } from "../lib/settings.ts";

Deno.test("settings default to LM Studio on 127.0.0.1:1234, not localhost", () => {
  const s = resolveSettings({});
  assertEquals(s.baseUrl, "http://127.0.0.1:1234");
  assertEquals(s.token, undefined);
  assertEquals(s.retries, 2);
  assertEquals(s.modelTtlSeconds, 600);
  assertEquals(s.depth, 0);
  assertEquals(s.mcpConnectTimeoutMs, 30_000);
  assertEquals(s.mcpCallTimeoutMs, 300_000);
  assertEquals(s.maxReplyBytes, 64 * 1024 * 1024);
  assertEquals([s.stream, s.stallMs], [true, 120_000]);
});

Deno.test("LMSTUDIO_STREAM turns streaming off and on; LMSTUDIO_STALL_MS sets the stall limit, 0 none", () => {
  for (const off of ["off", "0", "false", "NO"]) {
    assertEquals(resolveSettings({ LMSTUDIO_STREAM: off }).stream, false, off);
  }
  for (const on of ["on", "1", "true", "Yes"]) {
    assertEquals(resolveSettings({ LMSTUDIO_STREAM: on }).stream, true, on);
  }
  assertThrows(() => resolveSettings({ LMSTUDIO_STREAM: "maybe" }), SettingsError, "use on or off");
  assertEquals(resolveSettings({ LMSTUDIO_STALL_MS: "0" }).stallMs, 0);
  assertEquals(resolveSettings({ LMSTUDIO_STALL_MS: "30000" }).stallMs, 30_000);
  assertThrows(
    () => resolveSettings({ LMSTUDIO_STALL_MS: "-1" }),
    SettingsError,
    "LMSTUDIO_STALL_MS",
  );
});

Deno.test("LMSTUDIO_MAX_REPLY_BYTES sets the largest reply read, from 1 KiB up", () => {
  assertEquals(resolveSettings({ LMSTUDIO_MAX_REPLY_BYTES: "1048576" }).maxReplyBytes, 1048576);
  assertThrows(
    () => resolveSettings({ LMSTUDIO_MAX_REPLY_BYTES: "10" }),
    SettingsError,
    "LMSTUDIO_MAX_REPLY_BYTES",
  );
});

Deno.test("MCP_JSON_PATH is a setting, trimmed; blank is unset", () => {
  assertEquals(resolveSettings({ MCP_JSON_PATH: " /srv/mcp.json " }).mcpJsonPath, "/srv/mcp.json");
  assertEquals(resolveSettings({ MCP_JSON_PATH: "  " }).mcpJsonPath, undefined);
});

Deno.test("settings accept a base URL for any OpenAI-compatible server and drop a trailing /v1", () => {
  assertEquals(
    resolveSettings({ LMSTUDIO_BASE_URL: "http://127.0.0.1:11434/v1/" }).baseUrl,
    "http://127.0.0.1:11434",
  );
  assertEquals(
    resolveSettings({ LMSTUDIO_BASE_URL: "https://gpu-box.lan:8443/llm" }).baseUrl,
    "https://gpu-box.lan:8443/llm",
  );
});

Deno.test("settings keep LMSTUDIO_HOST and LMSTUDIO_PORT for compatibility", () => {
  assertEquals(
    resolveSettings({ LMSTUDIO_HOST: "192.168.1.5", LMSTUDIO_PORT: "4321" }).baseUrl,
    "http://192.168.1.5:4321",
  );
  assertEquals(resolveSettings({ LMSTUDIO_HOST: "::1" }).baseUrl, "http://[::1]:1234");
  // The full URL wins over host and port.
  assertEquals(
    resolveSettings({ LMSTUDIO_BASE_URL: "http://127.0.0.1:8080", LMSTUDIO_PORT: "1" }).baseUrl,
    "http://127.0.0.1:8080",
  );
});

Deno.test("settings reject invalid values with a message naming the variable", async (t) => {
  await t.step("port out of range", () => {
    const e = assertThrows(() => resolveSettings({ LMSTUDIO_PORT: "99999" }), SettingsError);
    assertEquals(e.variable, "LMSTUDIO_PORT");
    assertEquals(e.message.includes("1 to 65535"), true);
  });
  await t.step("base URL that is not a URL", () => {
    const e = assertThrows(
      () => resolveSettings({ LMSTUDIO_BASE_URL: "lmstudio:abc def" }),
      SettingsError,
    );
    assertEquals(e.variable, "LMSTUDIO_BASE_URL");
  });
  await t.step("base URL with another scheme", () => {
    assertThrows(
      () => resolveSettings({ LMSTUDIO_BASE_URL: "ftp://127.0.0.1" }),
      SettingsError,
      "http://",
    );
  });
  await t.step("an unknown log level", () => {
    assertThrows(() => resolveSettings({ LOG_LEVEL: "loud" }), SettingsError, "LOG_LEVEL");
    assertEquals(resolveSettings({ LOG_LEVEL: "WARNING" }).baseUrl, "http://127.0.0.1:1234");
  });
  await t.step("a timeout that is not a number", () => {
    assertThrows(
      () => resolveSettings({ LMSTUDIO_TIMEOUT_MS: "soon" }),
      SettingsError,
      "LMSTUDIO_TIMEOUT_MS",
    );
  });
});

Deno.test("settings treat empty variables as unset and are frozen", () => {
  const s = resolveSettings({ LM_API_TOKEN: "  ", DEFAULT_MODEL: "", LMSTUDIO_PORT: "" });
  assertEquals(s.token, undefined);
  assertEquals(s.defaultModel, undefined);
  assertEquals(Object.isFrozen(s), true);
});
