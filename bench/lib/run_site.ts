/**
 * What the run benchmarks share: shoal installed site-wide with its setuid
 * helper (into a root-owned temp prefix), the unprivileged test user, a
 * busybox image pulled into that user's repository, and an OCI bundle of the
 * same image prepared for bare runc (the floor). Needs root to set up.
 */
import { installedShoal } from "../../tests/support/install.ts";
import { busyboxImage, pushImage } from "../../tests/support/oci.ts";
import { startRegistry, type TestRegistry } from "../../tests/support/registry.ts";
import { makeBundle, RUNC } from "../../tests/support/helper.ts";
import { runAs, type TestUser, testUser } from "../../tests/support/users.ts";
import type { Result } from "../../tests/support/shoal.ts";

export interface RunSite extends AsyncDisposable {
  user: TestUser;
  /** The user's directory for this site: data, runc state, the bundle. */
  work: string;
  bin: string;
  prefix: string;
  image: string;
  /** The loopback registry the image came from (benchmarks push more there). */
  registry: TestRegistry;
  /** A bundle of the image for bare `runc run` (--root mapping, host PID namespace). */
  bundle: string;
  /** Selects the run path through the site config: "helper" or "unprivileged"; `extra` keys too. */
  usePath(path: "helper" | "unprivileged", extra?: Record<string, unknown>): Promise<void>;
  /** Runs as the test user in its home, with a private data dir. */
  run(cmd: string, args: string[]): Promise<Result>;
  env: Record<string, string>;
}

function must(r: Result, what: string): Result {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.trim()}`);
  return r;
}

/** `name`: the work directory under the test user's home (sites with different names coexist). */
export async function runSite(name = "shoal-bench"): Promise<RunSite> {
  if (Deno.uid() !== 0) {
    throw new Error("the run benchmarks set up a site install: run them as root");
  }
  const user = await testUser();
  const { prefix, bin } = await installedShoal();
  const registry: TestRegistry = await startRegistry("plain");
  await pushImage(registry, "bench/busybox", "latest", busyboxImage());
  const image = `${registry.host}/bench/busybox:latest`;
  const work = `${user.home}/${name}`;
  await Deno.remove(work, { recursive: true }).catch(() => {});
  must(await runAs(user, "mkdir", ["-p", work]), "mkdir");
  const env = { XDG_DATA_HOME: `${work}/data` };
  const run = (cmd: string, args: string[]) => runAs(user, cmd, args, { env });
  const config = async (extra: Record<string, unknown>) => {
    await Deno.writeTextFile(`${prefix}/etc/shoal.json`, JSON.stringify(extra));
  };
  const usePath = (path: "helper" | "unprivileged", extra: Record<string, unknown> = {}) =>
    config({
      ...(path === "helper"
        ? {
          registries: { insecure: [registry.host] },
          // The helper takes images only from repositories the site names.
          repositories: { local: `$HOME/${name}/data/shoal` },
          helper: { kernelMountUserImages: true },
        }
        // A helper path that does not exist leaves the unprivileged path.
        : { registries: { insecure: [registry.host] }, runtime: { helper: `${prefix}/none` } }),
      ...extra,
    });
  // Deno's cache of shoal's compiled code starts empty, as for a user of one installation: the
  // launcher keeps it in the run directory (install.sh), and every installation the tests and
  // benchmarks made before left its entries there, in a log of databases that each start reads.
  must(await run("rm", ["-rf", `/tmp/shoal-${user.uid}/.deno`]), "rm");
  await usePath("helper");
  must(await run(bin, ["pull", "-q", image]), "shoal pull");

  const bundle = `${work}/bundle`;
  await makeBundle(user, bundle, { args: ["true"], root: true, hostPid: true });
  const listed = JSON.parse(must(await run(bin, ["images", "--format", "json"]), "images").stdout);
  must(
    await run("unsquashfs", ["-q", "-d", `${bundle}/rootfs`, listed[0].squashfsPath]),
    "unsquashfs",
  );

  return {
    user,
    work,
    bin,
    prefix,
    image,
    registry,
    bundle,
    usePath,
    run,
    env,
    async [Symbol.asyncDispose]() {
      await registry.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    },
  };
}

/** `runc run` of the prepared bundle, as the user: the floor every start is measured against. */
export function runcArgs(site: RunSite, id: string): string[] {
  return ["--root", `${site.work}/runc`, "run", "--bundle", site.bundle, id];
}

export { RUNC };
