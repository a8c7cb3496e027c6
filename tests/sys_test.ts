import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import { testUser } from "./support/users.ts";
import { Cap, fileCaps, processCaps } from "../mod/sys/caps.ts";
import { FsMagic, MountFlag, statfs } from "../mod/sys/fs.ts";
import { atLeast, kernelVersion } from "../mod/sys/kernel.ts";
import { Errno, ErrnoError, O } from "../mod/sys/libc.ts";
import { closeFd, lstatAt, openAt, removeTreeAt } from "../mod/sys/dirfd.ts";
import { nextFreeRange, parseSubidFile, rangesOf } from "../mod/sys/subid.ts";
import { credentials, getgrgid, getpwuid } from "../mod/sys/user.ts";
import { spawn, statusWithin } from "../mod/sys/spawn.ts";
import { sleep, stoppableSleep } from "../mod/sys/sleep.ts";

Deno.test("credentials match Deno's and id's view of this process", async () => {
  const c = credentials();
  assertEquals(c.uid, Deno.uid());
  assertEquals(c.gid, Deno.gid());
  assertEquals(c.euid, c.uid);
  const id = await runCommand("id", ["-G"]);
  const expected = new Set(id.stdout.trim().split(/\s+/).map(Number));
  assertEquals(new Set([c.gid, ...c.groups]), expected);
});

Deno.test("getpwuid and getgrgid read the user database through NSS", async () => {
  const root = getpwuid(0);
  assertEquals(root?.name, "root");
  assertEquals(root?.uid, 0);
  assertEquals(root?.home, "/root");
  assertEquals(getgrgid(0)?.name, "root");

  const user = await testUser();
  const entry = getpwuid(user.uid);
  assertEquals(entry?.name, user.name);
  assertEquals(entry?.gid, user.gid);
  assertEquals(entry?.home, user.home);
  assertEquals(getgrgid(user.gid)?.name, user.name);

  // 4294967294 is (uid_t)-2, reserved and never assigned.
  assertEquals(getpwuid(4294967294), null);
  assertEquals(getgrgid(4294967294), null);
});

Deno.test("statfs tells filesystems apart, reads mount flags, and reports errno", async () => {
  assertEquals(statfs("/proc").type, FsMagic.PROC);
  const dir = await Deno.makeTempDir();
  try {
    const r = await runCommand("mount", ["-t", "tmpfs", "-o", "nosuid,size=1m", "tmpfs", dir]);
    assertEquals(r.code, 0, r.stderr);
    try {
      const fs = statfs(dir);
      assertEquals(fs.type, FsMagic.TMPFS);
      assertEquals(fs.flags & MountFlag.NOSUID, MountFlag.NOSUID);
      await runCommand("mount", ["-o", "remount,suid", dir]);
      assertEquals(statfs(dir).flags & MountFlag.NOSUID, 0);
    } finally {
      await runCommand("umount", [dir]);
    }
  } finally {
    await Deno.remove(dir);
  }
  const err = assertThrows(() => statfs("/nonexistent/shoal"), ErrnoError);
  assertEquals(err.errno, Errno.ENOENT);
  assertEquals(err.message, "statfs /nonexistent/shoal: No such file or directory");
});

Deno.test("kernelVersion reads the running kernel's release and others", () => {
  const v = kernelVersion(Deno.osRelease());
  assert(v !== null && atLeast(v, 3, 0), Deno.osRelease());
  assertEquals(kernelVersion("5.11.0-rc1"), [5, 11]);
  assertEquals(kernelVersion("weird"), null);
  assert(atLeast([5, 12], 5, 12) && atLeast([6, 0], 5, 12) && !atLeast([5, 11], 5, 12));
});

/**
 * credentials() and processCaps() of a Deno process started through setpriv
 * with `setprivArgs` (as root: the test runs as root, as CI does).
 */
async function seenBy(setprivArgs: string[]) {
  const code = `
    import { credentials } from "${new URL("../mod/sys/user.ts", import.meta.url)}";
    import { processCaps } from "${new URL("../mod/sys/caps.ts", import.meta.url)}";
    console.log(JSON.stringify({ creds: credentials(), caps: processCaps() }));`;
  const cache = await Deno.makeTempDir();
  try {
    await Deno.chmod(cache, 0o777);
    const r = await runCommand("setpriv", [...setprivArgs, "--", Deno.execPath(), "eval", code], {
      env: { DENO_DIR: cache },
    });
    assertEquals(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("processCaps: root's sets, a reduced bounding set and no_new_privs", async () => {
  const all = processCaps();
  assert(all.effective.includes(Cap.SYS_ADMIN) && all.bounding.includes(Cap.SYS_ADMIN));
  assertEquals(all.noNewPrivs, false);
  const { caps } = await seenBy(["--bounding-set", "-sys_admin,-setuid", "--no-new-privs"]);
  assertEquals(caps.bounding, all.bounding.filter((c) => c !== Cap.SYS_ADMIN && c !== Cap.SETUID));
  // Root's sets at exec are bounded by it.
  assertEquals(caps.effective.includes(Cap.SYS_ADMIN), false);
  assertEquals(caps.noNewPrivs, true);
});

Deno.test("credentials: a user's real and effective ids and supplementary groups", async () => {
  const user = await testUser();
  const { creds, caps } = await seenBy([
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--groups=100,4",
  ]);
  assertEquals(creds, {
    uid: user.uid,
    euid: user.uid,
    gid: user.gid,
    egid: user.gid,
    groups: [4, 100],
  });
  assertEquals([caps.effective, caps.permitted], [[], []]);
  const setgid = await seenBy([`--rgid=${user.gid}`, "--clear-groups"]);
  assertEquals([setgid.creds.gid, setgid.creds.egid, setgid.creds.groups], [user.gid, 0, []]);
});

Deno.test("fileCaps reads what setcap wrote, and null for a plain file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/prog`;
    await Deno.writeFile(file, new Uint8Array(), { mode: 0o755 });
    assertEquals(fileCaps(file), null);
    const r = await runCommand("setcap", ["cap_setuid,cap_setgid+ep", file]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(fileCaps(file), {
      permitted: [Cap.SETGID, Cap.SETUID],
      inheritable: [],
      effective: true,
    });
    await runCommand("setcap", ["cap_setuid+p", file]);
    assertEquals(fileCaps(file)?.effective, false);
    assertThrows(() => fileCaps(`${dir}/missing`), ErrnoError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("subid files: several ranges, by name or uid, in file order", () => {
  const entries = parseSubidFile(
    [
      "alice:100000:65536",
      "bob:165536:65536",
      "1001:300000:1000",
      "alice:400000:10",
    ].join("\n"),
  );
  assertEquals(rangesOf(entries, "alice", 1001), [
    { start: 100000, count: 65536 },
    { start: 300000, count: 1000 },
    { start: 400000, count: 10 },
  ]);
  assertEquals(rangesOf(entries, "bob", 1002), [{ start: 165536, count: 65536 }]);
  assertEquals(rangesOf(entries, "carol", 1003), []);
});

Deno.test("subid files: comments, blank and malformed lines grant nothing", () => {
  const entries = parseSubidFile(
    [
      "# site ranges",
      "",
      "   ",
      "alice:100000:65536",
      "alice:100000",
      "alice:100000:65536:extra",
      "alice:abc:65536",
      "alice:-5:65536",
      "alice:200000:0",
      "alice:4294967295:2",
      ":300000:10",
      "  alice:500000:5  ",
      "alice:1.5:10",
    ].join("\n"),
  );
  assertEquals(rangesOf(entries, "alice", 1001), [
    { start: 100000, count: 65536 },
    { start: 500000, count: 5 },
  ]);
});

Deno.test("nextFreeRange starts above every range, from 100000", () => {
  assertEquals(nextFreeRange([]), { start: 100000, count: 65536 });
  const entries = parseSubidFile("a:100000:65536\nb:300000:65536\nc:165536:65536\n");
  assertEquals(nextFreeRange(entries), { start: 365536, count: 65536 });
});

Deno.test("spawn: pipes, /dev/null, exit status and death by signal", async () => {
  const child = spawn(["sh", "-c", 'echo out; read -r line; echo "got $line" >&2; exit 5'], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  assertEquals(new TextDecoder().decode((await child.stdout!.read())!), "out\n");
  child.stdin!.close();
  const err: string[] = [];
  for await (const chunk of child.stderr!) err.push(new TextDecoder().decode(chunk));
  assertEquals(err.join(""), "got \n");
  assertEquals(await child.status, 5);
  assertEquals(await child.stdout!.read(), null);

  const quiet = spawn(["sh", "-c", "cat; test -c /dev/stdin"], { stdin: "null" });
  assertEquals(await quiet.status, 0);
  const sleeper = spawn(["sleep", "10"]);
  Deno.kill(sleeper.pid, "SIGTERM");
  assertEquals(await sleeper.status, 128 + 15);
});

Deno.test("spawn: a fresh session on request, default SIGPIPE, nothing blocked, no stray descriptors", async () => {
  const script = "read -r s </proc/self/stat; set -- ${s##*) }; echo $4; " +
    "grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd";
  const lines = async (newSession: boolean) => {
    const child = spawn(["sh", "-c", script], { stdout: "pipe", newSession });
    let text = "";
    for await (const chunk of child.stdout!) text += new TextDecoder().decode(chunk);
    assertEquals(await child.status, 0);
    return { pid: child.pid, lines: text.trim().split("\n") };
  };
  const own = await lines(true);
  // Field 6 of /proc/PID/stat: the session, which a session leader's pid is.
  assertEquals(own.lines[0], String(own.pid));
  const shared = await lines(false);
  assert(shared.lines[0] !== String(shared.pid));
  assertEquals(own.lines[1], "SigBlk:\t0000000000000000");
  // Deno ignores SIGPIPE; a child must not (`yes | head` would never end).
  const ignored = BigInt(`0x${own.lines[2]!.split("\t")[1]}`);
  assertEquals((ignored >> 12n) & 1n, 0n, own.lines[2]);
  // What the child has beyond the descriptors it inherits as Deno.Command's would
  // (those not close-on-exec): the directory ls reads. The pipe's other end stayed here.
  const inherited = [...Deno.readDirSync("/proc/self/fd")].map((e) => e.name).filter((fd) => {
    const info = readIfThere(`/proc/self/fdinfo/${fd}`);
    return info !== undefined &&
      (parseInt(/^flags:\s+(\d+)/m.exec(info)![1]!, 8) & 0o2000000) === 0;
  });
  assertEquals(
    own.lines.slice(3).filter((fd) => !inherited.includes(fd)).length,
    1,
    own.lines.join(" "),
  );
});

function readIfThere(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined; // the descriptor readDir itself used
  }
}

Deno.test("spawn: a missing program is an error, and leaves no descriptor open", () => {
  const before = [...Deno.readDirSync("/proc/self/fd")].length;
  const err = assertThrows(
    () => spawn(["/nonexistent/prog"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" }),
    ErrnoError,
  );
  assertEquals(err.errno, Errno.ENOENT);
  assertEquals(err.message, "cannot start /nonexistent/prog: No such file or directory");
  assertEquals([...Deno.readDirSync("/proc/self/fd")].length, before);
});

Deno.test("statusWithin: the status when the child ends in time, undefined when it does not", async () => {
  const quick = spawn(["sh", "-c", "exit 4"]);
  assertEquals(await statusWithin(quick, 5000), 4);
  const slow = spawn(["sleep", "10"]);
  const started = performance.now();
  assertEquals(await statusWithin(slow, 100), undefined);
  const waited = performance.now() - started;
  assert(waited >= 90 && waited < 2000, `waited ${waited} ms`);
  Deno.kill(slow.pid, "SIGKILL");
  assertEquals(await statusWithin(slow, 5000), 128 + 9);
});

Deno.test("spawn: the child gets shoal's environment byte for byte, not only its UTF-8 part", async () => {
  const code = `
    import { spawn } from "${new URL("../mod/sys/spawn.ts", import.meta.url)}";
    const c = spawn(["sh", "-c", 'printf %s "$RAW" | od -An -tx1'], { stdout: "pipe" });
    let out = "";
    for await (const chunk of c.stdout) out += new TextDecoder().decode(chunk);
    await c.status;
    console.log(out.trim());`;
  // Deno.env would drop RAW (not UTF-8); the shell sets it before Deno starts.
  const r = await runCommand("sh", [
    "-c",
    `RAW=$(printf 'a\\377b') exec "$0" eval "$1"`,
    Deno.execPath(),
    code,
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout.trim(), "61 ff 62");
});

Deno.test("removeTreeAt removes a tree through descriptors: no symlink followed, nothing mounted from elsewhere removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-rmtree-" });
  const tree = `${dir}/tree`;
  const outside = `${dir}/outside`;
  const mounted: string[] = [];
  try {
    await Deno.mkdir(`${tree}/sub/deeper`, { recursive: true });
    await Deno.mkdir(`${tree}/sub/empty`);
    await Deno.mkdir(`${outside}/dir`, { recursive: true });
    for (const f of ["a", "sub/b", "sub/deeper/c"]) await Deno.writeTextFile(`${tree}/${f}`, f);
    for (const f of ["kept", "dir/kept"]) await Deno.writeTextFile(`${outside}/${f}`, f);
    await Deno.symlink(`${outside}/kept`, `${tree}/link-to-file`);
    await Deno.symlink(`${outside}/dir`, `${tree}/sub/link-to-dir`);
    if (Deno.uid() === 0) {
      // Mount points of this namespace, of other filesystems: a tmpfs with a file in it, and a
      // file of that tmpfs bound over one of the tree's.
      await Deno.mkdir(`${tree}/sub/mnt`);
      await Deno.writeTextFile(`${tree}/fmnt`, "");
      const tmpfs = await runCommand("mount", ["-t", "tmpfs", "shoal-rmtree", `${tree}/sub/mnt`]);
      assertEquals(tmpfs.code, 0, tmpfs.stderr);
      mounted.push(`${tree}/sub/mnt`);
      await Deno.writeTextFile(`${tree}/sub/mnt/kept`, "mounted");
      // An empty one too: rmdir, tried first on an empty-looking directory, must leave it.
      await Deno.mkdir(`${tree}/emptymnt`);
      const empty = await runCommand("mount", ["-t", "tmpfs", "shoal-rmtree", `${tree}/emptymnt`]);
      assertEquals(empty.code, 0, empty.stderr);
      mounted.push(`${tree}/emptymnt`);
      const bind = await runCommand("mount", ["--bind", `${tree}/sub/mnt/kept`, `${tree}/fmnt`]);
      assertEquals(bind.code, 0, bind.stderr);
      mounted.push(`${tree}/fmnt`);
    }
    const fd = openAt(-100, dir, O.RDONLY | O.DIRECTORY);
    try {
      const complete = removeTreeAt(fd, "tree", lstatAt(fd, "tree").dev);
      assertEquals(complete, mounted.length === 0);
    } finally {
      closeFd(fd);
    }
    // Whatever the links and mounts pointed at is untouched.
    assertEquals(await Deno.readTextFile(`${outside}/kept`), "kept");
    assertEquals(await Deno.readTextFile(`${outside}/dir/kept`), "dir/kept");
    if (mounted.length > 0) {
      assertEquals(await Deno.readTextFile(`${tree}/sub/mnt/kept`), "mounted");
    }
    const left = [];
    for (
      const p of [
        "tree/a",
        "tree/sub/b",
        "tree/sub/deeper",
        "tree/sub/empty",
        "tree/link-to-file",
        "tree/sub/link-to-dir",
        "tree/fmnt",
        "tree/sub/mnt",
        "tree/emptymnt",
      ]
    ) {
      try {
        await Deno.lstat(`${dir}/${p}`);
        left.push(p);
      } catch { /* removed */ }
    }
    assertEquals(left, mounted.length === 0 ? [] : ["tree/fmnt", "tree/sub/mnt", "tree/emptymnt"]);
    if (mounted.length === 0) assertThrows(() => Deno.lstatSync(tree), Deno.errors.NotFound);
  } finally {
    for (const m of mounted.reverse()) await runCommand("umount", [m]);
    assertEquals((await Deno.readTextFile("/proc/self/mounts")).includes("shoal-rmtree"), false);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sleep and stoppableSleep: they last their time; stop ends one at once and leaves no descriptor", async () => {
  const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
  const before = fds();
  let started = performance.now();
  await sleep(40);
  assert(performance.now() - started >= 39, "sleep lasts its time");
  started = performance.now();
  await stoppableSleep(40).slept;
  assert(performance.now() - started >= 39, "an unstopped sleep lasts its time");
  const long = stoppableSleep(60_000);
  started = performance.now();
  long.stop();
  await long.slept;
  long.stop();
  assert(performance.now() - started < 5_000, "stop ends the sleep at once");
  assertEquals(fds(), before, "the pipes are closed");
});
