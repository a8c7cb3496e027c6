/**
 * `shoal store`: the cluster image store's own commands (docs/design/store.md).
 * `convert DIGEST` is the converter: the setuid helper runs it as the store's
 * owner for a user's publish, with the image on standard input; the owner
 * may run it directly.
 */
import { UsageError } from "../errors.ts";
import { isDigest } from "../image/registry/digest.ts";
import { commandContext, formatOption } from "./context.ts";
import { printJson, printLine } from "./output.ts";
import { defineCommand, value } from "./parser.ts";

const ACTIONS = ["convert", "gc"] as const;

export const storeCommand = defineCommand({
  name: "store",
  usage: "convert DIGEST | gc",
  args: [
    {
      name: "ACTION",
      help: "convert: store the image sent on standard input (the converter); " +
        "gc: remove images no one references",
    },
    { name: "DIGEST", help: "convert: the platform manifest's digest to store", optional: true },
  ],
  options: {
    caller: value("--caller <UID>", "the user the publish is for (set by the helper)"),
    format: formatOption(),
  },
  more: `
'convert' reads the publish stream (manifest, config, signatures, then the
layers) and stores the image in the site's store only when every byte
matches DIGEST; it answers on standard output. It runs as the store's owner:
'shoal pull' starts it through the setuid helper.

'gc', run by the store's owner (from cron, say), removes the images no user
has referenced for store.retentionDays, and what dead publishes left.`,
  async action({ args: [action, digest], options: opts, verbosity }) {
    if (!(ACTIONS as readonly string[]).includes(action!)) {
      throw new UsageError(`store takes ${ACTIONS.join(" or ")}, not '${action}'`);
    }
    if (action === "gc") {
      const { loaded } = await commandContext(verbosity);
      const { collectAsOwner } = await import("../image/cluster/converter_main.ts");
      const report = await collectAsOwner(loaded);
      if ((opts.format ?? loaded.preferences.format) === "json") return printJson(report);
      for (const d of report.removed) printLine(`Removed: ${d}`);
      printLine(
        `${report.removed.length} removed, ${report.unreferenced} unreferenced kept for now, ` +
          `${report.claims} dead publishes cleaned`,
      );
      return;
    }
    if (digest === undefined || !isDigest(digest)) {
      throw new UsageError("store convert takes the manifest's digest, sha256:<64 hex digits>");
    }
    const caller = opts.caller === undefined ? Deno.uid() ?? -1 : Number(opts.caller);
    if (!Number.isSafeInteger(caller) || caller < 0) {
      throw new UsageError(`--caller takes a uid, not '${opts.caller}'`);
    }
    const { loaded, logger } = await commandContext(verbosity);
    const { convertAsOwner, publishedInput } = await import("../image/cluster/converter_main.ts");
    const out = Deno.stdout.writable.getWriter();
    const encoder = new TextEncoder();
    try {
      await convertAsOwner(loaded, {
        digest,
        caller,
        input: publishedInput(),
        answer: (line) => out.write(encoder.encode(`${line}\n`)),
        logger,
      });
    } finally {
      out.releaseLock();
    }
  },
});
