/**
 * Real unprivileged users for the tests, created on demand (tests run as root,
 * as CI does) and reused across test files and runs.
 */
import { type Result, runCommand, type RunOptions } from "./shoal.ts";

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** The user's range in /etc/subuid (and the same one in /etc/subgid). */
  subuid: { start: number; count: number };
}

/** The default test user, with a subordinate id range. */
export const TEST_USER = "shoal-test";
/** A second user without a subordinate range. */
export const TEST_USER_NOSUB = "shoal-test-nosub";
/** A third user, with a subordinate range, and the one member of TEST_GROUP. */
export const TEST_USER_MEMBER = "shoal-grp";
/** A supplementary group of TEST_USER_MEMBER's (the other users' groups stay as they were). */
export const TEST_GROUP = "shoal-deny";

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

function subRange(file: string, name: string): { start: number; count: number } {
  let text = "";
  try {
    text = Deno.readTextFileSync(file);
  } catch { /* no file: no range */ }
  for (const line of text.split("\n")) {
    const [owner, start, count] = line.split(":");
    if (owner === name && start && count) return { start: Number(start), count: Number(count) };
  }
  return { start: 0, count: 0 };
}

/**
 * Creates the user if missing (under a lock: test files run in parallel) and
 * returns who it is. `withSubordinateIds: false` removes any subuid/subgid range.
 */
export async function testUser(
  name = TEST_USER,
  withSubordinateIds = name === TEST_USER,
): Promise<TestUser> {
  if (Deno.uid() !== 0) {
    throw new Error(
      "these tests create users and must run as root (CI does); run scripts/test as root",
    );
  }
  const subFlags = withSubordinateIds
    ? ""
    : '; usermod --del-subuids 1-4294967294 --del-subgids 1-4294967294 "$1" 2>/dev/null; true';
  await must("flock", [
    "/tmp/shoal-test-users.lock",
    "sh",
    "-c",
    `id -u "$1" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$1"${subFlags}`,
    "sh",
    name,
  ]);
  const [, , uid, gid, , home] = (await must("getent", ["passwd", name])).trim().split(":");
  const user: TestUser = {
    name,
    uid: Number(uid),
    gid: Number(gid),
    home: home ?? "",
    subuid: subRange("/etc/subuid", name),
  };
  if (withSubordinateIds && user.subuid.count === 0) {
    throw new Error(
      `useradd gave ${name} no /etc/subuid range (is SUB_UID_COUNT 0 in /etc/login.defs?)`,
    );
  }
  return user;
}

/**
 * TEST_USER_MEMBER, made a member of TEST_GROUP if not yet (both created when
 * missing, and kept like the users: test files running in parallel share them),
 * and the group's gid.
 */
export async function testGroupMember(): Promise<{ user: TestUser; gid: number }> {
  const user = await testUser(TEST_USER_MEMBER, true);
  await must("flock", [
    "/tmp/shoal-test-users.lock",
    "sh",
    "-c",
    'getent group "$1" >/dev/null || groupadd "$1"; usermod --append --groups "$1" "$2"',
    "sh",
    TEST_GROUP,
    user.name,
  ]);
  const [, , gid] = (await must("getent", ["group", TEST_GROUP])).trim().split(":");
  return { user, gid: Number(gid) };
}

/**
 * The argv that runs `cmd ARGS...` as `user` with a clean login-like
 * environment (HOME, USER, LOGNAME, PATH, SHELL) plus `env`. setpriv and env
 * exec, so the process keeps one pid from setpriv to `cmd`.
 */
export function userArgv(
  user: TestUser,
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): string[] {
  const full: Record<string, string> = {
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: "/bin/sh",
    PATH: "/usr/local/bin:/usr/bin:/bin",
    ...env,
  };
  return [
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--init-groups",
    "--",
    "env",
    "-i",
    ...Object.entries(full).map(([k, v]) => `${k}=${v}`),
    cmd,
    ...args,
  ];
}

/** Runs a command as `user` (see userArgv), in the user's home unless told. */
export function runAs(
  user: TestUser,
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<Result> {
  const [setpriv, ...rest] = userArgv(user, cmd, args, options.env);
  return runCommand(setpriv!, rest, { ...options, env: undefined, cwd: options.cwd ?? user.home });
}
