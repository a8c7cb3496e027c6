/**
 * Another user of the node against a victim's run directory, as the review
 * found it: /tmp/shoal-UID made first as a symlink into the victim's files
 * or as a directory of the attacker's with forged runs, and odd entries
 * inside the victim's own run dir. Run as a real second user against a real
 * victim user, and against root in a private mount namespace with its own
 * tmpfs /tmp (the host's /tmp and / are never at risk). fs.protected_symlinks
 * is 0 for the test (the kernel default; restored after). Nothing of the
 * victim's may change, and the victim's shoal keeps working.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { runSite, runState } from "./support/run.ts";
import { exists } from "./support/fs.ts";
import { processStartTime } from "../mod/runtime/state.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs, type TestUser, testUser, userArgv } from "./support/users.ts";

const ATTACKER = "shoal-attacker";
const VICTIM = "shoal-victim";

async function must(cmd: string, args: string[], options: { stdin?: string } = {}) {
  const r = await runCommand(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs a shell snippet as `user`. */
function as(user: TestUser, script: string, stdin?: string) {
  const [cmd, ...args] = userArgv(user, "sh", ["-c", script]);
  return must(cmd!, args, stdin === undefined ? {} : { stdin });
}

/** Every path under `dir` with its type, owner, mode and size: what must not change. */
async function snapshot(dir: string): Promise<string> {
  return await must("find", [dir, "-printf", "%p %y %U %m %s\n"]);
}

/** A forged run state naming `pid`, with its real start time (anyone can read it). */
function forgedState(name: string, pid: number): string {
  return JSON.stringify(runState(name, pid, processStartTime(pid)!));
}

async function withProtectedSymlinksOff(fn: () => Promise<void>) {
  const knob = "/proc/sys/fs/protected_symlinks";
  const was = Deno.readTextFileSync(knob).trim();
  Deno.writeTextFileSync(knob, "0");
  try {
    await fn();
  } finally {
    Deno.writeTextFileSync(knob, was);
  }
}

/** A process of `user` that must survive every forged kill. */
function sleeperOf(user: TestUser | undefined): Deno.ChildProcess {
  const argv = user === undefined ? ["sleep", "120"] : userArgv(user, "sleep", ["120"]);
  return new Deno.Command(argv[0]!, { args: argv.slice(1), stdin: "null" }).spawn();
}

const alive = (pid: number) => {
  try {
    return !Deno.readTextFileSync(`/proc/${pid}/stat`).includes(") Z ");
  } catch {
    return false;
  }
};

Deno.test("run dir attacks by another user: symlinked, squatted, forged runs, FIFO state; the victim loses nothing", async () => {
  const site = await runSite(false);
  const attacker = await testUser(ATTACKER, false);
  const victim = await testUser(VICTIM, true);
  const repo = `${site.dir}/repo/${victim.name}`;
  await Deno.mkdir(repo, { mode: 0o700 });
  await Deno.chown(repo, victim.uid, victim.gid);
  const reference = await site.image("user");
  const shoal = (args: string[]) => runAs(victim, site.bin, args);
  const pulled = await shoal(["pull", "-q", reference]);
  assertEquals(pulled.code, 0, pulled.stderr);

  const predictable = `/tmp/shoal-${victim.uid}`;
  const cleanTmp = () => must("sh", ["-c", `rm -rf "$1" "$1".*`, "sh", predictable]);
  // The victim's files an attack aims at: old directories named like runs.
  const decoy = `${victim.home}/decoy`;
  await must("rm", ["-rf", decoy]);
  await as(
    victim,
    `mkdir -p ${decoy}/data ${decoy}/projects && echo keep > ${decoy}/data/thesis && ` +
      `mkdir ${decoy}/projects/rootfs ${decoy}/projects/.mnt && ` +
      `touch -d '2 hours ago' ${decoy}/* ${decoy}/projects/*`,
  );
  const before = await snapshot(decoy);
  const sleeper = sleeperOf(victim);
  await cleanTmp();
  try {
    await withProtectedSymlinksOff(async () => {
      // 1. /tmp/shoal-UID is the attacker's symlink into the victim's files.
      await as(attacker, `ln -s ${decoy} ${predictable}`);
      // Before the victim's first run there is no run dir of theirs: nothing to list.
      const ps0 = await shoal(["ps", "--format", "json"]);
      assertEquals(ps0.code, 0, ps0.stderr);
      assertEquals(JSON.parse(ps0.stdout), []);
      const run = await shoal(["run", reference, "true"]);
      const ps = await shoal(["ps", "--format", "json"]);
      const kill = await shoal(["kill", "projects"]);
      assertEquals(await snapshot(decoy), before, "the victim's files are untouched");
      assertEquals(run.code, 0, run.stderr);
      assertMatch(
        run.stderr,
        new RegExp(`^shoal: warning: ${predictable} is a symlink: shoal uses a private directory`),
      );
      assertEquals(run.stderr.trim().split("\n").length, 1, "one line");
      assertEquals([ps.code, JSON.parse(ps.stdout)], [0, []]);
      assertEquals(kill.code, 1);
      assertStringIncludes(kill.stderr, "no running container named 'projects'");
      assertEquals(Deno.readLinkSync(predictable), decoy, "the attacker's link is left alone");
      const fallbacks = [...Deno.readDirSync("/tmp")].filter((e) =>
        e.name.startsWith(`shoal-${victim.uid}.`)
      );
      assertEquals(fallbacks.length, 1);
      const fallback = Deno.lstatSync(`/tmp/${fallbacks[0]!.name}`);
      assert(fallback.isDirectory && fallback.uid === victim.uid);
      assertEquals(fallback.mode! & 0o7777, 0o700);
      await cleanTmp();

      // 2. /tmp/shoal-UID is the attacker's directory, with forged runs: one naming
      // the victim's own process, one whose state.json is a FIFO.
      await as(
        attacker,
        `umask 0; mkdir -p ${predictable}/forged/rootfs ${predictable}/forged/.mnt ` +
          `${predictable}/fifo/rootfs ${predictable}/fifo/.mnt && ` +
          `mkfifo ${predictable}/fifo/state.json`,
      );
      await as(
        attacker,
        `cat > ${predictable}/forged/state.json`,
        forgedState("forged", sleeper.pid),
      );
      const started = Date.now();
      const ps2 = await shoal(["ps", "--format", "json"]);
      assert(Date.now() - started < 10_000, "ps does not wait on a FIFO");
      assertEquals([ps2.code, JSON.parse(ps2.stdout)], [0, []]);
      const kill2 = await shoal(["kill", "forged"]);
      assertEquals(kill2.code, 1);
      assertStringIncludes(kill2.stderr, "no running container named 'forged'");
      assert(alive(sleeper.pid), "the forged pid was not signalled");
      const run2 = await shoal(["run", reference, "true"]);
      assertEquals(run2.code, 0, run2.stderr);
      assertMatch(run2.stderr, /is not yours \(owner uid \d+, mode 0777\): shoal uses a private/);
      assert(Deno.lstatSync(`${predictable}/forged/state.json`).isFile, "their files stay");
      // The launcher keeps Deno's compiled code there only in a directory of the victim's.
      assertEquals(
        await exists(`${predictable}/.deno`),
        false,
        "no code of the victim's in theirs",
      );
      await cleanTmp();

      // 3. Inside the victim's own run dir: entries only root could have put
      // there, old enough to be swept. The sweep leaves everything that is not
      // plainly the victim's bundle, and never follows a link.
      const own = await shoal(["run", reference, "true"]);
      assertEquals(own.code, 0, own.stderr);
      await must("sh", [
        "-c",
        `set -e; b="$1"; ln -s "$2/projects" "$b/linked"; ` +
        `mkdir -p "$b/foreign/rootfs" "$b/foreign/.mnt"; chmod 700 "$b/foreign"; ` +
        `mkdir -p "$b/fifo/rootfs" "$b/fifo/.mnt"; mkfifo "$b/fifo/state.json"; ` +
        `mkdir -p "$b/forged/rootfs" "$b/forged/.mnt"; chmod 700 "$b/fifo" "$b/forged"; ` +
        `chown -R "$3" "$b/fifo" "$b/forged" "$b/linked"; ` +
        `touch -h -d '2 hours ago' "$b"/*`,
        "sh",
        predictable,
        decoy,
        `${victim.uid}:${victim.gid}`,
      ]);
      await as(
        victim,
        `cat > ${predictable}/forged/state.json`,
        forgedState("forged", sleeper.pid),
      );
      const started3 = Date.now();
      const ps3 = await shoal(["ps", "--format", "json"]);
      assert(Date.now() - started3 < 10_000, "ps does not wait on a FIFO");
      assertEquals([ps3.code, JSON.parse(ps3.stdout)], [0, []]);
      const kill3 = await shoal(["kill", "forged", "TERM"]);
      assertEquals(kill3.code, 1);
      assert(alive(sleeper.pid), "a pid not holding the bundle is never signalled");
      assertEquals(await snapshot(decoy), before, "the link was not followed");
      // fifo and forged were the victim's own stale bundles: swept.
      const left = [...Deno.readDirSync(predictable)].map((e) => e.name).filter((n) =>
        !n.startsWith(".")
      );
      assertEquals(left.sort(), ["foreign", "linked"]);
      const cache = Deno.lstatSync(`${predictable}/.deno`);
      assert(cache.isDirectory && cache.uid === victim.uid, "Deno's cache in the victim's own dir");
    });
  } finally {
    sleeper.kill();
    await sleeper.status;
    await cleanTmp();
    await must("rm", ["-rf", decoy]);
  }
});

Deno.test("run dir attacks against root, in a private mount namespace with its own /tmp", async () => {
  const site = await runSite(false);
  const attacker = await testUser(ATTACKER, false);
  const reference = await site.image("root");
  // The attacker's hands: `env` runs the rest of the line as the attacker.
  const as = userArgv(attacker, "env", []).join(" ");
  // Everything happens in the namespace: its /tmp and /run/user are fresh tmpfs.
  const script = `
set -eu
mount -t tmpfs -o mode=1777 shoal-test /tmp
[ -d /run/user ] && mount -t tmpfs -o mode=755 shoal-test /run/user
shoal() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$SHOAL" "$@"; }
mkdir -p /tmp/system/data /tmp/system/projects/rootfs /tmp/system/projects/.mnt
echo keep > /tmp/system/data/file
touch -d '2 hours ago' /tmp/system/* /tmp/system/projects/*
before=$(find /tmp/system -printf '%p %y %U %m\\n')
${as} ln -s /tmp/system /tmp/shoal-0
shoal ps --format json
shoal kill projects 2>&1 || echo "kill exit $?"
shoal run "$IMAGE" true 2>&1
[ "$before" = "$(find /tmp/system -printf '%p %y %U %m\\n')" ] && echo "system intact"
rm /tmp/shoal-0 && rm -rf /tmp/shoal-0.*
sleep 120 & victim=$!
trap 'kill "$victim" 2>/dev/null || true' EXIT
${as} mkdir -m 777 -p /tmp/shoal-0/forged/rootfs /tmp/shoal-0/forged/.mnt /tmp/shoal-0/fifo/rootfs /tmp/shoal-0/fifo/.mnt
${as} mkfifo /tmp/shoal-0/fifo/state.json
printf '%s' "$FORGED" | sed "s/PID/$victim/; s/START/$(cut -d' ' -f22 /proc/$victim/stat)/" > /tmp/forged
${as} cp /tmp/forged /tmp/shoal-0/forged/state.json
timeout 20 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$SHOAL" ps --format json
shoal kill forged 2>&1 || echo "kill exit $?"
kill -0 "$victim" && echo "victim alive"
`;
  // The pid and its start time are filled in inside the namespace, where the victim runs.
  const forged = JSON.stringify(runState("forged", 0, 0))
    .replace('"pid":0', '"pid":PID').replace('"startTime":0', '"startTime":START');
  let out = "";
  await withProtectedSymlinksOff(async () => {
    const r = await runCommand("unshare", ["-m", "--propagation", "private", "sh", "-c", script], {
      env: { SHOAL: site.bin, IMAGE: reference, FORGED: forged },
    });
    out = r.stdout + r.stderr;
    assertEquals(r.code, 0, out);
  });
  const lines = out.trim().split("\n");
  assertEquals(lines[0], "[]", out);
  assertStringIncludes(out, "no running container named 'projects'");
  assertStringIncludes(out, "kill exit 1");
  assertMatch(out, /shoal: warning: \/tmp\/shoal-0 is a symlink: shoal uses a private directory/);
  assertStringIncludes(out, "system intact");
  assertStringIncludes(out, "no running container named 'forged'");
  assertStringIncludes(out, "victim alive");
});
