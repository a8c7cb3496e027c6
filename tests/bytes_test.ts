/**
 * Bytes in, bytes out: arguments, `-v` host paths and environment values that
 * are not UTF-8 reach the container byte for byte, on both run paths; and the
 * lossless string form shoal carries them in.
 */
import { runRequest } from "./support/request.ts";
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { userArgv } from "./support/users.ts";
import { runCommand } from "./support/shoal.ts";
import { hostBytes, hostString, procStrings } from "../mod/bytes.ts";
import { programArgs } from "../mod/cli/parser.ts";
import { hostEnvironment } from "../mod/runtime/env.ts";
import { checkDestination } from "../mod/runtime/mounts.ts";
import { ConfigError, UsageError } from "../mod/errors.ts";
import { buildBundleSpec, type HostInfo, INIT_PATH, type RunRequest } from "../mod/runtime/spec.ts";
import { EXEC_SHIM_PATH } from "../mod/runtime/raw_bytes.ts";
import { siteConfigSchema } from "../mod/config/schema.ts";
import { installedShoal } from "./support/install.ts";
import { toHex } from "../mod/bytes.ts";

const bytes = (...parts: (string | number[])[]) =>
  Uint8Array.from(parts.flatMap((p) => typeof p === "string" ? [...hostBytes(p)] : p));

Deno.test("bytes: every byte string survives hostString and hostBytes unchanged", () => {
  const cases = [
    bytes("caf", [0xe9]),
    bytes("a", [0xff], "b"),
    bytes("\u00e9\u20ac\u{1f600}"), // valid 2-, 3- and 4-byte sequences
    bytes([0xf0, 0x9f, 0x98]), // a 4-byte sequence cut short
    bytes([0xed, 0xa0, 0x80]), // an encoded surrogate, invalid in UTF-8
    bytes([0xc0, 0x80, 0xe0, 0x80, 0xaf]), // overlong forms
    bytes([0xf4, 0x90, 0x80, 0x80]), // above U+10FFFF
    bytes([0x80, 0xbf, 0xfe]),
    Uint8Array.from({ length: 256 }, (_, i) => i),
  ];
  for (const c of cases) assertEquals(hostBytes(hostString(c)), c);
  assertEquals(hostString(bytes("caf\u00e9")), "caf\u00e9");
  assertEquals(hostString(bytes("caf", [0xe9])), "caf\udce9");
});

/** A temp file holding `content`, for the readers of /proc/self files. */
async function procFile(content: Uint8Array): Promise<string> {
  const file = await Deno.makeTempFile();
  await Deno.writeFile(file, content);
  return file;
}

Deno.test("bytes: arguments come from /proc/self/cmdline, Deno's own left out", async () => {
  const cmdline = await procFile(bytes("deno\0run\0-A\0main.ts\0run\0IMG\0ls\0caf", [0xe9], "\0"));
  try {
    assertEquals(programArgs(["run", "IMG", "ls", "caf\ufffd"], cmdline), [
      "run",
      "IMG",
      "ls",
      "caf\udce9",
    ]);
    // Without a replaced byte, Deno's are the bytes (and the file is not read).
    assertEquals(programArgs(["run", "caf\u00e9"], "/nonexistent"), ["run", "caf\u00e9"]);
    // Should the kernel's copy not end with Deno's arguments, Deno's are used.
    assertEquals(programArgs(["other\ufffd"], cmdline), ["other\ufffd"]);
  } finally {
    await Deno.remove(cmdline);
  }
});

Deno.test("bytes: the environment keeps a value that is not UTF-8, less what the launcher added", async () => {
  const environ = await procFile(
    bytes(
      "A=1\0BADENV=a",
      [0xff],
      "b\0=x\0A=2\0DENO_DIR=/tmp/shoal-1/.deno\0SHOAL_LAUNCHER_ADDED= DENO_DIR\0CUT=short",
    ),
  );
  try {
    assertEquals(hostEnvironment(environ), { A: "1", BADENV: "a\udcffb" });
    assertEquals(procStrings(environ).slice(0, 4), ["A=1", "BADENV=a\udcffb", "=x", "A=2"]);
  } finally {
    await Deno.remove(environ);
  }
});

Deno.test("bytes: a container path that is not UTF-8 is refused in one line", () => {
  try {
    checkDestination("-v /x:/d\udcff", "/d\udcff");
    assert(false, "accepted");
  } catch (err) {
    assert(err instanceof UsageError, String(err));
    assertMatch(err.message, /^-v \/x:\/d.: destination '\/d.' is not valid UTF-8, which runc/);
  }
});

function spec(request: Partial<RunRequest>, host: Partial<HostInfo>, env = {}) {
  return buildBundleSpec(
    runRequest({ command: ["true"], ...request }),
    { env: ["PATH=/bin"], entrypoint: [], cmd: [], workdir: "", user: "", passwd: "", group: "" },
    siteConfigSchema.parse({}),
    {
      name: "alice",
      uid: 1001,
      gid: 1001,
      gecos: "",
      home: "/home/alice",
      shell: "/bin/sh",
      groups: [],
      subuid: [],
      subgid: [],
      env,
      umask: 0o022,
    },
    { hostname: "node", mqueue: false, userns: { kind: "create" }, bundle: "/tmp", ...host },
  );
}

Deno.test("bytes: a UTF-8 run's config.json is as it was: no shim, no links", async () => {
  const built = await spec({ command: ["ls", "caf\u00e9"] }, { execShim: "/nonexistent" });
  assertEquals(built.spec.process.args, ["ls", "caf\u00e9"]);
  assert(!built.spec.mounts.some((m) => m.destination === EXEC_SHIM_PATH));
  assertEquals(built.links, []);
});

Deno.test("bytes: a command or environment not UTF-8 starts through the shim, after --init", async () => {
  const shim = await Deno.makeTempFile();
  try {
    const built = await spec(
      { command: ["ls", "caf\udce9"], init: true },
      { execShim: shim, init: shim },
      { BADENV: "a\udcffb", OK: "1" },
    );
    const p = built.spec.process;
    assertEquals(p.args, [
      INIT_PATH,
      "--",
      EXEC_SHIM_PATH,
      "424144454e563d61ff62",
      "--",
      "6c73",
      "636166e9",
    ]);
    assert(p.env.includes("OK=1") && !p.env.some((e) => e.startsWith("BADENV")), p.env.join(" "));
    assertEquals(built.command, ["ls", "caf\udce9"]);
    const mount = built.spec.mounts.find((m) => m.destination === EXEC_SHIM_PATH)!;
    assertEquals(mount.source, shim);
    assert(
      mount.options!.includes("ro") && mount.options!.includes("nosuid"),
      mount.options!.join(),
    );
    // Not one byte of the config is outside UTF-8: runc would replace it.
    assert(JSON.stringify(built.spec).isWellFormed());
  } finally {
    await Deno.remove(shim);
  }
});

Deno.test("bytes: without the shim installed, such a command is refused in one line", async () => {
  try {
    await spec({ command: ["ls", "caf\udce9"] }, { execShim: "/nonexistent/shoal-exec" });
    assert(false, "accepted");
  } catch (err) {
    assert(err instanceof ConfigError, String(err));
    assertEquals(
      err.message,
      "the command or environment holds bytes that are not UTF-8, which need shoal's exec shim /nonexistent/shoal-exec, missing from this installation",
    );
  }
});

Deno.test("bytes: a -v source not UTF-8 is given to runc as a symlink in the bundle", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = await runCommand("sh", ["-c", `mkdir "$1/$(printf 'v\\377')"`, "sh", dir]);
    assertEquals(made.code, 0, made.stderr);
    const source = `${dir}/v\udcff`;
    const built = await spec(
      { mounts: [{ source, destination: "/d", readonly: true, option: `-v ${source}:/d:ro` }] },
      {},
    );
    assertEquals(built.links, [{ name: "source-0", target: source }]);
    assertEquals(built.spec.mounts.find((m) => m.destination === "/d")!.source, "/tmp/source-0");
    assert(JSON.stringify(built.spec).isWellFormed());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bytes: the installed shim decodes, looks the command up in PATH, and says what failed", async () => {
  const shim = `${(await installedShoal()).prefix}/libexec/shoal/shoal-exec`;
  const hex = (...parts: (string | number[])[]) => toHex(bytes(...parts));
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(shim, {
      args,
      env: { PATH: "/nonexistent:/usr/bin:/bin" },
      clearEnv: true,
    }).output();
    return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
  };
  const ok = await run(
    hex("V=a", [0xff]),
    "--",
    hex("sh"),
    hex("-c"),
    hex('printf "%s|%s" "$V" "$0"'),
    hex([0xe9]),
  );
  assertEquals(ok.code, 0, ok.stderr);
  assertEquals(ok.stdout, bytes("a", [0xff], "|", [0xe9]));
  const missing = await run("--", hex("no-such-command"));
  assertEquals([missing.code, missing.stderr], [
    127,
    "shoal: error: 'no-such-command' not found in the image (executable file not found in $PATH)\n",
  ]);
  assertEquals((await run("--", hex("/etc/passwd"))).code, 126);
  for (const bad of [["--", "6"], ["--", "zz"], ["--", "00"], ["3d", "--", "6c73"], ["6c73"]]) {
    const r = await run(...bad);
    assertEquals(r.code, 125, bad.join(" "));
    assertMatch(r.stderr, /^shoal-exec: .* \(it is started by shoal run, not by hand\)\n$/);
  }
});

/** A site per run path, with `<dir>/data/caf\xe9` and `<dir>/data\xff/file` (both "x\xe9\xffy"). */
const sites = new Map<boolean, ReturnType<typeof runSite>>();
function byteSite(helper: boolean) {
  let site = sites.get(helper);
  if (site === undefined) {
    site = (async () => {
      const s = await runSite(helper);
      const made = await runCommand("sh", [
        "-c",
        `cd "$1" && mkdir -m 755 data "$(printf 'data\\377')" &&
         printf 'x\\351\\377y' >"data/$(printf 'caf\\351')" &&
         printf 'x\\351\\377y' >"$(printf 'data\\377')/file"`,
        "sh",
        s.dir,
      ]);
      assertEquals(made.code, 0, made.stderr);
      return s;
    })();
    sites.set(helper, site);
  }
  return site;
}

/**
 * Runs shell `script` as the test user with $1 the site's shoal, $2 the
 * site's dir and $3 the image: the script makes the bytes with printf, since
 * the strings Deno passes as arguments are UTF-8.
 */
async function asUser(helper: boolean, script: string) {
  const site = await byteSite(helper);
  const image = await site.image("user");
  const user = (await site.user("user"))!;
  const argv = userArgv(user, "/bin/sh", ["-c", script, "sh", site.bin, site.dir, image]);
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

for (const helper of [true, false]) {
  const path = helper ? "helper path" : "path B";

  Deno.test(`bytes: an argument that is not UTF-8 names the existing file (${path})`, async () => {
    const r = await asUser(
      helper,
      `exec "$1" run -v "$2/data:/d" "$3" sh -c 'ls "$1" >/dev/null && printf %s "$1"' sh \
         "/d/$(printf 'caf\\351')"`,
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, bytes("/d/caf", [0xe9]));
  });

  Deno.test(`bytes: exported and -e values that are not UTF-8 are inside unchanged (${path})`, async () => {
    const r = await asUser(
      helper,
      `BADENV=$(printf 'a\\377b') && export BADENV &&
       exec "$1" run -e "E2=$(printf '\\351')" "$3" sh -c 'printf "%s|" "$BADENV" "$E2"'`,
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, bytes("a", [0xff], "b|", [0xe9], "|"));
  });

  // Where the launcher puts Deno's cache, case by case, is tests/launcher_test.ts's, with a user
  // of its own: changing this user's /tmp/shoal-UID or /run/user/UID here would move the run
  // directory of every other test file's runs, which run meanwhile as the same user.
  Deno.test(`launcher: what it sets for Deno does not reach the container, the caller's own DENO_DIR is kept (${path})`, async () => {
    const show =
      `sh -c 'echo "\${DENO_DIR-unset} \${DENO_NO_UPDATE_CHECK-unset} \${SHOAL_LAUNCHER_ADDED-unset}"'`;
    const user = (await (await byteSite(helper)).user("user"))!;
    const plain = await asUser(
      helper,
      `unset DENO_DIR DENO_NO_UPDATE_CHECK; exec "$1" run "$3" ${show}`,
    );
    assertEquals(plain.code, 0, plain.stderr);
    assertEquals(new TextDecoder().decode(plain.stdout), "unset unset unset\n");
    const cache = Deno.lstatSync(`/tmp/shoal-${user.uid}/.deno/v8_code_cache_v2`);
    assert(cache.isFile && cache.uid === user.uid, "the compiled code is kept in the run dir");

    const mine = `${user.home}/deno-mine-${helper}`;
    await Deno.remove(mine, { recursive: true }).catch(() => {});
    const own = await asUser(
      helper,
      `export DENO_DIR=${mine} DENO_NO_UPDATE_CHECK=0; exec "$1" run "$3" ${show}`,
    );
    assertEquals(own.code, 0, own.stderr);
    assertEquals(new TextDecoder().decode(own.stdout), `${mine} 0 unset\n`);
    assert(Deno.lstatSync(`${mine}/v8_code_cache_v2`).isFile, "the caller's DENO_DIR is used");
    await Deno.remove(mine, { recursive: true });
  });

  Deno.test(`bytes: a -v host path that is not UTF-8 is mounted (${path})`, async () => {
    const r = await asUser(
      helper,
      `exec "$1" run -v "$2/$(printf 'data\\377'):/d:ro" "$3" cat /d/file`,
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, bytes("x", [0xe9, 0xff], "y"));
  });
}
