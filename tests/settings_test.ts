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

Deno.test("LMSTUDIO_MODEL_LIST_REUSE_MS sets how long tasks reuse a model list, 2 s by default, 0 never", () => {
  assertEquals(resolveSettings({}).listReuseMs, 2_000);
  assertEquals(resolveSettings({ LMSTUDIO_MODEL_LIST_REUSE_MS: "0" }).listReuseMs, 0);
  assertEquals(resolveSettings({ LMSTUDIO_MODEL_LIST_REUSE_MS: "500" }).listReuseMs, 500);
  assertThrows(
    () => resolveSettings({ LMSTUDIO_MODEL_LIST_REUSE_MS: "soon" }),
    SettingsError,
    "LMSTUDIO_MODEL_LIST_REUSE_MS",
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

Deno.test("without LMSTUDIO_ENDPOINTS there is one endpoint, the server of LMSTUDIO_BASE_URL", () => {
  const s = resolveSettings({ LMSTUDIO_BASE_URL: "http://127.0.0.1:11434/v1", LM_API_TOKEN: "t" });
  assertEquals(s.namedEndpoints, false);
  assertEquals(s.endpoints, [{
    name: "default",
    baseUrl: "http://127.0.0.1:11434",
    token: "t",
    tokenVariable: "LM_API_TOKEN",
  }]);
});

Deno.test("LMSTUDIO_ENDPOINTS names several servers in order, each with its own token", () => {
  const s = resolveSettings({
    LMSTUDIO_ENDPOINTS: " laptop=http://127.0.0.1:1234,  gpu-box=http://192.168.1.20:1234/v1/ ,\n" +
      "ollama=http://127.0.0.1:11434",
    LMSTUDIO_ENDPOINT_GPU_BOX_TOKEN: "secret",
  });
  assertEquals(s.namedEndpoints, true);
  assertEquals(s.endpoints.map((e) => [e.name, e.baseUrl, e.token, e.tokenVariable]), [
    ["laptop", "http://127.0.0.1:1234", undefined, "LMSTUDIO_ENDPOINT_LAPTOP_TOKEN"],
    ["gpu-box", "http://192.168.1.20:1234", "secret", "LMSTUDIO_ENDPOINT_GPU_BOX_TOKEN"],
    ["ollama", "http://127.0.0.1:11434", undefined, "LMSTUDIO_ENDPOINT_OLLAMA_TOKEN"],
  ]);
  // The first endpoint is the one of the single-server settings.
  assertEquals(s.baseUrl, "http://127.0.0.1:1234");
  assertEquals(s.token, undefined);
  assertEquals(Object.isFrozen(s.endpoints), true);
});

Deno.test("LMSTUDIO_ENDPOINTS errors name the variable and what is wrong", async (t) => {
  const fails = (env: Record<string, string>, variable: string, text: string) => {
    const e = assertThrows(() => resolveSettings(env), SettingsError, text);
    assertEquals(e.variable, variable);
  };
  await t.step("a pair without a name", () => {
    fails({ LMSTUDIO_ENDPOINTS: "http://127.0.0.1:1234" }, "LMSTUDIO_ENDPOINTS", "name=url");
    fails({ LMSTUDIO_ENDPOINTS: "a b=http://x:1" }, "LMSTUDIO_ENDPOINTS", '"a"');
  });
  await t.step("a URL that is not one", () => {
    fails({ LMSTUDIO_ENDPOINTS: "gpu=192.168.1.20" }, "LMSTUDIO_ENDPOINTS", "gpu=");
    fails(
      { LMSTUDIO_ENDPOINTS: "gpu=ftp://192.168.1.20" },
      "LMSTUDIO_ENDPOINTS",
      "must start with http:// or https://",
    );
  });
  await t.step("a name twice, or two names sharing a token variable", () => {
    fails(
      { LMSTUDIO_ENDPOINTS: "gpu=http://a:1,gpu=http://b:1" },
      "LMSTUDIO_ENDPOINTS",
      '"gpu" twice',
    );
    fails(
      { LMSTUDIO_ENDPOINTS: "gpu-1=http://a:1,GPU_1=http://b:1" },
      "LMSTUDIO_ENDPOINTS",
      "LMSTUDIO_ENDPOINT_GPU_1_TOKEN",
    );
  });
  await t.step("one URL twice", () => {
    fails(
      { LMSTUDIO_ENDPOINTS: "a=http://h:1/v1,b=http://h:1" },
      "LMSTUDIO_ENDPOINTS",
      "same URL",
    );
  });
  await t.step("nothing but separators", () => {
    fails({ LMSTUDIO_ENDPOINTS: " , ," }, "LMSTUDIO_ENDPOINTS", "names no endpoint");
  });
  await t.step("the single-server variables with it", () => {
    const endpoints = "laptop=http://127.0.0.1:1234";
    fails(
      { LMSTUDIO_ENDPOINTS: endpoints, LMSTUDIO_BASE_URL: "http://127.0.0.1:1" },
      "LMSTUDIO_BASE_URL",
      "unset LMSTUDIO_BASE_URL",
    );
    fails({ LMSTUDIO_ENDPOINTS: endpoints, LMSTUDIO_PORT: "1" }, "LMSTUDIO_PORT", "LMSTUDIO_PORT");
    fails(
      { LMSTUDIO_ENDPOINTS: endpoints, LM_API_TOKEN: "t" },
      "LM_API_TOKEN",
      "LMSTUDIO_ENDPOINT_LAPTOP_TOKEN for laptop",
    );
  });
  await t.step("a token variable of no endpoint", () => {
    fails(
      { LMSTUDIO_ENDPOINTS: "gpu=http://h:1", LMSTUDIO_ENDPOINT_GPU2_TOKEN: "t" },
      "LMSTUDIO_ENDPOINT_GPU2_TOKEN",
      "names no endpoint of LMSTUDIO_ENDPOINTS (gpu)",
    );
    fails(
      { LMSTUDIO_ENDPOINT_GPU_TOKEN: "t" },
      "LMSTUDIO_ENDPOINT_GPU_TOKEN",
      "LMSTUDIO_ENDPOINTS is not",
    );
  });
  await t.step("blank variables are unset", () => {
    assertEquals(
      resolveSettings({ LMSTUDIO_ENDPOINTS: " ", LMSTUDIO_ENDPOINT_GPU_TOKEN: "" }).namedEndpoints,
      false,
    );
  });
});
