/**
 * Reading the publish protocol from a byte stream: lines of bounded length,
 * and runs of exactly N bytes. A read takes what the stream has (at most
 * CHUNK bytes) and never waits for more than was asked: the sender waits for
 * an answer between parts.
 *
 * Layers come in reads of up to CHUNK bytes into one buffer (a byte stream's
 * BYOB reads, as Deno's standard input gives), handed on without a copy: with
 * the pipe widened as well (mod/sys/pipe.ts), 50 MB take 50 reads instead of
 * 800, ~100 ms less a publish of the Debian image.
 */
import { concatBytes } from "../../bytes.ts";
import { ShoalError } from "../../errors.ts";

const CHUNK = 1 << 20;

export class ExactReader {
  /** Bytes read and not yet taken: a view of the last read's buffer, or of a line's carry. */
  #pending: Uint8Array = new Uint8Array(0);
  /** The buffer the next BYOB read fills (taken over by the stream while it reads). */
  #spare: Uint8Array<ArrayBuffer> | undefined;
  readonly #read: () => Promise<ReadableStreamReadResult<Uint8Array>>;

  constructor(stream: ReadableStream<Uint8Array>) {
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = stream.getReader({ mode: "byob" });
    } catch { /* not a byte stream: its own chunks */ }
    if (byob === undefined) {
      const reader = stream.getReader();
      this.#read = () => reader.read();
    } else {
      this.#read = async () => {
        // The last read's buffer is free again only once nothing of it is pending.
        const buffer = this.#spare ?? new Uint8Array(CHUNK);
        this.#spare = undefined;
        const result = await byob.read(buffer);
        if (result.value !== undefined) this.#spare = new Uint8Array(result.value.buffer);
        return result;
      };
    }
  }

  /** Reads more into #pending (which must be empty); false at the stream's end. */
  async #more(): Promise<boolean> {
    for (;;) {
      const { value, done } = await this.#read();
      if (done) return false;
      if (value.length > 0) {
        this.#pending = value;
        return true;
      }
    }
  }

  /** One line without its newline, at most `max` bytes. */
  async line(max: number, what: string): Promise<string> {
    let carry: Uint8Array = new Uint8Array(0);
    for (;;) {
      const nl = this.#pending.indexOf(10);
      if (nl >= 0) {
        const head = this.#pending.subarray(0, nl);
        const text = new TextDecoder().decode(
          carry.length === 0 ? head : concatBytes([carry, head]),
        );
        this.#pending = this.#pending.subarray(nl + 1);
        return text;
      }
      // The next read reuses the buffer #pending views: keep its bytes.
      carry = concatBytes([carry, this.#pending]);
      this.#pending = new Uint8Array(0);
      if (carry.length > max) throw new ShoalError(`publish: ${what} is too long`);
      if (!await this.#more()) {
        throw new ShoalError(`publish: the stream ended in the middle of ${what}`);
      }
    }
  }

  /**
   * Exactly `n` bytes, handed to `sink` as they come. A chunk is valid only
   * until `sink` returns: the next read reuses its buffer.
   */
  async exact(n: number, what: string, sink: (chunk: Uint8Array) => void | Promise<void>) {
    let left = n;
    while (left > 0) {
      if (this.#pending.length === 0 && !await this.#more()) {
        throw new ShoalError(`publish: the stream ended in the middle of ${what}`);
      }
      const take = Math.min(left, this.#pending.length);
      await sink(this.#pending.subarray(0, take));
      this.#pending = this.#pending.subarray(take);
      left -= take;
    }
  }

  /** Exactly `n` bytes, in memory (small parts only). */
  async bytes(n: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let at = 0;
    await this.exact(n, what, (c) => {
      out.set(c, at);
      at += c.length;
    });
    return out;
  }

  /** Whether the sender has closed the stream with nothing more in it. */
  async atEnd(): Promise<boolean> {
    return this.#pending.length === 0 && !await this.#more();
  }
}
