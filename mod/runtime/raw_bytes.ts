/**
 * Strings that are not UTF-8 past config.json: runc reads it with Go's
 * encoding/json, which replaces such bytes with U+FFFD (`ls $'caf\xe9'` would
 * name another file), so they never appear in it.
 *
 * - The command and environment: the container starts with the exec shim
 *   shoal-exec (helper/exec_shim.c), bind-mounted read-only on /dev's tmpfs
 *   (the image is not touched), given the command and the variables holding
 *   such bytes hex-encoded; it decodes them and execs the command. Only a run
 *   that has such bytes starts this way; every other run is as it was.
 * - Bind-mount sources: a symlink in the bundle, with an ASCII name, points at
 *   the real path, and runc mounts it (following it, as the calling user).
 *   Container paths are resolved by runc inside the rootfs from config.json
 *   alone: such a destination is refused (mounts.ts).
 */
import { hasRawBytes, hostBytes, toHex } from "../bytes.ts";
import { join } from "../path.ts";
import type { OciMount } from "./oci.ts";

/** Where the exec shim is mounted in the container. */
export const EXEC_SHIM_PATH = "/dev/shoal-exec";

/** A symlink to write in the bundle: `name` (ASCII) -> `target` (any bytes). */
export interface SourceLink {
  name: string;
  target: string;
}

/**
 * The process's args and env for config.json, and the mounts they need:
 * `args` and `env` as they are when all of them are UTF-8; otherwise the shim
 * runs first, with the env entries that are not UTF-8 and then every arg in hex.
 * `shim` gives the shim's host path (or throws), asked only then.
 */
export function byteExactProcess(
  args: string[],
  env: string[],
  shim: () => string,
): { args: string[]; env: string[]; mounts: OciMount[] } {
  const rawEnv = env.filter(hasRawBytes);
  if (rawEnv.length === 0 && !args.some(hasRawBytes)) return { args, env, mounts: [] };
  const hex = (s: string) => toHex(hostBytes(s));
  return {
    args: [EXEC_SHIM_PATH, ...rawEnv.map(hex), "--", ...args.map(hex)],
    env: env.filter((e) => !hasRawBytes(e)),
    mounts: [{
      destination: EXEC_SHIM_PATH,
      type: "bind",
      source: shim(),
      options: ["bind", "ro", "nosuid", "nodev"],
    }],
  };
}

/**
 * Points every bind mount whose source is not UTF-8 at a symlink in `bundle`
 * instead (in place), and returns the symlinks to write there.
 */
export function linkRawSources(mounts: OciMount[], bundle: string): SourceLink[] {
  const links: SourceLink[] = [];
  for (const m of mounts) {
    if (m.type !== "bind" || !hasRawBytes(m.source)) continue;
    const link = { name: `source-${links.length}`, target: m.source };
    links.push(link);
    m.source = join(bundle, link.name);
  }
  return links;
}
