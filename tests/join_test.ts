/**
 * Runs that share one container (`--join KEY`, join.ts) and `shoal exec`
 * (launch_exec.ts), as an unprivileged user on both run paths: joined runs
 * see one container (one user and mount namespace, each other's
 * /proc/PID/fd and environ, which sibling user namespaces refuse), the first
 * one ending does not end the others, a killed leader leaves no one hanging
 * and nothing behind, and a run asking for another container is refused.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { eventually, type RunSite, runSite } from "./support/run.ts";
import type { RunState } from "../mod/runtime/state.ts";

/**
 * Rank $RANK of two: says its pid in the container's /tmp (private to one
 * container), waits for the other's, lists the other's descriptors and reads
 * its environment (both need the same user namespace), then says its
 * namespaces and waits a moment so that the other can look at it too.
 */
const RANK = "echo $$ > /tmp/rank$RANK; o=$((1 - RANK)); i=0; " +
  "while [ ! -s /tmp/rank$o ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; " +
  "p=$(cat /tmp/rank$o); ls /proc/$p/fd >/dev/null && echo fd ok; " +
  'tr "\\0" "\\n" < /proc/$p/environ | grep "^RANK=" | sed "s/^/environ /"; ' +
  "echo ns $(readlink /proc/self/ns/user /proc/self/ns/mnt); sleep 1";

async function output(
  child: Deno.ChildProcess,
): Promise<{ code: number; out: string; err: string }> {
  const [status, out, err] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { code: status.code, out, err };
}

async function runs(site: RunSite): Promise<RunState[]> {
  const r = await site.shoal("user", ["ps", "--format", "json"]);
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The user's run dir holds nothing of a run any more: no bundle, no join file. */
async function runDirEmpty(site: RunSite): Promise<string[]> {
  const r = await site.shoal("user", ["ps", "--format", "json"]);
  const user = (await site.user("user"))!;
  const base = `/run/user/${user.uid}/shoal`;
  const ls = async (dir: string) => {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) names.push(e.name);
    } catch { /* no such dir */ }
    return names;
  };
  const tmp = `/tmp/shoal-${user.uid}`;
  const left = [...await ls(base), ...await ls(tmp)].filter((n) => n !== ".join");
  const join = [...await ls(`${base}/.join`), ...await ls(`${tmp}/.join`)];
  return [...left, ...join, ...(r.stdout.trim() === "[]" ? [] : [r.stdout])];
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  Deno.test(`${tag}: --join runs share one container, and shoal exec`, async (t) => {
    const site = await runSite(helper);
    const image = await site.image("user");
    const key = `k${crypto.randomUUID().slice(0, 8)}`;

    await t.step("two runs with one --join KEY see one container", async () => {
      const ranks = [0, 1].map((rank) =>
        site.spawn("user", ["run", "--join", key, "-e", `RANK=${rank}`, image, "sh", "-c", RANK])
      );
      const [a, b] = await Promise.all((await Promise.all(ranks)).map(output));
      assertEquals(a.code, 0, a.err);
      assertEquals(b.code, 0, b.err);
      for (const [r, other] of [[a, 1], [b, 0]] as const) {
        assert(r.out.includes("fd ok\n"), r.out + r.err);
        assert(r.out.includes(`environ RANK=${other}\n`), r.out + r.err);
      }
      const ns = (text: string) => text.split("\n").find((l) => l.startsWith("ns "));
      assertEquals(ns(a.out), ns(b.out));
      assert(ns(a.out) !== undefined, a.out);
      assertEquals(await runDirEmpty(site), []);
    });

    await t.step("the first run ending does not end the others", async () => {
      const first = await site.spawn("user", ["run", "--join", key, image, "sleep", "0.5"]);
      assert(await eventually(async () => (await runs(site)).length === 1, 10_000));
      const second = await site.spawn("user", [
        "run",
        "--join",
        key,
        image,
        "sh",
        "-c",
        "sleep 2; echo still here; exit 3",
      ]);
      const [a, b] = await Promise.all([output(first), output(second)]);
      assertEquals(a.code, 0, a.err);
      assertEquals([b.code, b.out], [3, "still here\n"], b.err);
      assertEquals(await runDirEmpty(site), []);
    });

    await t.step("a run asking for another container is refused in one line", async () => {
      const first = await site.spawn("user", ["run", "--join", key, image, "sleep", "3"]);
      try {
        assert(await eventually(async () => (await runs(site)).length === 1, 10_000));
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
    });

    await t.step("the leader's shoal killed: the others end, nothing stays", async () => {
      const first = await site.spawn("user", ["run", "--join", key, image, "sleep", "60"]);
      assert(await eventually(async () => (await runs(site)).length === 1, 10_000));
      const [leader] = await runs(site);
      const second = await site.spawn("user", ["run", "--join", key, image, "sleep", "60"]);
      // The joiner's rank runs: a second sleep in the leader's run dir's container.
      assert(
        await eventually(async () => {
          const r = await site.shoal("user", ["exec", leader!.name, "sh", "-c", "pgrep -c sleep"]);
          return r.stdout.trim() === "2";
        }, 10_000),
      );
      const started = Date.now();
      Deno.kill(leader!.pid, "SIGKILL");
      const b = await output(second);
      await output(first);
      assert(b.code !== 0, b.out + b.err);
      assert(Date.now() - started < 15_000, "the joined run ended soon");
      assert(
        await eventually(async () => (await runDirEmpty(site)).length === 0, 10_000),
        (await runDirEmpty(site)).join(" "),
      );
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
        assert(await eventually(async () => (await runs(site)).length === 1, 10_000));
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
        assertEquals(root.code, 2, root.stderr);
        assert(root.stderr.includes("-u root:"), root.stderr);
      } finally {
        await site.shoal("user", ["kill", name]);
        await output(main);
      }
      const missing = await site.shoal("user", ["exec", name, "true"]);
      assertEquals(missing.code, 1);
      assertEquals(
        missing.stderr.trim().split("\n")[0],
        `shoal: error: no running container named '${name}'`,
      );
    });
  });
}
