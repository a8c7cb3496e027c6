import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { runCommand } from "./support/shoal.ts";
import { testUser } from "./support/users.ts";
import { Cap, fileCaps, processCaps } from "../mod/sys/caps.ts";
import { FsMagic, MountFlag, statfs } from "../mod/sys/fs.ts";
import { atLeast, kernelVersion, uname } from "../mod/sys/kernel.ts";
import { Errno, ErrnoError } from "../mod/sys/libc.ts";
import { nextFreeRange, parseSubidFile, rangesOf } from "../mod/sys/subid.ts";
import { credentials, getgrgid, getpwuid } from "../mod/sys/user.ts";

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

Deno.test("uname gives the running kernel", () => {
  const u = uname();
  assertEquals(u.sysname, "Linux");
  assertEquals(u.release, Deno.osRelease());
  assertEquals(u.machine, Deno.build.arch);
  const v = kernelVersion(u.release);
  assert(v !== null && atLeast(v, 3, 0), u.release);
  assertEquals(kernelVersion("5.11.0-rc1"), [5, 11]);
  assertEquals(kernelVersion("weird"), null);
  assert(atLeast([5, 12], 5, 12) && atLeast([6, 0], 5, 12) && !atLeast([5, 11], 5, 12));
});

/** A capability set of /proc/self/status (a hex mask) as capability numbers. */
function statusCaps(status: string, field: string): number[] {
  const hex = status.match(new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m"))?.[1] ?? "0";
  const mask = BigInt(`0x${hex}`);
  return Array.from({ length: 64 }, (_, i) => i).filter((i) => (mask >> BigInt(i)) & 1n);
}

Deno.test("processCaps matches the kernel's view in /proc/self/status", async () => {
  const caps = processCaps();
  const status = await Deno.readTextFile("/proc/self/status");
  assertEquals(caps.effective, statusCaps(status, "CapEff"));
  assertEquals(caps.permitted, statusCaps(status, "CapPrm"));
  assertEquals(caps.inheritable, statusCaps(status, "CapInh"));
  assertEquals(caps.bounding, statusCaps(status, "CapBnd"));
  assertEquals(caps.noNewPrivs, /^NoNewPrivs:\s*1$/m.test(status));
  // Tests run as root, as CI does.
  assert(caps.effective.includes(Cap.SYS_ADMIN));
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
