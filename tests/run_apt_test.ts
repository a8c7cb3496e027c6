/**
 * The seed request's example (issue 4, item 3), on both run paths: as the
 * unprivileged test user, `--root` in the Debian image installs a package
 * with apt-get from the Debian mirror (containers share the host's network).
 * The slow test of the run suite: one download and install per path.
 */
import { assertEquals, assertStringIncludes } from "./support/assert.ts";
import { debianImage } from "./support/debian.ts";
import { pushImage } from "./support/oci.ts";
import { runSite, testImages } from "./support/run.ts";

const INSTALL = "apt-get update -qq && apt-get install -y -qq --no-install-recommends cowsay " +
  ">/dev/null && /usr/games/cowsay 'Hello from rootless shoal'";

let pushed: Promise<string> | undefined;

/** The Debian image in the suite's loopback registry (pushed once). */
function debian(): Promise<string> {
  pushed ??= (async () => {
    const { registry } = await testImages();
    await pushImage(registry, "library/debian", "bookworm", await debianImage());
    return `${registry.host}/library/debian:bookworm`;
  })();
  return pushed;
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: apt-get install cowsay with --root in Debian, as an unprivileged user (slow)`, async () => {
    const site = await runSite(helper);
    const image = await debian();
    const pulled = await site.shoal("user", ["pull", "-q", image]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const r = await site.shoal("user", ["run", "--root", image, "bash", "-c", INSTALL]);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "< Hello from rootless shoal >");
    // The image itself is unchanged: the installed package lived in the run's tmpfs.
    const after = await site.shoal("user", [
      "run",
      image,
      "sh",
      "-c",
      "test -e /usr/games/cowsay || echo clean",
    ]);
    assertEquals(after.stdout, "clean\n", after.stderr);
  });
}
