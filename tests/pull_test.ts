/**
 * shoal pull / images / rmi end to end: the installed engine against real
 * loopback registries, as the unprivileged test user and as root.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { startRegistry } from "./support/registry.ts";
import { busyboxImage, makeImage, makeIndex, makeLayer, pushImage } from "./support/oci.ts";
import { whiteout } from "./support/tar.ts";
import { installedShoal } from "./support/install.ts";
import { runAs, type TestUser, testUser } from "./support/users.ts";
import { cat, listImage } from "./support/squashfs.ts";
import type { Result } from "./support/shoal.ts";

/** The installed shoal, with this site config (rewritten per test: tests in a file run in turn). */
async function site(config: Record<string, unknown>): Promise<string> {
  const { prefix, bin } = await installedShoal();
  await Deno.writeTextFile(`${prefix}/etc/shoal.json`, JSON.stringify(config));
  return bin;
}

/** A fresh local repository for the user, so tests do not see each other's images. */
async function freshUser(): Promise<{ user: TestUser; env: Record<string, string> }> {
  const user = await testUser();
  return { user, env: { XDG_DATA_HOME: `${user.home}/shoal-pull-data` } };
}

function oneLine(r: Result, pattern: RegExp) {
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

interface Listed {
  reference: string;
  tag?: string;
  digest?: string;
  configDigest: string;
  platform: { os: string; architecture: string; variant?: string };
  cmd: string[];
  env: string[];
  size: number;
  squashfsPath: string;
  server: string;
  passwd: string;
}

async function images(
  bin: string,
  user: TestUser,
  env: Record<string, string>,
  extra: string[] = [],
) {
  const r = await runAs(user, bin, ["images", "--format", "json", ...extra], { env });
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Listed[];
}

async function cleanData(user: TestUser) {
  await Deno.remove(`${user.home}/shoal-pull-data`, { recursive: true })
    .catch(() => {});
}

Deno.test("pull over TLS with the site's CA: stored as squashfs with owners kept; re-pull does no work", async () => {
  await using reg = await startRegistry("tls");
  const digest = await pushImage(reg, "demo/busybox", "1.0", busyboxImage());
  const bin = await site({ registries: { ca: { [reg.host]: reg.caFile } } });
  const { user, env } = await freshUser();
  await cleanData(user);

  const r = await runAs(user, bin, ["pull", `${reg.host}/demo/busybox:1.0`], { env });
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stdout, /^Pulled 127\.0\.0\.1:\d+\/demo\/busybox:1\.0 \(IMAGE ID [0-9a-f]{12}, /);
  assertStringIncludes(r.stderr, "Converting 1 layers to squashfs");

  const [img, ...more] = await images(bin, user, env);
  assertEquals(more.length, 0);
  assertEquals(img!.digest, digest);
  assertEquals(img!.tag, "1.0");
  assertEquals(img!.cmd, ["sh"]);
  assertEquals(img!.server, reg.host);
  assertStringIncludes(img!.passwd, "root:x:0:0:root:/root:/bin/sh");
  const st = await Deno.stat(img!.squashfsPath);
  assertEquals(st.uid, user.uid);
  // Root-owned in the image, whoever pulled it.
  const listed = await listImage(img!.squashfsPath);
  assertEquals(listed.get("bin/busybox")?.uid, 0);
  assertEquals(await cat(img!.squashfsPath, "/etc/platform"), "linux/amd64\n");

  const again = await runAs(user, bin, ["pull", `${reg.host}/demo/busybox:1.0`], { env });
  assertEquals(again.code, 0, again.stderr);
  assertMatch(again.stdout, /is up to date \(IMAGE ID /);
  assertEquals(again.stderr, "");
  assertEquals((await Deno.stat(img!.squashfsPath)).mtime, st.mtime);
  await cleanData(user);
});

Deno.test("pull with token auth: private needs credentials (login or --password-stdin); public is anonymous", async () => {
  await using reg = await startRegistry("token", { publicRepositories: ["public/bb"] });
  await pushImage(reg, "private/bb", "latest", busyboxImage());
  await pushImage(reg, "public/bb", "latest", busyboxImage());
  const bin = await site({ registries: { ca: { [reg.host]: reg.caFile } } });
  const { user, env } = await freshUser();
  await cleanData(user);
  await Deno.remove(`${user.home}/.config/shoal`, { recursive: true }).catch(() => {});

  const anon = await runAs(user, bin, ["pull", "-q", `${reg.host}/public/bb`], { env });
  assertEquals(anon.code, 0, anon.stderr);
  assertEquals(anon.stdout, "");

  const denied = await runAs(user, bin, ["pull", `${reg.host}/private/bb`], { env });
  assertEquals(denied.code, 1);
  oneLine(denied, /private\/bb.*(authentication required|access denied|insufficient)/i);
  assertStringIncludes(denied.stderr, `shoal login ${reg.host}`);

  const once = await runAs(
    user,
    bin,
    ["pull", "--username", reg.username!, "--password-stdin", `${reg.host}/private/bb`],
    { env, stdin: reg.password },
  );
  assertEquals(once.code, 0, once.stderr);
  assertEquals((await images(bin, user, env)).length, 2);

  // After `shoal login`, pulls use the stored credentials; rmi then pull again.
  const login = await runAs(
    user,
    bin,
    ["login", "-u", reg.username!, "--password-stdin", reg.host],
    {
      env,
      stdin: reg.password,
    },
  );
  assertEquals(login.code, 0, login.stderr);
  assertEquals((await runAs(user, bin, ["rmi", `${reg.host}/private/bb`], { env })).code, 0);
  const stored = await runAs(user, bin, ["pull", `${reg.host}/private/bb`], { env });
  assertEquals(stored.code, 0, stored.stderr);
  await Deno.remove(`${user.home}/.config/shoal`, { recursive: true });
  await cleanData(user);
});

Deno.test("a second image sharing the base layer downloads only its new layer", async () => {
  await using reg = await startRegistry("plain");
  const base = makeLayer(busyboxImageLayerEntries());
  const top1 = makeLayer([{ type: "file", path: "etc/app", content: "one\n" }]);
  const top2 = makeLayer([
    { type: "file", path: "etc/app", content: "two\n" },
    whiteout("etc/group"),
  ]);
  await pushImage(reg, "app/one", "latest", makeImage([base, top1], { cmd: ["sh"] }));
  await pushImage(reg, "app/two", "latest", makeImage([base, top2], { cmd: ["sh"] }));
  const bin = await site({ registries: { insecure: [reg.host] } });
  const { user, env } = await freshUser();
  await cleanData(user);

  const first = await runAs(user, bin, ["pull", `${reg.host}/app/one`], { env });
  assertEquals(first.code, 0, first.stderr);
  const second = await runAs(user, bin, ["pull", `${reg.host}/app/two`], { env });
  assertEquals(second.code, 0, second.stderr);
  assertMatch(second.stderr, new RegExp(`layer ${base.digest.slice(7, 19)}: already present`));
  assertMatch(second.stderr, new RegExp(`layer ${top2.digest.slice(7, 19)}: downloaded`));

  const byName = new Map((await images(bin, user, env)).map((i) => [i.reference, i]));
  const two = byName.get(`${reg.host}/app/two:latest`)!;
  assertEquals(await cat(two.squashfsPath, "/etc/app"), "two\n");
  assert(!(await listImage(two.squashfsPath)).has("etc/group"), "the whiteout must apply");
  await cleanData(user);
});

function busyboxImageLayerEntries() {
  return [
    { type: "dir" as const, path: "bin" },
    { type: "dir" as const, path: "etc" },
    {
      type: "file" as const,
      path: "bin/busybox",
      mode: 0o755,
      content: Deno.readFileSync("/bin/busybox"),
    },
    { type: "file" as const, path: "etc/group", content: "root:x:0:\n" },
  ];
}

Deno.test("multi-platform index: the host's platform by default, --platform to choose, a clear error otherwise", async () => {
  await using reg = await startRegistry("plain");
  const amd = busyboxImage({ spec: { platform: { os: "linux", architecture: "amd64" } } });
  const arm = busyboxImage({
    spec: { platform: { os: "linux", architecture: "arm64", variant: "v8" } },
  });
  await pushImage(reg, "multi/bb", "latest", makeIndex([amd, arm]));
  const bin = await site({});
  const { user, env } = await freshUser();
  await cleanData(user);
  const ref = `${reg.host}/multi/bb`;

  const host = await runAs(user, bin, ["pull", "--tls-verify=false", ref], { env });
  assertEquals(host.code, 0, host.stderr);
  let [img] = await images(bin, user, env);
  assertEquals(await cat(img!.squashfsPath, "/etc/platform"), "linux/amd64\n");

  const arm64 = await runAs(user, bin, [
    "pull",
    "--tls-verify=false",
    "--platform",
    "linux/arm64",
    ref,
  ], {
    env,
  });
  assertEquals(arm64.code, 0, arm64.stderr);
  [img] = await images(bin, user, env);
  assertEquals(img!.platform.architecture, "arm64");
  assertEquals(await cat(img!.squashfsPath, "/etc/platform"), "linux/arm64/v8\n");

  const none = await runAs(user, bin, [
    "pull",
    "--tls-verify=false",
    "--platform",
    "linux/s390x",
    ref,
  ], {
    env,
  });
  assertEquals(none.code, 1);
  oneLine(none, /linux\/s390x.*linux\/amd64.*linux\/arm64/);
  await cleanData(user);
});

Deno.test("images columns and rmi by tag, digest and IMAGE ID; rmi works when the file is gone", async () => {
  await using reg = await startRegistry("plain");
  const digest = await pushImage(reg, "r/bb", "a", busyboxImage());
  await pushImage(reg, "r/bb", "b", busyboxImage());
  const bin = await site({ registries: { insecure: [reg.host] } });
  const { user, env } = await freshUser();
  await cleanData(user);
  for (const tag of ["a", "b"]) {
    assertEquals(
      (await runAs(user, bin, ["pull", "-q", `${reg.host}/r/bb:${tag}`], { env })).code,
      0,
    );
  }
  const table = await runAs(user, bin, ["images", "--digests"], { env });
  const [header, ...rows] = table.stdout.trimEnd().split("\n");
  assertMatch(header!, /^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE\s+SERVER$/);
  assertEquals(rows.length, 2);
  assertMatch(
    rows[0]!,
    new RegExp(`^${reg.host}/r/bb\\s+a\\s+${digest}\\s+[0-9a-f]{12}\\s+.*\\s+${reg.host}$`),
  );

  const [a, b] = await images(bin, user, env);
  assertEquals(a!.squashfsPath, b!.squashfsPath, "two tags of one image share one file");
  const untag = await runAs(user, bin, ["rmi", `${reg.host}/r/bb:a`], { env });
  assertEquals(untag.code, 0, untag.stderr);
  assertEquals(untag.stdout, `Untagged: ${reg.host}/r/bb:a\n`);
  assert((await Deno.stat(a!.squashfsPath)).isFile, "the other tag keeps the file");

  await Deno.remove(b!.squashfsPath);
  const gone = await runAs(user, bin, ["rmi", b!.configDigest.slice(7, 19)], { env });
  assertEquals(gone.code, 0, gone.stderr);
  assertMatch(gone.stdout, /Deleted: sha256:/);
  assertEquals(await images(bin, user, env), []);

  const unknown = await runAs(user, bin, ["rmi", `${reg.host}/r/bb:zzz`], { env });
  assertEquals(unknown.code, 1);
  oneLine(unknown, /no image .*r\/bb:zzz.*shoal images/);
  await cleanData(user);
});

Deno.test("hostile layer: the pull fails with one line and leaves nothing listed or half-written", async () => {
  await using reg = await startRegistry("plain");
  const evil = makeLayer([
    { type: "dir", path: "etc" },
    { type: "file", path: "../../escape", content: "x" },
  ]);
  await pushImage(reg, "evil/img", "latest", makeImage([evil]));
  const bin = await site({ registries: { insecure: [reg.host] } });
  const { user, env } = await freshUser();
  await cleanData(user);
  const r = await runAs(user, bin, ["pull", `${reg.host}/evil/img`], { env });
  assertEquals(r.code, 1);
  assertMatch(r.stderr.trimEnd().split("\n").at(-1)!, /^shoal: error: .*escape.*/);
  assertEquals(await images(bin, user, env), []);
  const tmp = `${user.home}/shoal-pull-data/shoal/tmp`;
  const left: string[] = [];
  try {
    for await (const e of Deno.readDir(tmp)) if (!e.name.endsWith(".lock")) left.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  assertEquals(left, []);
  await cleanData(user);
});

Deno.test("centralized repository: root pulls into it, users list it but cannot write it", async () => {
  await using reg = await startRegistry("plain");
  await pushImage(reg, "site/bb", "latest", busyboxImage());
  const { prefix } = await installedShoal();
  const central = `${prefix}/images`;
  const bin = await site({
    registries: { insecure: [reg.host] },
    repositories: { centralized: central },
  });
  const root = await new Deno.Command(bin, {
    args: ["pull", "--centralized-repository", `${reg.host}/site/bb`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(root.code, 0, new TextDecoder().decode(root.stderr));
  const { user, env } = await freshUser();
  const listed = await images(bin, user, env, ["--centralized-repository"]);
  assertEquals(listed.map((i) => i.reference), [`${reg.host}/site/bb:latest`]);
  assertEquals((await Deno.stat(listed[0]!.squashfsPath)).uid, 0);

  const refused = await runAs(
    user,
    bin,
    ["pull", "--centralized-repository", `${reg.host}/site/bb:other`],
    { env },
  );
  assertEquals(refused.code, 1);
  oneLine(refused, /centralized repository .* is written by root only/);
  await Deno.remove(central, { recursive: true });
});

Deno.test("pull usage errors are one line with exit 2", async () => {
  const bin = await site({});
  const { user, env } = await freshUser();
  for (
    const [args, pattern] of [
      [["pull", "Bad/Name"], /repository name must be lower case/],
      [["pull", "a/../b"], /invalid image reference/],
      [["pull", "--platform", "windows", "x"], /platform/],
      [["pull", "--password-stdin", "x"], /--password-stdin needs --username/],
      [["pull", "--compression", "brotli", "x"], /brotli/],
    ] as const
  ) {
    const r = await runAs(user, bin, [...args], { env });
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    oneLine(r, pattern);
  }
});
