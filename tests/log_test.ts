import { assertEquals } from "./assert.ts";
import { createLogger, levelFromEnv } from "../lib/log.ts";

Deno.test("logger drops lines below its level and formats fields", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", color: false, write: (l) => lines.push(l) });
  log.debug("hidden");
  log.info("server ready", { port: 1234, name: "two words" });
  log.child("pool").warn("slow", { ms: 12 });
  assertEquals(lines, ['INFO server ready port=1234 name="two words"', "WARN [pool] slow ms=12"]);
});

Deno.test("logger colours only when asked", () => {
  const lines: string[] = [];
  createLogger({ level: "debug", color: true, write: (l) => lines.push(l) }).error("x");
  assertEquals(lines[0]?.startsWith("\x1b[31mERROR"), true);
});

Deno.test("LOG_LEVEL parsing falls back to info on nonsense", () => {
  assertEquals(levelFromEnv("DEBUG"), "debug");
  assertEquals(levelFromEnv("warning"), "warn");
  assertEquals(levelFromEnv("loud"), "info");
  assertEquals(levelFromEnv(undefined), "info");
});
