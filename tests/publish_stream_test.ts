/**
 * The converter's reading of a publish (mod/image/cluster/stream.ts): the
 * protocol's lines and exact-length parts come out whole however the sender's
 * writes are cut, from a byte stream (standard input's, read into one reused
 * buffer of up to 1 MiB) and from any other stream; a short or overlong
 * stream is refused; and a pipe widened for it (mod/sys/pipe.ts) delivers a
 * layer in reads of up to 1 MiB.
 */
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { concatBytes } from "../mod/bytes.ts";
import { ExactReader } from "../mod/image/cluster/stream.ts";
import { widenPipe } from "../mod/sys/pipe.ts";
import { libc, O, ptr } from "../mod/sys/libc.ts";
import { closeFd, openAt, openRoot } from "../mod/sys/dirfd.ts";

const encoder = new TextEncoder();

/** A publish: two lines, a 3 MiB part of known bytes, a line, a 10-byte part. */
function message(): { bytes: Uint8Array; layer: Uint8Array } {
  const layer = new Uint8Array(3 * (1 << 20) + 5);
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 7 + (i >> 12)) & 0xff;
  const parts = [
    encoder.encode("SHOAL-PUBLISH 1\nname r.example/app\n"),
    layer,
    encoder.encode("config 10\n"),
    encoder.encode("0123456789"),
  ];
  return { bytes: concatBytes(parts), layer };
}

/** `bytes` cut at `cuts` (offsets), as a byte stream or as a plain one. */
function streamOf(bytes: Uint8Array, cuts: number[], byteStream: boolean) {
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.slice(from, cut));
    from = cut;
  }
  if (!byteStream) {
    return new ReadableStream<Uint8Array>({
      pull(c) {
        const next = pieces.shift();
        if (next === undefined) c.close();
        else c.enqueue(next);
      },
    });
  }
  return new ReadableStream({
    type: "bytes",
    pull(c) {
      const next = pieces.shift();
      if (next === undefined) {
        c.close();
        c.byobRequest?.respond(0);
        return;
      }
      const view = c.byobRequest!.view as Uint8Array;
      const n = Math.min(view.length, next.length);
      view.set(next.subarray(0, n));
      if (n < next.length) pieces.unshift(next.slice(n));
      c.byobRequest!.respond(n);
    },
  });
}

async function readMessage(stream: ReadableStream<Uint8Array>) {
  const r = new ExactReader(stream);
  const lines = [await r.line(100, "protocol"), await r.line(100, "name")];
  const layer = new Uint8Array(3 * (1 << 20) + 5);
  let at = 0;
  const sizes: number[] = [];
  await r.exact(layer.length, "layer", (chunk) => {
    sizes.push(chunk.length);
    layer.set(chunk, at);
    at += chunk.length;
  });
  lines.push(await r.line(100, "config"));
  const config = new TextDecoder().decode(await r.bytes(10, "config"));
  return { lines, layer, config, sizes, end: await r.atEnd() };
}

for (const byteStream of [true, false]) {
  const kind = byteStream ? "a byte stream" : "a plain stream";
  Deno.test(`publish stream: every part whole from ${kind}, however it is cut`, async () => {
    const { bytes, layer } = message();
    const cutsOf = [
      [], // all at once
      Array.from({ length: 40 }, (_, i) => 1 + i), // a byte at a time through the lines
      [5, 20, 40, 70_000, 1_500_000, bytes.length - 12, bytes.length - 3], // across every boundary
    ];
    for (const cuts of cutsOf) {
      const got = await readMessage(streamOf(bytes, cuts, byteStream));
      assertEquals(got.lines, ["SHOAL-PUBLISH 1", "name r.example/app", "config 10"]);
      assertEquals(got.config, "0123456789");
      assert(got.layer.every((b, i) => b === layer[i]), `layer differs, cuts ${cuts}`);
      assert(got.end, "the stream's end not seen");
      if (byteStream) {
        assert(got.sizes.every((n) => n <= 1 << 20), `reads over 1 MiB: ${got.sizes}`);
      }
    }
  });
}

Deno.test("publish stream: a stream that ends early or a line too long is refused", async () => {
  const { bytes } = message();
  for (const byteStream of [true, false]) {
    await assertRejects(
      () => readMessage(streamOf(bytes.slice(0, 2_000_000), [100, 100_000], byteStream)),
      Error,
      "the stream ended in the middle of layer",
    );
    const r = new ExactReader(streamOf(new Uint8Array(300).fill(65), [150], byteStream));
    await assertRejects(() => r.line(200, "the name"), Error, "publish: the name is too long");
    const more = new ExactReader(streamOf(encoder.encode("x\ny"), [], byteStream));
    assertEquals(await more.line(10, "a line"), "x");
    assertEquals(await more.atEnd(), false, "a byte left, yet at the end");
  }
});

Deno.test("widenPipe: a pipe gets 1 MiB; a descriptor that is no pipe is left as it is", () => {
  const fds = new Int32Array(2);
  assertEquals(libc().pipe2(ptr(fds), O.CLOEXEC), 0);
  try {
    assertEquals(widenPipe(fds[0]!, 1 << 20), 1 << 20);
  } finally {
    closeFd(fds[0]!);
    closeFd(fds[1]!);
  }
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/file`, "x");
  const root = openRoot();
  const fd = openAt(root, `${dir.slice(1)}/file`, O.RDONLY);
  try {
    assertEquals(widenPipe(fd, 1 << 20), undefined);
  } finally {
    closeFd(fd);
    closeFd(root);
    Deno.removeSync(dir, { recursive: true });
  }
});
