/**
 * A run ends when its container ends, and on SIGTERM (issue 11, item 1), on
 * both run paths, as the unprivileged test user: leftovers of the main
 * process are killed and its status returned at once; stop signals get a
 * grace period (runtime.stopTimeoutSeconds), then everything is killed and
 * shoal exits 128+signal; any umask works or fails in one line; path B's
 * squashfuse stays a child of shoal's guard, whose command line is short.
 * Each run must leave no process and no run directory.
 */
import { exists } from "./support/fs.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./support/assert.ts";
import { ShoalError } from "../mod/errors.ts";
import { installLayout } from "../mod/config/layout.ts";
import { startGuard } from "../mod/runtime/guard.ts";
import { processesMentioning, type RunSite, runSite } from "./support/run.ts";
import { runAs } from "./support/users.ts";
import { openRunBase } from "../mod/runtime/rundir.ts";

/** The run's bundle, from `--debug`'s "bundle: DIR" line. */
function bundleOf(stderr: string): string {
  const m = stderr.match(/debug: bundle: (\S+) /);
  assert(m !== null, `no bundle line in: ${stderr}`);
  return m[1]!;
}

/** Asserts that nothing of a run is left: no process mentioning `marker`, no bundle. */
async function assertNothingLeft(marker: string, bundle: string) {
  assertEquals(await processesMentioning(marker), [], "processes of the run left");
  assertEquals(await processesMentioning(bundle), [], "processes of the run left");
  assert(!await exists(bundle), `${bundle} is left`);
}

/** `shoal run` as the test user through `sh -c PREFIX shoal ...`, timed. */
async function timedRun(s: RunSite, prefix: string, args: string[]) {
  const user = (await s.user("user"))!;
  const quoted = args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const started = Date.now();
  const r = await runAs(user, "sh", ["-c", `${prefix} ${s.bin} run --debug ${quoted}`]);
  return { ...r, seconds: (Date.now() - started) / 1000 };
}

/** stderr without --debug's lines. */
function errors(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l !== "" && !l.startsWith("debug: "));
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  let sitePromise: Promise<RunSite> | undefined;
  const site = async (stopTimeoutSeconds: number) => {
    const s = await (sitePromise ??= runSite(helper));
    await s.writeConfig({ runtime: { ...s.baseConfig.runtime as object, stopTimeoutSeconds } });
    return s;
  };

  Deno.test(`${tag}: the main process's exit ends the run at once, whatever still holds its output`, async () => {
    const s = await site(10);
    const image = await s.image("user");
    const marker = `bg-${crypto.randomUUID().slice(0, 8)}`;
    const r = await timedRun(s, "", [
      image,
      "sh",
      "-c",
      `sh -c 'sleep 1000; : ${marker}' & echo main-done; exit 3`,
    ]);
    const bundle = bundleOf(r.stderr);
    assertEquals([r.code, r.stdout, errors(r.stderr)], [3, "main-done\n", []], r.stderr);
    // The bound is about a second; the machine the tests run on is loaded.
    assert(r.seconds < 4, `the run took ${r.seconds} s`);
    await assertNothingLeft(marker, bundle);
  });

  Deno.test(`${tag}: SIGTERM to a container that ignores it: killed after the grace period, 143`, async () => {
    const s = await site(1);
    const image = await s.image("user");
    const marker = `deaf-${crypto.randomUUID().slice(0, 8)}`;
    // `timeout` is how a batch system's time limit reaches a job; --preserve-status: shoal's.
    const r = await timedRun(s, "timeout --preserve-status -s TERM 2", [
      image,
      "sh",
      "-c",
      `trap '' TERM; sh -c 'sleep 1000; : ${marker}' & sleep 1000`,
    ]);
    const bundle = bundleOf(r.stderr);
    assertEquals([r.code, errors(r.stderr)], [143, []], r.stderr);
    // 2 s until the signal, then 1 s of grace.
    assert(r.seconds >= 2.9 && r.seconds < 7, `the run took ${r.seconds} s: ${r.stderr}`);
    await assertNothingLeft(marker, bundle);
  });

  Deno.test(`${tag}: a container that stops on SIGTERM within the grace period gives its own status`, async () => {
    const s = await site(30);
    const image = await s.image("user");
    const marker = `polite-${crypto.randomUUID().slice(0, 8)}`;
    const r = await timedRun(s, "timeout --preserve-status -s TERM 1", [
      image,
      "sh",
      "-c",
      `trap 'exit 7' TERM; sh -c 'sleep 1000; : ${marker}' & wait`,
    ]);
    const bundle = bundleOf(r.stderr);
    assertEquals([r.code, errors(r.stderr)], [7, []], r.stderr);
    assert(r.seconds < 5, `the run took ${r.seconds} s`);
    await assertNothingLeft(marker, bundle);
  });

  Deno.test(`${tag}: a second SIGINT (Ctrl-C twice) kills the container at once: 130`, async () => {
    const s = await site(60);
    const image = await s.image("user");
    const marker = `twice-${crypto.randomUUID().slice(0, 8)}`;
    const started = Date.now();
    const child = await s.spawn("user", [
      "run",
      "--debug",
      image,
      "sh",
      "-c",
      `trap 'echo got INT' INT; echo ready; sleep 1000 & while :; do wait; done; : ${marker}`,
    ]);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("ready\n")) out += (await reader.read()).value ?? "";
    child.kill("SIGINT");
    while (!out.includes("got INT\n")) out += (await reader.read()).value ?? "";
    // A person's second Ctrl-C, not a signal sent twice at once (supervise.ts).
    await new Promise((r) => setTimeout(r, 500));
    child.kill("SIGINT");
    reader.releaseLock();
    const status = await child.status;
    const stderr = await new Response(child.stderr).text();
    assertEquals(status.code, 130, stderr);
    assert(Date.now() - started < 20_000, "the second SIGINT did not end it at once");
    await assertNothingLeft(marker, bundleOf(stderr));
  });

  Deno.test(`${tag}: under umask 777, 077 and 027 a run works and leaves nothing`, async () => {
    const s = await site(10);
    const image = await s.image("user");
    for (const umask of ["777", "077", "027"]) {
      const r = await timedRun(s, `umask ${umask};`, [image, "sh", "-c", "umask; echo ok"]);
      assertEquals([r.code, r.stdout, errors(r.stderr)], [0, `0${umask}\nok\n`, []], r.stderr);
      assert(!await exists(bundleOf(r.stderr)), `umask ${umask}: the run directory is left`);
    }
  });

  if (helper) continue;

  Deno.test(`${tag}: squashfuse serves in the foreground as a child of the guard, which ps shows briefly`, async () => {
    const s = await site(10);
    const image = await s.image("user");
    const marker = `ps-${crypto.randomUUID().slice(0, 8)}`;
    const child = await s.spawn("user", [
      "run",
      "--debug",
      image,
      "sh",
      "-c",
      `echo ready; sleep 1000; : ${marker}`,
    ]);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    try {
      while (!out.includes("ready\n")) out += (await reader.read()).value ?? "";
      const ps = await new Deno.Command("ps", { args: ["-eo", "pid=,ppid=,args="] }).output();
      const rows = new TextDecoder().decode(ps.stdout).split("\n").map((l) => {
        const m = l.match(/^\s*(\d+)\s+(\d+)\s(.*)$/);
        return m === null ? undefined : { pid: m[1]!, ppid: m[2]!, args: m[3]! };
      }).filter((r) => r !== undefined);
      // This site's processes: the image's path is in their arguments.
      const ours = rows.filter((r) => r.args.includes(s.dir));
      const guards = ours.filter((r) => r.args.startsWith("sh ") && r.args.includes("shoal-guard"));
      assert(guards.length > 0, `no guard in ps: ${JSON.stringify(ours)}`);
      for (const g of guards) {
        assert(
          g.args.length < 600,
          `the guard's command line is ${g.args.length} bytes: ${g.args}`,
        );
      }
      const fuse = ours.filter((r) => /^\S*squashfuse/.test(r.args));
      assertEquals(fuse.length, 1, JSON.stringify(ours));
      assertMatch(fuse[0]!.args, / -f /);
      const parent = rows.find((r) => r.pid === fuse[0]!.ppid);
      assert(parent?.args.includes("shoal-guard"), `squashfuse's parent: ${parent?.args}`);
    } finally {
      child.kill("SIGKILL");
      reader.releaseLock();
      await child.status;
      await child.stderr.cancel();
    }
    // shoal was killed: the guard cleans up after it, in its own time.
    const gone = async () =>
      (await processesMentioning(marker)).length === 0 &&
      (await processesMentioning(s.dir)).length === 0;
    for (let i = 0; i < 100 && !await gone(); i++) await new Promise((r) => setTimeout(r, 100));
    assertEquals(await processesMentioning(s.dir), [], "squashfuse or the guard left");
  });
}

Deno.test("path B: an image squashfuse cannot serve is one line, and the guard leaves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-guard-mount-" });
  const bundle = `${dir}/b`;
  try {
    for (const sub of ["", "/rootfs", "/.mnt"]) {
      await Deno.mkdir(`${bundle}${sub}`, { mode: 0o700 });
    }
    // Root maps its own id (tests run as root); not a squashfs file.
    const root = [{ containerID: 0, hostID: 0, size: 1 }];
    const err = await assertRejects(
      () =>
        startGuard(installLayout().guardScript, {
          uidMappings: root,
          gidMappings: root,
          setgroups: "allow",
        }, { bundle, image: "/etc/hostname", squashfuse: "squashfuse_ll", rootIsUser: true }),
      ShoalError,
    );
    assertMatch(
      err.message,
      /^cannot mount the image \/etc\/hostname \(is it a squashfs file\?\): [^\n]+$/,
    );
    assertEquals(await processesMentioning(bundle), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: SIGTERM while the run is being set up ends it cleanly: 143, nothing left`, async () => {
    const s = await runSite(helper);
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const base = openRunBase({ uid: user.uid }, false)?.path ?? `/tmp/shoal-${user.uid}`;
    for (let i = 0; i < 3; i++) {
      const name = `early-${crypto.randomUUID().slice(0, 8)}`;
      const bundle = `${base}/${name}`;
      const child = await s.spawn("user", ["run", "--name", name, image, "sleep", "60"]);
      // The run's directory is its first file: a scancel then comes before the container.
      const deadline = Date.now() + 15_000;
      while (!await exists(bundle) && Date.now() < deadline) { /* poll */ }
      assert(await exists(bundle), `the run never made ${bundle}`);
      child.kill("SIGTERM");
      const out = await child.output();
      const err = new TextDecoder().decode(out.stderr);
      // shoal ended itself with the run's status, not Deno's default death by the signal.
      assertEquals([out.code, out.signal], [143, null], err);
      assert(!await exists(bundle), `${bundle} is left`);
      assertEquals(await processesMentioning(bundle), [], "processes of the run left");
    }
  });
}
