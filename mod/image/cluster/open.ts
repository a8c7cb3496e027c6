/**
 * The site's cluster store as configured (`store.path`, `store.owner`), and
 * whether it is what the helper will trust: the directory owned by the
 * owner's account and writable by it alone, every directory above it root's
 * and not writable by others, no symlink on the way.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ConfigError, SecurityError } from "../../errors.ts";
import { dirname } from "../../path.ts";
import { rootOnlyProblems } from "../../config/security.ts";
import { getpwnam } from "../../sys/user.ts";
import { type ClusterPaths, clusterPaths } from "./layout.ts";

export interface ClusterStore {
  paths: ClusterPaths;
  owner: { name: string; uid: number; gid: number };
}

/** The configured store, or undefined when the site has none; its owner must exist. */
export function configuredStore(loaded: LoadedConfig): ClusterStore | undefined {
  const store = loaded.config.store;
  if (store === undefined) return undefined;
  const owner = getpwnam(store.owner);
  if (owner === null) {
    throw new ConfigError(`store.owner: there is no account '${store.owner}'`, {
      hint: "create the store's account on every node (same uid), or set store.owner",
    });
  }
  if (owner.uid === 0) {
    throw new ConfigError("store.owner: the store's owner must not be root", {
      hint: "the converter parses what users send: give it an account of its own",
    });
  }
  return { paths: clusterPaths(store.path), owner };
}

/** Why the store cannot be trusted, or undefined when it can. */
export function storeProblem(store: ClusterStore): string | undefined {
  const root = store.paths.root;
  const [above] = rootOnlyProblems(dirname(root));
  if (above) return `${above.message} (above the store ${root})`;
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(root);
  } catch (err) {
    return `the store ${root} cannot be read: ${(err as Error).message}`;
  }
  if (!st.isDirectory) return `the store ${root} is not a directory`;
  if (st.uid !== store.owner.uid) {
    return `the store ${root} belongs to uid ${st.uid}, not to ${store.owner.name} (${store.owner.uid})`;
  }
  if ((st.mode ?? 0) & 0o022) return `the store ${root} is writable by group or others`;
  return undefined;
}

/** The store, checked; throws the problem as one line. */
export function trustedStore(loaded: LoadedConfig): ClusterStore | undefined {
  const store = configuredStore(loaded);
  const problem = store && storeProblem(store);
  if (problem !== undefined) {
    throw new SecurityError(problem, {
      hint: `make it ${store!.owner.name}'s, mode 0755, on a path only root can change`,
    });
  }
  return store;
}

/** Creates the store's directories that are missing (as its owner). */
export function prepareStore(store: ClusterStore): void {
  const { images, staging, refs, trash } = store.paths;
  for (const dir of [images, staging, refs, trash]) {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  }
}
