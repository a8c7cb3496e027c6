/**
 * The registry client's HTTP behaviour against in-process registries that
 * misbehave on demand: token flow and caching, redirects, resume, retries,
 * rate limits, corrupted blobs, mirrors, foreign layers, proxies, TLS.
 */
import { join } from "node:path";
import { type SiteConfigFile, siteConfigSchema } from "../mod/config/schema.ts";
import { ShoalError } from "../mod/errors.ts";
import { parseReference } from "../mod/image/reference.ts";
import { blobPath } from "../mod/image/store/paths.ts";
import { createRegistryClient, type RegistryClientOptions } from "../mod/image/registry/client.ts";
import type { Credential } from "../mod/image/registry/credentials.ts";
import { RegistryError } from "../mod/image/registry/responses.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./support/assert.ts";
import { type FakeRegistry, startFakeRegistry } from "./support/fake_registry.ts";
import { blobOf, makeImage, makeIndex, makeLayer } from "./support/oci.ts";
import { makeServerTls } from "./support/tls.ts";

/** Incompressible content, so the layer streams in several chunks. */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}
const layer = makeLayer([{ type: "file", path: "data", content: randomBytes(256 * 1024) }]);
/** gzip gives node Buffers; compare plain bytes. */
const layerBytes = new Uint8Array(layer.data);
const image = makeImage([layer]);

/** The fake registries speak plain HTTP, which takes `tlsVerify: false` (or config insecure). */
function client(config: SiteConfigFile = {}, extra: Partial<RegistryClientOptions> = {}) {
  return createRegistryClient({
    config: siteConfigSchema.parse(config),
    credentials: { get: () => Promise.resolve(undefined) },
    retryBaseDelayMs: 5,
    tlsVerify: false,
    ...extra,
  });
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-registry-http-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A token server answering Docker's token protocol with numbered tokens. */
function startTokenServer(expiresIn = 300) {
  const log: { url: URL; method: string; authorization: string | null; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    log.push({
      url: new URL(req.url),
      method: req.method,
      authorization: req.headers.get("authorization"),
      body: await req.text(),
    });
    return Response.json({ access_token: `tok-${log.length}`, expires_in: expiresIn });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/token`, log, stop: () => server.shutdown() };
}

/** Makes `reg` demand a bearer token from `valid` for everything under /v2/. */
function requireBearer(reg: FakeRegistry, realm: string, valid: (token: string) => boolean) {
  reg.intercept = (req) => {
    const auth = req.headers.get("authorization") ?? "";
    if (auth.startsWith("Bearer ") && valid(auth.slice(7))) return undefined;
    return Response.json(
      { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] },
      {
        status: 401,
        headers: {
          "www-authenticate":
            `Bearer realm="${realm}",service="fake, registry",scope="repository:app:pull"`,
        },
      },
    );
  };
}

Deno.test("bearer tokens are fetched once per scope, sent up front, and renewed when they expire", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    const tokens = startTokenServer(1);
    try {
      requireBearer(reg, tokens.url, (t) => t.startsWith("tok-"));
      using c = client();
      const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
      await c.fetchBlobs(resolved, { cacheDir: dir });
      assertEquals(tokens.log.length, 1, "one token for manifest, config and layer");
      const first = tokens.log[0]!.url;
      assertEquals(first.searchParams.get("service"), "fake, registry");
      assertEquals(first.searchParams.getAll("scope"), ["repository:app:pull"]);
      // Only the very first request went without a token.
      assertEquals(reg.requests.filter((r) => r.headers.get("authorization") === null).length, 1);
      await new Promise((r) => setTimeout(r, 1100));
      await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
      assertEquals(tokens.log.length, 2, "an expired token is replaced");
    } finally {
      await tokens.stop();
    }
  });
});

Deno.test("a token the registry stops accepting is replaced once, then the request succeeds", async () => {
  await using reg = startFakeRegistry();
  reg.add("app", "v1", image);
  const tokens = startTokenServer();
  try {
    let revoked = "";
    requireBearer(reg, tokens.url, (t) => t !== revoked);
    using c = client();
    await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    revoked = `tok-${tokens.log.length}`;
    const again = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    assertEquals(again.digest, image.manifest.digest);
    assertEquals(tokens.log.length, 2);
  } finally {
    await tokens.stop();
  }
});

Deno.test("credentials go to the token server: basic for passwords, a refresh-token POST for identity tokens", async () => {
  await using reg = startFakeRegistry();
  reg.add("app", "v1", image);
  const tokens = startTokenServer();
  try {
    requireBearer(reg, tokens.url, () => true);
    const withCred = (credential: Credential) =>
      client({}, { credentials: { get: () => Promise.resolve(credential) } });
    {
      using c = withCred({ kind: "basic", username: "alice", password: "s3cret:x" });
      await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    }
    const basic = tokens.log[0]!;
    assertEquals(basic.authorization, `Basic ${btoa("alice:s3cret:x")}`);
    assertEquals(basic.url.searchParams.get("account"), "alice");
    {
      using c = withCred({ kind: "identityToken", token: "refresh-me" });
      await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    }
    const post = tokens.log[1]!;
    assertEquals(post.method, "POST");
    const form = new URLSearchParams(post.body);
    assertEquals(form.get("grant_type"), "refresh_token");
    assertEquals(form.get("refresh_token"), "refresh-me");
    assertEquals(form.get("scope"), "repository:app:pull");
  } finally {
    await tokens.stop();
  }
});

Deno.test("wrong credentials at the token server name the user and point to shoal login", async () => {
  await using reg = startFakeRegistry();
  const realm = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json({ details: "incorrect username or password" }, { status: 401 }),
  );
  try {
    requireBearer(reg, `http://127.0.0.1:${realm.addr.port}/token`, () => true);
    using c = client({}, {
      credentials: {
        get: () => Promise.resolve({ kind: "basic", username: "bob", password: "no" }),
      },
    });
    const err = await assertRejects(
      () => c.resolveManifest(parseReference(`${reg.host}/app:v1`)),
      ShoalError,
      `registry ${reg.host} rejected the credentials of user bob`,
    );
    assertStringIncludes(err.hint ?? "", "shoal login");
  } finally {
    await realm.shutdown();
  }
});

Deno.test("a redirect to blob storage on another host does not carry the Authorization header", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    await using storage = startFakeRegistry();
    storage.addBlob(layer);
    const tokens = startTokenServer();
    try {
      requireBearer(reg, tokens.url, () => true);
      const auth = reg.intercept!;
      reg.intercept = (req, url) => {
        const denied = auth(req, url);
        if (denied) return denied;
        if (url.pathname.endsWith(`/blobs/${layer.digest}`)) {
          return new Response(null, {
            status: 307,
            headers: { location: `${storage.url}/v2/x/blobs/${layer.digest}?sig=1` },
          });
        }
        return undefined;
      };
      using c = client();
      const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
      const [path] = await c.fetchBlobs(resolved, { cacheDir: dir });
      assertEquals(await Deno.readFile(path!), layerBytes);
      assertEquals(storage.requests.length, 1);
      assertEquals(storage.requests[0]!.headers.get("authorization"), null);
      assert(reg.requests.some((r) => r.headers.get("authorization")?.startsWith("Bearer ")));
    } finally {
      await tokens.stop();
    }
  });
});

Deno.test("an interrupted download resumes from the partial file with a Range request", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    using c = client();
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    const target = blobPath(dir, layer.digest);
    await Deno.mkdir(join(target, ".."), { recursive: true });
    const half = Math.floor(layer.size / 2);
    await Deno.writeFile(`${target}.partial`, layer.data.slice(0, half));
    const progress: number[] = [];
    const [path] = await c.fetchBlobs(resolved, {
      cacheDir: dir,
      onProgress: (p) => progress.push(p.done),
    });
    assertEquals(path, target);
    assertEquals(await Deno.readFile(target), layerBytes);
    assert(!(await exists(`${target}.partial`)), "the partial is gone");
    const blobReq = reg.requests.find((r) => r.path.endsWith(layer.digest))!;
    assertEquals(blobReq.headers.get("range"), `bytes=${half}-`);
    assertEquals(progress[0], half, "progress starts at the resumed offset");
    assertEquals(progress.at(-1), layer.size);
  });
});

Deno.test("a corrupted partial fails verification, names the blob, and is deleted", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    using c = client();
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    const target = blobPath(dir, layer.digest);
    await Deno.mkdir(join(target, ".."), { recursive: true });
    await Deno.writeFile(`${target}.partial`, new Uint8Array(1000).fill(7));
    await assertRejects(
      () => c.fetchBlobs(resolved, { cacheDir: dir }),
      ShoalError,
      `blob ${layer.digest}`,
    );
    assert(!(await exists(`${target}.partial`)));
    assert(!(await exists(target)));
  });
});

Deno.test("a registry serving wrong bytes: the pull fails naming the blob and leaves no file", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    reg.intercept = (_req, url) =>
      url.pathname.endsWith(layer.digest)
        ? new Response(new Uint8Array(layer.size).fill(1))
        : undefined;
    using c = client();
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    const err = await assertRejects(
      () => c.fetchBlobs(resolved, { cacheDir: dir }),
      ShoalError,
      `blob ${layer.digest} from ${reg.host} failed verification`,
    );
    assert(!(err instanceof RegistryError), "a mismatch is not retried");
    assertEquals(reg.requests.filter((r) => r.path.endsWith(layer.digest)).length, 1);
    assertEquals([...Deno.readDirSync(join(dir, "sha256"))].length, 0);
  });
});

Deno.test("transient failures are retried with backoff, then fail with the registry's own message", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    let failures = 2;
    reg.intercept = (_req, url) => {
      if (!url.pathname.endsWith(layer.digest) || failures-- <= 0) return undefined;
      return Response.json({ errors: [{ code: "UNAVAILABLE", message: "storage backend busy" }] }, {
        status: 503,
      });
    };
    {
      using c = client({ pull: { retries: 3 } });
      const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
      const [path] = await c.fetchBlobs(resolved, { cacheDir: dir });
      assertEquals(await Deno.readFile(path!), layerBytes);
      assertEquals(reg.requests.filter((r) => r.path.endsWith(layer.digest)).length, 3);
    }
    await Deno.remove(join(dir, "sha256"), { recursive: true });
    failures = 100;
    using c = client({ pull: { retries: 1 } });
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    await assertRejects(
      () => c.fetchBlobs(resolved, { cacheDir: dir }),
      RegistryError,
      "503 Service Unavailable: UNAVAILABLE: storage backend busy",
    );
  });
});

Deno.test("a connection dropped mid-blob is resumed where it broke", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    const half = Math.floor(layer.size / 2);
    let dropped = false;
    reg.intercept = (_req, url) => {
      if (dropped || !url.pathname.endsWith(layer.digest)) return undefined;
      dropped = true;
      const body = new ReadableStream<Uint8Array>({
        start(ctrl) {
          ctrl.enqueue(layer.data.slice(0, half));
          setTimeout(() => ctrl.error(new Error("cut")), 50);
        },
      });
      return new Response(body, { headers: { "content-length": String(layer.size) } });
    };
    using c = client();
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    const [path] = await c.fetchBlobs(resolved, { cacheDir: dir });
    assertEquals(await Deno.readFile(path!), layerBytes);
    const ranges = reg.requests.filter((r) => r.path.endsWith(layer.digest)).map((r) =>
      r.headers.get("range")
    );
    assertEquals(ranges, [null, `bytes=${half}-`]);
  });
});

Deno.test("a rate limit is reported with the registry's message, its reset hint, login and mirrors", async () => {
  await using reg = startFakeRegistry();
  reg.intercept = () =>
    Response.json({
      errors: [{ code: "TOOMANYREQUESTS", message: "You have reached your pull rate limit." }],
    }, { status: 429, headers: { "retry-after": "3600" } });
  using c = client({ pull: { retries: 3 } });
  const err = await assertRejects(
    () => c.resolveManifest(parseReference(`${reg.host}/app:v1`)),
    RegistryError,
    "rate limit reached: TOOMANYREQUESTS: You have reached your pull rate limit.",
  );
  assertStringIncludes(err.hint ?? "", "retry after 3600 s");
  assertStringIncludes(err.hint ?? "", `shoal login ${reg.host}`);
  assertStringIncludes(err.hint ?? "", "registries.mirrors");
  assertEquals(reg.requests.length, 1, "a rate limit is not retried");
});

Deno.test("mirrors are tried in order before the registry, and a failing one is skipped", async () => {
  await withTemp(async (dir) => {
    await using upstream = startFakeRegistry();
    upstream.add("app", "v1", image);
    await using broken = startFakeRegistry();
    broken.intercept = () => new Response("down", { status: 500 });
    await using mirror = startFakeRegistry();
    mirror.add("cache/app", "v1", image);
    using c = client({
      pull: { retries: 0 },
      registries: { mirrors: { [upstream.host]: [broken.url, `${mirror.url}/cache`] } },
    });
    const resolved = await c.resolveManifest(parseReference(`${upstream.host}/app:v1`));
    assertEquals(resolved.source, `${mirror.url}/cache`);
    await c.fetchBlobs(resolved, { cacheDir: dir });
    assertEquals(upstream.requests.length, 0, "the mirror served everything");
    assert(broken.requests.length > 0);
    assertEquals(
      broken.requests.filter((r) => r.path.includes("/blobs/")).length,
      0,
      "a mirror that failed the manifest is not asked for blobs",
    );

    await Deno.remove(join(dir, "sha256"), { recursive: true });
    mirror.intercept = () => new Response(null, { status: 404 });
    const fallback = await c.resolveManifest(parseReference(`${upstream.host}/app:v1`));
    assertEquals(fallback.source, upstream.host);
    await c.fetchBlobs(fallback, { cacheDir: dir });
    assert(upstream.requests.some((r) => r.path.endsWith(layer.digest)));
  });
});

Deno.test("platform selection picks the wanted member and lists the platforms when none fits", async () => {
  await using reg = startFakeRegistry();
  const amd = makeImage([layer], { platform: { os: "linux", architecture: "amd64" } });
  const arm = makeImage([layer], {
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
  });
  reg.add("multi", "v1", makeIndex([amd, arm], "docker"));
  using c = client();
  const ref = parseReference(`${reg.host}/multi:v1`);
  const got = await c.resolveManifest(ref, { platform: { os: "linux", architecture: "arm64" } });
  assertEquals(got.manifestDigest, arm.manifest.digest);
  assertEquals(got.platform, { os: "linux", architecture: "arm64", variant: "v8" });
  assert(got.digest !== got.manifestDigest, "the registry digest is the index's");
  const err = await assertRejects(
    () => c.resolveManifest(ref, { platform: { os: "linux", architecture: "s390x" } }),
    ShoalError,
    "no image for platform linux/s390x; available: linux/amd64, linux/arm64/v8",
  );
  assertStringIncludes(err.hint ?? "", "--platform");
  // A single-platform image with an explicit, different platform is refused too.
  reg.add("single", "v1", amd);
  await assertRejects(
    () =>
      c.resolveManifest(parseReference(`${reg.host}/single:v1`), {
        platform: { os: "linux", architecture: "riscv64" },
      }),
    ShoalError,
    "is for linux/amd64, not linux/riscv64",
  );
});

Deno.test("manifests: schema 1 is refused, a digest reference is verified", async () => {
  await using reg = startFakeRegistry();
  const schema1 = blobOf(
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    new TextEncoder().encode(JSON.stringify({ schemaVersion: 1, name: "old", fsLayers: [] })),
  );
  reg.intercept = (_req, url) =>
    url.pathname.endsWith("/manifests/old")
      ? new Response(schema1.data as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": schema1.mediaType },
      })
      : undefined;
  using c = client();
  await assertRejects(
    () => c.resolveManifest(parseReference(`${reg.host}/app:old`)),
    ShoalError,
    "manifest schema 1 is not supported",
  );
  // The registry answers a digest with other bytes: refused.
  const other = makeImage([makeLayer([{ type: "file", path: "b", content: "b" }])]);
  reg.add("app", "v1", other);
  reg.intercept = (_req, url) =>
    url.pathname.endsWith(`/manifests/${image.manifest.digest}`)
      ? new Response(other.manifest.data as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": other.manifest.mediaType },
      })
      : undefined;
  await assertRejects(
    () => c.resolveManifest(parseReference(`${reg.host}/app@${image.manifest.digest}`)),
    ShoalError,
    `not ${image.manifest.digest}`,
  );
});

Deno.test("a non-distributable layer missing from the registry comes from its URLs", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    await using elsewhere = startFakeRegistry();
    elsewhere.addBlob(layer);
    const foreign = {
      ...layer,
      mediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    };
    const img = makeImage([foreign]);
    const manifest = JSON.parse(new TextDecoder().decode(img.manifest.data));
    manifest.layers[0].urls = [`${elsewhere.url}/layers/${layer.digest}`];
    const withUrls = {
      ...img,
      manifest: blobOf(img.manifest.mediaType, new TextEncoder().encode(JSON.stringify(manifest))),
    };
    reg.add("app", "v1", withUrls);
    reg.intercept = (_req, url) =>
      url.pathname.endsWith(layer.digest) ? new Response(null, { status: 404 }) : undefined;
    elsewhere.intercept = (req, url) =>
      url.pathname === `/layers/${layer.digest}`
        ? elsewhere.handle(
          new Request(`${elsewhere.url}/v2/x/blobs/${layer.digest}`, { headers: req.headers }),
        )
        : undefined;
    using c = client();
    const resolved = await c.resolveManifest(parseReference(`${reg.host}/app:v1`));
    assert(resolved.layers[0]!.foreign);
    const [path] = await c.fetchBlobs(resolved, { cacheDir: dir });
    assertEquals(await Deno.readFile(path!), layerBytes);
  });
});

Deno.test("HTTP_PROXY is used and NO_PROXY exempts hosts", async () => {
  await using reg = startFakeRegistry();
  reg.add("app", "v1", image);
  const proxied: string[] = [];
  const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    proxied.push(req.url);
    return reg.handle(req);
  });
  const ref = parseReference(`${reg.host}/app:v1`);
  try {
    Deno.env.set("HTTP_PROXY", `http://127.0.0.1:${proxy.addr.port}`);
    Deno.env.delete("NO_PROXY");
    {
      using c = client({ registries: { insecure: [reg.host] } }, { tlsVerify: true });
      await c.resolveManifest(ref);
    }
    assert(proxied.some((u) => u === `${reg.url}/v2/app/manifests/v1`), proxied.join());
    const before = proxied.length;
    Deno.env.set("NO_PROXY", "127.0.0.1");
    {
      using c = client({ registries: { insecure: [reg.host] } }, { tlsVerify: true });
      await c.resolveManifest(ref);
    }
    assertEquals(proxied.length, before);
  } finally {
    Deno.env.delete("HTTP_PROXY");
    Deno.env.delete("NO_PROXY");
    await proxy.shutdown();
  }
});

Deno.test("TLS: system CAs only by default, a configured CA file, or no verification when insecure", async () => {
  await withTemp(async (dir) => {
    const tls = await makeServerTls(dir);
    await using reg = startFakeRegistry({ tls });
    reg.add("app", "v1", image);
    const ref = parseReference(`${reg.host}/app:v1`);
    {
      using c = client({ pull: { retries: 0 } }, { tlsVerify: true });
      const err = await assertRejects(
        () => c.resolveManifest(ref),
        RegistryError,
        `cannot trust ${reg.host}: its certificate is not signed by a CA this machine trusts`,
      );
      assertMatch(err.hint ?? "", /registries\.ca/);
    }
    {
      using c = client({ registries: { ca: { [reg.host]: tls.caFile } } }, { tlsVerify: true });
      assertEquals((await c.resolveManifest(ref)).digest, image.manifest.digest);
    }
    {
      using c = client({}, { tlsVerify: false });
      assertEquals((await c.resolveManifest(ref)).digest, image.manifest.digest);
    }
    // An insecure registry without TLS is reached over plain HTTP.
    await using plain = startFakeRegistry();
    plain.add("app", "v1", image);
    {
      using c = client({ registries: { insecure: [plain.host] } }, { tlsVerify: true });
      assertEquals(
        (await c.resolveManifest(parseReference(`${plain.host}/app:v1`))).digest,
        image.manifest.digest,
      );
    }
    {
      using c = client({ pull: { retries: 0 } }, { tlsVerify: true });
      await assertRejects(
        () => c.resolveManifest(parseReference(`${plain.host}/app:v1`)),
        RegistryError,
        "cannot reach",
      );
    }
  });
});

Deno.test("two pulls of the same blob at once: one downloads, the other waits and reuses it", async () => {
  await withTemp(async (dir) => {
    await using reg = startFakeRegistry();
    reg.add("app", "v1", image);
    reg.intercept = async (req, url) => {
      if (!url.pathname.endsWith(layer.digest)) return undefined;
      await new Promise((r) => setTimeout(r, 200));
      return reg.handle(req);
    };
    using a = client();
    using b = client();
    const resolved = await a.resolveManifest(parseReference(`${reg.host}/app:v1`));
    const [pa, pb] = await Promise.all([
      a.fetchBlobs(resolved, { cacheDir: dir }),
      b.fetchBlobs(resolved, { cacheDir: dir }),
    ]);
    assertEquals(pa, pb);
    assertEquals(await Deno.readFile(pa![0]!), layerBytes);
    assertEquals(reg.requests.filter((r) => r.path.endsWith(layer.digest)).length, 1);
    assertEquals([...Deno.readDirSync(join(dir, "sha256"))].length, 1, "no partial left");
  });
});
