/**
 * scripts/bootstrap, as a user install runs it: the tools that download
 * (npm for Deno, Deno for the npm packages) trust the system's CA store,
 * where sites put the CA of their TLS-intercepting proxy.
 */
import { assertEquals, assertStringIncludes } from "./support/assert.ts";
import { repoRoot } from "./support/shoal.ts";
import { runAs, testUser } from "./support/users.ts";

/** A stand-in that records its environment (`env` output) in `record` and does `then`. */
function recorder(record: string, then: string): string {
  return `#!/bin/sh\nenv > "${record}.$(basename "$0")-$1"\n${then}\n`;
}

Deno.test("bootstrap fetches Deno with npm and the npm packages with Deno, both trusting the system's CA store", async () => {
  const user = await testUser();
  const dir = `${user.home}/bootstrap-ca`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    await Deno.mkdir(`${dir}/checkout/scripts`, { recursive: true });
    await Deno.mkdir(`${dir}/bin`);
    await Deno.copyFile(`${repoRoot}/scripts/bootstrap`, `${dir}/checkout/scripts/bootstrap`);
    const record = `${dir}/env`;
    // "Deno" as npm packs it: a script answering --version and recording `deno install`.
    const fakeDeno = recorder(record, '[ "$1" = --version ] && echo "deno 2.9.6"; exit 0');
    await Deno.writeTextFile(
      `${dir}/bin/npm`,
      recorder(
        record,
        `mkdir package && cat > package/deno <<'DENO'\n${fakeDeno}DENO\n` +
          "tar -czf deno.tgz package && rm -r package",
      ),
    );
    await Deno.chmod(`${dir}/bin/npm`, 0o755);
    await Deno.chmod(dir, 0o777);
    const chown = new Deno.Command("chown", { args: ["-R", `${user.uid}:${user.gid}`, dir] });
    assertEquals((await chown.output()).code, 0);

    const r = await runAs(user, "sh", [`${dir}/checkout/scripts/bootstrap`], {
      env: { PATH: `${dir}/bin:/usr/bin:/bin` },
    });
    assertEquals(r.code, 0, r.stderr + r.stdout);
    const npmEnv = await Deno.readTextFile(`${record}.npm-pack`);
    assertStringIncludes(npmEnv, "\nNODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n");
    const denoEnv = await Deno.readTextFile(`${record}.deno-install`);
    assertStringIncludes(denoEnv, "\nDENO_TLS_CA_STORE=system,mozilla\n");

    // A user's own choice is kept.
    await Deno.remove(`${record}.deno-install`);
    const own = await runAs(user, "sh", [`${dir}/checkout/scripts/bootstrap`], {
      env: { PATH: `${dir}/bin:/usr/bin:/bin`, DENO_TLS_CA_STORE: "mozilla" },
    });
    assertEquals(own.code, 0, own.stderr);
    assertStringIncludes(
      await Deno.readTextFile(`${record}.deno-install`),
      "\nDENO_TLS_CA_STORE=mozilla\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
