/**
 * What the NVIDIA and AMD spec generators share: device nodes and read-only
 * mounts of a root tree's files, paths resolved inside that tree, and the
 * finished spec, written with the oldest cdiVersion its fields allow (the
 * most CDI readers take it) and checked by the same parser runs use.
 */
import { exists } from "../sys/fs.ts";
import { ShoalError } from "../errors.ts";
import { dirname, join } from "../path.ts";
import {
  type CdiDevice,
  type CdiDeviceNode,
  type CdiEdits,
  type CdiMount,
  type CdiSpec,
  checkSpec,
  minimumVersion,
} from "../cdi/spec.ts";
import { under } from "./discover.ts";
import { type ElfInfo, isElf, readElfFile } from "../mpi/elf.ts";
import { glibcNeed } from "../mpi/checks.ts";
import { GLIBC_ANNOTATION, GLIBC_LIBRARY_ANNOTATION } from "../cdi/glibc.ts";

/** A generated spec, and what the admin should know about what it lacks. */
export interface Generated {
  spec: CdiSpec;
  warnings: string[];
}

/** Host files a container gets read-only, with no setuid programs or device files through them. */
export const READ_ONLY = ["ro", "nosuid", "nodev", "bind"];

/** The node at `path` in the tree as a device node; throws naming it (and `fix`) when it is missing. */
export function deviceNode(root: string, path: string, fix: string): CdiDeviceNode {
  if (!exists(under(root, path))) {
    throw new ShoalError(`${under(root, path)} does not exist`, { hint: fix });
  }
  // The node's type and numbers are the host's, filled in by stat at run time.
  return root === "/" ? { path } : { path, hostPath: under(root, path) };
}

/**
 * Where `path` leads inside the tree under `root`: symbolic links followed,
 * an absolute target taken as inside the tree too; null when nothing is there.
 */
export function resolveInTree(root: string, path: string): string | null {
  let current = path;
  for (let hops = 0; hops < 40; hops++) {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(under(root, current));
    } catch {
      return null;
    }
    if (!info.isSymlink) return current;
    const target = Deno.readLinkSync(under(root, current));
    current = target.startsWith("/") ? join(target) : join(dirname(current), target);
  }
  return null;
}

/** A read-only mount of the tree's `path` (resolved) at `containerPath`. */
export function readOnlyMount(root: string, resolved: string, containerPath: string): CdiMount {
  return { hostPath: under(root, resolved), containerPath, options: READ_ONLY };
}

/** Mounts without two at one container path, in their first order. */
export function uniqueMounts(mounts: CdiMount[]): CdiMount[] {
  return [...new Map(mounts.map((m) => [m.containerPath, m])).values()];
}

/**
 * The ELF files among mounts (driver libraries and programs), parsed, with
 * their container paths: what they need of the image's glibc.
 */
function elfFiles(mounts: CdiMount[]): { path: string; elf: ElfInfo }[] {
  return mounts.flatMap((m) => {
    try {
      if (!Deno.statSync(m.hostPath).isFile) return [];
      using file = Deno.openSync(m.hostPath);
      const head = new Uint8Array(4);
      if (file.readSync(head) !== 4 || !isElf(head)) return [];
      return [{ path: m.containerPath, elf: readElfFile(m.hostPath, false) }];
    } catch {
      return []; // not a file shoal can read: nothing to check
    }
  });
}

/**
 * The spec of `kind`: one device per GPU (by each of its names), "all" with
 * every GPU's edits, and what every device needs in the spec's own edits.
 */
export function finishSpec(
  kind: string,
  gpus: { names: string[]; edits: CdiEdits }[],
  common: CdiEdits,
): CdiSpec {
  const devices: CdiDevice[] = gpus.flatMap((g) =>
    g.names.map((name) => ({ name, containerEdits: g.edits }))
  );
  devices.push({
    name: "all",
    containerEdits: { deviceNodes: gpus.flatMap((g) => g.edits.deviceNodes ?? []) },
  });
  const need = glibcNeed(elfFiles(common.mounts ?? []));
  const body = {
    kind,
    ...(need !== undefined && {
      annotations: { [GLIBC_ANNOTATION]: need.version, [GLIBC_LIBRARY_ANNOTATION]: need.library },
    }),
    devices,
    containerEdits: common,
  };
  return checkSpec({ cdiVersion: minimumVersion(body), ...body });
}
