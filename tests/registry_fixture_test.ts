/**
 * The loopback registry fixture and the test image tooling behave like the
 * real registries the engine will meet: each auth mode challenges as Docker
 * Hub, Harbor or a basic-auth registry would, TLS is trusted only through the
 * test CA, pushed images come back byte for byte, and nothing is left behind.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./support/assert.ts";
import { type RegistryMode, startRegistry, type TestRegistry } from "./support/registry.ts";
import {
  busyboxImage,
  makeIndex,
  MEDIA_TYPES,
  pushImage,
  RegistryHttpError,
  sha256,
} from "./support/oci.ts";

/** The default busybox image, built once: every test pushes the same bytes. */
const busybox = busyboxImage();

async function httpClient(reg: TestRegistry): Promise<Deno.HttpClient> {
  return Deno.createHttpClient(
    reg.caFile ? { caCerts: [await Deno.readTextFile(reg.caFile)] } : {},
  );
}

function basicAuth(user: string, password: string): string {
  return `Basic ${btoa(`${user}:${password}`)}`;
}

/** Asks the token server for a token, as a client answering the registry's challenge would. */
async function fetchToken(
  reg: TestRegistry,
  client: Deno.HttpClient,
  scopes: string[],
  credentials?: { user: string; password: string },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const ts = reg.tokenServer;
  assert(ts);
  const url = new URL(ts.url);
  url.searchParams.set("service", ts.service);
  for (const s of scopes) url.searchParams.append("scope", s);
  const res = await fetch(url, {
    client,
    headers: credentials
      ? { authorization: basicAuth(credentials.user, credentials.password) }
      : {},
  });
  return { status: res.status, body: await res.json() };
}

/** Fetches a manifest and every blob it names, checking each against its digest. */
async function assertImageReadable(
  reg: TestRegistry,
  client: Deno.HttpClient,
  repository: string,
  authorization?: string,
): Promise<void> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  const res = await fetch(`${reg.url}/v2/${repository}/manifests/latest`, {
    client,
    headers: { ...headers, accept: MEDIA_TYPES.oci.manifest },
  });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), MEDIA_TYPES.oci.manifest);
  const body = new Uint8Array(await res.arrayBuffer());
  assertEquals(sha256(body), busybox.manifest.digest);
  assertEquals(res.headers.get("docker-content-digest"), busybox.manifest.digest);
  const manifest = JSON.parse(new TextDecoder().decode(body));
  for (const desc of [manifest.config, ...manifest.layers]) {
    const blob = await fetch(`${reg.url}/v2/${repository}/blobs/${desc.digest}`, {
      client,
      headers,
    });
    assertEquals(blob.status, 200);
    const data = new Uint8Array(await blob.arrayBuffer());
    assertEquals(data.length, desc.size);
    assertEquals(sha256(data), desc.digest);
  }
}

async function processGone(pid: number): Promise<boolean> {
  try {
    await Deno.stat(`/proc/${pid}`);
    return false;
  } catch (err) {
    return err instanceof Deno.errors.NotFound;
  }
}

Deno.test("plain: HTTP registry on 127.0.0.1 answers /v2/ and round-trips a pushed image", async () => {
  await using reg = await startRegistry("plain");
  assertMatch(reg.host, /^127\.0\.0\.1:\d+$/);
  assertEquals(reg.url, `http://${reg.host}`);
  const client = await httpClient(reg);
  try {
    const res = await fetch(`${reg.url}/v2/`, { client });
    await res.body?.cancel();
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("docker-distribution-api-version"), "registry/2.0");
    assertEquals(await pushImage(reg, "test/busybox", "latest", busybox), busybox.manifest.digest);
    await assertImageReadable(reg, client, "test/busybox");
  } finally {
    client.close();
  }
});

Deno.test("tls: HTTPS is trusted with the fixture's CA and refused without it", async () => {
  await using reg = await startRegistry("tls");
  assertEquals(reg.url, `https://${reg.host}`);
  assert(reg.caFile);
  // The unprivileged test user must be able to read the CA.
  assertEquals((await Deno.stat(reg.caFile)).mode! & 0o777, 0o644);
  assertEquals((await Deno.stat(reg.dir)).mode! & 0o777, 0o755);
  await assertRejects(() => fetch(`${reg.url}/v2/`), TypeError);
  const client = await httpClient(reg);
  try {
    const res = await fetch(`${reg.url}/v2/`, { client });
    await res.body?.cancel();
    assertEquals(res.status, 200);
    // The certificate is also valid for the name "localhost".
    const byName = await fetch(`https://localhost:${reg.host.split(":")[1]}/v2/`, { client });
    await byName.body?.cancel();
    assertEquals(byName.status, 200);
    await pushImage(reg, "test/busybox", "latest", busybox);
    await assertImageReadable(reg, client, "test/busybox");
  } finally {
    client.close();
  }
});

Deno.test("basic: 401 with a Basic challenge, the right password is accepted, a wrong one is not", async () => {
  await using reg = await startRegistry("basic", {
    users: { other: { password: "other-secret" } },
  });
  assert(reg.username && reg.password);
  assertEquals(reg.url, `https://${reg.host}`);
  const client = await httpClient(reg);
  try {
    const anon = await fetch(`${reg.url}/v2/`, { client });
    await anon.body?.cancel();
    assertEquals(anon.status, 401);
    assertEquals(anon.headers.get("www-authenticate"), 'Basic realm="shoal-test"');
    for (
      const [user, password, status] of [
        [reg.username, reg.password, 200],
        ["other", "other-secret", 200],
        [reg.username, "wrong", 401],
      ] as const
    ) {
      const res = await fetch(`${reg.url}/v2/`, {
        client,
        headers: { authorization: basicAuth(user, password) },
      });
      await res.body?.cancel();
      assertEquals(res.status, status, `${user}:${password}`);
    }
    await assertRejects(
      () => pushImage({ ...reg, password: "wrong" }, "test/busybox", "latest", busybox),
      RegistryHttpError,
      "HTTP 401",
    );
    await pushImage(reg, "test/busybox", "latest", busybox);
    await assertImageReadable(reg, client, "test/busybox", basicAuth(reg.username, reg.password));
  } finally {
    client.close();
  }
});

Deno.test("basic over plain HTTP works when asked for (distribution 2.8 allows it)", async () => {
  await using reg = await startRegistry("basic", { tls: false });
  assertEquals(reg.url, `http://${reg.host}`);
  assertEquals(reg.caFile, undefined);
  await pushImage(reg, "test/busybox", "latest", busybox);
  const client = await httpClient(reg);
  try {
    await assertImageReadable(reg, client, "test/busybox", basicAuth(reg.username!, reg.password!));
  } finally {
    client.close();
  }
});

Deno.test("token: Bearer challenge, scoped tokens per user, public pulls, no push without rights", async () => {
  await using reg = await startRegistry("token", {
    users: { reader: { password: "reader-secret", access: { "*": ["pull"] } } },
    publicRepositories: ["public/busybox"],
  });
  const ts = reg.tokenServer;
  assert(ts && reg.username && reg.password);
  assertMatch(ts.url, /^https:\/\/127\.0\.0\.1:\d+\/token$/);
  const owner = { user: reg.username, password: reg.password };
  const client = await httpClient(reg);
  try {
    const anon = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, { client });
    await anon.body?.cancel();
    assertEquals(anon.status, 401);
    assertEquals(
      anon.headers.get("www-authenticate"),
      `Bearer realm="${ts.url}",service="${ts.service}",scope="repository:test/busybox:pull"`,
    );

    // Several scopes in one request, each granted as far as the user may.
    const both = await fetchToken(reg, client, [
      "repository:test/busybox:pull,push",
      "repository:public/busybox:pull",
    ], { user: "reader", password: "reader-secret" });
    assertEquals(both.status, 200);
    assertEquals(ts.log.at(-1)?.granted, [
      { type: "repository", name: "test/busybox", actions: ["pull"] },
      { type: "repository", name: "public/busybox", actions: ["pull"] },
    ]);
    assertEquals(both.body.expires_in, 300);
    assertEquals(both.body.token, both.body.access_token);
    assert(Math.abs(Date.parse(String(both.body.issued_at)) - Date.now()) < 5_000);

    assertEquals(
      (await fetchToken(reg, client, [], { user: "reader", password: "x" })).status,
      401,
    );

    const before = ts.requests;
    await pushImage(reg, "test/busybox", "latest", busybox);
    await pushImage(reg, "public/busybox", "latest", busybox, { mountFrom: "test/busybox" });
    // One token per push: the pusher caches it across its requests.
    assertEquals(ts.requests, before + 2);

    const err = await assertRejects(
      () =>
        pushImage(
          { ...reg, username: "reader", password: "reader-secret" },
          "test/other",
          "latest",
          busybox,
        ),
      RegistryHttpError,
    );
    assertEquals(err.status, 401);

    const ownerToken = await fetchToken(reg, client, ["repository:test/busybox:pull"], owner);
    await assertImageReadable(reg, client, "test/busybox", `Bearer ${ownerToken.body.token}`);
    const publicToken = await fetchToken(reg, client, ["repository:public/busybox:pull"]);
    assertEquals(ts.log.at(-1)?.user, null);
    await assertImageReadable(reg, client, "public/busybox", `Bearer ${publicToken.body.token}`);
    // Anonymous clients get a token, but one that grants nothing on private repositories.
    const privateToken = await fetchToken(reg, client, ["repository:test/busybox:pull"]);
    assertEquals(ts.log.at(-1)?.granted, []);
    const denied = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, {
      client,
      headers: { authorization: `Bearer ${privateToken.body.token}` },
    });
    await denied.body?.cancel();
    assertEquals(denied.status, 401);
    assertMatch(denied.headers.get("www-authenticate") ?? "", /error="insufficient_scope"/);
  } finally {
    client.close();
  }
});

Deno.test("token: the registry refuses a token once its expires_in has passed", async () => {
  await using reg = await startRegistry("token", { tls: false, tokenExpiresIn: 2 });
  const ts = reg.tokenServer;
  assert(ts && reg.username && reg.password);
  assertMatch(ts.url, /^http:\/\//);
  const client = await httpClient(reg);
  try {
    const { body } = await fetchToken(reg, client, ["repository:test/busybox:pull"], {
      user: reg.username,
      password: reg.password,
    });
    assertEquals(body.expires_in, 2);
    const use = async () => {
      const res = await fetch(`${reg.url}/v2/test/busybox/tags/list`, {
        client,
        headers: { authorization: `Bearer ${body.token}` },
      });
      await res.body?.cancel();
      return res.status;
    };
    // Fresh: authorized (404: nothing pushed yet, but not 401).
    assertEquals(await use(), 404);
    await new Promise((r) => setTimeout(r, 2_500));
    assertEquals(await use(), 401);
    // A renewed token works again; tests can also change the lifetime on the fly.
    ts.expiresIn = 60;
    const renewed = await fetchToken(reg, client, ["repository:test/busybox:pull"], {
      user: reg.username,
      password: reg.password,
    });
    assertEquals(renewed.body.expires_in, 60);
  } finally {
    client.close();
  }
});

Deno.test("a multi-platform index and its members can be fetched back by digest", async () => {
  await using reg = await startRegistry("plain");
  const arm = busyboxImage({
    spec: { platform: { os: "linux", architecture: "arm64", variant: "v8" } },
  });
  const amd = busyboxImage({ spec: { platform: { os: "linux", architecture: "amd64" } } });
  for (const format of ["oci", "docker"] as const) {
    const index = makeIndex([amd, arm], format);
    await pushImage(reg, `test/multi-${format}`, "latest", index);
    const client = await httpClient(reg);
    try {
      const res = await fetch(`${reg.url}/v2/test/multi-${format}/manifests/latest`, {
        client,
        headers: { accept: MEDIA_TYPES[format].index },
      });
      assertEquals(res.headers.get("content-type"), MEDIA_TYPES[format].index);
      const list = JSON.parse(await res.text());
      assertEquals(
        list.manifests.map((m: { platform: unknown }) => m.platform),
        [{ architecture: "amd64", os: "linux" }, {
          architecture: "arm64",
          os: "linux",
          variant: "v8",
        }],
      );
      for (const m of list.manifests) {
        const member = await fetch(`${reg.url}/v2/test/multi-${format}/manifests/${m.digest}`, {
          client,
          headers: { accept: MEDIA_TYPES.oci.manifest },
        });
        assertEquals(sha256(new Uint8Array(await member.arrayBuffer())), m.digest);
      }
    } finally {
      client.close();
    }
  }
});

for (const mode of ["plain", "token"] satisfies RegistryMode[]) {
  Deno.test(`${mode}: stop() leaves no process, no token server and no temp dir`, async () => {
    const reg = await startRegistry(mode);
    const tokenUrl = reg.tokenServer?.url;
    assert(!(await processGone(reg.pid)));
    await reg.stop();
    await reg.stop(); // idempotent: `await using` after an explicit stop is fine
    assert(await processGone(reg.pid), `registry pid ${reg.pid} still exists`);
    await assertRejects(() => Deno.stat(reg.dir), Deno.errors.NotFound);
    if (tokenUrl) {
      const port = Number(new URL(tokenUrl).port);
      await assertRejects(
        () => Deno.connect({ hostname: "127.0.0.1", port }),
        Deno.errors.ConnectionRefused,
      );
    }
  });
}
