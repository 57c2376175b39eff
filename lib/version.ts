/** The bridge's name and version, read from deno.json at build time (also inside a compiled binary). */
import denoJson from "../deno.json" with { type: "json" };

export const NAME = "lmstudio-bridge";
export const VERSION: string = denoJson.version;
