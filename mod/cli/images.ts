import type { ImageRecord } from "../image/store/metadata.ts";
import { ShoalError, UsageError } from "../errors.ts";
import { outputFormats } from "../config/choices.ts";
import { commandContext } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { defineCommand, flag, parsed } from "./parser.ts";
import { isTemplate, parseTemplate, type Template } from "./template.ts";
import { formatBytes, formatTime, shortId } from "./units.ts";

/** What `--format '{{.Field}}'` offers: docker's names, and shoal's SERVER and full reference. */
const FIELDS = [
  "Repository",
  "Tag",
  "Digest",
  "ID",
  "CreatedAt",
  "Size",
  "Server",
  "Reference",
] as const;

type Field = typeof FIELDS[number];

function formatOf(v: string | undefined): "table" | "json" | Template {
  const format = v ?? "";
  if (isTemplate(format)) return parseTemplate("--format", format, FIELDS);
  const known = outputFormats.find((f) => f === format);
  if (known !== undefined) return known;
  throw new UsageError(`--format takes table, json or a template, not '${format}'`, {
    hint: "e.g. --format '{{.Repository}}:{{.Tag}}'",
  });
}

/**
 * Each field as one word, so that scripts can split the table on blanks:
 * REPOSITORY is the full name, which `run` and `rmi` take back as it is.
 */
function fieldsOf(i: ImageRecord): Record<Field, string> {
  return {
    Repository: `${i.registry}/${i.repository}`,
    Tag: i.tag ?? "<none>",
    Digest: i.digest ?? "<none>",
    ID: shortId(i.configDigest),
    CreatedAt: formatTime(i.created).replace(" ", "T"),
    Size: formatBytes(i.size).replace(" ", ""),
    Server: i.server,
    Reference: i.reference,
  };
}

export const imagesCommand = defineCommand({
  name: "images",
  args: [],
  options: {
    digests: flag("--digests", "show the registry digest of each image"),
    centralizedRepository: flag(
      "--centralized-repository",
      "list the site's centralized repository",
    ),
    format: parsed(
      "--format <FORMAT>",
      "table, json, or a template such as '{{.Repository}}:{{.Tag}}'",
      formatOf,
    ),
  },
  more: `
REPOSITORY is the image's full name; \`shoal run\` and \`shoal rmi\` take it, or
the name without its registry while no other stored image has it. No column
holds a blank. Template fields:
  ${FIELDS.map((f) => `{{.${f}}}`).join(" ")}

Examples:
  shoal images
  shoal images --digests
  shoal images --format json
  shoal images --format '{{.Repository}}:{{.Tag}}\\t{{.Size}}'`,
  async action({ options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { repositoryFor } = await import("../image/store/repository.ts");
    const store = repositoryFor(loaded, opts.centralizedRepository, logger);
    const images = await store.list();
    const format = opts.format ?? loaded.preferences.format ?? "table";
    if (format === "json") return printJson(images.map(jsonOf));
    if (typeof format === "function") {
      for (const i of images) printLine(format(fieldsOf(i)));
      return;
    }
    const columns: [string, Field][] = [
      ["REPOSITORY", "Repository"],
      ["TAG", "Tag"],
      ...(opts.digests ? [["DIGEST", "Digest"] as [string, Field]] : []),
      ["IMAGE ID", "ID"],
      ["CREATED", "CreatedAt"],
      ["SIZE", "Size"],
      ["SERVER", "Server"],
    ];
    printTable(
      columns.map(([header]) => header),
      images.map((i) => {
        const fields = fieldsOf(i);
        return columns.map(([, field]) => oneWord(fields[field]));
      }),
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
  more: `
IMAGE is a name as \`shoal images\` lists it, the same without its registry
while no other stored image has it, or an IMAGE ID.

Examples:
  shoal rmi debian:bookworm
  shoal rmi 5f2a9c0e1b3d
  shoal rmi localhost:5000/demo@sha256:...
  shoal rmi load/mylab/tool:1.4`,
  async action({ args: names, options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { repositoryFor } = await import("../image/store/repository.ts");
    const store = repositoryFor(loaded, opts.centralizedRepository, logger);
    const failed: string[] = [];
    for (const name of names) {
      try {
        const removed = await store.remove(name);
        if (removed.released.length > 0) {
          const { releaseStoreImages } = await import("../image/cluster/refs.ts");
          await releaseStoreImages(loaded, removed.released);
        }
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

/** A SERVER such as "file:my image.tar" as one word: blanks (and so "%") written as %XX. */
function oneWord(value: string): string {
  return value.replace(/[\s%]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** The JSON form of an image: the metadata, without the store's file names. */
function jsonOf(i: ImageRecord) {
  const { squashfs: _file, schemaVersion: _v, ...rest } = i;
  return rest;
}
