/**
 * The installed launcher, <prefix>/bin/shoal of a bundle install, in both of
 * its forms: the static program install.sh builds where it can
 * (helper/launcher.c) and the shell script it writes otherwise
 * (`--script-launcher`). Each is copied into a prefix of its own whose
 * lib/shoal/deno is a script that prints what it was given (arguments,
 * environment, blocked signals), and run as a user of the test's own: the
 * two must give Deno the same, case by case, and keep Deno's caches out of
 * any directory that is not the user's.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { installedShoal, rootOwnedTempDir, runInstall } from "./support/install.ts";
import { runCommand } from "./support/shoal.ts";
import { exists } from "./support/fs.ts";
import { runAs, type TestUser, testUser, userArgv } from "./support/users.ts";

/**
 * What the fake Deno prints: its arguments, the environment the launcher sets,
 * its blocked signals. Perl (essential in Debian), which leaves the signal
 * mask as it got it; dash clears it as it starts.
 */
const FAKE_DENO = `#!/usr/bin/perl
print "args: @ARGV\\n";
for my $v (qw(DENO_DIR DENO_NO_UPDATE_CHECK SHOAL_LAUNCHER_ADDED NODE_OPTIONS)) {
  print "$v: ", (exists $ENV{$v} ? $ENV{$v} : "unset"), "\\n";
}
open(my $status, "<", "/proc/self/status") or die;
while (<$status>) { print "$1\\n" if /^SigBlk:\\s*(\\S+)/ }
`;

/** SIGUSR1 and SIGUSR2 (bits 9 and 11) blocked, nothing else: the launcher's mask. */
const HELD_MASK = "0000000000000a00";

interface Launchers {
  /** The prefixes with each launcher as bin/shoal and the fake Deno. */
  binary: string;
  script: string;
  user: TestUser;
  other: TestUser;
  dir: string;
}

let made: Promise<Launchers> | undefined;

function launchers(): Promise<Launchers> {
  made ??= (async () => {
    const dir = await rootOwnedTempDir();
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const scriptInstall = `${dir}/script-install`;
    const r = await runInstall([
      "--prefix",
      scriptInstall,
      "--no-bootstrap",
      "--no-compile",
      "--script-launcher",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /bin\/shoal \(launcher, a shell script\)$/m);
    const checked = await runCommand("shellcheck", ["--shell=sh", `${scriptInstall}/bin/shoal`]);
    assertEquals(checked.code, 0, `the launcher script install.sh wrote: ${checked.stdout}`);
    const binary = await installedShoal();
    const sources = { binary: binary.bin, script: `${scriptInstall}/bin/shoal` };
    for (const [kind, bin] of Object.entries(sources)) {
      await Deno.mkdir(`${dir}/${kind}/bin`, { recursive: true });
      await Deno.mkdir(`${dir}/${kind}/lib/shoal`, { recursive: true });
      await Deno.copyFile(bin, `${dir}/${kind}/bin/shoal`);
      await Deno.writeTextFile(`${dir}/${kind}/lib/shoal/deno`, FAKE_DENO, { mode: 0o755 });
      await Deno.chmod(`${dir}/${kind}/lib/shoal/deno`, 0o755);
    }
    const head = new Uint8Array(4);
    const file = await Deno.open(`${dir}/binary/bin/shoal`);
    await file.read(head);
    file.close();
    assertEquals(
      new TextDecoder().decode(head),
      "\x7fELF",
      "install.sh builds the binary launcher where make and gcc are (scripts/bootstrap installs them)",
    );
    return {
      binary: `${dir}/binary`,
      script: `${dir}/script`,
      user: await testUser("shoal-launch", false),
      other: await testUser("shoal-attacker", false),
      dir,
    };
  })();
  return made;
}

/** Runs `sh -c SCRIPT` as `user` with $1 the launcher; the fake Deno's report, or the error. */
async function launch(user: TestUser, prefix: string, script: string): Promise<string> {
  const r = await runAs(user, "sh", ["-c", script, "sh", `${prefix}/bin/shoal`], { cwd: "/" });
  assertEquals(r.code, 0, `${prefix}: ${r.stderr}`);
  return r.stdout.replaceAll(prefix, "PREFIX");
}

/** Root's shell, for what only root can set up (another user's directories, /run/user). */
async function root(script: string, ...args: string[]): Promise<void> {
  const r = await runCommand("sh", ["-c", script, "sh", ...args]);
  assertEquals(r.code, 0, r.stderr);
}

/** Each case runs with both launchers, from a clean /tmp/shoal-UID and no /run/user/UID. */
async function bothLaunchers(
  check: (
    run: (script: string) => Promise<string>,
    l: Launchers,
    prefix: string,
  ) => Promise<void>,
): Promise<void> {
  const l = await launchers();
  const outputs: string[] = [];
  for (const prefix of [l.binary, l.script]) {
    await root(`rm -rf "/tmp/shoal-$1" "/run/user/$1"`, String(l.user.uid));
    const seen: string[] = [];
    await check(
      async (script) => {
        const out = await launch(l.user, prefix, script);
        seen.push(out);
        return out;
      },
      l,
      prefix,
    );
    outputs.push(seen.join("\n---\n"));
  }
  await root(`rm -rf "/tmp/shoal-$1" "/run/user/$1"`, String(l.user.uid));
  assertEquals(outputs[0], outputs[1], "the binary and the script launcher give Deno the same");
}

const DENO_ARGS = "run -A --no-config --unstable-lazy-dynamic-imports --quiet --no-prompt " +
  "--v8-flags=--no-lazy,--no-enable-lazy-source-positions,--single-threaded," +
  "--min-semi-space-size=16";

Deno.test("launcher: Deno's arguments, the entry for the command, the signals held", async () => {
  await bothLaunchers(async (run, l) => {
    const out = await run(`NODE_OPTIONS=--inspect exec "$1" --debug run -v /a:/b IMAGE true`);
    const tmp = `/tmp/shoal-${l.user.uid}`;
    assertEquals(
      out,
      [
        `args: ${DENO_ARGS} PREFIX/lib/shoal/shoal-run.js --debug run -v /a:/b IMAGE true`,
        `DENO_DIR: ${tmp}/.deno`,
        "DENO_NO_UPDATE_CHECK: 1",
        "SHOAL_LAUNCHER_ADDED: DENO_NO_UPDATE_CHECK DENO_DIR",
        "NODE_OPTIONS: unset",
        HELD_MASK,
        "",
      ].join("\n"),
    );
    const made = Deno.lstatSync(tmp);
    assert(made.isDirectory && made.uid === l.user.uid, `${tmp} is the user's`);
    assertEquals(made.mode! & 0o7777, 0o700);
    assertMatch(
      await run(`exec "$1" -q images`),
      /^args: .* PREFIX\/lib\/shoal\/shoal\.js -q images$/m,
    );
    assertMatch(await run(`exec "$1" version run`), /shoal\.js version run$/m);
    assertMatch(await run(`exec "$1"`), /shoal\.js$/m);
  });
});

Deno.test("launcher: the caller's DENO_DIR and update check stay as they are", async () => {
  await bothLaunchers(async (run) => {
    const out = await run(
      `DENO_DIR=/elsewhere DENO_NO_UPDATE_CHECK= exec "$1" run IMAGE true`,
    );
    assertMatch(out, /^DENO_DIR: \/elsewhere$/m);
    assertMatch(out, /^DENO_NO_UPDATE_CHECK: $/m);
    assertMatch(out, /^SHOAL_LAUNCHER_ADDED: unset$/m);
  });
});

Deno.test("launcher: a session's /run/user/UID holds the cache, made 0700 whatever the umask", async () => {
  await bothLaunchers(async (run, l) => {
    const mine = `/run/user/${l.user.uid}`;
    await root(`mkdir -p -m 700 "$1" && chown "$2" "$1"`, mine, `${l.user.uid}:${l.user.gid}`);
    const out = await run(`umask 777; exec "$1" run IMAGE true`);
    assertMatch(out, new RegExp(`^DENO_DIR: ${mine}/shoal/\\.deno$`, "m"));
    assertEquals(Deno.lstatSync(`${mine}/shoal`).mode! & 0o7777, 0o700);
    // Another user's /run/user/UID (or a link there) is not the user's: /tmp then.
    await root(`rm -rf "$1" && mkdir -m 777 "$1" && chown "$2" "$1"`, mine, String(l.other.uid));
    assertMatch(
      await run(`exec "$1" run IMAGE true`),
      new RegExp(`^DENO_DIR: /tmp/shoal-${l.user.uid}/\\.deno$`, "m"),
    );
    assertEquals(await exists(`${mine}/shoal`), false, "nothing made in another's directory");
  });
});

Deno.test("launcher: another user's /tmp/shoal-UID, or a link there, gets no cache", async () => {
  await bothLaunchers(async (run, l) => {
    const tmp = `/tmp/shoal-${l.user.uid}`;
    const theirs = `${l.dir}/theirs`;
    const noCache = (out: string) => {
      assertMatch(out, /^DENO_DIR: unset$/m);
      assertMatch(out, /^SHOAL_LAUNCHER_ADDED: DENO_NO_UPDATE_CHECK$/m);
    };
    await root(`mkdir -m 777 "$1" && chown "$2" "$1"`, tmp, String(l.other.uid));
    noCache(await run(`exec "$1" run IMAGE true`));
    await root(`rm -rf "$1" "$2" && mkdir -m 777 "$2" && ln -s "$2" "$1"`, tmp, theirs);
    noCache(await run(`exec "$1" run IMAGE true`));
    assertEquals(await exists(`${theirs}/.deno`), false);
    await root(`rm -rf "$1" "$2"`, tmp, theirs);
  });
});

Deno.test("launcher: a /run/user/UID others may write, or a /tmp that is not root's, gets no cache", async () => {
  await bothLaunchers(async (run, l, prefix) => {
    // The user's own, but writable by anyone: another user could replace what is in it.
    const mine = `/run/user/${l.user.uid}`;
    await root(`mkdir -p "$1" && chmod 777 "$1" && chown "$2" "$1"`, mine, String(l.user.uid));
    assertMatch(
      await run(`exec "$1" run IMAGE true`),
      new RegExp(`^DENO_DIR: /tmp/shoal-${l.user.uid}/\\.deno$`, "m"),
    );
    assertEquals(await exists(`${mine}/shoal`), false, "nothing made in it");
    await root(`rm -rf "$1"`, mine);
    // A /tmp of another user's, sticky and open to all as /tmp is (in a mount namespace of the
    // test's own): its owner may rename anything in it.
    const theirTmp = `${l.dir}/their-tmp`;
    await root(`mkdir -m 1777 "$1" && chown "$2" "$1"`, theirTmp, String(l.other.uid));
    const launcher = `${prefix}/bin/shoal`;
    const argv = userArgv(l.user, "sh", ["-c", `exec "$1" run IMAGE true`, "sh", launcher]);
    const out = await runCommand("unshare", [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$0" /tmp && cd / && exec "$@"',
      theirTmp,
      ...argv,
    ]);
    assertEquals(out.code, 0, out.stderr);
    assertMatch(out.stdout, /^DENO_DIR: unset$/m);
    assertEquals([...Deno.readDirSync(theirTmp)], [], "nothing made in it");
    await root(`rm -rf "$1"`, theirTmp);
  });
});

Deno.test("launcher: found through a link, a linked bin directory or a relative path", async () => {
  const l = await launchers();
  for (const prefix of [l.binary, l.script]) {
    await root(
      `rm -f "$1-link" "$1-bin" && ln -s "$1/bin/shoal" "$1-link" && ln -s "$1/bin" "$1-bin"`,
      prefix,
    );
  }
  await bothLaunchers(async (run) => {
    for (const how of [`"$p-link"`, `"$p-bin/shoal"`, `cd "$p/bin" && exec ./shoal`]) {
      const out = await run(
        `p=\${1%/bin/shoal}; ${how.startsWith("cd") ? how : `exec ${how}`} version`,
      );
      assertMatch(out, /^args: .* PREFIX\/lib\/shoal\/shoal\.js version$/m, how);
    }
  });
});
