import { exists } from "./support/fs.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { startRegistry } from "./support/registry.ts";
import { installedShoal } from "./support/install.ts";
import { runAs, testUser } from "./support/users.ts";
import { shoal } from "./support/shoal.ts";

function oneLineError(stderr: string, pattern: RegExp) {
  const lines = stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

Deno.test("login as a user: checked against the registry, stored 0600, trusted through the site's CA", async () => {
  await using reg = await startRegistry("basic");
  const { prefix, bin } = await installedShoal();
  await Deno.writeTextFile(
    `${prefix}/etc/shoal.json`,
    JSON.stringify({ registries: { ca: { [reg.host]: reg.caFile } } }),
  );
  const user = await testUser();
  const authFile = `${user.home}/.config/shoal/auth.json`;
  await Deno.remove(`${user.home}/.config/shoal`, { recursive: true }).catch(() => {});

  const bad = await runAs(user, bin, ["login", "-u", reg.username!, "--password-stdin", reg.host], {
    stdin: "not-the-password\n",
  });
  assertEquals(bad.code, 1);
  oneLineError(bad.stderr, /rejected the credentials/);
  assert(!(await exists(authFile)), "a failed login must not store anything");

  const ok = await runAs(user, bin, ["login", "-u", reg.username!, "--password-stdin", reg.host], {
    stdin: `${reg.password}\n`,
  });
  assertEquals(ok.code, 0, ok.stderr);
  assertStringIncludes(ok.stdout, `Login to ${reg.host} succeeded`);
  const st = await Deno.stat(authFile);
  assertEquals(st.mode! & 0o777, 0o600);
  assertEquals(st.uid, user.uid);
  assertEquals((await Deno.stat(`${user.home}/.config/shoal`)).mode! & 0o777, 0o700);
  const stored = JSON.parse(await Deno.readTextFile(authFile));
  assertEquals(atob(stored.auths[reg.host].auth), `${reg.username}:${reg.password}`);

  const out = await runAs(user, bin, ["logout", reg.host]);
  assertEquals(out.code, 0, out.stderr);
  const after = JSON.parse(await Deno.readTextFile(authFile));
  assertEquals(after.auths[reg.host], undefined);
  // As docker logout: nothing to remove is no misuse (exit 0, not the usage error's 2).
  const again = await runAs(user, bin, ["logout", reg.host]);
  assertEquals(again.code, 0, again.stderr);
  assertEquals(again.stderr, "");
  assertMatch(again.stdout, /^Not logged in to 127\.0\.0\.1:\d+ \(nothing in \S+auth\.json\)\n$/);
  await Deno.remove(`${prefix}/etc/shoal.json`);
});

Deno.test("login to a token registry; an untrusted certificate is refused with the fix", async () => {
  await using reg = await startRegistry("token");
  const home = await Deno.makeTempDir();
  try {
    const env = { HOME: home };
    const untrusted = await shoal(
      ["login", "-u", reg.username!, "--password-stdin", reg.host],
      { env, stdin: reg.password },
    );
    assertEquals(untrusted.code, 1);
    oneLineError(untrusted.stderr, /certificate.*registries\.ca.*--tls-verify=false/);

    const r = await shoal(
      ["login", "-u", reg.username!, "--password-stdin", "--tls-verify=false", reg.host],
      { env, stdin: reg.password },
    );
    assertEquals(r.code, 0, r.stderr);
    const stored = JSON.parse(await Deno.readTextFile(`${home}/.config/shoal/auth.json`));
    assertEquals(atob(stored.auths[reg.host].auth), `${reg.username}:${reg.password}`);
    assert(reg.tokenServer!.requests > 0, "the login must have fetched a token");

    // Docker's own file keeps its entry; logout says so instead of editing it.
    await Deno.mkdir(`${home}/.docker`);
    await Deno.writeTextFile(
      `${home}/.docker/config.json`,
      JSON.stringify({ auths: { [reg.host]: { auth: btoa("a:b") } } }),
    );
    const out = await shoal(["logout", reg.host], { env });
    assertEquals(out.code, 0);
    assertMatch(out.stderr, /warning: .*\.docker\/config\.json still holds credentials/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("login usage errors: bad registry name, no username without a terminal", async () => {
  const home = await Deno.makeTempDir();
  try {
    const env = { HOME: home };
    const badName = await shoal(["login", "not a host"], { env, stdin: "" });
    assertEquals(badName.code, 2);
    oneLineError(badName.stderr, /'not a host' is not a registry: expected HOST\[:PORT\]/);
    const noUser = await shoal(["login", "--password-stdin", "localhost:5000"], {
      env,
      stdin: "x",
    });
    assertEquals(noUser.code, 2);
    oneLineError(noUser.stderr, /give the username with -u USER/);
    const noPass = await shoal(["login", "-u", "me", "localhost:5000"], { env, stdin: "" });
    assertEquals(noPass.code, 2);
    oneLineError(noPass.stderr, /--password-stdin/);
    const badTls = await shoal(["login", "--tls-verify=maybe", "localhost:5000"], { env });
    assertEquals(badTls.code, 2);
    oneLineError(badTls.stderr, /--tls-verify takes true or false/);
    assert(!(await exists(`${home}/.config/shoal/auth.json`)));
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
