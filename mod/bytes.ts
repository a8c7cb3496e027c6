/** Byte-array helpers shared by the archive readers and writers and the image store. */

/** One array holding `parts` back to back. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Lowercase hex, two digits a byte. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `n` random bytes as 2n hex digits: names no other process picks for its temp file. */
export function randomHex(n: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(n)));
}

/*
 * Host strings (arguments, environment, paths) are bytes, not always UTF-8.
 * shoal carries them as JS strings losslessly, as Python's "surrogateescape"
 * does: each byte that is not part of valid UTF-8 becomes the lone surrogate
 * U+DC80..U+DCFF, which valid UTF-8 never decodes to. A string with such a
 * surrogate is not well-formed; where it leaves shoal (a path for libc, an
 * argument for the container) hostBytes turns it back into the same bytes.
 */

const ESCAPE_BASE = 0xdc00;

/** The length of the valid UTF-8 sequence at `bytes[i]`, or 0 (Unicode's Table 3-7). */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  if (b < 0x80) return 1;
  const [n, lo, hi] = b >= 0xc2 && b <= 0xdf
    ? [2, 0x80, 0xbf]
    : b === 0xe0
    ? [3, 0xa0, 0xbf]
    : b === 0xed
    ? [3, 0x80, 0x9f]
    : b >= 0xe1 && b <= 0xef
    ? [3, 0x80, 0xbf]
    : b === 0xf0
    ? [4, 0x90, 0xbf]
    : b >= 0xf1 && b <= 0xf3
    ? [4, 0x80, 0xbf]
    : b === 0xf4
    ? [4, 0x80, 0x8f]
    : [0, 0, 0];
  if (n === 0 || i + n > bytes.length) return 0;
  const second = bytes[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) {
    const c = bytes[i + k]!;
    if (c < 0x80 || c > 0xbf) return 0;
  }
  return n;
}

const decoder = new TextDecoder();

/** `bytes` as a string, invalid UTF-8 bytes escaped (see above): hostBytes gives them back. */
export function hostString(bytes: Uint8Array): string {
  // The lossy decoder's output without U+FFFD proves the input valid UTF-8.
  const lossy = decoder.decode(bytes);
  if (!lossy.includes("\ufffd")) return lossy;
  let out = "";
  for (let i = 0; i < bytes.length;) {
    const n = sequenceLength(bytes, i);
    if (n === 0) {
      out += String.fromCharCode(ESCAPE_BASE + bytes[i]!);
      i++;
    } else {
      out += decoder.decode(bytes.subarray(i, i + n));
      i += n;
    }
  }
  return out;
}

/** Whether `s` holds bytes that are not UTF-8 (escaped by hostString). */
export function hasRawBytes(s: string): boolean {
  return !s.isWellFormed();
}

/** The bytes `s` stands for: UTF-8, with hostString's escapes turned back into their bytes. */
export function hostBytes(s: string): Uint8Array<ArrayBuffer> {
  const encoder = new TextEncoder();
  if (s.isWellFormed()) return encoder.encode(s);
  const parts: Uint8Array[] = [];
  let run = "";
  for (const ch of s) {
    const unit = ch.charCodeAt(0);
    if (ch.length === 1 && unit >= ESCAPE_BASE + 0x80 && unit <= ESCAPE_BASE + 0xff) {
      parts.push(encoder.encode(run), Uint8Array.of(unit - ESCAPE_BASE));
      run = "";
    } else {
      run += ch; // any other lone surrogate becomes U+FFFD, as TextEncoder has it
    }
  }
  parts.push(encoder.encode(run));
  return concatBytes(parts) as Uint8Array<ArrayBuffer>;
}

/**
 * The NUL-terminated strings of a file such as /proc/self/cmdline or
 * /proc/self/environ, escaped as hostString does. Read as text first: Deno
 * decodes that natively, where a first TextDecoder costs ~0.25 ms of a start;
 * only text with U+FFFD in it is read again as bytes.
 */
export function procStrings(path: string): string[] {
  const text = Deno.readTextFileSync(path);
  const all = text.includes("\ufffd") ? hostString(Deno.readFileSync(path)) : text;
  // NUL is never part of a longer UTF-8 sequence nor escaped. A last string
  // without its NUL (cut short) is left out.
  const last = all.lastIndexOf("\0");
  return last < 0 ? [] : all.slice(0, last).split("\0");
}
