import type { ImageRecord } from "../image/store/metadata.ts";
import { ShoalError } from "../errors.ts";
import { commandContext, formatOption } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { defineCommand, flag } from "./parser.ts";
import { formatBytes, formatTime, shortId } from "./units.ts";

export const imagesCommand = defineCommand({
  name: "images",
  args: [],
  options: {
    digests: flag("--digests", "show the registry digest of each image"),
    centralizedRepository: flag(
      "--centralized-repository",
      "list the site's centralized repository",
    ),
    format: formatOption(),
  },
  more: "Examples:\n  shoal images\n  shoal images --digests\n  shoal images --format json",
  async action({ options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { repositoryFor } = await import("../image/store/repository.ts");
    const store = repositoryFor(loaded, opts.centralizedRepository, logger);
    const images = await store.list();
    const format = opts.format ?? loaded.preferences.format ?? "table";
    if (format === "json") return printJson(images.map(jsonOf));
    const headers = ["REPOSITORY", "TAG", ...(opts.digests ? ["DIGEST"] : []), "IMAGE ID"];
    printTable(
      [...headers, "CREATED", "SIZE", "SERVER"],
      images.map((i) => [
        i.repository,
        i.tag ?? "<none>",
        ...(opts.digests ? [i.digest ?? "<none>"] : []),
        shortId(i.configDigest),
        formatTime(i.created),
        formatBytes(i.size),
        i.server,
      ]),
    );
  },
});

export const rmiCommand = defineCommand({
  name: "rmi",
  args: [{ name: "IMAGE", help: "images to remove", variadic: true }],
  options: {
    centralizedRepository: flag(
      "--centralized-repository",
      "remove from the site's centralized repository (root)",
    ),
  },
  more: "Examples:\n  shoal rmi debian:bookworm\n  shoal rmi 5f2a9c0e1b3d\n" +
    "  shoal rmi localhost:5000/demo@sha256:...",
  async action({ args: names, options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { repositoryFor } = await import("../image/store/repository.ts");
    const store = repositoryFor(loaded, opts.centralizedRepository, logger);
    const failed: string[] = [];
    for (const name of names) {
      try {
        const removed = await store.remove(name);
        if (logger.verbosity === "quiet") continue;
        for (const r of removed.untagged) printLine(`Untagged: ${r}`);
        for (const d of removed.deleted) printLine(`Deleted: ${d}`);
      } catch (err) {
        if (names.length === 1 || !(err instanceof ShoalError)) throw err;
        logger.warn(err.message);
        failed.push(name);
      }
    }
    await store.gc();
    if (failed.length > 0) throw new ShoalError(`could not remove ${failed.join(", ")}`);
  },
});

/** The JSON form of an image: the metadata, without the store's file names. */
function jsonOf(i: ImageRecord) {
  const { squashfs: _file, schemaVersion: _v, ...rest } = i;
  return rest;
}
