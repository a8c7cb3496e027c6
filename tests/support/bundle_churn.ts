/**
 * One of several processes that run, end and sweep runs in one run base at
 * once, as a wave of `shoal run`s on a node does, with a handful of names so
 * that names are freed and taken again all the time (names.ts reuses them
 * too). Prints one line per run that lost its bundle or failed to end, and
 * exits 1 when there was any.
 *
 * deno run -A tests/support/bundle_churn.ts RUN_DIR ROUNDS
 */
import { createBundle, endBundle, openRunBase } from "../../mod/runtime/rundir.ts";
import { liveRuns, processStartTime, writeState } from "../../mod/runtime/state.ts";
import { lstatAt } from "../../mod/sys/dirfd.ts";
import { runState } from "./run.ts";

const [runDir, rounds] = Deno.args;
const base = openRunBase({ uid: Deno.uid()!, runDir }, true)!;
const started = processStartTime(Deno.pid)!;
const NAMES = ["a", "b", "c"];
let failures = 0;
for (let i = 0; i < Number(rounds); i++) {
  // Every start sweeps ended runs (claimName).
  liveRuns(base);
  const name = NAMES[i % NAMES.length]!;
  const bundle = createBundle(base, name);
  if (bundle === false) continue;
  try {
    await writeState(bundle, runState(name, Deno.pid, started));
    lstatAt(bundle.fd, "rootfs");
    lstatAt(bundle.fd, "state.json");
  } catch (err) {
    failures++;
    console.log(`run ${name}: its bundle went while it ran: ${err}`);
  }
  try {
    endBundle(base, bundle);
  } catch (err) {
    failures++;
    console.log(`run ${name}: its end failed: ${err}`);
  }
}
Deno.exit(failures === 0 ? 0 : 1);
