/**
 * A publish sends the layers while they download (mod/image/cluster/follow.ts,
 * publish.ts): the converter gets a layer's bytes as the blob cache's partial
 * file grows, before its download ends; a download that starts over is
 * followed to the right bytes; one that fails ends the publish with its own
 * error, the converter reaped. The converter here is `cat` writing what it
 * gets to a file, so that the test sees exactly what was sent and when.
 */
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { DownloadFollower } from "../mod/image/cluster/follow.ts";
import { publishImage } from "../mod/image/cluster/publish.ts";
import { digestOf } from "../mod/image/registry/hash.ts";
import { blobPath, partialPath } from "../mod/image/store/paths.ts";
import { ShoalError } from "../mod/errors.ts";
import { silentLogger } from "../mod/log.ts";
import { sleep } from "../mod/sys/sleep.ts";
import { eventually } from "./support/run.ts";

const CHUNK = 256 * 1024;

/**
 * A publish of a layer that downloads as the test says; with `cached`, a
 * second layer after it that is already in the blob cache (reported complete
 * before the first one has begun, as parallel downloads may).
 */
async function setup(cached?: Uint8Array) {
  const dir = await Deno.makeTempDir();
  const data = new Uint8Array(4 * (1 << 20) + 123);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 16)) & 0xff;
  const digest = digestOf(data);
  const final = blobPath(`${dir}/blobs`, digest);
  await Deno.mkdir(final.slice(0, final.lastIndexOf("/")), { recursive: true });
  const follower = new DownloadFollower(`${dir}/blobs`);
  const second = cached && { digest: digestOf(cached), size: cached.length };
  if (second !== undefined) {
    await Deno.writeFile(blobPath(`${dir}/blobs`, second.digest), cached!);
    follower.progress({
      ...second,
      done: second.size,
      total: second.size,
      complete: true,
      cached: true,
    });
  }
  const out = `${dir}/received`;
  const publish = publishImage(["sh", "-c", 'echo send; cat > "$1"; echo published 7', "sh", out], {
    registry: "r.example",
    repository: "app",
    digest,
    manifestBytes: new Uint8Array(),
    configBytes: new Uint8Array(),
    signatures: [],
    layers: () =>
      Promise.resolve([
        follower.layer(digest, data.length),
        ...(second === undefined ? [] : [follower.layer(second.digest, second.size)]),
      ]),
  }, silentLogger);
  /** What the converter has of the layer so far (the header is everything before it). */
  const received = () => {
    try {
      return Math.max(0, Deno.statSync(out).size - header.length);
    } catch {
      return 0;
    }
  };
  const header = new TextEncoder().encode(
    "SHOAL-PUBLISH 1\nname r.example/app\nindex 0\nmanifest 0\nconfig 0\nsignatures 0\n",
  );
  /** The download: the partial written a chunk at a time, each reported as the registry client does. */
  const download = {
    file: await Deno.open(partialPath(final), { write: true, create: true }),
    done: 0,
    report(complete = false) {
      follower.progress({ digest, done: this.done, total: data.length, complete, cached: false });
    },
    async write(until: number) {
      while (this.done < until) {
        const end = Math.min(until, this.done + CHUNK);
        await this.file.write(data.subarray(this.done, end));
        this.done = end;
        this.report();
        await sleep(2);
      }
    },
    async finish() {
      this.file.close();
      await Deno.rename(partialPath(final), final);
      this.report(true);
    },
  };
  download.report();
  return { dir, data, publish, received, header, out, download, follower };
}

Deno.test("publish: a layer reaches the converter while it downloads", async () => {
  const s = await setup();
  try {
    await s.download.write(2 * (1 << 20));
    assert(
      await eventually(() => Promise.resolve(s.received() >= 1 << 20)),
      "nothing of the layer sent before its end",
    );
    await s.download.write(s.data.length);
    await s.download.finish();
    assertEquals(await s.publish, { outcome: "published", size: 7 });
    const got = await Deno.readFile(s.out);
    assertEquals(got.subarray(0, s.header.length), s.header);
    assert(got.length === s.header.length + s.data.length, `${got.length} bytes received`);
    assert(got.subarray(s.header.length).every((b, i) => b === s.data[i]), "the layer differs");
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("publish: layers go in the manifest's order, one already cached after one downloading", async () => {
  const cached = new TextEncoder().encode("the second layer, in the cache already\n".repeat(1000));
  const s = await setup(cached);
  try {
    await s.download.write(s.data.length);
    await s.download.finish();
    assertEquals((await s.publish).outcome, "published");
    const got = (await Deno.readFile(s.out)).subarray(s.header.length);
    assertEquals(got.length, s.data.length + cached.length);
    assert(
      got.subarray(0, s.data.length).every((b, i) => b === s.data[i]),
      "the first layer differs",
    );
    assertEquals(got.subarray(s.data.length), cached);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("publish: a download that starts over is followed to the same bytes", async () => {
  const s = await setup();
  try {
    await s.download.write(3 * (1 << 20));
    assert(
      await eventually(() => Promise.resolve(s.received() >= 1 << 20)),
      "nothing of the layer sent",
    );
    // The server ignored the resume's range: the partial is emptied and written again.
    await s.download.file.truncate(0);
    await s.download.file.seek(0, Deno.SeekMode.Start);
    s.download.done = 0;
    s.download.report();
    await s.download.write(s.data.length);
    await s.download.finish();
    assertEquals((await s.publish).outcome, "published");
    const got = (await Deno.readFile(s.out)).subarray(s.header.length);
    assertEquals(got.length, s.data.length);
    assert(got.every((b, i) => b === s.data[i]), "the layer differs");
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("publish: a download that fails ends the publish with its own error", async () => {
  const s = await setup();
  try {
    await s.download.write(1 << 20);
    s.follower.fail(new ShoalError("blob x: the registry ended the transfer after 1048576 bytes"));
    await assertRejects(() => s.publish, ShoalError, "the registry ended the transfer");
    s.download.file.close();
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});
