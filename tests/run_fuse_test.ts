/**
 * `shoal run`, `ps` and `kill` on path B: no helper installed, so images are
 * mounted with squashfuse in a user namespace (tests/support/run_cases.ts);
 * and path B's guard, which makes that namespace and empties it when the run
 * ends.
 */
import { pidsInNamespace } from "./support/proc.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { registerRunTests } from "./support/run_cases.ts";
import { processesMentioning, runSite } from "./support/run.ts";
import { ShoalError } from "../mod/errors.ts";
import { startGuard } from "../mod/runtime/guard.ts";
import { installLayout } from "../mod/config/layout.ts";

const GUARD = installLayout().guardScript;

registerRunTests(false);

function killAll(pids: number[]) {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
}

/** Root may map its own id with newuidmap (tests run as root, as CI does). */
const ROOT_ONLY = [{ containerID: 0, hostID: 0, size: 1 }];

Deno.test("path B guard: a user namespace with the mapping; at finish nothing in it survives", async () => {
  const guard = await startGuard(GUARD, {
    uidMappings: ROOT_ONLY,
    gidMappings: ROOT_ONLY,
    setgroups: "allow",
  });
  const ns = Deno.readLinkSync(`/proc/${guard.holder}/ns/user`);
  const marker = `guard-${crypto.randomUUID().slice(0, 8)}`;
  let child: Deno.ChildProcess | undefined;
  try {
    assert(ns !== Deno.readLinkSync("/proc/self/ns/user"), "the holder has a namespace of its own");
    assertEquals(Deno.readTextFileSync(`/proc/${guard.holder}/uid_map`).trim().split(/\s+/), [
      "0",
      "0",
      "1",
    ]);
    // What a container may leave: processes deaf to the usual signals, one of
    // them orphaned (its parent gone), one still forking.
    child = new Deno.Command("nsenter", {
      args: [
        `--target=${guard.holder}`,
        "--user",
        "--mount",
        "--preserve-credentials",
        "--",
        "sh",
        "-c",
        `trap '' TERM INT HUP
        (sh -c 'while :; do sleep 1; done; : ${marker}' &)
        sh -c 'sleep 600; : ${marker}' &
        echo started
        wait`,
      ],
      stdin: "null",
      stdout: "piped",
    }).spawn();
    const said = await child.stdout.getReader().read();
    assertEquals(new TextDecoder().decode(said.value).trim(), "started");
    assertEquals((await processesMentioning(marker)).length, 3, "the script and what it left run");
    await guard.finish();
    assertEquals(
      pidsInNamespace("user", ns),
      [],
      "nothing runs in the namespace once finish() returns",
    );
    assertEquals(await processesMentioning(marker), []);
    assertEquals((await child.status).signal, "SIGKILL");
    // finish() again is the same wait, done.
    await guard.finish();
  } finally {
    await guard.finish();
    killAll(pidsInNamespace("user", ns));
    await child?.stdout.cancel().catch(() => {});
  }
});

Deno.test("path B guard: a failed id map is one line saying why, and leaves no holder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-guard-" });
  try {
    // A newuidmap that refuses, as it does for a range /etc/subuid does not grant.
    const refusing = `${dir}/newuidmap`;
    await Deno.writeTextFile(
      refusing,
      `#!/bin/sh\necho "$1" >"${dir}/holder"\n` +
        `echo "newuidmap: write to uid_map failed: Operation not permitted" >&2\nexit 1\n`,
      { mode: 0o755 },
    );
    const err = await assertRejects(
      () =>
        startGuard(GUARD, {
          uidMappings: ROOT_ONLY,
          gidMappings: ROOT_ONLY,
          newuidmap: refusing,
          setgroups: "allow",
        }),
      ShoalError,
    );
    assertEquals(
      err.message,
      "could not create the container's user namespace: " +
        "newuidmap: write to uid_map failed: Operation not permitted",
    );
    const holder = (await Deno.readTextFile(`${dir}/holder`)).trim();
    const cmdline = await Deno.readTextFile(`/proc/${holder}/cmdline`).catch(() => "");
    assert(!cmdline.includes("kill -STOP"), `the holder ${holder} is still there`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("path B: what the container leaves running is gone by the time shoal exits", async () => {
  const site = await runSite(false);
  const image = await site.image("user");
  const marker = `left-${crypto.randomUUID().slice(0, 8)}`;
  // --pid=host (the default): no pid namespace ends it with the container's init.
  const r = await site.shoal("user", [
    "run",
    image,
    "sh",
    "-c",
    `sh -c 'sleep 600; : ${marker}' </dev/null >/dev/null 2>&1 & echo started`,
  ]);
  const left = await processesMentioning(marker);
  try {
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, "started\n");
    assertEquals(r.stderr, "");
    assertEquals(left, []);
  } finally {
    killAll(left.map((l) => Number(l.trim().split(/\s+/)[0])));
  }
});

Deno.test("path B: the container's root filesystem is mounted nosuid", async () => {
  const site = await runSite(false);
  const image = await site.image("user");
  const r = await site.shoal("user", ["run", image, "grep", " / / ", "/proc/self/mountinfo"]);
  assertEquals(r.code, 0, r.stderr);
  // The sixth field holds the mount's own options.
  const options = r.stdout.trim().split(" ")[5]!.split(",");
  assert(options.includes("nosuid"), r.stdout);
});
