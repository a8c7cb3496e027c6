/**
 * Runs that share one container (`--join KEY`, join.ts) and `shoal exec`
 * (launch_exec.ts), as an unprivileged user on both run paths: joined runs
 * see one container (one user and mount namespace, each other's
 * /proc/PID/fd and environ, which sibling user namespaces refuse), the first
 * one ending does not end the others, a killed leader leaves no one hanging
 * and nothing behind, and a run asking for another container is refused.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { eventually, type RunSite, runSite } from "./support/run.ts";
import { runAs } from "./support/users.ts";
import type { RunState } from "../mod/runtime/state.ts";
import { JOIN_DIR, keyDigest } from "../mod/runtime/join.ts";
import { toHex } from "../mod/bytes.ts";
import { openRunBase } from "../mod/runtime/rundir.ts";
import { slurmLocalTasks, stepKey } from "../mod/runtime/step_key.ts";

/**
 * Rank $RANK of two: says its pid in the container's /tmp (private to one
 * container), waits for the other's, lists the other's descriptors, reads a
 * byte of its memory and its environment (all need the same user namespace),
 * then says its namespaces and waits until the other has looked at it too.
 */
const RANK = "echo $$ > /tmp/rank$RANK; o=$((1 - RANK)); i=0; " +
  "while [ ! -s /tmp/rank$o ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; " +
  // Entering its fd directory takes the ptrace check UCX's open of /proc/PID/fd/N does; a
  // listing would also stat each entry, which the other shell may have closed since.
  "p=$(cat /tmp/rank$o); (cd /proc/$p/fd) && echo fd ok; " +
  // Its memory, as cross-memory attach (process_vm_readv) reads it: the same ptrace check.
  "a=$((0x$(head -n1 /proc/$p/maps | cut -d- -f1))); " +
  '[ "$(dd if=/proc/$p/mem bs=1 count=1 skip=$a 2>/dev/null | wc -c)" = 1 ] && echo mem ok; ' +
  'tr "\\0" "\\n" < /proc/$p/environ | grep "^RANK=" | sed "s/^/environ /"; ' +
  "echo ns $(readlink /proc/self/ns/user) $(readlink /proc/self/ns/mnt); touch /tmp/done$RANK; " +
  // Its parent: the rank's own shoal, with no runc exec in between (shoal-enter).
  "echo parent $(cat /proc/$PPID/comm); " +
  "i=0; while [ ! -e /tmp/done$o ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done";

interface Output {
  code: number;
  out: string;
  err: string;
}

async function output(child: Deno.ChildProcess): Promise<Output> {
  const [status, out, err] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { code: status.code, out, err };
}

/** The user's live runs named `name`. */
async function runsNamed(site: RunSite, name: string): Promise<RunState[]> {
  const r = await site.shoal("user", ["ps", "--format", "json"]);
  assertEquals(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as RunState[]).filter((s) => s.name === name);
}

/**
 * What is left in the user's run dir of the runs named `names` and of the
 * step `key` (after a `shoal ps`, which removes what dead runs left).
 */
async function leftOf(site: RunSite, key: string, names: string[]): Promise<string[]> {
  const user = (await site.user("user"))!;
  await site.shoal("user", ["ps"]);
  const base = openRunBase({ uid: user.uid }, false)?.path ?? `/tmp/shoal-${user.uid}`;
  const h = await keyDigest(`join:${key}`);
  const paths = [
    ...names.map((n) => `${base}/${n}`),
    ...["json", "lock", "members"].map((x) => `${base}/${JOIN_DIR}/${h}.${x}`),
  ];
  const left: string[] = [];
  for (const p of paths) {
    try {
      await Deno.lstat(p);
      left.push(p);
    } catch { /* gone */ }
  }
  return left;
}

/** `shoal run --join KEY --name NAME IMAGE CMD...` as the user: NAME is the leader's. */
function joined(
  site: RunSite,
  key: string,
  name: string,
  image: string,
  cmd: string[],
  env: string[] = [],
) {
  return site.spawn("user", ["run", "--join", key, "--name", name, ...env, image, ...cmd]);
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: --join runs share one container, and shoal exec`, async (t) => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const key = `k${crypto.randomUUID().slice(0, 8)}`;

    await t.step("two runs with one --join KEY see one container", async () => {
      const name = `j${crypto.randomUUID().slice(0, 8)}`;
      const ranks = [0, 1].map((rank) =>
        joined(site, key, name, image, ["sh", "-c", RANK], ["-e", `RANK=${rank}`])
      );
      const [a, b] = (await Promise.all((await Promise.all(ranks)).map(output))) as [
        Output,
        Output,
      ];
      assertEquals(a.code, 0, a.err);
      assertEquals(b.code, 0, b.err);
      for (const [r, other] of [[a, 1], [b, 0]] as const) {
        assert(r.out.includes("fd ok\nmem ok\n"), r.out + r.err);
        assert(r.out.includes(`environ RANK=${other}\n`), r.out + r.err);
      }
      const ns = (text: string) => text.split("\n").find((l) => l.startsWith("ns user:"));
      assert(ns(a.out) !== undefined, a.out);
      assertEquals(ns(a.out), ns(b.out));
      // Each rank's process is its shoal's child: a signal for the rank passes nothing else.
      for (const r of [a, b]) assertMatch(r.out, /^parent (deno|shoal)$/m);
      assertEquals(await leftOf(site, key, [name]), []);
    });

    await t.step("hydra's mpiexec: the ranks on this node share one container", async () => {
      const user = (await site.user("user"))!;
      const r = await runAs(user, "mpiexec", [
        "-n",
        "2",
        site.bin,
        "run",
        image,
        "readlink",
        "/proc/self/ns/mnt",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const [a, b] = r.stdout.trim().split("\n");
      assert(a?.startsWith("mnt:[") && a === b, r.stdout);
    });

    await t.step("the first run ending does not end the others", async () => {
      const name = `j${crypto.randomUUID().slice(0, 8)}`;
      const first = await joined(site, key, name, image, ["sleep", "0.5"]);
      assert(await eventually(async () => (await runsNamed(site, name)).length === 1, 10_000));
      const second = await joined(site, key, name, image, [
        "sh",
        "-c",
        "sleep 2; echo still here; exit 3",
      ]);
      const [a, b] = await Promise.all([output(first), output(second)]);
      assertEquals(a.code, 0, a.err);
      assertEquals([b.code, b.out], [3, "still here\n"], b.err);
      assertEquals(await leftOf(site, key, [name]), []);
    });

    await t.step("a run asking for another container is refused in one line", async () => {
      const name = `j${crypto.randomUUID().slice(0, 8)}`;
      const first = await joined(site, key, name, image, ["sleep", "3"]);
      try {
        assert(await eventually(async () => (await runsNamed(site, name)).length === 1, 10_000));
        const r = await site.shoal("user", [
          "run",
          "--join",
          key,
          "-v",
          "/etc:/mnt:ro",
          image,
          "true",
        ]);
        assertEquals(r.code, 1, r.stderr);
        assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert(r.stderr.includes(`--join ${key}: `) && r.stderr.includes("mounts"), r.stderr);
      } finally {
        await output(first);
      }
      assertEquals(await leftOf(site, key, [name]), []);
    });

    await t.step("the leader's shoal killed: the others end, nothing stays", async () => {
      const name = `j${crypto.randomUUID().slice(0, 8)}`;
      const first = await joined(site, key, name, image, ["sleep", "60"]);
      assert(await eventually(async () => (await runsNamed(site, name)).length === 1, 10_000));
      const [leader] = await runsNamed(site, name);
      const second = await joined(site, key, name, image, ["sh", "-c", "touch /tmp/in; sleep 60"]);
      // The joiner's rank runs in the leader's container.
      assert(
        await eventually(async () => {
          const r = await site.shoal("user", ["exec", name, "test", "-e", "/tmp/in"]);
          return r.code === 0;
        }, 10_000),
      );
      const started = Date.now();
      Deno.kill(leader!.pid, "SIGKILL");
      const b = await output(second);
      await output(first);
      assert(b.code !== 0, b.out + b.err);
      assert(Date.now() - started < 15_000, "the joined run ended soon");
      assert(
        await eventually(async () => (await leftOf(site, key, [name])).length === 0, 10_000),
        (await leftOf(site, key, [name])).join(" "),
      );
    });

    await t.step("a signal to a rank's shoal reaches that rank only", async () => {
      const name = `j${crypto.randomUUID().slice(0, 8)}`;
      const first = await joined(site, key, name, image, ["sh", "-c", "sleep 3; echo first"]);
      assert(await eventually(async () => (await runsNamed(site, name)).length === 1, 10_000));
      const second = await joined(site, key, name, image, [
        "sh",
        "-c",
        'trap "echo got TERM; exit 5" TERM; touch /tmp/ready; while :; do sleep 0.1; done',
      ]);
      assert(
        await eventually(
          async () =>
            (await site.shoal("user", ["exec", name, "test", "-e", "/tmp/ready"])).code === 0,
          10_000,
        ),
      );
      Deno.kill(second.pid, "SIGTERM");
      const [a, b] = await Promise.all([output(first), output(second)]);
      assertEquals([b.code, b.out], [5, "got TERM\n"], b.err);
      assertEquals([a.code, a.out], [0, "first\n"], a.err);
      assertEquals(await leftOf(site, key, [name]), []);
    });

    await t.step("shoal exec: a command in a named run, its status and identity", async () => {
      const name = `x${crypto.randomUUID().slice(0, 8)}`;
      const main = await site.spawn("user", [
        "run",
        "--name",
        name,
        image,
        "sh",
        "-c",
        "readlink /proc/self/ns/mnt > /tmp/ns; sleep 30",
      ]);
      try {
        assert(await eventually(async () => (await runsNamed(site, name)).length === 1, 10_000));
        const user = (await site.user("user"))!;
        const r = await site.shoal("user", [
          "exec",
          "-e",
          "X=y",
          "-w",
          "/tmp",
          name,
          "sh",
          "-c",
          'echo "$(id -u) $IMG $X $(pwd)"; [ "$(cat ns)" = "$(readlink /proc/self/ns/mnt)" ] && echo same; exit 7',
        ]);
        assertEquals([r.code, r.stdout], [7, `${user.uid} image y /tmp\nsame\n`], r.stderr);
        const root = await site.shoal("user", ["exec", "-u", "root", name, "true"]);
        // Started before the run ends: it ends with it.
        const lingering = await site.spawn("user", ["exec", name, "sleep", "31.5"]);
        assert(
          await eventually(async () => {
            const ps = await site.shoal("user", ["exec", name, "ps", "-o", "args"]);
            return ps.stdout.includes("sleep 31.5");
          }, 10_000),
        );
        assertEquals(root.code, 2, root.stderr);
        assert(root.stderr.includes("-u root:"), root.stderr);
        await site.shoal("user", ["kill", name]);
        const ended = await output(lingering);
        assert(ended.code !== 0, ended.err);
      } finally {
        await site.shoal("user", ["kill", name]);
        await output(main);
      }
      const missing = await site.shoal("user", ["exec", name, "true"]);
      assertEquals(missing.code, 1);
      assert(
        missing.stderr.startsWith(`shoal: error: no running container named '${name}'`),
        missing.stderr,
      );
    });
  });
}

Deno.test("step keys: ranks of one step on one node share; a lone rank does not", () => {
  const slurm = {
    SLURM_JOB_ID: "7",
    SLURM_STEP_ID: "0",
    SLURM_SRUN_COMM_PORT: "4242",
    SLURM_STEP_TASKS_PER_NODE: "3(x2),1",
  };
  assertEquals(stepKey({ ...slurm, SLURM_NODEID: "1" }), {
    key: "slurm:7.0:4242",
    source: "slurm",
    localRanks: 3,
  });
  assertEquals(stepKey({ ...slurm, SLURM_NODEID: "2" }), undefined);
  assertEquals(slurmLocalTasks("2(x3),1", "3"), 1);
  assertEquals(slurmLocalTasks("garbage", "0"), undefined);
  const hydra = { PMI_RANK: "1", MPI_LOCALNRANKS: "2" };
  assertEquals(stepKey(hydra, undefined, () => "99.123"), {
    key: "hydra:99.123",
    source: "hydra",
    localRanks: 2,
  });
  assertEquals(stepKey({ ...hydra, MPI_LOCALNRANKS: "1" }, undefined, () => "99.123"), undefined);
  assertEquals(stepKey({ PMIX_NAMESPACE: "ns", OMPI_COMM_WORLD_LOCAL_SIZE: "4" })?.key, "pmix:ns");
  assertEquals(stepKey({}), undefined);
  assertEquals(stepKey(slurm, "mine"), { key: "join:mine", source: "join" });
});

Deno.test("step files: a short key names them itself, a long one by its digest, never the same", async () => {
  const slurm = await keyDigest("slurm:7.0:4242");
  assertEquals(slurm, `k${toHex(new TextEncoder().encode("slurm:7.0:4242"))}`);
  const long = `join:${"x".repeat(200)}`;
  const digest = await keyDigest(long);
  assertMatch(digest, /^d[0-9a-f]{32}$/);
  assertEquals(await keyDigest(long), digest);
  assert(digest !== await keyDigest(`join:${"x".repeat(201)}`));
  // A name stays within what a filesystem takes, with the longest suffix added.
  assert(`${await keyDigest("k".repeat(64))}.members`.length < 255);
  assert((await keyDigest("k".repeat(65))).startsWith("d"));
});
