/**
 * The cluster store's converter (mod/image/cluster/): run as the store's
 * owner, it stores an image only when every byte sent matches the digest
 * asked for; publishers of one image on several "nodes" (mount namespaces
 * of their own, each mounting the one shared directory) convert it once;
 * an interrupted publish leaves nothing a reader can pick up and is taken
 * over; nobody but the owner runs it. Publishes go through the setuid helper
 * as an unprivileged user, whose side is this test process, as untrusted
 * as a user's shoal.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { runSite, testImages } from "./support/run.ts";
import { makeKey, payloadFor, signPayload } from "./support/cosign.ts";
import { busyboxImage, type Image, makeImage, makeLayer, pushImage } from "./support/oci.ts";
import { startFakeRegistry } from "./support/fake_registry.ts";
import { runAs, type TestUser, testUser, userArgv } from "./support/users.ts";
import {
  type LayerFile,
  layerFile,
  publishImage,
  type PublishSource,
} from "../mod/image/cluster/publish.ts";
import { clusterMeta } from "../mod/image/cluster/meta.ts";
import { clusterPaths, imageDir, refFile } from "../mod/image/cluster/layout.ts";
import { silentLogger } from "../mod/log.ts";
import { runCommand } from "./support/shoal.ts";

const OWNER = "shoal-store-t";

/** The image as a publisher sends it, its layers written to files under `dir`. */
async function source(image: Image, dir: string, tamper = false): Promise<PublishSource> {
  const layers: LayerFile[] = [];
  for (const [i, layer] of image.layers.entries()) {
    const path = `${dir}/layer-${crypto.randomUUID()}-${i}`;
    const data = new Uint8Array(layer.data); // a copy: gzipSync gives a Buffer, whose slice() is a view
    if (tamper) data[data.length - 5]! ^= 1;
    await Deno.writeFile(path, data);
    layers.push(layerFile(path, layer.size));
  }
  return {
    registry: "registry.example",
    repository: "hpc/app",
    digest: image.manifest.digest,
    manifestBytes: image.manifest.data,
    configBytes: image.config.data,
    signatures: [],
    layers: () => Promise.resolve(layers),
  };
}

Deno.test("the cluster store's converter", async (t) => {
  const site = await runSite(true);
  const owner = await testUser(OWNER, false);
  const user = (await site.user("user"))!;
  // The shared directory every "node" mounts at the configured path.
  const backing = `${site.dir}/backing`;
  const storePath = `${site.dir}/store`;
  for (const dir of [backing, storePath]) {
    await Deno.mkdir(dir, { mode: 0o755 });
    await Deno.chown(dir, owner.uid, owner.gid);
  }
  await site.writeConfig({ store: { path: storePath, owner: OWNER, claimStaleSeconds: 2 } });
  const paths = clusterPaths(backing);
  const work = await Deno.makeTempDir();
  const image = busyboxImage();
  const digest = image.manifest.digest;

  const helper = `${site.dir}/prefix/libexec/shoal/shoal-mount`;
  /** On a node of its own: `argv` as `who`. */
  const onNode = (who: TestUser, argv: string[]) => [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$0" "$1" && shift && exec "$@"',
    backing,
    storePath,
    ...userArgv(who, argv[0]!, argv.slice(1)),
  ];
  /** The user's publish: the setuid helper runs the converter as the store's owner. */
  const converter = (digestArg = digest) => onNode(user, [helper, "publish", digestArg]);
  const committed = () => {
    try {
      return [...Deno.readDirSync(imageDir(paths, digest))].map((e) => e.name).sort();
    } catch {
      return undefined;
    }
  };

  await t.step("bytes that do not match the digest are refused and leave nothing", async () => {
    const other = busyboxImage({ spec: { labels: { other: "1" } } });
    const cases: [string, () => Promise<PublishSource>, RegExp][] = [
      ["a manifest of another digest", async () => ({
        ...await source(image, work),
        manifestBytes: other.manifest.data,
      }), /the manifest sent is not sha256:/],
      ["another config", async () => ({
        ...await source(image, work),
        configBytes: other.config.data,
      }), /the config sent is not the manifest's/],
      ["a layer changed in one byte", () => source(image, work, true), /layer 0 sent is not/],
    ];
    for (const [what, make, why] of cases) {
      const err = await publishImage(converter(), await make(), silentLogger).then(
        () => undefined,
        (e: Error) => e,
      );
      assert(err !== undefined, `${what}: accepted`);
      assertMatch(err.message, why, what);
      assertEquals(committed(), undefined, what);
      assertEquals([...Deno.readDirSync(paths.staging)], [], `${what}: a claim is left`);
    }
  });

  await t.step(
    "only the store's owner converts: a user running the converter is refused",
    async () => {
      const direct = onNode(user, [site.bin, "store", "convert", digest]);
      const err = await publishImage(direct, await source(image, work), silentLogger)
        .then(() => undefined, (e: Error) => e);
      assertMatch(err?.message ?? "", /runs as the store's owner shoal-store-t/);
      assertEquals(committed(), undefined);
    },
  );

  await t.step("the helper refuses a store that is not its owner's alone", async () => {
    await Deno.chmod(backing, 0o775);
    try {
      const err = await publishImage(converter(), await source(image, work), silentLogger)
        .then(() => undefined, (e: Error) => e);
      assertMatch(err?.message ?? "", /store.* is not the store owner's alone/);
    } finally {
      await Deno.chmod(backing, 0o755);
    }
    const bad = await publishImage(
      onNode(user, [helper, "publish", "sha256:xyz"]),
      await source(image, work),
      silentLogger,
    )
      .then(() => undefined, (e: Error) => e);
    assertMatch(bad?.message ?? "", /publish takes the manifest's digest/);
    assertEquals(committed(), undefined);
    // A reference to an image the store does not have is refused, and none is recorded.
    const ref = await runAs(user, helper, ["ref", digest]);
    assertEquals(ref.code, 1);
    assertMatch(ref.stderr, /the cluster store has no image sha256:/);
    assertEquals([...Deno.readDirSync(paths.refs)], []);
  });

  await t.step(
    "eight publishers on eight nodes: one conversion, readers never see a part",
    async () => {
      let partial = 0;
      let reading = true;
      const reader = (async () => {
        while (reading) {
          const names = committed();
          if (names !== undefined && names.join() !== "image.sqsh,meta.json") partial++;
          await new Promise((r) => setTimeout(r, 1));
        }
      })();
      const outcomes = await Promise.all(
        Array.from(
          { length: 8 },
          async () =>
            (await publishImage(converter(), await source(image, work), silentLogger)).outcome,
        ),
      );
      reading = false;
      await reader;
      assertEquals(
        outcomes.filter((o) => o === "published").length,
        1,
        outcomes.join(),
      );
      assertEquals(outcomes.filter((o) => o === "exists").length, 7);
      assertEquals(partial, 0);
      assertEquals(committed(), ["image.sqsh", "meta.json"]);
      const meta = clusterMeta(
        JSON.parse(Deno.readTextFileSync(`${imageDir(paths, digest)}/meta.json`)),
        "",
      );
      assertEquals([meta.digest, meta.configDigest, meta.publisher], [
        digest,
        image.config.digest,
        user.uid,
      ]);
      assertEquals(meta.passwd.split("\n")[0], "root:x:0:0:root:/root:/bin/sh");
      const sqsh = Deno.statSync(`${imageDir(paths, digest)}/image.sqsh`);
      assertEquals([sqsh.uid, (sqsh.mode ?? 0) & 0o777, sqsh.size], [owner.uid, 0o644, meta.size]);
      const listed = await runCommand("unsquashfs", [
        "-l",
        `${imageDir(paths, digest)}/image.sqsh`,
      ]);
      assert(listed.stdout.includes("squashfs-root/bin/busybox"), listed.stdout);
      assert(Deno.statSync(refFile(paths, user.uid, digest)).isFile);
      assertEquals([...Deno.readDirSync(paths.staging)], []);
    },
  );

  await t.step("where the site wants signatures, the converter verifies them itself", async () => {
    const key = await makeKey();
    await Deno.writeTextFile(`${site.dir}/site.pub`, key.pem, { mode: 0o644 });
    await site.writeConfig({
      store: { path: storePath, owner: OWNER, claimStaleSeconds: 2 },
      signatures: [{ scope: "signed.example", policy: "require", keys: [`${site.dir}/site.pub`] }],
    });
    const third = busyboxImage({
      extraEntries: [{ type: "file", path: "etc/third", content: "3\n" }],
    });
    const key3 = third.manifest.digest;
    const src = { ...await source(third, work), registry: "signed.example" };
    // A publisher that skips its own check gets nowhere: the converter refuses.
    const err = await publishImage(converter(key3), src, silentLogger).then(
      () => undefined,
      (e: Error) => e,
    );
    assertMatch(
      err?.message ?? "",
      /requires a signature by .*site\.pub .* it has no cosign signature/,
    );
    const payload = payloadFor("signed.example/hpc/app", key3);
    const signed = [{ payload, signature: await signPayload(key, payload) }];
    const r = await publishImage(converter(key3), { ...src, signatures: signed }, silentLogger);
    assertEquals(r.outcome, "published");
    const meta = clusterMeta(
      JSON.parse(Deno.readTextFileSync(`${imageDir(paths, key3)}/meta.json`)),
      "",
    );
    assertEquals(meta.signatures.map((s) => [s.digest, s.repository]), [[
      key3,
      "signed.example/hpc/app",
    ]]);
    await site.writeConfig({ store: { path: storePath, owner: OWNER, claimStaleSeconds: 2 } });
  });

  await t.step("an interrupted publish is taken over once its claim goes stale", async () => {
    const second = busyboxImage({
      extraEntries: [{ type: "file", path: "etc/second", content: "2\n" }],
    });
    const key = second.manifest.digest;
    const src = await source(second, work);
    // The first publisher is killed while it sends the layer: its claim stays, untouched.
    const child = new Deno.Command(converter(key)[0]!, {
      args: converter(key).slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const input = child.stdin.getWriter();
    const enc = new TextEncoder();
    await input.write(enc.encode(
      `SHOAL-PUBLISH 1\nname registry.example/hpc/app\nindex 0\nmanifest ${second.manifest.size}\n`,
    ));
    await input.write(second.manifest.data);
    await input.write(enc.encode(`config ${second.config.size}\n`));
    await input.write(second.config.data);
    await input.write(enc.encode("signatures 0\n"));
    const answer = new TextDecoder().decode((await child.stdout.getReader().read()).value);
    assertEquals(answer, "send\n");
    await input.write(second.layers[0]!.data.slice(0, 1000));
    child.kill("SIGKILL");
    await child.status;
    assertEquals([...Deno.readDirSync(paths.staging)].length, 1);
    assert(
      ![...Deno.readDirSync(`${paths.images}/sha256`)].some((e) => e.name === key.slice(7)),
      "a killed publish left an image",
    );
    const started = Date.now();
    const r = await publishImage(converter(key), src, silentLogger);
    assertEquals(r.outcome, "published");
    assert(Date.now() - started >= 1500, "taken over before the claim went stale");
    assertEquals([...Deno.readDirSync(paths.staging)], []);
    assertEquals([...Deno.readDirSync(paths.trash)], []);
  });

  await Deno.remove(work, { recursive: true });
});

Deno.test("two users pull one image into the cluster store: one conversion, both run it on the helper path", async () => {
  const site = await runSite(true);
  const { registry } = await testImages();
  const owner = await testUser(OWNER, false);
  const alice = (await site.user("user"))!;
  const bob = (await site.user("member"))!;
  const store = `${site.dir}/store`;
  await Deno.mkdir(store, { mode: 0o755 });
  await Deno.chown(store, owner.uid, owner.gid);
  // The helper kernel-mounts no user's own image here: only the store's.
  await site.writeConfig({
    helper: { kernelMountUserImages: false },
    store: { path: store, owner: OWNER },
  });
  const image = busyboxImage({
    extraEntries: [{ type: "file", path: "etc/hello", content: "from the store\n" }],
  });
  const digest = await pushImage(registry, "cluster/app", "1", image);
  const ref = `${registry.host}/cluster/app:1`;
  const paths = clusterPaths(store);

  const pulled = await site.shoal("user", ["pull", ref]);
  assertEquals(pulled.code, 0, pulled.stderr);
  assertMatch(
    pulled.stdout,
    /^Pulled .*cluster\/app:1 \(IMAGE ID \w+, .*\) in .*, into the cluster store\n$/,
  );
  const meta = clusterMeta(
    JSON.parse(Deno.readTextFileSync(`${imageDir(paths, digest)}/meta.json`)),
    "",
  );
  assertEquals(meta.publisher, alice.uid);
  const second = await site.shoal("member", ["pull", "--verbose", ref]);
  assertEquals(second.code, 0, second.stderr);
  assertMatch(second.stdout, /: found in the cluster store, nothing downloaded\n$/);
  assertMatch(second.stderr, /download 0\.\d\d s \(0 B\)/);
  // Converted once: the first publisher's record stands, and both hold a reference.
  assertEquals(
    clusterMeta(JSON.parse(Deno.readTextFileSync(`${imageDir(paths, digest)}/meta.json`)), "")
      .publishedAt,
    meta.publishedAt,
  );
  for (const u of [alice, bob]) assert(Deno.statSync(refFile(paths, u.uid, digest)).isFile);

  for (const who of ["user", "member"] as const) {
    const listed = await site.shoal(who, ["images", "--format", "json"]);
    const record = (JSON.parse(listed.stdout) as {
      reference: string;
      cluster?: boolean;
      squashfsPath?: string;
    }[])
      .find((i) => i.reference === ref);
    assertEquals(record?.cluster, true, listed.stdout);
    const run = await site.shoal(who, ["--debug", "run", ref, "cat", "/etc/hello"]);
    assertEquals([run.code, run.stdout], [0, "from the store\n"], run.stderr);
    assertMatch(run.stderr, /run path: helper/);
  }
  // Doctor says the store's images take the helper path, and the user's own ones do not.
  const doctor = await site.shoal("user", ["doctor", "--format", "json"]);
  const runs = JSON.parse(doctor.stdout).runs as {
    identity: string;
    repository: string;
    runPath: string;
  }[];
  assertEquals(runs[0], { ...runs[0]!, identity: "self", repository: "store", runPath: "helper" });
  assertEquals(
    runs.find((r) => r.identity === "self" && r.repository === "local")?.runPath,
    "unprivileged",
  );
  await Deno.chmod(store, 0o775);
  try {
    const broken = JSON.parse((await site.shoal("user", ["doctor", "--format", "json"])).stdout);
    assertEquals(broken.runs[0].runPath, "unprivileged");
    assertMatch(broken.runs[0].reason, /store .* is writable by group or others/);
  } finally {
    await Deno.chmod(store, 0o755);
  }
  // A job pins the image by digest: it runs from the store without the user's own tag.
  assertEquals((await site.shoal("user", ["rmi", ref])).code, 0);
  const pinned = `${registry.host}/cluster/app@${digest}`;
  const run = await site.shoal("user", ["--debug", "run", pinned, "cat", "/etc/hello"]);
  assertEquals([run.code, run.stdout], [0, "from the store\n"], run.stderr);
  assertMatch(run.stderr, /run path: helper/);
  // Nothing of the layers stays in the users' own repositories.
  const layer = image.layers[0]!.digest.slice(7);
  const found = await runCommand("find", [`${site.dir}/repo`, "-name", `*${layer}*`]);
  assertEquals(found.stdout, "");
});

Deno.test("cluster store: rmi drops a user's reference, gc removes what nobody references, quotas", async (t) => {
  const site = await runSite(true);
  const { registry } = await testImages();
  const owner = await testUser(OWNER, false);
  const store = `${site.dir}/store`;
  await Deno.mkdir(store, { mode: 0o755 });
  await Deno.chown(store, owner.uid, owner.gid);
  const config = (extra: Record<string, unknown>) =>
    site.writeConfig({ store: { path: store, owner: OWNER, ...extra } });
  const paths = clusterPaths(store);
  const push = async (name: string) => {
    const image = busyboxImage({
      extraEntries: [{ type: "file", path: "etc/name", content: name }],
    });
    return {
      digest: await pushImage(registry, `gc/${name}`, "1", image),
      ref: `${registry.host}/gc/${name}:1`,
    };
  };
  const gc = async () => {
    const r = await runAs(owner, site.bin, ["store", "gc", "--format", "json"]);
    assertEquals(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { removed: string[]; unreferenced: number };
  };
  const there = (digest: string) => {
    try {
      return Deno.statSync(imageDir(paths, digest)).isDirectory;
    } catch {
      return false;
    }
  };

  await t.step("the image stays while anyone references it, and goes after", async () => {
    await config({ retentionDays: 0 });
    const a = await push("a");
    for (const who of ["user", "member"] as const) {
      assertEquals((await site.shoal(who, ["pull", "-q", a.ref])).code, 0);
    }
    const rmi = await site.shoal("user", ["rmi", a.ref]);
    assertEquals([rmi.code, rmi.stdout], [0, `Untagged: ${a.ref}\n`], rmi.stderr);
    assertEquals((await gc()).removed, []);
    assert(there(a.digest));
    const run = await site.shoal("member", ["run", a.ref, "cat", "/etc/name"]);
    assertEquals([run.code, run.stdout], [0, "a"], run.stderr);
    assertEquals((await site.shoal("member", ["rmi", a.ref])).code, 0);
    assertEquals((await gc()).removed, [a.digest]);
    assert(!there(a.digest));
    assertEquals([...Deno.readDirSync(paths.trash)], []);
  });

  await t.step("an unreferenced image is kept for the retention time", async () => {
    await config({ retentionDays: 1 });
    const b = await push("b");
    assertEquals((await site.shoal("user", ["pull", "-q", b.ref])).code, 0);
    assertEquals((await site.shoal("user", ["rmi", b.ref])).code, 0);
    const report = await gc();
    assertEquals([report.removed, report.unreferenced], [[], 1]);
    assert(there(b.digest));
  });

  await t.step("only the store's owner collects", async () => {
    const r = await site.shoal("user", ["store", "gc"]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /runs as the store's owner shoal-store-t/);
  });

  await t.step("a publish beyond the user's quota is refused, nothing stored", async () => {
    await config({ quotaGiB: 0.0005 });
    const c = await push("c");
    const r = await site.shoal("user", ["pull", c.ref]);
    assertEquals(r.code, 1, r.stdout);
    assertMatch(
      r.stderr,
      /your images in the cluster store take 0\.0 MiB of your 0\.5 MiB \(store\.quotaGiB\), and this one needs about 1\.0 MiB more/,
    );
    assert(!there(c.digest));
    assertEquals([...Deno.readDirSync(paths.staging)], []);
  });
});

Deno.test("publishes whose download is cut: resumed within the pull, or failed with the download's error and resumed by the next pull", async () => {
  const site = await runSite(true);
  const owner = await testUser(OWNER, false);
  const store = `${site.dir}/store-cut`;
  await Deno.mkdir(store, { mode: 0o755 });
  await Deno.chown(store, owner.uid, owner.gid);
  await site.writeConfig({ store: { path: store, owner: OWNER } });
  const paths = clusterPaths(store);
  const user = (await site.user("user"))!;
  const blobs = `${site.dir}/repo/${user.name}/blobs`;
  await using reg = startFakeRegistry();
  /** An image of one uncompressed 3 MiB layer of random bytes, and the bytes' SHA-256. */
  const add = (name: string) => {
    const content = new Uint8Array(3 << 20);
    for (let i = 0; i < content.length; i += 65536) {
      crypto.getRandomValues(content.subarray(i, i + 65536));
    }
    const layer = makeLayer([{ type: "file", path: "data.bin", content }], {
      compression: "none",
    });
    const image = makeImage([layer]);
    reg.add(name, "v1", image);
    return { layer, content, digest: image.manifest.digest, ref: `${reg.host}/${name}:v1` };
  };
  /** The layer's first request sends half of it and drops; later ones fail while `down`. */
  const cutOnce = (layer: { digest: string; data: Uint8Array; size: number }, down: boolean) => {
    let cut = false;
    reg.intercept = (_req, url) => {
      if (!url.pathname.endsWith(layer.digest)) return undefined;
      if (cut) {
        return down
          ? Response.json({ errors: [{ code: "BLOB_UNKNOWN" }] }, { status: 404 })
          : undefined;
      }
      cut = true;
      const body = new ReadableStream<Uint8Array>({
        start(ctrl) {
          ctrl.enqueue(layer.data.slice(0, Math.floor(layer.size / 2)));
          setTimeout(() => ctrl.error(new Error("cut")), 200);
        },
      });
      return new Response(body, { headers: { "content-length": String(layer.size) } });
    };
  };
  const ranges = (digest: string) =>
    reg.requests.filter((r) => r.path.endsWith(digest)).map((r) => r.headers.get("range"));
  /** The store's image holds the layer's file, byte for byte. */
  const stored = async (x: { digest: string; content: Uint8Array }) => {
    const file = `${imageDir(paths, x.digest)}/image.sqsh`;
    const got = (await new Deno.Command("rdsquashfs", { args: ["-c", "/data.bin", file] }).output())
      .stdout;
    assert(got.length === x.content.length && got.every((v, i) => v === x.content[i]));
  };

  // The layer is sent to the converter as it downloads: a retry resumes it mid-send.
  const a = add("a");
  cutOnce(a.layer, false);
  const once = await site.shoal("user", ["pull", "--tls-verify=false", a.ref]);
  assertEquals(once.code, 0, once.stderr);
  assertEquals(ranges(a.layer.digest).at(-1), `bytes=${Math.floor(a.layer.size / 2)}-`);
  await stored(a);

  const b = add("b");
  cutOnce(b.layer, true);
  const failed = await site.shoal("user", ["pull", "--tls-verify=false", b.ref]);
  assertEquals(failed.code, 1, failed.stdout);
  assertMatch(failed.stderr, new RegExp(`blob ${b.layer.digest}`));
  assertEquals([...Deno.readDirSync(paths.staging)], [], "a claim is left");
  const partial = `${blobs}/sha256/${b.layer.digest.slice(7)}.partial`;
  assertEquals((await Deno.stat(partial)).size, Math.floor(b.layer.size / 2));
  reg.intercept = undefined;
  const resumed = await site.shoal("user", ["pull", "--tls-verify=false", b.ref]);
  assertEquals(resumed.code, 0, resumed.stderr);
  assertMatch(resumed.stdout, /, into the cluster store\n$/);
  assertEquals(ranges(b.layer.digest).at(-1), `bytes=${Math.floor(b.layer.size / 2)}-`);
  await stored(b);
  const left = await runCommand("find", [blobs, "-type", "f"]);
  assertEquals(left.stdout, "", "the user's repository keeps a layer");
});
