/**
 * The lists a downstream server offers (tools, resources, resource templates, prompts): each
 * fetched page by page on first use ({@linkcode fetchPages}) and kept by a {@linkcode CachedList}
 * until the server says it changed. Items are checked one by one: an item the server declared
 * wrongly is left out with a note saying so ({@linkcode readItems}), and the rest stay usable.
 */
import { z } from "zod";
import type { Client } from "./sdk_client.ts";
import { McpServerError } from "./pool_errors.ts";
import { isRecord } from "./json.ts";

/** More pages than this is taken for a server whose pagination never ends. */
const MAX_PAGES = 1000;

/** One page of a list: the items (under the list's own key) are checked by the reader. */
const PageSchema = z.looseObject({ nextCursor: z.string().optional() });

/** What one fetch of a list gives: its items, and what was wrong with those left out or repaired. */
export interface Listed<T> {
  items: T[];
  notes: string[];
}

/**
 * One list of a connection: fetched once, shared by concurrent callers, kept until
 * {@linkcode invalidate} (the server's list_changed notification). A fetch that started before
 * the list changed still answers its callers but is not kept.
 */
export class CachedList<T> {
  readonly #fetch: (timeoutMs: number) => Promise<Listed<T>>;
  #value?: Listed<T>;
  #promise?: Promise<Listed<T>>;
  #version = 0;

  constructor(fetch: (timeoutMs: number) => Promise<Listed<T>>) {
    this.#fetch = fetch;
  }

  /** The list as last fetched, if it is still current. */
  get cached(): Listed<T> | undefined {
    return this.#value;
  }

  /** The list: the cached one, the fetch under way, or a new fetch bounded by `timeoutMs`. */
  get(timeoutMs: number): Promise<Listed<T>> {
    if (this.#value) return Promise.resolve(this.#value);
    if (this.#promise) return this.#promise;
    const version = this.#version;
    const promise = this.#fetch(timeoutMs).then((listed) => {
      if (this.#version === version) this.#value = listed;
      return listed;
    }).finally(() => {
      if (this.#promise === promise) this.#promise = undefined;
    });
    this.#promise = promise;
    return promise;
  }

  /** The server changed the list: the next {@linkcode get} fetches it again. */
  invalidate(): void {
    this.#version++;
    this.#value = undefined;
    this.#promise = undefined;
  }
}

/** What {@linkcode fetchPages} requests and how it reads each page. */
export interface PagesRequest<T> {
  client: Client;
  server: string;
  /** "tools/list", "resources/list", "resources/templates/list", "prompts/list". */
  method: string;
  /** The field of the result that holds the page's items ("tools", "resources"...). */
  key: string;
  timeoutMs: number;
  /** The items of one page, checked. */
  read: (raw: readonly unknown[]) => Listed<T>;
}

/**
 * Every page of a list, following `nextCursor`. A server that repeats a cursor, or sends more
 * than {@linkcode MAX_PAGES} pages, fails with a message that says so.
 */
export async function fetchPages<T>(o: PagesRequest<T>): Promise<Listed<T>> {
  const items: T[] = [];
  const notes: string[] = [];
  const seen = new Set<string>();
  let cursor: string | undefined;
  for (let n = 0; n < MAX_PAGES; n++) {
    const result = await o.client.request(
      { method: o.method, params: cursor === undefined ? {} : { cursor } },
      PageSchema,
      { timeout: o.timeoutMs },
    );
    const raw = result[o.key];
    if (!Array.isArray(raw)) {
      throw new McpServerError(
        `MCP server "${o.server}" answered ${o.method} without a list of ${o.key}. Report it to ` +
          "the server's authors.",
        { server: o.server, kind: "protocol" },
      );
    }
    const checked = o.read(raw);
    items.push(...checked.items);
    notes.push(...checked.notes);
    cursor = result.nextCursor;
    if (cursor === undefined || cursor === "") return { items, notes };
    if (seen.has(cursor)) {
      throw new McpServerError(
        `MCP server "${o.server}" returned the ${o.method} cursor ${
          JSON.stringify(cursor)
        } twice; its pagination is broken. Report it to the server's authors.`,
        { server: o.server, kind: "protocol" },
      );
    }
    seen.add(cursor);
  }
  throw new McpServerError(
    `MCP server "${o.server}" returned more than ${MAX_PAGES} pages of ${o.key}; giving up.`,
    { server: o.server, kind: "protocol" },
  );
}

/**
 * The items of one page checked against `schema` one by one; an invalid item is left out with a
 * note naming it (by `label`, e.g. its URI or name, when it has one) and what was wrong.
 */
export function readItems<T>(
  raw: readonly unknown[],
  o: { schema: z.ZodType<T>; server: string; what: string; label: string },
): Listed<T> {
  const items: T[] = [];
  const notes: string[] = [];
  raw.forEach((item, index) => {
    const parsed = o.schema.safeParse(item);
    if (parsed.success) {
      items.push(parsed.data);
      return;
    }
    const label = isRecord(item) ? item[o.label] : undefined;
    const which = typeof label === "string" && label !== ""
      ? `${o.what} ${JSON.stringify(label)}`
      : `a ${o.what} (entry ${index + 1} of its list)`;
    const issue = parsed.error.issues[0];
    const why = issue === undefined
      ? "invalid"
      : `${issue.path.map(String).join(".") || "entry"}: ${issue.message}`;
    notes.push(
      `MCP server "${o.server}" listed ${which} declared wrongly (${why}); skipped, the rest ` +
        "are usable. Report it to the server's authors.",
    );
  });
  return { items, notes };
}
