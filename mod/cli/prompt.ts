/** Reading a username or a secret from the terminal, or a secret from piped stdin. */
import { ShoalError, UsageError } from "../errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function stdinIsTerminal(): boolean {
  return Deno.stdin.isTerminal();
}

/** Everything on stdin, without the one trailing newline `echo` adds (`--password-stdin`). */
export async function readStdinSecret(): Promise<string> {
  const text = dec.decode(await new Response(Deno.stdin.readable).arrayBuffer());
  return text.replace(/\r?\n$/, "");
}

/** A visible line from the terminal (a username). */
export function promptLine(label: string): string {
  const answer = prompt(label);
  if (answer === null) throw new UsageError("no answer given");
  return answer.trim();
}

/** A line from the terminal without echo (a password); Ctrl-C or Ctrl-D abandon it. */
export async function promptSecret(label: string): Promise<string> {
  Deno.stderr.writeSync(enc.encode(label));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buf = new Uint8Array(64);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      for (const b of buf.subarray(0, n)) {
        if (b === 0x0d || b === 0x0a) return dec.decode(new Uint8Array(bytes));
        if (b === 0x03 || b === 0x04) throw new ShoalError("cancelled");
        if (b === 0x7f || b === 0x08) bytes.pop();
        else bytes.push(b);
      }
    }
    return dec.decode(new Uint8Array(bytes));
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stderr.writeSync(enc.encode("\n"));
  }
}
