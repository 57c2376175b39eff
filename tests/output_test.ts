/**
 * The CLI's output streams (lib/output.ts) on terminals and pipes, with streams that record what
 * reaches them: streamed text, the one status line, dimmed reasoning, and that a pipe gets the
 * text as written.
 */
import { type Output, type OutputStream, streamOutput } from "../lib/output.ts";
import { assertEquals } from "./assert.ts";

/** A stream that records what is written to it, the order of both streams in `screen`. */
function recorder(terminal: boolean, screen: string[]): OutputStream & { text(): string } {
  const decoder = new TextDecoder();
  let text = "";
  return {
    writeSync: (p) => {
      const s = decoder.decode(p);
      text += s;
      screen.push(s);
      return p.length;
    },
    isTerminal: () => terminal,
    text: () => text,
  };
}

function streams(o: { stdout: boolean; stderr: boolean; color?: boolean }) {
  const screen: string[] = [];
  const stdout = recorder(o.stdout, screen);
  const stderr = recorder(o.stderr, screen);
  const out: Output = streamOutput({ stdout, stderr, columns: () => 80, color: o.color ?? true });
  return { out, stdout, stderr, screen: () => screen.join("") };
}

const CLEAR = "\r\x1b[2K";

Deno.test("on a terminal, the status line waits while the streamed text is mid-line", () => {
  const { out, screen } = streams({ stdout: true, stderr: true });
  out.status("round 1/9 · asking");
  out.stdout("Hello, ");
  // Drawing it now would erase "Hello, ": it waits for the line to end.
  out.status("round 1/9 · model: 3 tokens");
  out.stdout("world.\nSecond");
  out.status("round 1/9 · model: 9 tokens");
  out.stdout(" line.\n");
  out.status("");
  assertEquals(
    screen(),
    // A piece that ends mid-line keeps it waiting; the newest one is drawn when a line ends.
    `${CLEAR}round 1/9 · asking${CLEAR}Hello, world.\nSecond line.\n` +
      `${CLEAR}round 1/9 · model: 9 tokens${CLEAR}`,
  );
});

Deno.test("a message line on stderr starts its own line after streamed text", () => {
  const { out, screen } = streams({ stdout: true, stderr: true });
  out.stdout("partial");
  out.status("held");
  out.stderr("note: something");
  assertEquals(screen(), `partial\nnote: something\n${CLEAR}held`);
});

Deno.test("dimmed text is dimmed on a colour terminal only", () => {
  const colour = streams({ stdout: true, stderr: true });
  colour.out.stdout("thinking\x1b[31m", "dim");
  assertEquals(colour.stdout.text(), "\x1b[2mthinking\x1b[22m");
  const plain = streams({ stdout: true, stderr: true, color: false });
  plain.out.stdout("thinking", "dim");
  assertEquals(plain.stdout.text(), "thinking");
  const piped = streams({ stdout: false, stderr: true });
  piped.out.stdout("thinking", "dim");
  assertEquals(piped.stdout.text(), "thinking");
});

Deno.test("piped stdout gets the text as written; the terminal's status line is cleared first", () => {
  const { out, stdout, stderr } = streams({ stdout: false, stderr: true });
  out.status("working");
  out.stdout("The answer");
  // stdout is not on the screen: its unfinished line does not hold the status line back.
  out.status("still working");
  out.stdout(".\n");
  assertEquals(stdout.text(), "The answer.\n");
  assertEquals(stderr.text(), `${CLEAR}working${CLEAR}${CLEAR}still working${CLEAR}`);
});

Deno.test("without a terminal there is no status line at all", () => {
  const { out, stdout, stderr } = streams({ stdout: false, stderr: false });
  out.status("working");
  out.stdout("a");
  out.stderr("b");
  assertEquals([stdout.text(), stderr.text()], ["a", "b\n"]);
});
