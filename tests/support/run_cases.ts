/**
 * The acceptance tests of `shoal run`, `ps` and `kill` (issue 4, items 1, 2,
 * 4 to 8), registered once per run path by tests/run_helper_test.ts (path A,
 * the setuid helper) and tests/run_fuse_test.ts (path B, squashfuse). They
 * run shoal as installed, as the unprivileged test users and as root.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { openRunBase } from "../../mod/runtime/rundir.ts";
import { runCommand } from "./shoal.ts";
import { runAs, testGroupMember } from "./users.ts";
import {
  eventually,
  IMAGE_OS_RELEASE,
  processesMentioning,
  type RunSite,
  runSite,
  type Who,
} from "./run.ts";

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

const RANGE_WARNING = /^shoal: warning: no \/etc\/subuid or \/etc\/subgid range/;

/**
 * Asserts a failure said in exactly one line on stderr (`rangeWarning`: besides
 * the warning that no subordinate range is mapped, which root gets here).
 */
function assertOneLineError(
  r: { code: number; stderr: string },
  code: number,
  text: RegExp,
  rangeWarning = false,
) {
  assertEquals(r.code, code, r.stderr);
  const errors = lines(r.stderr).filter((l) => !(rangeWarning && RANGE_WARNING.test(l)));
  assertEquals(errors.length, 1, r.stderr);
  assertMatch(errors[0]!, text);
}

/** A host directory owned by the test user, removed by the caller. */
async function userDir(site: RunSite, who: Who): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-run-data-" });
  const user = await site.user(who);
  if (user !== undefined) await Deno.chown(dir, user.uid, user.gid);
  return dir;
}

async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  seen: string[],
  want: string,
) {
  while (!seen.includes(want)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`output ended before '${want}': ${seen.join(" | ")}`);
    seen.push(...lines(value));
  }
}

function lineReader(stream: ReadableStream<Uint8Array>): ReadableStreamDefaultReader<string> {
  return stream.pipeThrough(new TextDecoderStream()).getReader();
}

export function registerRunTests(helper: boolean): void {
  const pathName = helper ? "helper" : "unprivileged";
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  let sitePromise: Promise<RunSite> | undefined;
  const site = () => sitePromise ??= runSite(helper);

  for (const who of ["user", "root"] as const) {
    Deno.test(`${tag}, ${who}: the image's os-release, exit status passed through, 127 and 126 in one line`, async () => {
      const s = await site();
      const image = await s.image(who);
      const def = await s.shoal(who, ["run", "--debug", image]);
      assertEquals([def.code, def.stdout], [0, IMAGE_OS_RELEASE], def.stderr);
      assertStringIncludes(def.stderr, `debug: run path: ${pathName}:`);
      const cat = await s.shoal(who, ["run", image, "cat", "/etc/os-release"]);
      // Root has no subordinate range here: runs map uid 0 alone, and say so.
      const warning = who === "root" ? [RANGE_WARNING] : [];
      assertEquals([cat.code, cat.stdout], [0, IMAGE_OS_RELEASE]);
      assertEquals(lines(cat.stderr).length, warning.length, cat.stderr);
      for (const [i, w] of warning.entries()) assertMatch(lines(cat.stderr)[i]!, w);
      assertEquals((await s.shoal(who, ["run", image, "sh", "-c", "exit 7"])).code, 7);
      assertOneLineError(
        await s.shoal(who, ["run", image, "nonexistent-tool", "x"]),
        127,
        /^shoal: error: 'nonexistent-tool' not found in the image \(/,
        who === "root",
      );
      assertOneLineError(
        await s.shoal(who, ["run", image, "/opt/not-executable"]),
        126,
        /^shoal: error: '\/opt\/not-executable' cannot be executed in the image \(/,
        who === "root",
      );
    });
  }

  Deno.test(`${tag}: default identity is the user's, with the image's users and owners kept`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const script = "id -u; id -g; id -G; echo $HOME; whoami; grep -c '^_apt:' /etc/passwd; " +
      "grep -c '^nobody:' /etc/passwd; stat -c %u /bin/busybox /opt/apt-owned; " +
      "grep CapEff /proc/self/status";
    const r = await s.shoal("user", ["run", image, "sh", "-c", script]);
    assertEquals(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assertEquals(out.slice(0, 2), [String(user.uid), String(user.gid)]);
    assert(out[2]!.split(" ").includes(String(user.gid)), out[2]);
    assertEquals(out.slice(3), [
      user.home,
      user.name,
      "1",
      "1",
      "0",
      "42",
      "CapEff:\t0000000000000000",
    ]);
  });

  Deno.test(`${tag}: --root is uid 0 with exactly the 13 capabilities; image owners kept`, async () => {
    const s = await site();
    const image = await s.image("user");
    const script = "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; " +
      "stat -c %u /bin/busybox /opt/apt-owned; touch /etc/new && echo rootfs-writable";
    for (const flag of ["--root", "--fakeroot"]) {
      const r = await s.shoal("user", ["run", flag, image, "sh", "-c", script]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(lines(r.stdout), [
        "0",
        "0",
        "CapPrm:\t00000000a80405fb",
        "CapEff:\t00000000a80405fb",
        "CapBnd:\t00000000a80405fb",
        "0",
        "42",
        "rootfs-writable",
      ]);
      assertEquals(r.stderr, "");
    }
  });

  Deno.test(`${tag}: without a subordinate range --root works with one id mapped, and says so`, async () => {
    const s = await site();
    const image = await s.image("nosub");
    const user = (await s.user("nosub"))!;
    const r = await s.shoal("nosub", [
      "run",
      "--root",
      image,
      "sh",
      "-c",
      "id -u; stat -c %u /bin/busybox /opt/apt-owned",
    ]);
    assertEquals(r.code, 0, r.stderr);
    // Only the user's own id is mapped: _apt's file shows as the overflow id.
    assertEquals(lines(r.stdout), ["0", "0", "65534"]);
    assertEquals(lines(r.stderr), [
      `shoal: warning: no /etc/subuid or /etc/subgid range for ${user.name}: only your own id ` +
      "is mapped into the container, so package managers and other tools that change file " +
      "owners may fail (ask your admin for a range)",
    ]);
    // runc 1.1 must be able to become root of the namespace: keep-id leaves no id for it.
    assertOneLineError(
      await s.shoal("nosub", ["run", image, "id", "-u"]),
      1,
      new RegExp(
        `^shoal: error: without a /etc/subuid and /etc/subgid range for ${user.name}, only --root runs`,
      ),
    );
  });

  Deno.test(`${tag}: host files stay protected, even from --root; files made as root are the user's`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const dir = await userDir(s, "user");
    try {
      await Deno.writeTextFile(`${dir}/secret`, "top secret\n", { mode: 0o600 });
      await Deno.chown(`${dir}/secret`, 0, 0);
      const script = "cat /data/secret >/dev/null 2>&1 && echo read || echo no-read; " +
        "chown 0:0 /data/secret 2>/dev/null && echo chowned || echo no-chown; " +
        "chmod 0666 /data/secret 2>/dev/null && echo chmodded || echo no-chmod; " +
        "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo no-mount; " +
        "touch /data/made-$(id -u) && echo made";
      for (const flags of [["--root"], []]) {
        const r = await s.shoal("user", [
          "run",
          ...flags,
          "-v",
          `${dir}:/data`,
          image,
          "sh",
          "-c",
          script,
        ]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(lines(r.stdout), ["no-read", "no-chown", "no-chmod", "no-mount", "made"]);
      }
      const secret = await Deno.stat(`${dir}/secret`);
      assertEquals([secret.uid, (secret.mode ?? 0) & 0o777], [0, 0o600]);
      for (const f of ["made-0", `made-${user.uid}`]) {
        const made = await Deno.stat(`${dir}/${f}`);
        assertEquals([made.uid, made.gid], [user.uid, user.gid], f);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: supplementary groups stay, so a file denied to the user's group stays denied`, async () => {
    const s = await site();
    const image = await s.image("member");
    const member = (await s.user("member"))!;
    const { gid } = await testGroupMember();
    // Readable by others but not by the group: only a process that dropped the group reads it.
    const dir = await Deno.makeTempDir({ prefix: "shoal-run-groups-" });
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.writeTextFile(`${dir}/denied`, "not for the group\n");
      await Deno.chown(`${dir}/denied`, 0, gid);
      await Deno.chmod(`${dir}/denied`, 0o604);
      const script = "id -G; cat /data/denied 2>/dev/null || echo denied";
      const r = await s.shoal("member", ["run", "-v", `${dir}:/data`, image, "sh", "-c", script]);
      assertEquals(r.code, 0, r.stderr);
      // The group's gid is not mapped in the container's user namespace: it shows as the
      // overflow gid, and still counts for access.
      assertEquals(lines(r.stdout), [`${member.gid} 65534`, "denied"]);
      const other = await s.shoal("user", [
        "run",
        "-v",
        `${dir}:/data`,
        image,
        "cat",
        "/data/denied",
      ]);
      assertEquals(other.stdout, "not for the group\n", other.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: --mount, -v, -e, -w, --entrypoint, -i, --device, --annotation`, async () => {
    const s = await site();
    const image = await s.image("user");
    const dir = await userDir(s, "user");
    try {
      await Deno.writeTextFile(`${dir}/f`, "host file\n", { mode: 0o644 });
      const mounts = [
        `--mount=type=bind,source=${dir},destination=/m,readonly`,
        "--mount",
        `type=bind,src=${dir},dst=/s`,
        `--mount=type=bind,source=${dir},target=/t,ro`,
        "-v",
        `${dir}:/v`,
        "-v",
        `${dir}:/vr:ro`,
      ];
      const script = "cat /m/f /s/f /t/f /v/f /vr/f; " +
        "for d in m s t v vr; do touch /$d/w-$d 2>/dev/null && echo $d-rw || echo $d-ro; done";
      const r = await s.shoal("user", ["run", ...mounts, image, "sh", "-c", script]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(lines(r.stdout), [
        ...Array(5).fill("host file"),
        "m-ro",
        "s-rw",
        "t-ro",
        "v-rw",
        "vr-ro",
      ]);

      const env = await s.shoal(
        "user",
        [
          "run",
          "-e",
          "A=1",
          "--env",
          "FROM_HOST",
          "-e",
          "IMG=over",
          image,
          "sh",
          "-c",
          'echo "$A $FROM_HOST $IMG"',
        ],
        { env: { FROM_HOST: "h" } },
      );
      assertEquals(env.stdout, "1 h over\n", env.stderr);
      const wd = await s.shoal("user", ["run", "-w", "/new/work/dir", image, "pwd"]);
      assertEquals(wd.stdout, "/new/work/dir\n", wd.stderr);
      const ep = await s.shoal("user", ["run", "--entrypoint", "/bin/echo", image, "hello"]);
      assertEquals(ep.stdout, "hello\n", ep.stderr);
      // An empty entrypoint clears it; without a command the image's CMD is dropped too.
      const cleared = await s.shoal("user", ["run", "--entrypoint", "", image, "echo", "cleared"]);
      assertEquals(cleared.stdout, "cleared\n", cleared.stderr);

      const stdin = await s.shoal("user", ["run", "-i", image, "cat"], { stdin: "from stdin\n" });
      assertEquals(stdin.stdout, "from stdin\n", stdin.stderr);

      const dev = await s.shoal("user", [
        "run",
        "--device",
        "/dev/null:/dev/mynull",
        "--annotation",
        "org.example.key=value",
        image,
        "sh",
        "-c",
        "echo x > /dev/mynull && echo device-ok",
      ]);
      assertEquals(dev.stdout, "device-ok\n", dev.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: --init, --pid, --writable-tmpfs-size, -t, --centralized-repository`, async () => {
    const s = await site();
    const image = await s.image("user");
    const init = await s.shoal("user", [
      "run",
      "--init",
      "--pid=private",
      image,
      "sh",
      "-c",
      'tr "\\0" " " </proc/1/cmdline; echo; echo $$',
    ]);
    assertEquals(lines(init.stdout)[0]!.split(" ").slice(0, 2), ["/dev/init", "--"], init.stderr);
    assert(lines(init.stdout)[1] !== "1", "the command is not PID 1");
    const hostPid = Deno.pid;
    const see = `test -e /proc/${hostPid} && echo host-pids || echo own-pids`;
    const host = await s.shoal("user", ["run", image, "sh", "-c", see]);
    assertEquals(host.stdout, "host-pids\n", host.stderr);
    const priv = await s.shoal("user", ["run", "--pid", "private", image, "sh", "-c", see]);
    assertEquals(priv.stdout, "own-pids\n", priv.stderr);

    const small = await s.shoal("user", [
      "run",
      "--writable-tmpfs-size",
      "1m",
      image,
      "sh",
      "-c",
      "dd if=/dev/zero of=/big bs=1k count=2048 2>/dev/null && echo fits || echo full",
    ]);
    assertEquals(small.stdout, "full\n", small.stderr);

    // A real terminal: script(1) gives shoal a pseudo-terminal of 33 rows and 77 columns,
    // then types Ctrl-C, which must reach the container as SIGINT through runc's terminal.
    const user = (await s.user("user"))!;
    const dir = await userDir(s, "user");
    try {
      // runc sets the terminal's size just after starting the command: give it a moment.
      const inner = "sleep 0.3; test -t 0 && test -t 1 && echo tty; stty size; " +
        'trap "echo got-int; exit 3" INT; echo waiting; sleep 5 & wait';
      await Deno.writeTextFile(
        `${dir}/tty.sh`,
        `stty rows 33 cols 77\nexec ${s.bin} run -t ${image} sh -c '${inner}'\n`,
      );
      const tty = await runAs(user, "sh", [
        "-c",
        `(sleep 1.5; printf '\\003') | script -qec "sh ${dir}/tty.sh" /dev/null`,
      ]);
      assertEquals(tty.code, 3, tty.stdout + tty.stderr);
      // script(1) shows a NUL byte runc 1.1 feeds the terminal as "^@", and Ctrl-C as "^C".
      const out = lines(tty.stdout.replaceAll("\r", "").replaceAll("^@", "").replaceAll("^C", ""));
      assertEquals(out, ["tty", "33 77", "waiting", "got-int"], JSON.stringify(tty.stdout));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const noTty = await s.shoal("user", ["run", "-t", image, "true"]);
    assertOneLineError(noTty, 2, /^shoal: error: -t needs a terminal on standard input/);

    const pulled = await s.shoal("root", ["pull", "-q", "--centralized-repository", image]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const central = await s.shoal("user", ["run", "--centralized-repository", image]);
    assertEquals(central.stdout, IMAGE_OS_RELEASE, central.stderr);
  });

  Deno.test(`${tag}: invalid options get one-line errors and leave no run behind`, async () => {
    const s = await site();
    const image = await s.image("user");
    const bad: [string[], RegExp][] = [
      [["-w", "rel/dir"], /--workdir rel\/dir: must be an absolute path/],
      [["--mount=source=/tmp,destination=/x"], /'type' is required/],
      [["--mount=type=bind,source=/tmp,destination=/x,colour=red"], /unknown key 'colour'/],
      [
        ["--mount=type=bind,source=/nonexistent/src,destination=/x"],
        /source \/nonexistent\/src does not exist/,
      ],
      [["-v", "/tmp:/proc/x"], /mounting on \/proc\/x is not allowed/],
      [["--device", "/dev/null:/dev/n:rwx"], /access 'rwx' must be a combination of r, w and m/],
      [["--name", "bad name"], /--name bad name: use letters/],
      [["--writable-tmpfs-size", "lots"], /expected a size such as 512m/],
      [["--pid", "none"], /--pid/],
    ];
    for (const [flags, message] of bad) {
      const r = await s.shoal("user", ["run", ...flags, image, "true"]);
      assertOneLineError(r, 2, message);
    }
    assertOneLineError(
      await s.shoal("user", ["run", "no/such-image:1", "true"]),
      1,
      /^shoal: error: no image "no\/such-image:1" in your repository/,
    );
    const ps = await s.shoal("user", ["ps", "--format", "json"]);
    assertEquals(
      JSON.parse(ps.stdout).filter((r: { name: string }) => r.name.startsWith("bad")),
      [],
    );
  });

  Deno.test(`${tag}: rootfs changes vanish, /dev/shm shared, /tmp private, host resolv.conf and hosts`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const first = await s.shoal("user", [
      "run",
      "--root",
      image,
      "sh",
      "-c",
      "echo x > /etc/added && cat /etc/added",
    ]);
    assertEquals(first.stdout, "x\n", first.stderr);
    const second = await s.shoal("user", [
      "run",
      image,
      "sh",
      "-c",
      "test -e /etc/added || echo gone",
    ]);
    assertEquals(second.stdout, "gone\n", second.stderr);

    const mark = `shoal-run-test-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.writeTextFile(`/dev/shm/${mark}`, "from host\n", { mode: 0o644 });
    await Deno.writeTextFile(`/tmp/${mark}`, "host tmp\n", { mode: 0o644 });
    try {
      const r = await s.shoal("user", [
        "run",
        image,
        "sh",
        "-c",
        `cat /dev/shm/${mark}; echo back > /dev/shm/${mark}-c; ` +
        `test -e /tmp/${mark} && echo tmp-shared || echo tmp-private; ls -A /tmp | wc -l; ` +
        "cat /etc/resolv.conf /etc/hosts",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const host = await Deno.readTextFile("/etc/resolv.conf") +
        await Deno.readTextFile("/etc/hosts");
      assertEquals(r.stdout, `from host\ntmp-private\n0\n${host}`);
      const back = await Deno.stat(`/dev/shm/${mark}-c`);
      assertEquals(back.uid, user.uid);
    } finally {
      for (const f of [`/dev/shm/${mark}`, `/dev/shm/${mark}-c`, `/tmp/${mark}`]) {
        await Deno.remove(f).catch(() => {});
      }
    }
  });

  Deno.test(`${tag}: CPU affinity, umask, PMI_FD and --preserve-fds reach the container`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const affinity = await runAs(user, "taskset", [
      "-c",
      "0",
      s.bin,
      "run",
      image,
      "grep",
      "Cpus_allowed_list",
      "/proc/self/status",
    ]);
    assertEquals(affinity.stdout, "Cpus_allowed_list:\t0\n", affinity.stderr);
    const umask = await runAs(user, "sh", ["-c", `umask 027; ${s.bin} run ${image} sh -c umask`]);
    assertEquals(umask.stdout, "0027\n", umask.stderr);

    const dir = await userDir(s, "user");
    try {
      await Deno.writeTextFile(`${dir}/three`, "fd three\n", { mode: 0o644 });
      await Deno.writeTextFile(`${dir}/four`, "fd four\n", { mode: 0o644 });
      // The PMI socket moves to the first descriptor after the --preserve-fds ones, whatever is open.
      const inner = 'cat <&3; echo \\"PMI_FD=\\$PMI_FD\\"; cat <&4 2>/dev/null || echo no 4';
      const pmi = await runAs(user, "sh", [
        "-c",
        `exec 8<${dir}/four; PMI_FD=8 ${s.bin} run ${image} sh -c "${inner}"`,
      ]);
      assertEquals(pmi.stdout, "fd four\nPMI_FD=3\nno 4\n", pmi.stderr);
      const after = await runAs(user, "sh", [
        "-c",
        `exec 3<${dir}/three 9<${dir}/four; PMI_FD=9 ${s.bin} run --preserve-fds 1 ${image} sh -c "${inner}"`,
      ]);
      assertEquals(after.stdout, "fd three\nPMI_FD=4\nfd four\n", after.stderr);
      const preserve = await runAs(user, "sh", [
        "-c",
        `exec 3<${dir}/three; ${s.bin} run --preserve-fds 1 ${image} sh -c 'cat <&3'`,
      ]);
      assertEquals(preserve.stdout, "fd three\n", preserve.stderr);
      const closed = await runAs(user, "sh", ["-c", `${s.bin} run --preserve-fds 1 ${image} true`]);
      assertOneLineError(closed, 2, /file descriptor 3 is not open/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to shoal reach the container`, async () => {
    const s = await site();
    const image = await s.image("user");
    const dir = await userDir(s, "user");
    try {
      const child = await s.spawn("user", [
        "run",
        "-v",
        `${dir}:/stop`,
        "-e",
        "STOP=/stop/now",
        image,
        "/opt/traps",
      ]);
      const reader = lineReader(child.stdout);
      const seen: string[] = [];
      await readUntil(reader, seen, "ready");
      for (const sig of ["TERM", "INT", "HUP", "USR1", "USR2"] as const) {
        child.kill(`SIG${sig}`);
        await readUntil(reader, seen, `got ${sig}`);
      }
      await Deno.writeTextFile(`${dir}/now`, "");
      reader.releaseLock();
      const status = await child.status;
      const stderr = await new Response(child.stderr).text();
      assertEquals(status.code, 0, stderr);
      assertEquals(seen, ["ready", "got TERM", "got INT", "got HUP", "got USR1", "got USR2"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  for (const who of ["user", "root"] as const) {
    Deno.test(`${tag}, ${who}: shoal killed with SIGKILL leaves no process, mount or loop device`, async () => {
      const s = await site();
      const image = await s.image(who);
      const user = await s.user(who);
      const name = `killed-${crypto.randomUUID().slice(0, 8)}`;
      const marker = `marker-${name}`;
      const child = await s.spawn(who, [
        "run",
        "--name",
        name,
        image,
        "sh",
        "-c",
        `sleep 60; : ${marker}`,
      ]);
      const listed = await eventually(async () => {
        const ps = await s.shoal(who, ["ps", "--format", "json"]);
        return ps.code === 0 && JSON.parse(ps.stdout).some((r: { name: string }) =>
          r.name === name
        ) &&
          (await processesMentioning(marker)).length > 0;
      });
      assert(listed, "the run shows in ps with its process");
      const bundle = `${openRunBase({ uid: user?.uid ?? 0 }, false)?.path}/${name}`;
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel();
      await child.stderr.cancel();
      // Under a loaded machine (the suite runs files in parallel) a /proc sweep takes a while.
      const gone = await eventually(
        async () =>
          (await processesMentioning(marker)).length === 0 &&
          (await processesMentioning(bundle)).length === 0,
        15_000,
      );
      assert(gone, `left running: ${(await processesMentioning(name)).join("; ")}`);
      const mounts = await Deno.readTextFile("/proc/self/mountinfo");
      assert(!mounts.includes(name), "no mount of the run in the host's table");
      const loops = await runCommand("losetup", ["-a"]);
      assert(!loops.stdout.includes(name), loops.stdout);
      // The next shoal command finds the run dead and removes its files.
      const ps = await s.shoal(who, ["ps"]);
      assert(!ps.stdout.includes(name), ps.stdout);
      await assertGone(bundle);
    });
  }

  Deno.test(`${tag}: ps and kill see only the user's own runs; --name is unique`, async () => {
    const s = await site();
    const image = await s.image("user");
    const name = `listed-${crypto.randomUUID().slice(0, 8)}`;
    const child = await s.spawn("user", ["run", "--name", name, image, "/opt/traps"], {
      STOP: "/nonexistent",
    });
    const reader = lineReader(child.stdout);
    const seen: string[] = [];
    try {
      await readUntil(reader, seen, "ready");
      const table = await s.shoal("user", ["ps"]);
      assertEquals(table.code, 0, table.stderr);
      assertMatch(lines(table.stdout)[0]!, /^NAME +IMAGE +PID +STATUS +CREATED$/);
      const row = lines(table.stdout).find((l) => l.startsWith(`${name} `));
      assertMatch(
        row ?? "",
        new RegExp(`^${name} +${image.replaceAll(".", "\\.")} +${child.pid} +running +\\d{4}-`),
      );
      const json = JSON.parse((await s.shoal("user", ["ps", "--format", "json"])).stdout);
      const mine = json.find((r: { name: string }) => r.name === name);
      assertEquals([mine?.image, mine?.pid, mine?.status, mine?.runPath], [
        image,
        child.pid,
        "running",
        pathName,
      ]);

      const other = await s.shoal("nosub", ["ps", "--format", "json"]);
      assertEquals(other.code, 0, other.stderr);
      assert(!other.stdout.includes(name), "another user does not see the run");
      assertOneLineError(
        await s.shoal("nosub", ["kill", name]),
        1,
        new RegExp(`^shoal: error: no running container named '${name}'`),
      );
      assertOneLineError(
        await s.shoal("user", ["run", "--name", name, image, "true"]),
        2,
        new RegExp(`--name ${name}: a container of that name is running`),
      );
      assertOneLineError(
        await s.shoal("user", ["kill", name, "BOGUS"]),
        2,
        /unknown signal 'BOGUS'/,
      );

      const term = await s.shoal("user", ["kill", name, "TERM"]);
      assertEquals([term.code, term.stdout], [0, `${name}\n`], term.stderr);
      await readUntil(reader, seen, "got TERM");
      const killed = await s.shoal("user", ["kill", name]);
      assertEquals(killed.code, 0, killed.stderr);
      reader.releaseLock();
      const status = await child.status;
      assertEquals(status.success, false);
      await child.stderr.cancel();
      const after = await s.shoal("user", ["ps", "--format", "json"]);
      assert(!after.stdout.includes(name), after.stdout);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
    }
  });

  Deno.test(`${tag}: site mounts, devices and environment apply to every container`, async () => {
    const s = await site();
    const image = await s.image("user");
    const dir = await Deno.makeTempDir({ prefix: "shoal-site-" });
    await Deno.chmod(dir, 0o755);
    await Deno.writeTextFile(`${dir}/f`, "site file\n", { mode: 0o644 });
    try {
      await s.writeConfig({
        mounts: [{ source: dir, destination: "/site" }],
        devices: [{ path: "/dev/null", containerPath: "/dev/sitenull" }],
        environment: {
          set: { SITE_VAR: "site" },
          prepend: { PATH: "/site/bin" },
          unset: ["DROP_ME"],
        },
      });
      const r = await s.shoal("user", [
        "run",
        image,
        "sh",
        "-c",
        "cat /site/f; touch /site/x 2>/dev/null || echo site-ro; echo x > /dev/sitenull && echo dev; " +
        'echo "$SITE_VAR ${DROP_ME-unset}"; echo "$PATH"',
      ], { env: { DROP_ME: "1" } });
      assertEquals(r.code, 0, r.stderr);
      assertEquals(lines(r.stdout), [
        "site file",
        "site-ro",
        "dev",
        "site unset",
        "/site/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      ]);
    } finally {
      await s.writeConfig();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/** The bundle dir of a run is removed (by the run, or by the next shoal command). */
async function assertGone(path: string) {
  try {
    await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  throw new Error(`${path} was left behind`);
}
