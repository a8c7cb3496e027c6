/**
 * The cluster image store (docs/admin/store.md), on a site install with the
 * helper, as the unprivileged test user, side by side in one run, medians:
 *
 * - publish: `shoal pull` of the Debian bookworm image into a fresh store
 *   (the converter, run by the helper as the store's account) against the
 *   same pull into the user's own repository (issue 14: within 1.2x);
 * - 8 concurrent publishers of one fresh image (each through the setuid
 *   helper, on the same node) against one: how many conversions, how long;
 * - 64 concurrent first runs (`shoal run IMAGE true`) of a freshly published
 *   image, from the store (helper path) and from the user's own repository
 *   (the unprivileged path, a site's default without a store);
 * - the filesystem calls one run makes on the store and on the user's
 *   repository (strace of the shoal process itself; the helper's walk of the
 *   store is counted from its code: one openat per path component, and three
 *   levels and the file below the store).
 *
 * Run as root: `.tools/bin/deno run -A bench/store.ts [RUNS]`
 */
import { debianImage } from "../tests/support/debian.ts";
import { busyboxImage, pushImage } from "../tests/support/oci.ts";
import { startRegistry } from "../tests/support/registry.ts";
import { rootOwnedTempDir } from "../tests/support/install.ts";
import { runAs, testUser, userArgv } from "../tests/support/users.ts";
import { layerFile, publishImage } from "../mod/image/cluster/publish.ts";
import { silentLogger } from "../mod/log.ts";
import { runSite } from "./lib/run_site.ts";
import { median } from "./lib/stats.ts";

const runs = Number(Deno.args[0] ?? 5);
const OWNER = "shoal-store-t";
await using site = await runSite("shoal-bench-store");
const owner = await testUser(OWNER, false);
const top = await rootOwnedTempDir();
const store = `${top}/store`;
await Deno.mkdir(store, { mode: 0o755 });
await Deno.chown(store, owner.uid, owner.gid);
await using registry = await startRegistry("plain");
const debian = await debianImage();
await pushImage(registry, "debian", "bookworm", debian);
const withStore = { store: { path: store, owner: OWNER } };
const repo = `${site.work}/data/shoal`;

function must(r: { code: number; stderr: string }, what: string): void {
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr.trim()}`);
}

/** Empties the store (as root) and the user's repository, for a first pull. */
async function fresh(): Promise<void> {
  await Deno.remove(store, { recursive: true });
  await Deno.mkdir(store, { mode: 0o755 });
  await Deno.chown(store, owner.uid, owner.gid);
  must(await runAs(site.user, "rm", ["-rf", repo]), "rm");
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const started = performance.now();
  must(await site.run(cmd, args), `${cmd} ${args.join(" ")}`);
  return performance.now() - started;
}

// 1. Publishing the Debian image against pulling it into the user's repository.
const ref = `${registry.host}/debian:bookworm`;
const pulls: Record<"own repository" | "cluster store", number[]> = {
  "own repository": [],
  "cluster store": [],
};
for (let i = 0; i < runs; i++) {
  for (const where of Object.keys(pulls) as (keyof typeof pulls)[]) {
    await fresh();
    const extra = {
      registries: { insecure: [registry.host] },
      ...(where === "cluster store" ? withStore : {}),
    };
    await site.usePath("helper", extra);
    pulls[where].push(await timed(site.bin, ["pull", "-q", ref]));
  }
}

// 2. Eight publishers of one fresh image on this node, through the helper, against one.
const helper = `${site.prefix}/libexec/shoal/shoal-mount`;
const work = await Deno.makeTempDir();
const layerFiles = await Promise.all(debian.layers.map(async (l, i) => {
  const path = `${work}/layer-${i}`;
  await Deno.writeFile(path, l.data);
  return layerFile(path, l.size);
}));
const source = {
  registry: registry.host,
  repository: "debian",
  digest: debian.manifest.digest,
  manifestBytes: debian.manifest.data,
  configBytes: debian.config.data,
  signatures: [],
  layers: () => Promise.resolve(layerFiles),
};
const publishers: Record<string, number[]> = { "1 publisher": [], "8 publishers": [] };
let conversions: number[] = [];
await site.usePath("helper", withStore);
for (let i = 0; i < runs; i++) {
  for (const n of [1, 8]) {
    await fresh();
    const started = performance.now();
    const outcomes = await Promise.all(Array.from(
      { length: n },
      () =>
        publishImage(
          userArgv(site.user, helper, ["publish", debian.manifest.digest]),
          source,
          silentLogger,
        ),
    ));
    publishers[`${n} publisher${n > 1 ? "s" : ""}`]!.push(performance.now() - started);
    if (n === 8) {
      conversions = [
        ...conversions,
        outcomes.filter((o) => o.outcome === "published").length,
      ];
    }
  }
}
await Deno.remove(work, { recursive: true });

// 3. 64 concurrent first runs of a freshly published image.
const small = busyboxImage({ extraEntries: [{ type: "file", path: "etc/bench", content: "1\n" }] });
await pushImage(registry, "bench/store", "1", small);
const image = `${registry.host}/bench/store:1`;
const starts: Record<string, number[]> = {
  "from the store (helper path)": [],
  "from your repository (unprivileged path)": [],
};
for (let i = 0; i < runs; i++) {
  for (const where of Object.keys(starts)) {
    await fresh();
    const inStore = where.startsWith("from the store");
    const insecure = { registries: { insecure: [registry.host] } };
    await site.usePath(
      inStore ? "helper" : "unprivileged",
      inStore ? { ...insecure, ...withStore } : insecure,
    );
    must(await site.run(site.bin, ["pull", "-q", image]), "pull");
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 64 }, () => site.run(site.bin, ["run", image, "true"])),
    );
    starts[where]!.push(performance.now() - started);
    for (const r of results) must(r, "run");
  }
}

// 4. Filesystem calls of one run's shoal process, on the store and on the user's repository.
async function fileCalls(under: string): Promise<string[]> {
  const trace = `${top}/trace`;
  const argv = userArgv(site.user, site.bin, ["run", image, "true"], site.env);
  const r = await new Deno.Command("strace", {
    args: ["-qq", "-e", "trace=%file,%desc", "-o", trace, ...argv],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`strace: ${new TextDecoder().decode(r.stderr)}`);
  const lines = (await Deno.readTextFile(trace)).split("\n");
  // Each call as "name(path...)", the path from the directory on.
  return lines.filter((l) => l.includes(`"${under}`)).map((l) =>
    l.replace(
      /^(\w+)\(.*?"([^"]*)".*$/,
      (_, call, path) => `${call} ${path.slice(under.length) || "/"}`,
    )
  );
}
await fresh();
await site.usePath("helper", { registries: { insecure: [registry.host] }, ...withStore });
must(await site.run(site.bin, ["pull", "-q", image]), "pull");
const storeCalls = await fileCalls(store);
const ownCalls = await fileCalls(repo);
const helperWalk = store.split("/").length - 1 + 4;

const ms = (v: number) => `${v.toFixed(0).padStart(6)} ms`;
const table = (title: string, rows: Record<string, number[]>) => {
  const first = median(Object.values(rows)[0]!);
  console.log(title);
  for (const [name, list] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(44)} ${ms(median(list))}  ${(median(list) / first).toFixed(2)}x`);
  }
};
console.log(`cluster store, medians of ${runs} rounds`);
table(`shoal pull ${ref}`, pulls);
table(`publishers of ${ref} at once (conversions with 8: ${conversions.join(", ")})`, publishers);
table("64 concurrent first runs of a freshly pulled image, `shoal run IMAGE true`", starts);
console.log("filesystem calls of one run");
console.log(
  `  shoal, on the store's files                  ${storeCalls.length}: ${storeCalls.join(", ")}`,
);
console.log(
  `  shoal, on your repository's files            ${ownCalls.length}: ${ownCalls.join(", ")}`,
);
console.log(`  the helper's walk to the image (its code)    ${helperWalk} openat + 1 open`);
await Deno.remove(top, { recursive: true });
