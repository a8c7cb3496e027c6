/**
 * mod/path.ts must give node:path's results exactly: it replaces node:path in
 * shoal (see its header), including in the security checks of paths, so a
 * difference would be a bug in what shoal allows or refuses.
 */
import { posix } from "node:path";
import * as path from "../mod/path.ts";
import { assertEquals } from "./support/assert.ts";

// Pieces that hit every branch: empty, dots, repeated and trailing slashes, names that look
// like dots, and a backslash (an ordinary character on Linux, unlike in some npm path modules).
const PIECES = ["", ".", "..", "...", "a", "b.c", "/", "//", "a/", "/a", "..a", ".a", "a\\..", " "];

/** Every path of up to three pieces, and a fixed-seed sample of longer ones. */
function samplePaths(): string[] {
  const out = new Set<string>();
  for (const a of PIECES) {
    for (const b of PIECES) {
      for (const c of PIECES) out.add(a + b + c);
    }
  }
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const n = 4 + Math.floor(next() * 6);
    out.add(Array.from({ length: n }, () => PIECES[Math.floor(next() * PIECES.length)]).join(""));
  }
  return [...out];
}

const paths = samplePaths();

Deno.test("normalize, dirname, basename and isAbsolute agree with node:path on every sample", () => {
  for (const p of paths) {
    assertEquals(path.normalize(p), posix.normalize(p), `normalize(${JSON.stringify(p)})`);
    assertEquals(path.dirname(p), posix.dirname(p), `dirname(${JSON.stringify(p)})`);
    assertEquals(path.basename(p), posix.basename(p), `basename(${JSON.stringify(p)})`);
    assertEquals(path.isAbsolute(p), posix.isAbsolute(p), `isAbsolute(${JSON.stringify(p)})`);
  }
});

Deno.test("join and resolve agree with node:path on pairs and triples of samples", () => {
  const some = paths.filter((_, i) => i % 7 === 0);
  for (const a of some) {
    for (const b of PIECES) {
      assertEquals(path.join(a, b), posix.join(a, b), `join(${JSON.stringify([a, b])})`);
      assertEquals(path.resolve(a, b), posix.resolve(a, b), `resolve(${JSON.stringify([a, b])})`);
      assertEquals(path.join(b, a, b), posix.join(b, a, b));
      assertEquals(path.resolve("/x", a, b), posix.resolve("/x", a, b));
    }
  }
  assertEquals(path.join(), posix.join());
  assertEquals(path.resolve(), posix.resolve());
});
