/**
 * A registry's own self-signed certificate (`openssl req -x509`: CA:TRUE,
 * used as the server's certificate) given in registries.ca: accepted as
 * Docker's certs.d, skopeo and curl accept it, by pinning exactly that
 * certificate; any other certificate is still refused, in plain words.
 */
import { type SiteConfigFile, siteConfigSchema } from "../mod/config/schema.ts";
import { parseReference } from "../mod/image/reference.ts";
import { createRegistryClient } from "../mod/image/registry/client.ts";
import { RegistryError } from "../mod/image/registry/responses.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./support/assert.ts";
import { busyboxImage, pushImage } from "./support/oci.ts";
import { startRegistry } from "./support/registry.ts";
import { makeSelfSignedTls } from "./support/tls.ts";
import { installedShoal } from "./support/install.ts";
import { runAs, testUser } from "./support/users.ts";

function client(config: SiteConfigFile) {
  return createRegistryClient({
    config: siteConfigSchema.parse({ pull: { retries: 0 }, ...config }),
    credentials: { get: () => Promise.resolve(undefined) },
  });
}

function noInternals(text: string): void {
  assert(!/Other\(|OtherError|CaUsedAsEndEntity|UnknownIssuer/.test(text), text);
}

Deno.test("a self-signed (CA:TRUE) registry certificate in registries.ca is pinned: that one works, no other", async () => {
  await using source = await startRegistry("plain");
  const image = busyboxImage();
  await pushImage(source, "pin/bb", "1.0", image);
  await using reg = await startRegistry("tls", {
    selfSigned: true,
    storage: `${source.dir}/storage`,
  });
  const ref = parseReference(`${reg.host}/pin/bb:1.0`);
  const cache = await Deno.makeTempDir({ prefix: "shoal-pin-" });
  try {
    {
      // Its own certificate as its CA file: manifest and blobs come through.
      using c = client({ registries: { ca: { [reg.host]: reg.caFile! } } });
      const resolved = await c.resolveManifest(ref);
      assertEquals(resolved.digest, image.manifest.digest);
      const [path] = await c.fetchBlobs(resolved, { cacheDir: cache });
      assertEquals((await Deno.stat(path!)).size, image.layers[0]!.size);
    }
    {
      // Not configured: refused in words, with the fix.
      using c = client({});
      const err = await assertRejects(() => c.resolveManifest(ref), RegistryError);
      assertMatch(
        err.message,
        new RegExp(`cannot trust ${reg.host}: it presents a CA certificate as its own`),
      );
      assertMatch(err.hint ?? "", /^give the registry's own certificate in registries\.ca/);
      noInternals(err.message);
    }
    {
      // Another self-signed certificate in the file: refused, and the file is named.
      const other = await makeSelfSignedTls(cache, "other");
      using c = client({ registries: { ca: { [reg.host]: other.caFile } } });
      const err = await assertRejects(() => c.resolveManifest(ref), RegistryError);
      assertEquals(
        err.message,
        `cannot trust ${reg.host}: it presents a CA certificate as its own (a self-signed one), ` +
          `and it is not the certificate in ${other.caFile} either`,
      );
      noInternals(err.message);
      assert(!err.transient, "a refused certificate is not retried");
    }
    {
      // That very certificate, issued for another name: refused as curl and Docker refuse it.
      await using elsewhere = await startRegistry("tls", {
        selfSigned: { subjectAltName: "DNS:registry.example" },
        storage: `${source.dir}/storage`,
      });
      using c = client({ registries: { ca: { [elsewhere.host]: elsewhere.caFile! } } });
      const err = await assertRejects(
        () => c.resolveManifest(parseReference(`${elsewhere.host}/pin/bb:1.0`)),
        RegistryError,
      );
      assertEquals(
        err.message,
        `cannot trust ${elsewhere.host}: its certificate (the one in ${elsewhere.caFile}) is not ` +
          "issued for this host name or address (it is for DNS:registry.example)",
      );
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("shoal pull as a user from a registry with its self-signed certificate in the site's registries.ca", async () => {
  await using source = await startRegistry("plain");
  await pushImage(source, "pin/bb", "1.0", busyboxImage());
  await using reg = await startRegistry("tls", {
    selfSigned: true,
    storage: `${source.dir}/storage`,
  });
  const { prefix, bin } = await installedShoal();
  const configFile = `${prefix}/etc/shoal.json`;
  const user = await testUser();
  const env = { XDG_DATA_HOME: `${user.home}/shoal-pin-data` };
  try {
    await Deno.writeTextFile(configFile, JSON.stringify({ pull: { retries: 0 } }));
    const refused = await runAs(user, bin, ["pull", `${reg.host}/pin/bb:1.0`], { env });
    assertEquals(refused.code, 1);
    assertMatch(refused.stderr, /^shoal: error: .*cannot trust 127\.0\.0\.1:\d+: it presents a CA/);
    noInternals(refused.stderr);

    await Deno.writeTextFile(
      configFile,
      JSON.stringify({ registries: { ca: { [reg.host]: reg.caFile } } }),
    );
    const r = await runAs(user, bin, ["pull", `${reg.host}/pin/bb:1.0`], { env });
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /^Pulled 127\.0\.0\.1:\d+\/pin\/bb:1\.0 /);
  } finally {
    await Deno.remove(configFile).catch(() => {});
    await Deno.remove(env.XDG_DATA_HOME, { recursive: true }).catch(() => {});
  }
});
