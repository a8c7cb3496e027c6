import type { DiskUsage } from "../image/store/space.ts";
import { UsageError } from "../errors.ts";
import { commandContext, formatOption } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { defineCommand, flag } from "./parser.ts";
import { formatBytes } from "./units.ts";

const ACTIONS = ["df", "prune"] as const;

export const systemCommand = defineCommand({
  name: "system",
  args: [{
    name: "ACTION",
    help: "df: show what the repository holds; prune: free what no image needs",
  }],
  options: {
    centralizedRepository: flag(
      "--centralized-repository",
      "the site's centralized repository (prune: root)",
    ),
    format: formatOption(),
  },
  more: `
'df' counts the images, the cached layer blobs (and those no image was built
from), partial downloads and the work of pulls. 'prune' removes, under the
repository's lock, the blobs no stored image was built from, partial
downloads unchanged for 10 minutes whose pull is gone, and what dead pulls
left. It never removes an image (use 'shoal rmi'), and leaves the blobs alone
while a pull is running.

Examples:
  shoal system df
  shoal system prune`,
  async action({ args: [action], options: opts, verbosity }) {
    if (!(ACTIONS as readonly string[]).includes(action!)) {
      throw new UsageError(`system takes ${ACTIONS.join(" or ")}, not '${action}'`);
    }
    const { loaded, logger } = await commandContext(verbosity);
    const { repositoryFor } = await import("../image/store/repository.ts");
    const store = repositoryFor(loaded, opts.centralizedRepository, logger);
    const format = opts.format ?? loaded.preferences.format ?? "table";
    const before = await store.diskUsage();
    if (action === "df") {
      if (format === "json") return printJson({ repository: store.root, ...before });
      return printUsage(before);
    }
    const gc = await store.gc();
    const after = await store.diskUsage();
    const freed = Math.max(0, total(before) - total(after));
    if (format === "json") {
      return printJson({
        repository: store.root,
        freed,
        ...(gc.skipped && { skipped: gc.skipped }),
      });
    }
    if (gc.skipped) logger.warn(`cached blobs left alone: ${gc.skipped}`);
    if (logger.verbosity !== "quiet") printLine(`Freed ${formatBytes(freed)} in ${store.root}`);
  },
});

function total(u: DiskUsage): number {
  return u.images + u.blobs + u.partials + u.temporary;
}

function printUsage(u: DiskUsage): void {
  printTable(["WHAT", "COUNT", "SIZE", "RECLAIMABLE"], [
    ["images", String(u.imageCount), formatBytes(u.images), formatBytes(0)],
    ["blobs", String(u.blobCount), formatBytes(u.blobs), formatBytes(u.unusedBlobs)],
    ["partials", String(u.partialCount), formatBytes(u.partials), formatBytes(u.stalePartials)],
    ["pulls", "-", formatBytes(u.temporary), "-"],
    ["total", "-", formatBytes(total(u)), formatBytes(u.unusedBlobs + u.stalePartials)],
  ]);
}
