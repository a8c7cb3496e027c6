/**
 * What `shoal run` tests need: the machine fix path B needs (/dev/fuse usable
 * by users), a busybox test image served by a loopback registry and pulled
 * into a user's repository, and a look at what a run left on the host.
 */
import { startRegistry, type TestRegistry } from "./registry.ts";
import { busyboxEntries, hostPlatform, makeImage, makeLayer, pushImage } from "./oci.ts";
import type { TarEntry } from "./tar.ts";
import type { RunState } from "../../mod/runtime/state.ts";
import { type Result, runCommand } from "./shoal.ts";
import {
  runAs,
  TEST_USER_NOSUB,
  testGroupMember,
  type TestUser,
  testUser,
  userArgv,
} from "./users.ts";
import { installedShoal, rootOwnedTempDir } from "./install.ts";

/**
 * The admin fix `shoal doctor` names for path B: squashfuse opens /dev/fuse,
 * which some machines (this one) ship as 0600. Idempotent; root only.
 */
export async function makeFuseUsable(): Promise<void> {
  const mode = (await Deno.stat("/dev/fuse")).mode ?? 0;
  if ((mode & 0o666) !== 0o666) await Deno.chmod("/dev/fuse", 0o666);
}

/** The test image's own users: root, _apt (42) and nobody, as Debian's. */
export const IMAGE_PASSWD = "root:x:0:0:root:/root:/bin/sh\n" +
  "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n" +
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
export const IMAGE_OS_RELEASE = 'PRETTY_NAME="shoal test image"\nID=shoaltest\n';

/**
 * Prints each signal it gets (SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2) and
 * goes on until the file $STOP exists (or for 60 s); "ready" once the traps are set.
 */
const TRAPS = `#!/bin/sh
for s in INT TERM HUP USR1 USR2; do trap "echo got $s" $s; done
echo ready
i=0
while [ ! -e "$STOP" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
`;

function testImageEntries(): TarEntry[] {
  const base = busyboxEntries().filter((e) => e.path !== "etc/passwd" && e.path !== "etc/group");
  return [
    ...base,
    { type: "dir", path: "opt" },
    { type: "file", path: "etc/passwd", content: IMAGE_PASSWD },
    { type: "file", path: "etc/group", content: "root:x:0:\nnogroup:x:65534:\n" },
    { type: "file", path: "etc/os-release", content: IMAGE_OS_RELEASE },
    { type: "file", path: "opt/apt-owned", content: "x\n", uid: 42, gid: 65534 },
    { type: "file", path: "opt/not-executable", content: "#!/bin/sh\necho no\n", mode: 0o644 },
    { type: "file", path: "opt/traps", content: TRAPS, mode: 0o755 },
  ];
}

export interface TestImages {
  registry: TestRegistry;
  /** `127.0.0.1:PORT/shoal/run-test:1`. */
  reference: string;
}

let served: Promise<TestImages> | undefined;

/** The test image in a loopback registry, once per test process (stopped at exit). */
export function testImages(): Promise<TestImages> {
  served ??= (async () => {
    const registry = await startRegistry("plain");
    const image = makeImage([makeLayer(testImageEntries())], {
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "IMG=image"],
      cmd: ["cat", "/etc/os-release"],
      platform: hostPlatform(),
    });
    await pushImage(registry, "shoal/run-test", "1", image);
    return { registry, reference: `${registry.host}/shoal/run-test:1` };
  })();
  return served;
}

/** Processes of `uid` whose command line mentions `text` (ps), for leak checks. */
export async function processesMentioning(text: string): Promise<string[]> {
  const r = await runCommand("ps", ["-eo", "pid=,user=,args="]);
  return r.stdout.split("\n").filter((l) => l.includes(text) && !l.includes("ps -eo"));
}

/** Waits up to `ms` for `check` to hold; returns whether it did. */
export async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return await check();
}

/** The test users (users.ts): `member` is the one with a supplementary group. */
export type Who = "user" | "nosub" | "member" | "root";

/**
 * An installation of its own for one test file: a copy (hard links: the
 * setuid helper stays setuid) of install.sh's, with or without the helper,
 * whose site config the file may rewrite between its tests.
 */
export interface RunSite {
  /** Root-owned, not writable by others, as the security checks want. */
  dir: string;
  bin: string;
  configFile: string;
  central: string;
  /** The config every test starts from (repositories, the loopback registry, init). */
  baseConfig: Record<string, unknown>;
  writeConfig(extra?: Record<string, unknown>): Promise<void>;
  /** The image reference, pulled for `who` into their repository (once). */
  image(who: Who): Promise<string>;
  user(who: Who): Promise<TestUser | undefined>;
  /** Runs `shoal ARGS` as `who`. */
  shoal(
    who: Who,
    args: string[],
    options?: { env?: Record<string, string>; stdin?: string },
  ): Promise<Result>;
  /** Starts `shoal ARGS` as `who` with stdout and stderr piped. */
  spawn(who: Who, args: string[], env?: Record<string, string>): Promise<Deno.ChildProcess>;
}

/** A site for run tests; `helper: false` leaves the setuid helper out (the FUSE path). */
export async function runSite(helper: boolean): Promise<RunSite> {
  await makeFuseUsable();
  const installed = await installedShoal();
  const { reference, registry } = await testImages();
  const dir = await rootOwnedTempDir();
  globalThis.addEventListener("unload", () => {
    new Deno.Command("rm", { args: ["-rf", dir] }).outputSync();
  });
  const prefix = `${dir}/prefix`;
  const cp = await runCommand("cp", ["-al", installed.prefix, prefix]);
  if (cp.code !== 0) throw new Error(`cp -al: ${cp.stderr}`);
  if (!helper) await Deno.remove(`${prefix}/libexec/shoal/shoal-mount`);
  const central = `${dir}/central`;
  await Deno.mkdir(central, { mode: 0o755 });
  await Deno.mkdir(`${dir}/repo`, { mode: 0o755 });
  const baseConfig = {
    repositories: { local: `${dir}/repo/$USER`, centralized: central },
    registries: { insecure: [registry.host] },
    helper: { kernelMountUserImages: true },
    runtime: { init: "/usr/bin/catatonit" },
  };
  const configFile = `${prefix}/etc/shoal.json`;
  const users: Record<Who, Promise<TestUser | undefined>> = {
    user: testUser(),
    nosub: testUser(TEST_USER_NOSUB),
    member: testGroupMember().then((m) => m.user),
    root: Promise.resolve(undefined),
  };
  const pulled = new Map<Who, Promise<string>>();
  const site: RunSite = {
    dir,
    bin: `${prefix}/bin/shoal`,
    configFile,
    central,
    baseConfig,
    writeConfig: async (extra = {}) => {
      await Deno.writeTextFile(configFile, JSON.stringify({ ...baseConfig, ...extra }, null, 2));
      await Deno.chmod(configFile, 0o644);
    },
    user: (who) => users[who],
    shoal: async (who, args, options = {}) => {
      const user = await users[who];
      const opts = {
        env: options.env ?? {},
        ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
      };
      if (user === undefined) {
        return runCommand(site.bin, args, {
          ...opts,
          env: { PATH: Deno.env.get("PATH") ?? "", HOME: "/root", ...opts.env },
        });
      }
      return runAs(user, site.bin, args, opts);
    },
    spawn: async (who, args, env = {}) => {
      const user = await users[who];
      const argv = user === undefined ? [site.bin, ...args] : userArgv(user, site.bin, args, env);
      return new Deno.Command(argv[0]!, {
        args: argv.slice(1),
        env: user === undefined ? env : {},
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    },
    image: (who) => {
      let p = pulled.get(who);
      if (p === undefined) {
        p = (async () => {
          const r = await site.shoal(who, ["pull", "-q", reference]);
          if (r.code !== 0) throw new Error(`pull as ${who}: ${r.stderr}`);
          return reference;
        })();
        pulled.set(who, p);
      }
      return p;
    },
  };
  // Each user's local repository (the config's $USER), theirs alone.
  for (const user of await Promise.all(Object.values(users))) {
    const repo = `${dir}/repo/${user?.name ?? "root"}`;
    await Deno.mkdir(repo, { mode: 0o700 });
    if (user !== undefined) await Deno.chown(repo, user.uid, user.gid);
  }
  await site.writeConfig();
  return site;
}

/** A run's state as shoal writes it, naming `pid` (a forged one, in the attack tests). */
export function runState(name: string, pid: number, startTime: number): RunState {
  return {
    name,
    image: "img",
    pid,
    startTime,
    id: name,
    created: new Date().toISOString(),
    status: "running",
    runPath: "unprivileged",
    command: ["true"],
  };
}
