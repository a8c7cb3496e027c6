/**
 * The /etc/group shoal writes against the map the kernel got, on both run
 * paths: a user with two subordinate ranges is also a member of a host group
 * whose gid lies in the first of them, so the container sees that group; its
 * name inside must be the one shoal wrote at the gid the kernel shows (shoal
 * computes the gid from mod/runtime/idmap.ts, the kernel from the map the
 * helper or newgidmap wrote).
 */
import { assert, assertEquals } from "./support/assert.ts";
import { runSite, testImages } from "./support/run.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs, testUser } from "./support/users.ts";

const USER = "shoal-test-mapped";
const GROUP = "shoal-mapped";
/** In the first of the user's two ranges (3000000-3000999). */
const GROUP_GID = 3000005;

async function mappedGroupUser() {
  const user = await testUser(USER, false);
  const r = await runCommand("flock", [
    "/tmp/shoal-test-users.lock",
    "sh",
    "-c",
    `getent group "$1" >/dev/null || groupadd --gid "$2" "$1"; usermod --append --groups "$1" "$3"; ` +
    `usermod --del-subuids 1-4294967294 --del-subgids 1-4294967294 "$3"; ` +
    `usermod --add-subuids 3000000-3000999 --add-subuids 4000000-4064535 ` +
    `--add-subgids 3000000-3000999 --add-subgids 4000000-4064535 "$3"`,
    "sh",
    GROUP,
    String(GROUP_GID),
    user.name,
  ]);
  assertEquals(r.code, 0, r.stderr);
  return user;
}

for (const helper of [true, false]) {
  Deno.test(`${helper ? "helper path" : "path B"}: /etc/group names a mapped host group at the gid the kernel shows`, async () => {
    const user = await mappedGroupUser();
    const site = await runSite(helper);
    const { reference } = await testImages();
    const repo = `${site.dir}/repo/${user.name}`;
    await Deno.mkdir(repo, { mode: 0o700 });
    await Deno.chown(repo, user.uid, user.gid);
    const pulled = await runAs(user, site.bin, ["pull", "-q", reference]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const r = await runAs(user, site.bin, [
      "run",
      reference,
      "sh",
      "-c",
      `cat /proc/self/gid_map; echo; id -G; grep '^${GROUP}:' /etc/group`,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const [map, rest] = r.stdout.split("\n\n");
    const [ids, line] = rest!.trim().split("\n");
    // The kernel's view: the group's host gid, through the map, is this gid inside.
    const inside = map!.trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number))
      .map(([c, h, n]) => GROUP_GID >= h! && GROUP_GID < h! + n! ? c! + GROUP_GID - h! : undefined)
      .find((g) => g !== undefined);
    assert(inside !== undefined, `gid ${GROUP_GID} is mapped: ${map}`);
    assert(ids!.split(" ").map(Number).includes(inside), `the process has it: ${ids}`);
    assertEquals(line!.split(":").slice(0, 3), [GROUP, "x", String(inside)]);
  });
}
