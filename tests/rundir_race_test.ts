/**
 * Runs that start and end at once in one run directory, as a wave of
 * `shoal run`s on a node (an array job, srun without a shared step) does:
 * every start sweeps the bundles of ended runs, and generated names are freed
 * and taken again. No run may lose its bundle to another's sweep or fail at
 * its end because a sweep removed its bundle with it.
 */
import { assertEquals } from "./support/assert.ts";
import { closeFd, lstatAt, O, openAt } from "../mod/sys/dirfd.ts";
import { createBundle, endBundle, openRunBase, removeBundle } from "../mod/runtime/rundir.ts";
import { processStartTime, writeState } from "../mod/runtime/state.ts";
import { runState } from "./support/run.ts";

Deno.test("a sweep that judged a run ended never removes the new run that took its name meanwhile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-race-" });
  try {
    const base = openRunBase({ uid: Deno.uid()!, runDir: `${dir}/run` }, true)!;
    const ended = createBundle(base, "twin");
    if (ended === false) throw new Error("the name was free");
    await writeState(ended, runState("twin", Deno.pid, processStartTime(Deno.pid)! + 1));
    closeFd(ended.fd);
    // The sweep's look: the bundle named twin, its shoal gone.
    const looked = openAt(base.fd, "twin", O.RDONLY | O.DIRECTORY);
    // Meanwhile the ended run's bundle goes (another sweep), and a new run takes the name.
    removeBundle(base, "twin", openAt(base.fd, "twin", O.RDONLY | O.DIRECTORY));
    const fresh = createBundle(base, "twin");
    if (fresh === false) throw new Error("the name was freed");
    await writeState(fresh, runState("twin", Deno.pid, processStartTime(Deno.pid)!));
    // The sweep goes on with the removal of what it judged.
    removeBundle(base, "twin", looked);
    assertEquals(lstatAt(fresh.fd, "rootfs").uid, Deno.uid(), "the new run's bundle is whole");
    assertEquals(lstatAt(base.fd, "twin").ino, lstatAt(fresh.fd, ".").ino, "and keeps its name");
    endBundle(base, fresh);
    assertEquals([...Deno.readDirSync(`${dir}/run`)], [], "its end leaves nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eight processes starting, sweeping and ending 300 runs each on three names: none loses its bundle", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-race-" });
  try {
    const churn = new URL("./support/bundle_churn.ts", import.meta.url).pathname;
    const workers = Array.from({ length: 8 }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", churn, `${dir}/run`, "300"],
        stdout: "piped",
        stderr: "piped",
      }).output());
    const failed = (await Promise.all(workers)).filter((o) => !o.success).map((o) =>
      new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr)
    );
    assertEquals(failed, []);
    assertEquals([...Deno.readDirSync(`${dir}/run`)], [], "the last ends leave nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
