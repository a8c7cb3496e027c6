/**
 * Signatures at the door (config `signatures`, mod/image/signature/): images
 * signed here the way cosign signs them, with keys made by the test, pushed
 * to the loopback registry; a pull of an image a `require` rule covers stores
 * it only with a signature by a listed key, and a run refuses an image stored
 * without one. As an unprivileged user (their own repository) and as root
 * (the centralized one).
 */
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { testImages } from "./support/run.ts";
import { busyboxImage, makeIndex, pushImage } from "./support/oci.ts";
import {
  makeKey,
  payloadFor,
  pushSignatures,
  rawToDer,
  sign,
  signPayload,
  type TestKey,
} from "./support/cosign.ts";
import { derToRaw, payloadClaims } from "../mod/image/signature/cosign.ts";
import { pemPublicKey } from "../mod/image/signature/keys.ts";
import { ruleFor } from "../mod/image/signature/policy.ts";
import { siteConfigSchema } from "../mod/config/schema.ts";

Deno.test("cosign's DER signatures become WebCrypto's r||s, and malformed ones are refused", () => {
  for (const raw of [new Uint8Array(64).fill(0x7f), new Uint8Array(64).fill(0xff)]) {
    raw[0] = 0; // a leading zero byte is dropped by DER and must come back
    assertEquals(derToRaw(rawToDer(raw)), raw);
  }
  const der = rawToDer(new Uint8Array(64).fill(1));
  assertEquals(derToRaw(der.subarray(0, der.length - 1)), undefined);
  assertEquals(derToRaw(new Uint8Array([0x31, ...der.subarray(1)])), undefined);
  assertEquals(derToRaw(new Uint8Array([...der, 0])), undefined);
});

Deno.test("a payload names its digest and repository, or is refused", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  assertEquals(payloadClaims(payloadFor("r.example/x", digest)), {
    digest,
    reference: "r.example/x",
  });
  assertMatch(payloadClaims(new TextEncoder().encode("{}")) as string, /type/);
  assertMatch(payloadClaims(new TextEncoder().encode("\xff")) as string, /not JSON/);
});

Deno.test("the most specific rule decides; '*' is the least specific", () => {
  const rules = siteConfigSchema.parse({
    signatures: [
      { scope: "*", policy: "require", keys: ["/k/all.pub"] },
      { scope: "r.example", policy: "require", keys: ["/k/r.pub"] },
      { scope: "r.example/open", policy: "none" },
    ],
  }).signatures;
  assertEquals(ruleFor(rules, "r.example", "team/app")?.keys, ["/k/r.pub"]);
  assertEquals(ruleFor(rules, "r.example", "open/app")?.policy, "none");
  assertEquals(ruleFor(rules, "r.example", "openly/app")?.keys, ["/k/r.pub"]);
  assertEquals(ruleFor(rules, "docker.io", "library/debian")?.keys, ["/k/all.pub"]);
  assertEquals(ruleFor([], "docker.io", "library/debian"), undefined);
  for (
    const bad of [{ scope: "r.example", policy: "require" }, { scope: "r.example:1", policy: "x" }]
  ) {
    assert(!siteConfigSchema.safeParse({ signatures: [bad] }).success, JSON.stringify(bad));
  }
  assert(
    !siteConfigSchema.safeParse({ signatures: [{ scope: "r/x:tag", policy: "none" }] }).success,
  );
});

/** `sha256:<hex>` of a PEM key's DER bytes: the fingerprint a verified record names. */
function fingerprint(key: TestKey): string {
  return `sha256:${createHash("sha256").update(pemPublicKey(key.pem)!).digest("hex")}`;
}

Deno.test("pull and run under a signature policy, as a user and as root", async (t) => {
  const site = await runSite(true);
  const { registry } = await testImages();
  const host = registry.host;
  const signer = await makeKey();
  const stranger = await makeKey();
  const keys = `${site.dir}/keys`;
  await Deno.mkdir(keys, { mode: 0o755 });
  await Deno.writeTextFile(`${keys}/site.pub`, signer.pem, { mode: 0o644 });
  const policy = {
    signatures: [
      { scope: host, policy: "require", keys: [`${keys}/site.pub`] },
      { scope: `${host}/open`, policy: "none" },
    ],
  };

  const image = busyboxImage();
  const other = busyboxImage({
    extraEntries: [{ type: "file", path: "etc/other", content: "x\n" }],
  });
  const digest = image.manifest.digest;
  for (const repo of ["sig/signed", "sig/unsigned", "sig/stranger", "sig/copied", "open/app"]) {
    await pushImage(registry, repo, "1", image);
  }
  await pushImage(registry, "sig/otherdigest", "1", other);
  const index = makeIndex([
    image,
    busyboxImage({ spec: { platform: { os: "linux", architecture: "s390x" } } }),
  ]);
  await pushImage(registry, "sig/multi", "1", index);
  await sign(registry, "sig/signed", digest, signer);
  await sign(registry, "sig/stranger", digest, stranger);
  await sign(registry, "sig/multi", index.manifest.digest, signer);
  // The signed repository's signature, copied next to the same bits in another repository.
  const copied = payloadFor(`${host}/sig/signed`, digest);
  await pushSignatures(registry, "sig/copied", digest, [
    { payload: copied, signature: await signPayload(signer, copied) },
  ]);
  // A valid signature of the first image, stored as the other image's.
  await pushSignatures(registry, "sig/otherdigest", other.manifest.digest, [
    { payload: copied, signature: await signPayload(signer, copied) },
  ]);
  const ref = (repo: string) => `${host}/${repo}:1`;
  const images = async (who: "user" | "root", central = false) => {
    const r = await site.shoal(who, [
      "images",
      "--format",
      "json",
      ...(central ? ["--centralized-repository"] : []),
    ]);
    assertEquals(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { reference: string; signature?: unknown }[];
  };
  const refused = (r: { code: number; stderr: string }, why: RegExp) => {
    assert(r.code !== 0, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertMatch(r.stderr, why);
  };

  await t.step("an image pulled before the policy does not run once it applies", async () => {
    await site.writeConfig();
    assertEquals((await site.shoal("user", ["pull", "-q", ref("sig/unsigned")])).code, 0);
    await site.writeConfig(policy);
    refused(
      await site.shoal("user", ["run", ref("sig/unsigned"), "true"]),
      /sig\/unsigned:1 was stored without a signature by .*site\.pub.*pull it again/,
    );
    // A pull that finds the same digest stored must not take the unverified record as done.
    refused(await site.shoal("user", ["pull", "-q", ref("sig/unsigned")]), /no cosign signature/);
  });

  await t.step("a signed image is pulled, recorded and run", async () => {
    const r = await site.shoal("user", ["pull", "-q", ref("sig/signed")]);
    assertEquals(r.code, 0, r.stderr);
    const record = (await images("user")).find((i) => i.reference === ref("sig/signed"));
    assertEquals(record?.signature, { digest, key: fingerprint(signer) });
    const run = await site.shoal("user", ["run", ref("sig/signed"), "echo", "ran"]);
    assertEquals([run.code, run.stdout], [0, "ran\n"], run.stderr);
  });

  await t.step("a multi-platform image signed at its index", async () => {
    const r = await site.shoal("user", ["pull", "-q", ref("sig/multi")]);
    assertEquals(r.code, 0, r.stderr);
    const record = (await images("user")).find((i) => i.reference === ref("sig/multi"));
    assertEquals(record?.signature, { digest: index.manifest.digest, key: fingerprint(signer) });
  });

  await t.step(
    "unsigned, a stranger's key, a copied or misfiled signature: refused, nothing stored",
    async () => {
      const before = (await images("user")).map((i) => i.reference).sort();
      refused(
        await site.shoal("user", ["pull", ref("sig/stranger")]),
        /a key the site does not list/,
      );
      refused(
        await site.shoal("user", ["pull", ref("sig/copied")]),
        new RegExp(`a signature made for ${host.replace(/\./g, "\\.")}/sig/signed`),
      );
      refused(
        await site.shoal("user", ["pull", ref("sig/otherdigest")]),
        /a signature of another digest/,
      );
      assertEquals((await images("user")).map((i) => i.reference).sort(), before);
      // Refused before any layer was fetched: the other image's layer is nowhere in the repository.
      const layer = other.layers[0]!.digest.split(":")[1]!;
      const found = await new Deno.Command("find", {
        args: [`${site.dir}/repo`, "-name", `*${layer}*`],
      }).output();
      assertEquals(new TextDecoder().decode(found.stdout), "");
    },
  );

  await t.step("a narrower 'none' rule lets an unsigned image through", async () => {
    const r = await site.shoal("user", ["pull", "-q", ref("open/app")]);
    assertEquals(r.code, 0, r.stderr);
    const run = await site.shoal("user", ["run", ref("open/app"), "true"]);
    assertEquals(run.code, 0, run.stderr);
  });

  await t.step("root pulls into the centralized repository; users run it", async () => {
    const r = await site.shoal("root", [
      "pull",
      "-q",
      "--centralized-repository",
      ref("sig/signed"),
    ]);
    assertEquals(r.code, 0, r.stderr);
    const record = (await images("user", true)).find((i) => i.reference === ref("sig/signed"));
    assertEquals(record?.signature, { digest, key: fingerprint(signer) });
    const run = await site.shoal("user", [
      "run",
      "--centralized-repository",
      ref("sig/signed"),
      "true",
    ]);
    assertEquals(run.code, 0, run.stderr);
    refused(
      await site.shoal("root", ["pull", "--centralized-repository", ref("sig/unsigned")]),
      /no cosign signature/,
    );
  });

  await t.step("a key file others may write is not trusted", async () => {
    await Deno.chmod(`${keys}/site.pub`, 0o666);
    try {
      refused(await site.shoal("user", ["run", ref("sig/signed"), "true"]), /site\.pub.*writable/);
    } finally {
      await Deno.chmod(`${keys}/site.pub`, 0o644);
    }
  });

  await t.step("after the key changes, what it verified no longer runs", async () => {
    await Deno.writeTextFile(`${keys}/site.pub`, stranger.pem, { mode: 0o644 });
    try {
      refused(
        await site.shoal("user", ["run", ref("sig/signed"), "true"]),
        /stored without a signature/,
      );
    } finally {
      await Deno.writeTextFile(`${keys}/site.pub`, signer.pem, { mode: 0o644 });
    }
  });
});
