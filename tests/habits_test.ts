/**
 * Habits users bring from Docker, Sarus, Apptainer and Enroot (issue 11,
 * item 6): standard input passed without -i, a $HOME that exists and is
 * writable, --rm, --env-file, -u, --entrypoint, an empty command name, and
 * the caller's supplementary groups kept, on both run paths, as real users.
 */
import { exists } from "./support/fs.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./support/assert.ts";
import { type RunSite, runSite } from "./support/run.ts";
import { runCommand } from "./support/shoal.ts";
import { runAs, testUser, userArgv } from "./support/users.ts";
import { UsageError } from "../mod/errors.ts";
import { parseEnvFile } from "../mod/runtime/env.ts";
import { userOptionIsRoot } from "../mod/runtime/user_option.ts";

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

/** Exit status `code` and exactly one line on stderr, matching `text`. */
function assertOneLineError(r: { code: number; stderr: string }, code: number, text: RegExp) {
  assertEquals(r.code, code, r.stderr);
  assertEquals(lines(r.stderr).length, 1, r.stderr);
  assertMatch(r.stderr.trimEnd(), text);
}

Deno.test("--env-file: Docker's format, errors name the file and the line", () => {
  const text = '\uFEFF# a comment\n\nA=1\n  B=two words \nC=\nFROM_HOST\nQ="quoted"\r\nD=x=y\n';
  assertEquals(parseEnvFile("f.env", text), [
    { name: "A", value: "1" },
    { name: "B", value: "two words " },
    { name: "C", value: "" },
    { name: "FROM_HOST" },
    { name: "Q", value: '"quoted"' },
    { name: "D", value: "x=y" },
  ]);
  for (const [bad, name] of [["A=1\nexport B=2\n", "export B"], ["A=1\n=x\n", ""]]) {
    assertThrows(
      () => parseEnvFile("/x/f.env", bad!),
      UsageError,
      `--env-file /x/f.env: line 2: invalid variable name '${name}'`,
    );
  }
});

Deno.test("-u: yourself by name or id, or root; anything else is refused", () => {
  const alice = { uid: 1001, gid: 1001, name: "alice", groupName: "staff" };
  for (const spec of ["alice", "1001", "1001:1001", "alice:staff", "1001:staff"]) {
    assertEquals(userOptionIsRoot(spec, alice), false, spec);
  }
  for (const spec of ["0", "root", "0:0", "root:root"]) {
    assertEquals(userOptionIsRoot(spec, alice), true, spec);
  }
  for (const spec of ["bob", "1002", "1001:0", "0:1001", "alice:wheel", "", "1001:1001:x"]) {
    assertThrows(
      () => userOptionIsRoot(spec, alice),
      UsageError,
      `-u ${spec}: shoal runs a container as alice (1001:1001) or as root (-u 0, as --root)`,
    );
  }
});

/** A user in two supplementary groups: one lets it read a file, the other denies it one. */
async function twoGroupUser() {
  const user = await testUser("shoal-test-2grp", true);
  const r = await runCommand("flock", [
    "/tmp/shoal-test-users.lock",
    "sh",
    "-c",
    'for g in shoal-reads shoal-denied; do getent group "$g" >/dev/null || groupadd "$g"; done; ' +
    'usermod --append --groups shoal-reads,shoal-denied "$1"',
    "sh",
    user.name,
  ]);
  assertEquals(r.code, 0, r.stderr);
  const gid = async (g: string) =>
    Number((await runCommand("getent", ["group", g])).stdout.split(":")[2]);
  return { user, reads: await gid("shoal-reads"), denied: await gid("shoal-denied") };
}

/** A directory of the test user's, removed by the caller. */
async function userDir(s: RunSite): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-habits-" });
  const user = (await s.user("user"))!;
  await Deno.chown(dir, user.uid, user.gid);
  return dir;
}

for (const helper of [true, false]) {
  const tag = helper ? "path A (helper)" : "path B (squashfuse)";
  let sitePromise: Promise<RunSite> | undefined;
  const site = () => sitePromise ??= runSite(helper);

  Deno.test(`${tag}: stdin from a pipe or a file reaches the container without -i`, async () => {
    const s = await site();
    const image = await s.image("user");
    const piped = await s.shoal("user", ["run", image, "cat"], { stdin: "piped data\n" });
    assertEquals([piped.code, piped.stdout], [0, "piped data\n"], piped.stderr);
    const withI = await s.shoal("user", ["run", "-i", image, "cat"], { stdin: "with -i\n" });
    assertEquals(withI.stdout, "with -i\n", withI.stderr);
    // /dev/null: the container reads nothing and ends.
    const none = await s.shoal("user", ["run", image, "cat"]);
    assertEquals([none.code, none.stdout], [0, ""], none.stderr);
    const user = (await s.user("user"))!;
    // A pipe nobody closes (srun's, a parent's) does not hold a run whose container ended.
    const [cmd, ...args] = userArgv(user, s.bin, ["run", image, "echo", "ended"]);
    const open = new Deno.Command(cmd!, { args, stdin: "piped", stdout: "piped" }).spawn();
    const timer = setTimeout(() => open.kill("SIGKILL"), 20_000);
    try {
      const out = await open.output();
      assertEquals([out.code, new TextDecoder().decode(out.stdout)], [0, "ended\n"]);
    } finally {
      clearTimeout(timer);
    }
    const dir = await userDir(s);
    try {
      await Deno.writeTextFile(`${dir}/in`, "from a file\n");
      const file = await runAs(user, "sh", ["-c", `${s.bin} run ${image} cat < ${dir}/in`]);
      assertEquals(file.stdout, "from a file\n", file.stderr);
      // A terminal is not read without -i (runc would read it even when the container does
      // not), and Ctrl-C reaches the container once, through shoal: script(1) types it
      // (exec: a shell in the terminal's foreground group would die of it first).
      const inner = 'cat; echo cat-ended; trap "echo got-int; exit 3" INT; echo waiting; ' +
        "sleep 5 >/dev/null & wait";
      await Deno.writeTextFile(`${dir}/tty.sh`, `exec ${s.bin} run ${image} sh -c '${inner}'\n`);
      const tty = await runAs(user, "sh", [
        "-c",
        `(sleep 1.5; printf '\\003') | script -qec "exec sh ${dir}/tty.sh" /dev/null`,
      ]);
      assertEquals(tty.code, 3, tty.stdout + tty.stderr);
      const out = lines(tty.stdout.replaceAll("\r", "").replaceAll("^C", ""));
      assertEquals(out, ["cat-ended", "waiting", "got-int"], JSON.stringify(tty.stdout));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: $HOME exists and is writable, as the user and with --root`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const script = 'cd && pwd && echo "$HOME" && mkdir -p .cache/pip && touch .cache/pip/x && ' +
      "stat -c '%u %a' . && echo writable";
    const own = await s.shoal("user", ["run", image, "sh", "-c", script]);
    assertEquals(own.code, 0, own.stderr);
    assertEquals(lines(own.stdout), [user.home, user.home, `${user.uid} 700`, "writable"]);
    const root = await s.shoal("user", ["run", "--root", image, "sh", "-c", script]);
    assertEquals(root.code, 0, root.stderr);
    assertEquals(lines(root.stdout).map((l) => l.split(" ")[0]), [
      "/root",
      "/root",
      "0",
      "writable",
    ]);
    // Nothing of it stays on the host.
    assertEquals(await exists(`${user.home}/.cache/pip/x`), false);
  });

  Deno.test(`${tag}: a site mount of $HOME binds each user's real home`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    try {
      await s.writeConfig({
        mounts: [
          { source: "$HOME", destination: "$HOME", readonly: false },
          { source: "/var/tmp", destination: "/scratch/${USER}" },
        ],
      });
      const r = await s.shoal("user", [
        "run",
        image,
        "sh",
        "-c",
        'echo from-container > "$HOME/.shoal-habits" && test -d "/scratch/$USER" && echo ok',
      ]);
      assertEquals([r.code, r.stdout], [0, "ok\n"], r.stderr);
      assertEquals(await Deno.readTextFile(`${user.home}/.shoal-habits`), "from-container\n");
    } finally {
      await Deno.remove(`${user.home}/.shoal-habits`).catch(() => {});
      await s.writeConfig();
    }
  });

  Deno.test(`${tag}: --rm, --env-file, -u and --entrypoint as Docker takes them`, async () => {
    const s = await site();
    const image = await s.image("user");
    const user = (await s.user("user"))!;
    const dir = await userDir(s);
    try {
      await Deno.writeTextFile(`${dir}/a.env`, "# settings\nA=from file\n\nB=file\nFROM_HOST\n");
      const env = await s.shoal(
        "user",
        ["run", "--rm", "--env-file", `${dir}/a.env`, "-e", "B=option", image, "sh", "-c"].concat(
          'echo "$A|$B|$FROM_HOST"',
        ),
        { env: { FROM_HOST: "host" } },
      );
      assertEquals(env.stdout, "from file|option|host\n", env.stderr);
      await Deno.writeTextFile(`${dir}/bad.env`, "A=1\nNOT VALID=2\n");
      assertOneLineError(
        await s.shoal("user", ["run", "--env-file", `${dir}/bad.env`, image, "true"]),
        2,
        new RegExp(`^shoal: error: --env-file ${dir}/bad.env: line 2: invalid variable name`),
      );
      assertOneLineError(
        await s.shoal("user", ["run", "--env-file", `${dir}/missing.env`, image, "true"]),
        2,
        /^shoal: error: --env-file \S+missing.env: no such file$/,
      );

      for (const spec of [user.name, `${user.uid}:${user.gid}`]) {
        const me = await s.shoal("user", ["run", "-u", spec, image, "id", "-u"]);
        assertEquals(me.stdout, `${user.uid}\n`, me.stderr);
      }
      for (const spec of ["0", "root:root"]) {
        const root = await s.shoal("user", ["run", "--user", spec, image, "id", "-u"]);
        assertEquals(root.stdout, "0\n", root.stderr);
      }
      assertOneLineError(
        await s.shoal("user", ["run", "-u", "nobody", image, "id"]),
        2,
        /^shoal: error: -u nobody: shoal runs a container as shoal-test \(\d+:\d+\) or as root/,
      );
      assertOneLineError(
        await s.shoal("user", ["run", "--root", "-u", user.name, image, "id"]),
        2,
        /^shoal: error: -u shoal-test and --root ask for two users: give one of them$/,
      );

      const sh = await s.shoal("user", ["run", "--entrypoint", "/bin/sh", image, "-c", "echo hi"]);
      assertEquals(sh.stdout, "hi\n", sh.stderr);
      const cleared = await s.shoal("user", ["run", "--entrypoint", "", image, "echo", "x"]);
      assertEquals(cleared.stdout, "x\n", cleared.stderr);
      assertOneLineError(
        await s.shoal("user", ["run", "--entrypoint", "", image]),
        2,
        /^shoal: error: no command to run: --entrypoint '' clears the image's ENTRYPOINT and CMD/,
      );
      // Named, to be told apart from other runs of the test user (other test files').
      const name = `habits-empty-${crypto.randomUUID().slice(0, 8)}`;
      assertOneLineError(
        await s.shoal("user", ["run", "--name", name, image, ""]),
        2,
        /^shoal: error: the command to run has an empty name: '' given as the program to run/,
      );
      const ps = await s.shoal("user", ["ps", "--format", "json"]);
      assert(!ps.stdout.includes(name), "no run left behind");
      const again = await s.shoal("user", ["run", "--name", name, image, "true"]);
      assertEquals(again.code, 0, `the name is free again: ${again.stderr}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${tag}: a user in two supplementary groups keeps both inside`, async () => {
    const s = await site();
    const { user, reads, denied } = await twoGroupUser();
    const repo = `${s.dir}/repo/${user.name}`;
    await Deno.mkdir(repo, { mode: 0o700, recursive: true });
    await Deno.chown(repo, user.uid, user.gid);
    const image = await s.image("user");
    const pulled = await runAs(user, s.bin, ["pull", "-q", image]);
    assertEquals(pulled.code, 0, pulled.stderr);
    const dir = await Deno.makeTempDir({ prefix: "shoal-habits-groups-" });
    try {
      await Deno.chmod(dir, 0o755);
      for (
        const [name, gid, mode] of [["group-only", reads, 0o640], ["not-group", denied, 0o604]]
      ) {
        await Deno.writeTextFile(`${dir}/${name}`, `${name}\n`);
        await Deno.chown(`${dir}/${name}`, 0, gid as number);
        await Deno.chmod(`${dir}/${name}`, mode as number);
      }
      const r = await runAs(user, s.bin, [
        "run",
        "-v",
        `${dir}:/data`,
        image,
        "sh",
        "-c",
        "id -G; cat /data/group-only; cat /data/not-group 2>/dev/null || echo denied",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const [ids, ...rest] = lines(r.stdout);
      // Unmapped host groups show as the overflow gid, and still count for access.
      assertEquals(ids!.split(" ").length, 3, ids);
      assertEquals(rest, ["group-only", "denied"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
