/**
 * Credentials as Docker and Podman users have them: auth files in their usual
 * places, credential helpers, and shoal's own store written by login/logout.
 */
import { join } from "node:path";
import { removeCredential, storeCredential } from "../mod/image/registry/auth_file.ts";
import { createCredentialProvider, shoalAuthFile } from "../mod/image/registry/credentials.ts";
import { ShoalError } from "../mod/errors.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";

async function withHome<T>(
  fn: (home: string, env: Record<string, string>) => Promise<T>,
): Promise<T> {
  const home = await Deno.makeTempDir({ prefix: "shoal-credentials-" });
  const env = { HOME: home, PATH: `${home}/bin:/usr/bin:/bin` };
  try {
    return await fn(home, env);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

async function writeJson(path: string, data: unknown): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(data));
}

const b64 = (s: string) => btoa(s);

Deno.test("Docker's config.json: base64 auth, Docker Hub key variants, identity tokens", async () => {
  await withHome(async (home, env) => {
    await writeJson(join(home, ".docker/config.json"), {
      auths: {
        "https://index.docker.io/v1/": { auth: b64("hubuser:hub:pass") },
        "registry.example.com:5000": { username: "u", password: "p" },
        "https://ghcr.io": { identitytoken: "refresh-token" },
      },
    });
    const creds = createCredentialProvider({ env });
    assertEquals(await creds.get("registry-1.docker.io", "library/debian"), {
      kind: "basic",
      username: "hubuser",
      password: "hub:pass",
    });
    assertEquals(await creds.get("docker.io"), {
      kind: "basic",
      username: "hubuser",
      password: "hub:pass",
    });
    assertEquals(await creds.get("registry.example.com:5000"), {
      kind: "basic",
      username: "u",
      password: "p",
    });
    assertEquals(await creds.get("ghcr.io"), { kind: "identityToken", token: "refresh-token" });
    assertEquals(await creds.get("quay.io"), undefined);
  });
});

Deno.test("lookup order: shoal's store, then Podman's auth.json (per-namespace keys), then Docker's", async () => {
  await withHome(async (home, env) => {
    const runtime = join(home, "run");
    const fullEnv = { ...env, XDG_RUNTIME_DIR: runtime, DOCKER_CONFIG: join(home, "dockercfg") };
    await writeJson(join(fullEnv.DOCKER_CONFIG, "config.json"), {
      auths: { "quay.io": { auth: b64("docker:d") }, "example.org": { auth: b64("docker:d") } },
    });
    await writeJson(join(runtime, "containers/auth.json"), {
      auths: { "quay.io": { auth: b64("podman:p") }, "quay.io/team": { auth: b64("team:t") } },
    });
    const creds = createCredentialProvider({ env: fullEnv });
    assertEquals(await creds.get("quay.io", "other/app"), {
      kind: "basic",
      username: "podman",
      password: "p",
    });
    assertEquals(await creds.get("quay.io", "team/app"), {
      kind: "basic",
      username: "team",
      password: "t",
    });
    assertEquals(await creds.get("example.org"), {
      kind: "basic",
      username: "docker",
      password: "d",
    });

    await storeCredential(shoalAuthFile(fullEnv), "quay.io", "shoal", "s");
    const fresh = createCredentialProvider({ env: fullEnv });
    assertEquals(await fresh.get("quay.io", "other/app"), {
      kind: "basic",
      username: "shoal",
      password: "s",
    });

    // REGISTRY_AUTH_FILE replaces the runtime auth.json, as with Podman.
    const alt = join(home, "alt.json");
    await writeJson(alt, { auths: { "example.org": { auth: b64("alt:a") } } });
    const withAlt = createCredentialProvider({ env: { ...fullEnv, REGISTRY_AUTH_FILE: alt } });
    assertEquals(await withAlt.get("example.org"), {
      kind: "basic",
      username: "alt",
      password: "a",
    });
  });
});

/** A fake docker-credential-NAME: records its stdin, answers for one server URL. */
async function fakeHelper(home: string, name: string, server: string, username: string) {
  const bin = join(home, "bin");
  await Deno.mkdir(bin, { recursive: true });
  const log = join(home, `${name}.log`);
  const script = `#!/bin/sh
[ "$1" = get ] || exit 3
read -r url || true
echo "$url" >> ${log}
if [ "$url" = "${server}" ]; then
  printf '{"ServerURL":"%s","Username":"${username}","Secret":"helper-secret"}' "$url"
else
  echo "credentials not found in native keychain"; exit 1
fi
`;
  await Deno.writeTextFile(join(bin, `docker-credential-${name}`), script, { mode: 0o755 });
  return log;
}

Deno.test("credHelpers and credsStore run docker-credential-* with the server URL on stdin", async () => {
  await withHome(async (home, env) => {
    const hubLog = await fakeHelper(home, "hub", "https://index.docker.io/v1/", "<token>");
    const storeLog = await fakeHelper(home, "store", "registry.example.com", "alice");
    await writeJson(join(home, ".docker/config.json"), {
      credsStore: "store",
      credHelpers: { "docker.io": "hub" },
      auths: { "registry.example.com": {} },
    });
    const warnings: string[] = [];
    const logger = {
      verbosity: "normal" as const,
      info() {},
      verbose() {},
      debug() {},
      warn: (m: string) => warnings.push(m),
    };
    const creds = createCredentialProvider({ env, logger });
    assertEquals(await creds.get("registry-1.docker.io"), {
      kind: "identityToken",
      token: "helper-secret",
    });
    assertEquals(await creds.get("registry.example.com"), {
      kind: "basic",
      username: "alice",
      password: "helper-secret",
    });
    assertEquals(await creds.get("unknown.example.net"), undefined);
    assertEquals((await Deno.readTextFile(hubLog)).trim(), "https://index.docker.io/v1/");
    assertEquals((await Deno.readTextFile(storeLog)).trim().split("\n"), [
      "registry.example.com",
      "unknown.example.net",
    ]);
    assertEquals(warnings, [], "'credentials not found' is not worth a warning");

    // A helper that is not installed: a warning, and the pull goes on anonymously.
    await writeJson(join(home, ".docker/config.json"), { credsStore: "missing" });
    const again = createCredentialProvider({ env, logger });
    assertEquals(await again.get("quay.io"), undefined);
    assertEquals(warnings.length, 1);
    assert(warnings[0]!.includes("docker-credential-missing"), warnings[0]);
  });
});

Deno.test("shoal login's store: 0600 file in a 0700 directory, other entries kept, logout removes every spelling", async () => {
  await withHome(async (home, env) => {
    const file = shoalAuthFile({ ...env, XDG_CONFIG_HOME: join(home, "cfg") });
    assertEquals(file, join(home, "cfg/shoal/auth.json"));
    await writeJson(file, {
      auths: {
        "https://index.docker.io/v1/": { auth: b64("old:o") },
        "keep.example": { auth: b64("k:k") },
      },
      credHelpers: { "x.example": "x" },
    });
    await Deno.chmod(join(home, "cfg/shoal"), 0o700);
    await storeCredential(file, "docker.io", "new", "n");
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const data = JSON.parse(await Deno.readTextFile(file));
    assertEquals(data.auths, {
      "keep.example": { auth: b64("k:k") },
      "docker.io": { auth: b64("new:n") },
    });
    assertEquals(data.credHelpers, { "x.example": "x" });

    assertEquals(await removeCredential(file, "index.docker.io"), true);
    assertEquals(await removeCredential(file, "docker.io"), false);
    assertEquals(JSON.parse(await Deno.readTextFile(file)).auths, {
      "keep.example": { auth: b64("k:k") },
    });
    assertEquals([...Deno.readDirSync(join(home, "cfg/shoal"))].map((e) => e.name), ["auth.json"]);

    const fresh = join(home, "new/shoal/auth.json");
    await storeCredential(fresh, "r.example:5000", "u", "p");
    assertEquals((await Deno.stat(join(home, "new/shoal"))).mode! & 0o777, 0o700);

    await Deno.writeTextFile(file, "not json");
    await assertRejects(
      () => storeCredential(file, "a.example", "u", "p"),
      ShoalError,
      "is not a JSON object",
    );
    assertEquals(
      await Deno.readTextFile(file),
      "not json",
      "a broken file is left for the user to see",
    );
  });
});
