/**
 * The image store: round trips, tags sharing an image, rmi, damaged files,
 * SIGKILL in the middle of a commit, concurrent writers and readers in
 * separate processes, lock timeouts, disk full, and the centralized
 * repository as root and as an unprivileged user.
 */
import { join } from "node:path";
import { ShoalError } from "../mod/errors.ts";
import type { Logger } from "../mod/log.ts";
import { type ImageStore, openStore, type StoreOptions } from "../mod/image/store/store.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./support/assert.ts";
import {
  fakeImage,
  fakeSquashfs,
  runWorker,
  sha256,
  squashfsContent,
  Worker,
  workerArgs,
} from "./support/store.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs, testUser } from "./support/users.ts";

const REF = "127.0.0.1:5000/test/busybox";

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    verbosity: "normal",
    warnings,
    info: () => {},
    verbose: () => {},
    debug: () => {},
    warn: (m) => warnings.push(m),
  };
}

async function withRepo(
  fn: (store: ImageStore, root: string) => Promise<void>,
  options: StoreOptions = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-store-" });
  try {
    await fn(openStore(join(dir, "repo"), options), join(dir, "repo"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function commit(store: ImageStore, seed: string, tag = "latest") {
  await using tmp = await store.tempDir();
  return await store.commit(fakeImage(seed, { tag }), await fakeSquashfs(tmp.path, seed));
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

function stem(seed: string): string {
  return sha256(`config ${seed}`).replace(":", "-");
}

/** Every listed image has its own squashfs and metadata; returns the seeds by reference. */
async function checkConsistent(store: ImageStore): Promise<Record<string, string>> {
  const seeds: Record<string, string> = {};
  for (const r of await store.list()) {
    const seed = r.labels.seed ?? "";
    assertEquals(r.configDigest, sha256(`config ${seed}`));
    assertEquals(await Deno.readTextFile(r.squashfsPath), squashfsContent(seed));
    seeds[r.reference] = seed;
  }
  return seeds;
}

/** Ages everything under tmp/ as if its pull had died long ago. */
async function backdateTmp(root: string): Promise<void> {
  const old = new Date(Date.now() - 3600_000);
  for (const name of await names(join(root, "tmp"))) {
    const path = join(root, "tmp", name);
    if ((await Deno.stat(path)).isDirectory) {
      for (const inner of await names(path)) await Deno.utime(join(path, inner), old, old);
    }
    await Deno.utime(path, old, old);
  }
}

/** Only the files of referenced images, no temp files, no work directories. */
async function checkTidy(root: string, seeds: string[]): Promise<void> {
  const expected = seeds.flatMap((s) => [`${stem(s)}.json`, `${stem(s)}.sqsh`]).sort();
  assertEquals(await names(join(root, "images")), expected);
  assertEquals(await names(join(root, "tmp")), []);
  assertEquals((await names(root)).filter((n) => n.startsWith(".")), []);
}

Deno.test("store: commit, list and lookup by tag, digest, tag@digest and image ID", async () => {
  await withRepo(async (store, root) => {
    assertEquals(await store.list(), [], "a repository nobody wrote is empty");
    assertEquals(await names(join(root, "..")), [], "reading creates nothing");

    const image = fakeImage("a", { tag: "1.0" });
    const committed = await commit(store, "a", "1.0");
    const id = image.configDigest.slice("sha256:".length);
    assertEquals(committed.id, id);
    assertEquals(committed.reference, `${REF}:1.0`);

    const [listed, ...more] = await store.list();
    assertEquals(more, []);
    assert(listed !== undefined);
    assertEquals(listed, committed);
    assertEquals(listed.tag, "1.0");
    assertEquals(listed.digest, image.digest);
    assertEquals(listed.platform, { os: "linux", architecture: "amd64" });
    assertEquals(listed.env, image.env);
    assertEquals(listed.cmd, ["/bin/sh"]);
    assertEquals(listed.passwd, image.passwd);
    assertEquals(listed.group, image.group);
    assertEquals(listed.server, "127.0.0.1:5000");
    assertEquals(listed.size, 65536);
    assert(!Number.isNaN(Date.parse(listed.pulledAt)));
    assertEquals(await Deno.readTextFile(listed.squashfsPath), squashfsContent("a"));

    for (
      const query of [
        `${REF}:1.0`,
        `${REF}@${image.digest}`,
        `${REF}:1.0@${image.digest}`,
        id,
        id.slice(0, 12),
        `sha256:${id}`,
        { registry: "127.0.0.1:5000", repository: "test/busybox", tag: "1.0" },
      ]
    ) {
      assertEquals((await store.lookup(query))?.id, id, `lookup ${JSON.stringify(query)}`);
    }
    for (
      const query of [`${REF}:2.0`, `${REF}`, `${REF}:1.0@${sha256("other")}`, "debian", "abcd"]
    ) {
      assertEquals(await store.lookup(query), undefined, `lookup ${query}`);
    }
    await assertRejects(() => store.lookup("Bad/Name"), ShoalError, "lower case");

    const mode = async (p: string) => ((await Deno.stat(p)).mode ?? 0) & 0o777;
    assertEquals(await mode(root), 0o700, "a user's repository is private");
    assertEquals(await mode(join(root, "images")), 0o700);
    await checkTidy(root, ["a"]);
  });
});

Deno.test("store: two tags share one image; rmi of one keeps it, of the last removes it", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "a", "1");
    await commit(store, "a", "2");
    const listed = await store.list();
    assertEquals(listed.map((r) => r.reference), [`${REF}:1`, `${REF}:2`]);
    assertEquals(new Set(listed.map((r) => r.squashfsPath)).size, 1);
    await checkTidy(root, ["a"]);

    const id = listed[0]!.id;
    await assertRejects(() => store.remove(id.slice(0, 12)), ShoalError, "has 2 references");

    assertEquals(await store.remove(`${REF}:1`), {
      untagged: [`${REF}:1`],
      deleted: [],
      released: [],
    });
    assertEquals((await store.list()).map((r) => r.reference), [`${REF}:2`]);
    await checkTidy(root, ["a"]);

    assertEquals(await store.remove(id.slice(0, 12)), {
      untagged: [`${REF}:2`],
      deleted: [`sha256:${id}`],
      released: [],
    });
    assertEquals(await store.list(), []);
    await checkTidy(root, []);

    const err = await assertRejects(() => store.remove(`${REF}:2`), ShoalError, "no image");
    assertStringIncludes(err.message, root);
    assertStringIncludes(err.hint ?? "", "shoal images");
  });
});

Deno.test("store: a re-pulled tag that moved points at the new image, the old one goes", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "old");
    await commit(store, "keep", "stable");
    await commit(store, "new");
    assertEquals(await checkConsistent(store), {
      [`${REF}:latest`]: "new",
      [`${REF}:stable`]: "keep",
    });
    await checkTidy(root, ["keep", "new"]);
  });
});

Deno.test("store: an untagged pull by digest is listed and removed by digest", async () => {
  await withRepo(async (store) => {
    const digest = sha256("manifest d");
    await using tmp = await store.tempDir();
    await store.commit(fakeImage("d", { digest }), await fakeSquashfs(tmp.path, "d"));
    const [record] = await store.list();
    assertEquals(record?.reference, `${REF}@${digest}`);
    assertEquals(record?.tag, undefined);
    assertEquals((await store.lookup(`${REF}@${digest}`))?.id, record?.id);
    assertEquals((await store.remove(`${REF}@${digest}`)).untagged, [`${REF}@${digest}`]);
    assertEquals(await store.list(), []);
  });
});

Deno.test("store: rmi works when the squashfs file is already gone", async () => {
  const logger = recordingLogger();
  await withRepo(async (store, root) => {
    const record = await commit(store, "a");
    await Deno.remove(record.squashfsPath);
    assertEquals(await store.list(), [], "a broken image is never listed");
    assertEquals(await store.lookup(`${REF}:latest`), undefined);
    assertMatch(logger.warnings[0] ?? "", /squashfs file .* is missing/);
    assertStringIncludes(logger.warnings[0] ?? "", `shoal rmi ${REF}:latest`);
    assertEquals((await store.remove(`${REF}:latest`)).deleted, [record.configDigest]);
    await checkTidy(root, []);
  }, { logger });
});

Deno.test("store: damaged metadata is skipped with a warning, a damaged index is rebuilt", async () => {
  const logger = recordingLogger();
  await withRepo(async (store, root) => {
    const a = await commit(store, "a", "a");
    await commit(store, "b", "b");
    const metadata = a.squashfsPath.replace(/\.sqsh$/, ".json");
    const text = await Deno.readTextFile(metadata);
    await Deno.writeTextFile(metadata, text.slice(0, text.length / 2));
    assertEquals((await store.list()).map((r) => r.reference), [`${REF}:b`]);
    assertEquals(logger.warnings.length, 1);
    assertStringIncludes(logger.warnings[0]!, metadata);
    assertStringIncludes(logger.warnings[0]!, "damaged");

    await Deno.writeTextFile(metadata, JSON.stringify({ ...JSON.parse(text), env: "PATH=/" }));
    assertEquals((await store.list()).map((r) => r.reference), [`${REF}:b`]);
    assertStringIncludes(logger.warnings[1]!, "env");

    // A pull of the same image repairs it.
    await commit(store, "a", "a");
    assertEquals(Object.keys(await checkConsistent(store)), [`${REF}:a`, `${REF}:b`]);

    await Deno.writeTextFile(join(root, "index.json"), '{"version": 1, "refer');
    logger.warnings.length = 0;
    assertEquals(Object.keys(await checkConsistent(store)), [`${REF}:a`, `${REF}:b`]);
    assertStringIncludes(logger.warnings[0] ?? "", "damaged");
    await commit(store, "c", "c");
    assertEquals(Object.keys(await checkConsistent(store)), [`${REF}:a`, `${REF}:b`, `${REF}:c`]);
  }, { logger });
});

Deno.test("store: gc removes blobs no image uses, never while a pull runs", async () => {
  await withRepo(async (store) => {
    await commit(store, "a", "a");
    await commit(store, "b", "b");
    const blob = async (digest: string) => {
      await Deno.mkdir(join(store.blobsDir, "sha256"), { recursive: true });
      await Deno.writeTextFile(store.blobPath(digest), digest);
      return store.blobPath(digest);
    };
    const [la, lb, stray] = await Promise.all(
      [sha256("layer a"), sha256("layer b"), sha256("nobody's")].map(blob),
    );
    const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

    await store.withPullLock(fakeImage("c"), async () => {
      assertEquals((await store.gc()).skipped, "a pull is in progress");
    });
    assert(await exists(stray!));

    assertEquals(await store.gc(), { blobsRemoved: 1, bytesFreed: 71 });
    assertEquals([await exists(la!), await exists(lb!), await exists(stray!)], [true, true, false]);
    await store.remove(`${REF}:b`);
    await store.gc();
    assertEquals([await exists(la!), await exists(lb!)], [true, false]);

    const usage = await store.diskUsage();
    assertEquals(usage.blobs, 71);
    assert(usage.images > 65536 && usage.images < 65536 + 4096);
    assertEquals(usage.temporary, 0);
  });
});

Deno.test("store: a commit killed at any step leaves the old image or the new one", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "old");
    const steps = ["metadata written", "squashfs in place", "metadata in place", "index updated"];
    for (const [i, step] of steps.entries()) {
      const seed = `new${i}`;
      const worker = new Worker(["commit", root, seed, "latest", "--pause", step]);
      await worker.waitFor("paused");
      await worker.kill();
      const before = i === 0 ? "old" : `new${i - 1}`;
      const expected = step === "index updated" ? seed : before;
      assertEquals(
        await checkConsistent(store),
        { [`${REF}:latest`]: expected },
        `killed at ${step}`,
      );
      if (step !== "index updated") await commit(store, seed); // what a retried pull does
    }
    await backdateTmp(root);
    await commit(store, "other", "other");
    await checkTidy(root, ["new3", "other"]);
  });
});

Deno.test("store: killing a committing process at random moments never lists a broken image", async () => {
  await withRepo(async (store, root) => {
    for (let round = 0; round < 4; round++) {
      const worker = new Worker(["commit-loop", root, "latest"]);
      await worker.waitFor("committed");
      await new Promise((r) => setTimeout(r, Math.random() * 60));
      await worker.kill();
      const seeds = await checkConsistent(store);
      assertEquals(Object.keys(seeds), [`${REF}:latest`]);
    }
    await backdateTmp(root);
    const last = (await store.lookup(`${REF}:latest`))?.labels.seed ?? "";
    await commit(store, "other", "other");
    await checkTidy(root, [last, "other"]);
  });
});

Deno.test("store: concurrent commits of one reference from several processes", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "first");
    const seeds = ["p0", "p1", "p2", "p3"];
    const results = await Promise.all(seeds.map((s) => runWorker(["commit", root, s, "latest"])));
    for (const r of results) assertEquals([r.code, r.stderr], [0, ""]);
    const final = (await checkConsistent(store))[`${REF}:latest`] ?? "";
    assert(seeds.includes(final), `one of the commits won: ${final}`);
    await checkTidy(root, [final]);
  });
});

Deno.test("store: two pulls of the same image at once do the work once", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "other", "other"); // creates the repository
    const results = await Promise.all(
      [0, 1].map(() => runWorker(["pull", root, "p", "latest", "300"])),
    );
    assertEquals(results.map((r) => r.code), [0, 0], results.map((r) => r.stderr).join(""));
    assertEquals(results.map((r) => r.stdout.trim()).sort(), ["pulled", "up to date"]);
    assertEquals((await store.lookup(`${REF}:latest`))?.labels.seed, "p");
  });
});

Deno.test("store: readers share the lock; a writer's lock makes them time out with who holds it", async () => {
  await withRepo(async (store, root) => {
    await commit(store, "a");
    const reader = new Worker(["hold", root, "shared"]);
    try {
      await reader.waitFor("held");
      const lookups = await Promise.all(
        [0, 1, 2, 3, 4].map(() =>
          runWorker(["lookup", root, `${REF}:latest`, "10", "--timeout", "5"])
        ),
      );
      for (const r of lookups) assertEquals([r.code, r.stdout.trim(), r.stderr], [0, "10", ""]);
      const writer = openStore(root, { lockTimeoutSeconds: 0.3 });
      await assertRejects(() => writer.remove(`${REF}:latest`), ShoalError, "timed out");
    } finally {
      await reader.kill();
    }

    const writer = new Worker(["hold", root, "exclusive"]);
    try {
      await writer.waitFor("held");
      const timedOut = openStore(root, { lockTimeoutSeconds: 0.3 });
      const err = await assertRejects(() => timedOut.list(), ShoalError);
      assertStringIncludes(err.message, `timed out after 0.3 s`);
      assertStringIncludes(err.message, `"${join(root, "lock")}"`);
      assertStringIncludes(
        err.message,
        `held by pid ${writer.pid} (deno ... hold ${root} exclusive) writing`,
      );
      assertStringIncludes(err.hint ?? "", "locks.timeoutSeconds");
      const r = await runWorker(["lookup", root, `${REF}:latest`, "1", "--timeout", "0.3"]);
      assertEquals(r.code, 1);
      assertStringIncludes(r.stderr, "timed out");
    } finally {
      await writer.kill();
    }
    assertEquals(
      (await store.lookup(`${REF}:latest`))?.labels.seed,
      "a",
      "a killed holder frees the lock",
    );
  });
});

Deno.test("store: a full disk during commit gives one line and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-store-full-" });
  const mounted = await runCommand("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", dir]);
  assertEquals(mounted.code, 0, mounted.stderr);
  try {
    const root = join(dir, "repo");
    const store = openStore(root);
    await commit(store, "a");
    await using tmp = await store.tempDir();
    const squashfs = await fakeSquashfs(tmp.path, "b");
    const filler = await Deno.open(join(dir, "filler"), { write: true, create: true });
    try {
      const chunk = new Uint8Array(4096);
      for (let i = 0; i < 256; i++) await filler.write(chunk);
    } catch (err) {
      assertEquals((err as { code?: string }).code, "ENOSPC");
    } finally {
      filler.close();
    }
    const index = await Deno.readTextFile(join(root, "index.json"));
    const err = await assertRejects(
      () => store.commit(fakeImage("b", { tag: "b" }), squashfs),
      ShoalError,
      "no space left on tmpfs (mounted on",
    );
    assertStringIncludes(err.message, root);
    assertEquals(await Deno.readTextFile(join(root, "index.json")), index);
    assertEquals(await names(tmp.path), [], "the temp squashfs is gone too");
    await Deno.remove(join(dir, "filler"));
    assertEquals(Object.keys(await checkConsistent(store)), [`${REF}:latest`]);
    await tmp.remove();
    await checkTidy(root, ["a"]);
  } finally {
    await runCommand("umount", [dir]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store: the centralized repository is written by root, read by everyone", async () => {
  const user = await testUser();
  const dir = await Deno.makeTempDir({ prefix: "shoal-store-central-" });
  await Deno.chmod(dir, 0o755);
  const root = join(dir, "central");
  try {
    const store = openStore(root, { centralized: true });
    await commit(store, "a");
    const mode = async (p: string) => ((await Deno.stat(p)).mode ?? 0) & 0o777;
    for (const d of [root, join(root, "images")]) assertEquals(await mode(d), 0o755, d);
    for (const f of await names(join(root, "images"))) {
      assertEquals(await mode(join(root, "images", f)), 0o644, f);
    }
    assertEquals(await mode(join(root, "index.json")), 0o644);

    const list = await runAs(user, Deno.execPath(), workerArgs(["list", root, "--centralized"]));
    assertEquals([list.code, list.stdout.trim(), list.stderr], [0, `["${REF}:latest"]`, ""]);

    const before = await names(join(root, "images"));
    const write = await runAs(
      user,
      Deno.execPath(),
      workerArgs(["commit", root, "b", "--centralized"]),
    );
    assertEquals(write.code, 1);
    assertStringIncludes(
      write.stderr,
      `the centralized repository "${root}" is written by root only`,
    );
    assertEquals(await names(join(root, "images")), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store: a short name finds its image on any registry; one on several is refused with the full names", async () => {
  await withRepo(async (store) => {
    const put = async (seed: string, registry: string, repository: string, tag: string) => {
      await using tmp = await store.tempDir();
      await store.commit(
        fakeImage(seed, { registry, repository, tag }),
        await fakeSquashfs(tmp.path, seed),
      );
    };
    await put("private", "127.0.0.1:5095", "busybox", "1.0");
    await put("hub", "docker.io", "library/debian", "12");
    await put("mirror", "127.0.0.1:5095", "library/debian", "12");
    await put("mine", "load", "mylab/tool", "1");

    assertEquals((await store.lookup("busybox:1.0"))?.reference, "127.0.0.1:5095/busybox:1.0");
    assertEquals((await store.lookup("busybox"))?.reference, undefined);
    assertEquals((await store.lookup("mylab/tool:1"))?.reference, "load/mylab/tool:1");
    // The full names pick one; Docker's meaning of debian:12 is docker.io's.
    assertEquals((await store.lookup("docker.io/library/debian:12"))?.labels.seed, "hub");
    assertEquals((await store.lookup("127.0.0.1:5095/library/debian:12"))?.labels.seed, "mirror");
    assertEquals((await store.lookup("debian:12"))?.labels.seed, "hub");
    const err = await assertRejects(() => store.lookup("library/debian:12"), ShoalError);
    assertEquals(
      err.message,
      '"library/debian:12" could be 2 images: 127.0.0.1:5095/library/debian:12, docker.io/library/debian:12',
    );
    await assertRejects(() => store.remove("library/debian:12"), ShoalError, "could be 2 images");
    assertEquals((await store.remove("busybox:1.0")).untagged, ["127.0.0.1:5095/busybox:1.0"]);
  });
});
