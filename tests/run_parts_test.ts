/**
 * The parts of `shoal run` that decide without running a container: runc's
 * failures turned into one line, the error when no path can run, which images
 * the helper may mount, sizes, signals, run state and stale run dirs, the
 * descriptors handed on, and stderr passing through the supervisor.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./support/assert.ts";
import { ShoalError, UsageError } from "../mod/errors.ts";
import { runcFailure } from "../mod/runtime/runc_error.ts";
import { helperMayMount, localRepositoryWalkable, noPathError } from "../mod/runtime/choose.ts";
import { usernsLimitsCheck } from "../mod/host/kernel.ts";
import { fuseCheck } from "../mod/host/tools.ts";
import { parseSize } from "../mod/cli/run.ts";
import { parseSignal } from "../mod/runtime/runs.ts";
import { liveRuns, processRuns, processStartTime, writeState } from "../mod/runtime/state.ts";
import { eventually, runState } from "./support/run.ts";
import { type Bundle, createBundle, NAME_PATTERN, openRunBase } from "../mod/runtime/rundir.ts";
import { generateName } from "../mod/runtime/names.ts";
import { closeFd } from "../mod/sys/dirfd.ts";
import { launcherPassthrough } from "../mod/runtime/pmi.ts";
import { supervise } from "../mod/runtime/supervise.ts";
import { chainArgv, mapArgument, rootIsUser } from "../mod/runtime/launch_fuse.ts";
import { helperArgv } from "../mod/runtime/launch_helper.ts";

const log = (level: string, msg: string) => JSON.stringify({ level, msg, time: "t" });

Deno.test("runc's failures: missing command 127, not executable 126, else 125; the container's own exit is not one", () => {
  const warn = log("warning", "cannot toggle freezer: cgroups not configured for container");
  const missing = runcFailure([
    warn,
    log(
      "error",
      'runc run failed: unable to start container process: exec: "foo": executable file not found in $PATH',
    ),
  ].join("\n"));
  assertEquals(missing?.status, 127);
  assertEquals(
    missing?.error.message,
    "'foo' not found in the image (executable file not found in $PATH)",
  );
  const denied = runcFailure(
    log(
      "error",
      'runc run failed: unable to start container process: exec: "/x y": permission denied',
    ),
  );
  assertEquals([denied?.status, denied?.error.message], [
    126,
    "'/x y' cannot be executed in the image (permission denied)",
  ]);
  const other = runcFailure(
    log("error", "runc run failed: rootfs_linux.go: mount: no such device"),
  );
  assertEquals(other?.status, 125);
  assertMatch(other!.error.message, /^the container did not start: rootfs_linux\.go: mount/);
  assertEquals(runcFailure(warn), undefined);
  assertEquals(runcFailure(""), undefined);
});

Deno.test("no path: one error naming the missing piece and the admin's two fixes", () => {
  const userns = usernsLimitsCheck({
    maxUserNamespaces: 15000,
    unprivilegedUsernsClone: 0,
    apparmorRestrict: undefined,
  });
  const err = noPathError(
    [{ ...userns, id: "userns", title: "unprivileged user namespaces" }],
    "the helper path is blocked by: shoal-mount helper; ...",
  );
  assert(err instanceof ShoalError);
  assertMatch(
    err.message,
    /^unprivileged user namespaces are disabled \(.*unprivileged_userns_clone=0\)$/,
  );
  assertMatch(
    err.hint ?? "",
    /^ask your admin to install shoal-mount or to run: sysctl -w kernel\.unprivileged_userns_clone=1/,
  );
});

Deno.test("no path: an unusable /dev/fuse names the device and its fix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const check = await fuseCheck(`${dir}/fuse`);
    const err = noPathError([check], "...");
    assertMatch(err.message, /^FUSE device: .*\/fuse does not exist/);
    assertMatch(err.hint ?? "", /^ask your admin to install shoal-mount or to run: modprobe fuse/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shoal predicts the helper: stored image names only, root's in the centralized repository, the user's where allowed", () => {
  const repos = { centralized: "/c", local: "/h" };
  const name = `sha256-${"ab".repeat(32)}.sqsh`;
  const root = { path: `/c/images/${name}`, uid: 0, mode: 0o100644 };
  const mine = { path: `/h/images/${name}`, uid: 1001, mode: 0o100644 };
  assert(helperMayMount(root, 1001, false, repos));
  assert(
    helperMayMount(
      { ...root, path: `/c/images/sha512-${"0f".repeat(64)}.sqsh` },
      1001,
      false,
      repos,
    ),
  );
  assert(!helperMayMount(mine, 1001, false, repos));
  assert(helperMayMount(mine, 1001, true, repos));
  assert(!helperMayMount({ ...mine, uid: 1002 }, 1001, true, repos), "another user's image");
  assert(!helperMayMount({ ...mine, uid: 0 }, 1001, true, repos), "root's outside the centralized");
  assert(
    !helperMayMount({ ...root, uid: 1001 }, 1001, true, repos),
    "the user's in the centralized",
  );
  assert(!helperMayMount({ ...root, mode: 0o100666 }, 1001, true, repos), "writable by others");
  for (
    const path of [
      `/xdg/images/${name}`,
      `/hx/images/${name}`,
      `/c/blobs/sha256/${"ab".repeat(32)}`,
      `/c/tmp/pull/${name}`,
      `/c/images/../images/${name}`,
      `/c//images/${name}`,
      `/c/images/${name.toUpperCase()}`,
      `/c/images/sha256-${"ab".repeat(31)}.sqsh`,
      `/c/images/${name}.json`,
      "/c/images/i.sqsh",
    ]
  ) assert(!helperMayMount({ ...root, path }, 1001, true, repos), path);
  assert(!helperMayMount(mine, 1001, true, { centralized: "/c" }), "local repository not walkable");
});

Deno.test("the local repository counts for the helper only on a path no one else can change", async () => {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/repo/images`, { recursive: true });
    await Deno.chmod(`${dir}/repo`, 0o755);
    assert(localRepositoryWalkable(`${dir}/repo`, 1001));
    assert(!localRepositoryWalkable(`${dir}/repo/`, 1001), "not as the helper names it");
    await Deno.symlink(`${dir}/repo`, `${dir}/link`);
    assert(!localRepositoryWalkable(`${dir}/link`, 1001), "a symlink");
    await Deno.symlink("/", `${dir}/root`);
    assert(!localRepositoryWalkable(`${dir}/root`, 1001), "a symlink to /");
    await Deno.chmod(`${dir}/repo`, 0o775);
    assert(!localRepositoryWalkable(`${dir}/repo`, 1001), "group-writable");
    await Deno.chmod(`${dir}/repo`, 0o755);
    await Deno.chown(`${dir}/repo`, 1002, 1002);
    assert(!localRepositoryWalkable(`${dir}/repo`, 1001), "another user's");
    assert(localRepositoryWalkable(`${dir}/repo`, 1002));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--writable-tmpfs-size and kill's signals parse as users write them", () => {
  assertEquals(parseSize("--s", "512m"), 512 * 1024 ** 2);
  assertEquals(parseSize("--s", "2G"), 2 * 1024 ** 3);
  assertEquals(parseSize("--s", "64KiB"), 64 * 1024);
  assertEquals(parseSize("--s", "1000"), 1000);
  for (const bad of ["", "0", "-1m", "2x", "1.5g"]) {
    assertThrows(() => parseSize("--s", bad), UsageError);
  }
  assertEquals(["TERM", "SIGTERM", "term", "15"].map(parseSignal), Array(4).fill("SIGTERM"));
  assertEquals(parseSignal("kill"), "SIGKILL");
  assertThrows(() => parseSignal("SIGSEGV"), UsageError, "unknown signal 'SIGSEGV'");
});

Deno.test("processRuns: a live process runs; a zombie (ended, not reaped) and a gone one do not", async () => {
  // perl's forked child ends at once and perl never waits for it (a shell may reap it).
  const parent = new Deno.Command("perl", {
    args: ["-e", '$| = 1; my $p = fork // die; exit 0 unless $p; print "$p\n"; sleep 5'],
    stdout: "piped",
  }).spawn();
  try {
    const reader = parent.stdout.getReader();
    const zombie = Number(new TextDecoder().decode((await reader.read()).value).trim());
    reader.releaseLock();
    assert(Number.isInteger(zombie) && zombie > 0, `no pid from perl: ${zombie}`);
    assertEquals(processRuns(parent.pid), true);
    let zombieSeen = false;
    for (let i = 0; i < 100 && !zombieSeen; i++) {
      zombieSeen = !processRuns(zombie) && processStartTime(zombie) !== undefined;
      if (!zombieSeen) await new Promise((r) => setTimeout(r, 10));
    }
    assert(zombieSeen, "the ended, unreaped child counts as running (or was reaped)");
  } finally {
    parent.kill();
    await parent.status;
    await parent.stdout.cancel().catch(() => {});
  }
  assertEquals(processRuns(parent.pid), false, "a process gone");
});

Deno.test("run state: live while the same process lives and holds its bundle; dead runs' dirs are removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-rundir-" });
  const base = openRunBase({ uid: Deno.uid()!, runDir: `${dir}/run` }, true)!;
  const sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
  // The run's shoal: holds its bundle dir open, as shoal does for a run's life.
  const holder = new Deno.Command("sh", {
    args: ["-c", 'exec 3<"$0" && exec sleep 60', `${dir}/run/live`],
  });
  let held: Deno.ChildProcess | undefined;
  try {
    const live = createBundle(base, "live") as Bundle;
    held = holder.spawn();
    const holds = () => {
      try {
        return Deno.readLinkSync(`/proc/${held!.pid}/fd/3`) === live.path;
      } catch {
        return false; // not yet
      }
    };
    assert(await eventually(() => Promise.resolve(holds())), "the holder holds the bundle");
    const start = processStartTime(held.pid)!;
    await writeState(live, runState("live", held.pid, start));
    // The same pid with another start time is a reused pid: that run is gone.
    const reused = createBundle(base, "reused") as Bundle;
    await writeState(reused, runState("reused", held.pid, start + 1));
    // A live process of the caller's that does not hold the bundle is not the run's.
    const other = createBundle(base, "other") as Bundle;
    await writeState(other, runState("other", sleeper.pid, processStartTime(sleeper.pid)!));
    for (const b of [live, reused, other]) closeFd(b.fd);
    assertEquals(createBundle(base, "live"), false, "a name is taken once");
    assertEquals(liveRuns(base).map((r) => r.state.name), ["live"]);
    assertEquals([...Deno.readDirSync(base.path)].map((e) => e.name).sort(), ["live"]);
    assertEquals((Deno.statSync(live.path).mode ?? 0) & 0o777, 0o700);
    held.kill();
    await held.status;
    assertEquals(liveRuns(base).map((r) => r.state.name), [], "its shoal is gone");
    assertEquals([...Deno.readDirSync(base.path)], [], "and so is its bundle");
  } finally {
    if (held !== undefined) {
      try {
        held.kill();
      } catch { /* ended */ }
      await held.status;
    }
    sleeper.kill();
    await sleeper.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a run dir someone else owns is refused", async () => {
  const base = await Deno.makeTempDir({ prefix: "shoal-rundir-" });
  try {
    await Deno.mkdir(`${base}/theirs`, { mode: 0o700 });
    await Deno.chown(`${base}/theirs`, 4242, 4242);
    const err = assertThrows(
      () => openRunBase({ uid: 0, runDir: `${base}/theirs` }, true),
      ShoalError,
    );
    assert(err instanceof ShoalError);
    assertMatch(err.message, /theirs is not yours \(owner uid 4242, mode 0700\)$/);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("generated names are valid run names", () => {
  for (let i = 0; i < 20; i++) assertMatch(generateName(), NAME_PATTERN);
});

Deno.test("--preserve-fds and PMI_FD: descriptors from shoal's parent only", () => {
  const none = launcherPassthrough(0, {}, []);
  assertEquals([none.preserveFds, none.moves, none.env], [0, [], {}]);
  // Deno's own descriptors (close-on-exec) are not the user's to hand on; 1000 are never all open.
  assertThrows(
    () => launcherPassthrough(1000, {}, []),
    UsageError,
    "is not open, so it cannot be passed to the container (--preserve-fds 1000)",
  );
  const stdio = launcherPassthrough(0, { PMI_FD: "2" }, []);
  assertEquals([stdio.preserveFds, stdio.env.PMI_FD], [0, "2"], "stdio needs no preserving");
});

Deno.test("PMI_FD moves to the first descriptor after --preserve-fds; the ones between need not be open", () => {
  const open = (fds: number[]) => (fd: number) => fds.includes(fd);
  // Slurm's pmi2: 3..10 closed, the socket at 13.
  const slurm = launcherPassthrough(0, { PMI_FD: "13", PMI_RANK: "1" }, [], open([13]));
  assertEquals(slurm.moves, [{ from: 13, to: 3 }]);
  assertEquals(slurm.preserveFds, 1);
  assertEquals(slurm.env, { PMI_FD: "3", PMI_RANK: "1" });
  const after = launcherPassthrough(2, { PMI_FD: "13" }, [], open([3, 4, 13]));
  assertEquals([after.moves, after.preserveFds, after.env.PMI_FD], [[{ from: 13, to: 5 }], 3, "5"]);
  const within = launcherPassthrough(2, { PMI_FD: "4" }, [], open([3, 4]));
  assertEquals([within.moves, within.preserveFds, within.env.PMI_FD], [[], 2, "4"]);
  const dangling = launcherPassthrough(0, { PMI_FD: "13" }, [], open([]));
  assertEquals([dangling.moves, dangling.env.PMI_FD], [[], "13"]);
  assertEquals(dangling.warnings, [
    "PMI_FD=13 names no descriptor shoal was given; the container gets it unchanged",
  ]);
});

Deno.test("PMIx's directories are bound at their paths, outermost only, unless the user mounts them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/pmix.1.0/pmix_dstor_ds21_1`, { recursive: true });
    const env = {
      PMIX_SERVER_TMPDIR: `${dir}/pmix.1.0/`,
      PMIX_DSTORE_21_BASE_PATH: `${dir}/pmix.1.0//pmix_dstor_ds21_1`,
      PMIX_SYSTEM_TMPDIR: "/tmp",
      PMIX_DSTORE_ESH_BASE_PATH: `${dir}/missing`,
    };
    assertEquals(launcherPassthrough(0, env, []).mounts, [{
      source: `${dir}/pmix.1.0`,
      destination: `${dir}/pmix.1.0`,
      readonly: false,
      option: `PMIX_SERVER_TMPDIR=${dir}/pmix.1.0`,
    }]);
    const own = { source: dir, destination: dir, readonly: true, option: `-v ${dir}:${dir}:ro` };
    assertEquals(launcherPassthrough(0, env, [own]).mounts, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launch command lines: the helper's, and nsenter's credentials by who is root", () => {
  const argv = helperArgv({
    helper: "/p/libexec/shoal/shoal-mount",
    bundle: "/run/b",
    image: "/r/i.sqsh",
    root: true,
    tmpfsSize: 2 * 1024 ** 2,
    id: "b",
    runcOptions: ["--preserve-fds", "2"],
  });
  assertEquals(
    argv.join(" "),
    "/p/libexec/shoal/shoal-mount run --image /r/i.sqsh --bundle /run/b --root --userns --tmpfs-size 2048k -- --log /run/b/runc.log --log-format json --root /run/b/runc run --preserve-fds 2 --bundle /run/b b",
  );
  const launch = {
    bundle: "/run/b",
    runc: "/usr/sbin/runc",
    id: "b",
    runcOptions: ["--pid-file", "/run/b/main.pid"],
  };
  const root = [{ containerID: 0, hostID: 1001, size: 1 }, {
    containerID: 1,
    hostID: 100000,
    size: 65536,
  }];
  const keep = [
    { containerID: 0, hostID: 100000, size: 1001 },
    { containerID: 1001, hostID: 1001, size: 1 },
  ];
  assertEquals(mapArgument(keep), "0 100000 1001 1001 1001 1");
  // The caller's supplementary groups go along in both modes; only keep-id has to become root.
  const maps = (m: typeof keep) => ({ uidMappings: m, gidMappings: m, setgroups: "deny" as const });
  assertEquals(rootIsUser(maps(root), 1001, 1001), true);
  assertEquals(rootIsUser(maps(keep), 1001, 1001), false);
  assertEquals(
    chainArgv({ ...launch, rootIsUser: true }, 7).join(" "),
    "nsenter --target=7 --user --mount --preserve-credentials -- /usr/sbin/runc " +
      "--log /run/b/runc.log --log-format json --root /run/b/.mnt/state run " +
      "--pid-file /run/b/main.pid --bundle /run/b b",
  );
  assertEquals(chainArgv({ ...launch, rootIsUser: false }, 7).slice(0, 8), [
    "nsenter",
    "--target=7",
    "--user",
    "--mount",
    "--preserve-credentials",
    "--setuid=0",
    "--setgid=0",
    "--",
  ]);
});

Deno.test("the supervisor passes stderr through and holds back runc's fatal line", async () => {
  // No runc: no pid file comes, and nothing is to be ended.
  const NO_CONTAINER = { bundle: await Deno.makeTempDir(), stopTimeout: 10, end: () => {} };
  const r = await supervise({
    argv: [
      "sh",
      "-c",
      'echo out; echo "container says" >&2; echo "runc run failed: boom" >&2; exit 3',
    ],
    stdin: false,
    tty: false,
    holdPrefix: "runc run failed: ",
    ...NO_CONTAINER,
  });
  assertEquals(r.status, 3);
  assertEquals(r.held, ["runc run failed: boom\n"]);
  const killed = await supervise({
    argv: ["sh", "-c", "kill -TERM $$"],
    stdin: false,
    tty: false,
    holdPrefix: "runc run failed: ",
    ...NO_CONTAINER,
  });
  assertEquals(killed.status, 128 + 15);
  await Deno.remove(NO_CONTAINER.bundle);
});
