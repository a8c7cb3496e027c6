/**
 * What the store records of an image's own configuration and of its converted
 * tree, the same whether it was pulled or loaded from an archive.
 */
import type { ImageConfig } from "./registry/manifest.ts";
import type { NewImage } from "./store/metadata.ts";

type ConfigFields = Pick<
  NewImage,
  | "env"
  | "entrypoint"
  | "cmd"
  | "workdir"
  | "user"
  | "labels"
  | "passwd"
  | "group"
  | "created"
  | "glibc"
>;

export function configFields(
  config: ImageConfig,
  tree: { passwd?: string; group?: string; glibc?: string },
): ConfigFields {
  const c = config.config ?? {};
  return {
    env: c.Env ?? [],
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    workdir: c.WorkingDir ?? "",
    user: c.User ?? "",
    labels: c.Labels ?? {},
    passwd: tree.passwd ?? "",
    group: tree.group ?? "",
    ...(config.created !== undefined && { created: config.created }),
    ...(tree.glibc !== undefined && { glibc: tree.glibc }),
  };
}
