/**
 * The registry client against Debian's real docker-registry on loopback: plain
 * HTTP, HTTPS with a test CA, htpasswd basic auth and bearer tokens, with
 * images pushed by the independent test tooling (support/oci.ts).
 */
import { type SiteConfigFile, siteConfigSchema } from "../mod/config/schema.ts";
import { ShoalError } from "../mod/errors.ts";
import { parseReference } from "../mod/image/reference.ts";
import type { BlobProgress } from "../mod/image/registry/blobs.ts";
import { createRegistryClient, type RegistryClientOptions } from "../mod/image/registry/client.ts";
import type { Credential } from "../mod/image/registry/credentials.ts";
import { RegistryError } from "../mod/image/registry/responses.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./support/assert.ts";
import { busyboxImage, makeImage, makeIndex, makeLayer, pushImage } from "./support/oci.ts";
import { startRegistry, type TestRegistry } from "./support/registry.ts";

function client(
  reg: TestRegistry,
  credential: Credential | undefined,
  config: SiteConfigFile = {},
  extra: Partial<RegistryClientOptions> = {},
) {
  return createRegistryClient({
    config: siteConfigSchema.parse({
      ...config,
      registries: {
        insecure: reg.url.startsWith("http:") ? [reg.host] : [],
        ca: reg.caFile ? { [reg.host]: reg.caFile } : {},
        ...config.registries,
      },
    }),
    credentials: { get: () => Promise.resolve(credential) },
    retryBaseDelayMs: 5,
    ...extra,
  });
}

async function withCache<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-registry-client-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const base = makeLayer([{ type: "file", path: "etc/base", content: "base layer\n" }]);
const app1 = makeImage([base, makeLayer([{ type: "file", path: "app", content: "one\n" }])], {
  cmd: ["/app"],
  env: ["A=1"],
});
const app2 = makeImage([base, makeLayer([{ type: "file", path: "app", content: "two\n" }])]);

Deno.test("plain HTTP registry: resolve, download, verify; a second image downloads only its new layer", async () => {
  await using reg = await startRegistry("plain");
  await pushImage(reg, "demo/app", "one", app1);
  await pushImage(reg, "demo/app", "two", app2);
  await withCache(async (dir) => {
    using c = client(reg, undefined);
    const one = await c.resolveManifest(parseReference(`${reg.host}/demo/app:one`));
    assertEquals(one.digest, app1.manifest.digest);
    assertEquals(one.configDigest, app1.config.digest);
    assertEquals(one.config.config?.Cmd, ["/app"]);
    assertEquals(
      one.layers.map((l) => [l.digest, l.compression]),
      app1.layers.map((l) => [l.digest, "gzip"]),
    );
    assertEquals(
      await c.headDigest(parseReference(`${reg.host}/demo/app:one`)),
      app1.manifest.digest,
    );
    const paths = await c.fetchBlobs(one, { cacheDir: dir });
    for (const [i, p] of paths.entries()) {
      assertEquals(await Deno.readFile(p), new Uint8Array(app1.layers[i]!.data));
    }
    const two = await c.resolveManifest(parseReference(`${reg.host}/demo/app:two`));
    const events: BlobProgress[] = [];
    await c.fetchBlobs(two, { cacheDir: dir, onProgress: (p) => events.push(p) });
    const completed = events.filter((e) => e.complete);
    assertEquals(
      completed.map((e) => [e.digest, e.cached]).sort(),
      [
        [base.digest, true],
        [app2.layers[1]!.digest, false],
      ].sort(),
    );
    const missing = await assertRejects(
      () => c.resolveManifest(parseReference(`${reg.host}/demo/nothing:here`)),
      RegistryError,
      "not found",
    );
    assertStringIncludes(missing.message, "MANIFEST_UNKNOWN: manifest unknown");
  });
});

Deno.test("HTTPS with the registry's CA from the config; multi-platform index and zstd layers", async () => {
  await using reg = await startRegistry("tls");
  const zstdLayer = makeLayer([{ type: "file", path: "z", content: "zstd\n" }], {
    compression: "zstd",
  });
  const amd = makeImage([zstdLayer], { platform: { os: "linux", architecture: "amd64" } });
  const arm = makeImage([base], {
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
  });
  await pushImage(reg, "multi", "latest", makeIndex([amd, arm]));
  await withCache(async (dir) => {
    using c = client(reg, undefined);
    const got = await c.resolveManifest(parseReference(`${reg.host}/multi`), {
      platform: { os: "linux", architecture: "amd64" },
    });
    assertEquals(got.manifestDigest, amd.manifest.digest);
    assertEquals(got.layers[0]!.compression, "zstd");
    const [path] = await c.fetchBlobs(got, { cacheDir: dir });
    assertEquals(await Deno.readFile(path!), new Uint8Array(zstdLayer.data));
    const armGot = await c.resolveManifest(parseReference(`${reg.host}/multi`), {
      platform: { os: "linux", architecture: "arm64" },
    });
    assertEquals(armGot.manifestDigest, arm.manifest.digest);
  });
  // Without the CA the certificate is refused; --tls-verify=false reaches it anyway.
  using untrusted = client(reg, undefined, { registries: { ca: {} }, pull: { retries: 0 } });
  await assertRejects(
    () => untrusted.resolveManifest(parseReference(`${reg.host}/multi`)),
    RegistryError,
    `cannot trust ${reg.host}: its certificate is not signed by a CA this machine trusts`,
  );
  using unverified = client(reg, undefined, { registries: { ca: {} } }, { tlsVerify: false });
  assertEquals(
    (await unverified.resolveManifest(parseReference(`${reg.host}/multi`))).digest.length,
    71,
  );
});

Deno.test("basic auth: pulls with credentials, a clear error without, login checks the password", async () => {
  await using reg = await startRegistry("basic");
  const image = busyboxImage();
  await pushImage(reg, "private/box", "latest", image);
  const ref = parseReference(`${reg.host}/private/box`);
  const good: Credential = { kind: "basic", username: reg.username!, password: reg.password! };
  using c = client(reg, good);
  assertEquals((await c.resolveManifest(ref)).digest, image.manifest.digest);
  await c.verifyLogin(reg.host, good);
  await assertRejects(
    () => c.verifyLogin(reg.host, { kind: "basic", username: reg.username!, password: "wrong" }),
    ShoalError,
    "rejected the credentials",
  );
  using anonymous = client(reg, undefined);
  const err = await assertRejects(
    () => anonymous.resolveManifest(ref),
    RegistryError,
    "authentication required",
  );
  assertStringIncludes(err.hint ?? "", `shoal login ${reg.host}`);
});

Deno.test("token auth: anonymous public pulls, credentialed private pulls, one token per scope", async () => {
  await using reg = await startRegistry("token", { publicRepositories: ["public/box"] });
  const image = busyboxImage();
  await pushImage(reg, "public/box", "latest", image);
  await pushImage(reg, "private/box", "latest", image);
  const server = reg.tokenServer!;
  await withCache(async (dir) => {
    using anonymous = client(reg, undefined);
    const before = server.requests;
    const pub = await anonymous.resolveManifest(parseReference(`${reg.host}/public/box`));
    await anonymous.fetchBlobs(pub, { cacheDir: dir });
    assertEquals(server.requests - before, 1, "manifest, config and layer share one token");
    assertEquals(server.log.at(-1)!.user, null);
    await assertRejects(
      () => anonymous.resolveManifest(parseReference(`${reg.host}/private/box`)),
      RegistryError,
      "authentication required",
    );
    const cred: Credential = { kind: "basic", username: reg.username!, password: reg.password! };
    using member = client(reg, cred);
    const priv = await member.resolveManifest(parseReference(`${reg.host}/private/box`));
    assertEquals(priv.digest, image.manifest.digest);
    assertEquals(server.log.at(-1)!.user, reg.username);
    assertEquals(server.log.at(-1)!.scopes, ["repository:private/box:pull"]);
    await member.verifyLogin(reg.host, cred);
    using wrong = client(reg, { ...cred, password: "nope" });
    await assertRejects(
      () => wrong.resolveManifest(parseReference(`${reg.host}/private/box`)),
      ShoalError,
      `rejected the credentials of user ${reg.username}`,
    );
  });
  assert(server.requests > 0);
});
