/**
 * The setuid helper shoal-mount as a site has it: the helper install.sh built
 * and installed, copied into a root-owned prefix of the test's own (so that a
 * test may rewrite or tamper with the config without touching the shared
 * installation), squashfs images made from tar entries, OCI bundles made by the
 * unprivileged test user, and what the host shows afterwards.
 */
import { tarArchive, type TarEntry } from "./tar.ts";
import { installedShoal, rootOwnedTempDir } from "./install.ts";
import { type Result, runCommand } from "./shoal.ts";
import { runAs, type TestUser, userArgv } from "./users.ts";
import { idMap, type IdMapping } from "../../mod/runtime/idmap.ts";
import { rangesOf, readSubidFile, SUBGID_FILE, SUBUID_FILE } from "../../mod/sys/subid.ts";

export const RUNC = "/usr/sbin/runc";

export interface HelperSite {
  /** Root-owned temp dir holding everything below; removed by `remove()`. */
  dir: string;
  prefix: string;
  /** `<prefix>/libexec/shoal/shoal-mount`, root-owned, mode 4755. */
  helper: string;
  /** `<prefix>/etc/shoal.json`. */
  configFile: string;
  /** The centralized repository, root-owned. */
  central: string;
  /** A root-owned directory outside every repository. */
  outside: string;
}

/** A site with the installed helper and `config` as its shoal.json. */
export async function helperSite(config: Record<string, unknown>): Promise<HelperSite> {
  const installed = await installedShoal();
  const dir = await rootOwnedTempDir();
  const prefix = `${dir}/prefix`;
  for (const d of [prefix, `${prefix}/libexec`, `${prefix}/libexec/shoal`, `${prefix}/etc`]) {
    await Deno.mkdir(d, { mode: 0o755 });
  }
  const helper = `${prefix}/libexec/shoal/shoal-mount`;
  await Deno.copyFile(`${installed.prefix}/libexec/shoal/shoal-mount`, helper);
  await Deno.chmod(helper, 0o4755);
  const site: HelperSite = {
    dir,
    prefix,
    helper,
    configFile: `${prefix}/etc/shoal.json`,
    central: `${dir}/central`,
    outside: `${dir}/outside`,
  };
  await Deno.mkdir(site.central, { mode: 0o755 });
  await Deno.mkdir(site.outside, { mode: 0o755 });
  await writeConfig(site, config);
  return site;
}

export async function writeConfig(site: HelperSite, config: Record<string, unknown>) {
  await Deno.writeTextFile(site.configFile, JSON.stringify(config, null, 2));
  await Deno.chmod(site.configFile, 0o644);
}

/** Runs the site's helper as `user` with ARGS (and extra environment). */
export function helper(
  site: HelperSite,
  user: TestUser,
  args: string[],
  env: Record<string, string> = {},
): Promise<Result> {
  return runAs(user, site.helper, args, { env });
}

async function must(cmd: string, args: string[], stdin?: string): Promise<string> {
  const r = await runCommand(cmd, args, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Writes a squashfs image of `entries` to `path` with tar2sqfs, owned by `owner`. */
export async function squashfsImage(
  path: string,
  entries: TarEntry[],
  owner: { uid: number; gid: number } = { uid: 0, gid: 0 },
): Promise<void> {
  const child = new Deno.Command("tar2sqfs", {
    args: ["--quiet", "--force", "--compressor", "gzip", path],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(tarArchive(entries));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`tar2sqfs ${path}: ${new TextDecoder().decode(out.stderr)}`);
  await Deno.chown(path, owner.uid, owner.gid);
  await Deno.chmod(path, 0o644);
}

/**
 * The maps shoal computes for `user` (mod/runtime/idmap.ts, from the real
 * /etc/subuid and /etc/subgid): the helper must give the container the same.
 */
export function shoalMaps(user: TestUser, root: boolean): { uid: IdMapping[]; gid: IdMapping[] } {
  const ranges = (file: string) => rangesOf(readSubidFile(file), user.name, user.uid);
  return {
    uid: idMap(user.uid, ranges(SUBUID_FILE), root).mappings,
    gid: idMap(user.gid, ranges(SUBGID_FILE), root).mappings,
  };
}

/** `check`'s rendering of a mapping: "0 1001 1, 1 100000 65536". */
export function renderMapping(map: IdMapping[]): string {
  return map.map((e) => `${e.containerID} ${e.hostID} ${e.size}`).join(", ");
}

export interface BundleOptions {
  /** The container's command. */
  args: string[];
  /** uid 0 inside (`--root`), else the user's own uid. */
  root: boolean;
  /** For `--userns`: join the namespace the helper binds at `<bundle>/userns`. */
  userns?: boolean;
  /** Share the host's PID namespace, as shoal does by default (`--pid=host`). */
  hostPid?: boolean;
}

/**
 * A bundle dir (mode 0700) made by `user` with `runc spec --rootless`, its
 * config.json set to run `args` on `rootfs` with the helper's mapping.
 */
export async function makeBundle(user: TestUser, bundle: string, opts: BundleOptions) {
  const made = await runAs(user, "mkdir", ["-m", "700", bundle]);
  if (made.code !== 0) throw new Error(`mkdir ${bundle}: ${made.stderr}`);
  const spec = await runAs(user, RUNC, ["spec", "--rootless", "--bundle", bundle]);
  if (spec.code !== 0) throw new Error(`runc spec: ${spec.stderr}`);
  const file = `${bundle}/config.json`;
  const config = JSON.parse(await Deno.readTextFile(file));
  const id = opts.root ? 0 : user.uid;
  config.process.args = opts.args;
  config.process.terminal = false;
  config.process.user = { uid: id, gid: opts.root ? 0 : user.gid };
  if (opts.root) {
    // Part of what shoal's --root grants: root inside may switch to other ids.
    for (const set of ["bounding", "effective", "permitted"]) {
      config.process.capabilities[set].push("CAP_SETUID", "CAP_SETGID");
    }
  }
  config.root = { path: "rootfs", readonly: false };
  config.hostname = "helper-test";
  if (opts.userns) {
    // runc joins the helper's namespace; these only tell it who owns its stdio (see the helper).
    const own = (i: number) => [
      { containerID: 0, hostID: i, size: 1 },
      ...(opts.root ? [] : [{ containerID: i, hostID: i, size: 1 }]),
    ];
    config.linux.uidMappings = own(user.uid);
    config.linux.gidMappings = own(user.gid);
    config.linux.namespaces = config.linux.namespaces.map((ns: { type: string }) =>
      ns.type === "user" ? { type: "user", path: `${bundle}/userns` } : ns
    );
  } else {
    const maps = shoalMaps(user, opts.root);
    config.linux.uidMappings = maps.uid;
    config.linux.gidMappings = maps.gid;
  }
  if (opts.hostPid) {
    config.linux.namespaces = config.linux.namespaces.filter((ns: { type: string }) =>
      ns.type !== "pid"
    );
    // A new proc mount needs a PID namespace of the user namespace's own: bind the host's.
    config.mounts = config.mounts.map((m: { destination: string }) =>
      m.destination === "/proc"
        ? {
          destination: "/proc",
          type: "bind",
          source: "/proc",
          options: ["rbind", "nosuid", "nodev", "noexec"],
        }
        : m
    );
  }
  await Deno.writeTextFile(file, JSON.stringify(config));
  await Deno.chown(file, user.uid, user.gid);
}

/**
 * Starts `cmd ARGS...` as `user` (as `runAs` does, but without waiting), stdout
 * and stderr piped; setpriv and env exec, so the child's pid is `cmd`'s own.
 */
export function spawnAs(user: TestUser, cmd: string, args: string[]): Deno.ChildProcess {
  const [setpriv, ...rest] = userArgv(user, cmd, args);
  return new Deno.Command(setpriv!, {
    args: rest,
    cwd: user.home,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads a child's output line by line, each wait bounded. */
export class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  async #more(ms: number, what: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    });
    try {
      const { value, done } = await Promise.race([this.#reader.read(), timeout]);
      if (done) this.#done = true;
      else this.#buffer += value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next line, or null at the end of the output. */
  async next(ms = 10_000): Promise<string | null> {
    while (!this.#buffer.includes("\n") && !this.#done) await this.#more(ms, "line");
    const i = this.#buffer.indexOf("\n");
    if (i < 0) {
      const last = this.#buffer;
      this.#buffer = "";
      return last === "" ? null : last;
    }
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return line;
  }

  /** Everything up to the end of the output: every writer has closed it. */
  async rest(ms = 10_000): Promise<string> {
    while (!this.#done) await this.#more(ms, "end of output");
    const all = this.#buffer;
    this.#buffer = "";
    return all;
  }
}

/** Pids of the live processes whose command line is exactly `argv`. */
export function processesRunning(argv: string[]): number[] {
  const want = argv.join("\0") + "\0";
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`) === want) pids.push(Number(e.name));
    } catch { /* gone meanwhile */ }
  }
  return pids;
}

/** Fields of /proc/PID/status, tabs and spaces squeezed: { Uid: "1001 1001 1001 1001" }. */
export function processStatus(pid: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1).trim().split(/\s+/).join(" ");
  }
  return fields;
}

/** Loop devices bound to `image` (`losetup -j`). */
export async function loopDevicesOf(image: string): Promise<string> {
  return (await must("losetup", ["-j", image])).trim();
}

/** Lines of the host's mount table that mention `path`. */
export async function hostMountsOf(path: string): Promise<string[]> {
  const table = await Deno.readTextFile("/proc/self/mountinfo");
  return table.split("\n").filter((l) => l.includes(path));
}

/**
 * Asserts that the host is as before a run: no mount mentioning any of
 * `paths` and no loop device on `image`. A namespace is torn down just after
 * its last process exits, so the loop device may take a moment to go.
 */
export async function assertNothingLeft(image: string, paths: string[]): Promise<void> {
  for (const p of paths) {
    const mounts = await hostMountsOf(p);
    if (mounts.length) throw new Error(`host mount table mentions ${p}: ${mounts.join("; ")}`);
  }
  let loops = "";
  for (let i = 0; i < 50; i++) {
    loops = await loopDevicesOf(image);
    if (loops === "") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`a loop device is still bound to ${image}: ${loops}`);
}

/** Content and metadata of files, to show that a refused run changed none of them. */
export async function snapshot(paths: string[]): Promise<string> {
  const parts: string[] = [];
  for (const p of paths) {
    try {
      const st = await Deno.lstat(p);
      const body = st.isFile ? await Deno.readFile(p) : new Uint8Array();
      const sum = await crypto.subtle.digest("SHA-256", body);
      parts.push(
        `${p} ${st.mode} ${st.uid}:${st.gid} ${st.mtime?.getTime()} ${
          btoa(String.fromCharCode(...new Uint8Array(sum)))
        }`,
      );
    } catch (err) {
      parts.push(`${p} ${(err as Error).name}`);
    }
  }
  return parts.join("\n");
}
