/**
 * Reading the publish protocol from a byte stream: lines of bounded length,
 * and runs of exactly N bytes, with nothing read past what was asked (the
 * sender waits for an answer between parts).
 */
import { ShoalError } from "../../errors.ts";

export class ExactReader {
  #buffer: Uint8Array = new Uint8Array(0);
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #more(what: string): Promise<void> {
    const { value, done } = await this.#reader.read();
    if (done) throw new ShoalError(`publish: the stream ended in the middle of ${what}`);
    const next = new Uint8Array(this.#buffer.length + value.length);
    next.set(this.#buffer);
    next.set(value, this.#buffer.length);
    this.#buffer = next;
  }

  /** One line without its newline, at most `max` bytes. */
  async line(max: number, what: string): Promise<string> {
    for (;;) {
      const nl = this.#buffer.indexOf(10);
      if (nl >= 0) {
        const text = new TextDecoder().decode(this.#buffer.subarray(0, nl));
        this.#buffer = this.#buffer.slice(nl + 1);
        return text;
      }
      if (this.#buffer.length > max) throw new ShoalError(`publish: ${what} is too long`);
      await this.#more(what);
    }
  }

  /** Exactly `n` bytes, handed to `sink` as they come. */
  async exact(n: number, what: string, sink: (chunk: Uint8Array) => void | Promise<void>) {
    let left = n;
    while (left > 0) {
      if (this.#buffer.length === 0) await this.#more(what);
      const take = Math.min(left, this.#buffer.length);
      await sink(this.#buffer.subarray(0, take));
      this.#buffer = this.#buffer.slice(take);
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
    if (this.#buffer.length > 0) return false;
    const { value, done } = await this.#reader.read();
    if (done) return true;
    this.#buffer = value;
    return value.length === 0 ? await this.atEnd() : false;
  }
}
