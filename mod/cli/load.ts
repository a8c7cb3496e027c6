import type { LoadEvent } from "../image/load.ts";
import { commandContext } from "./context.ts";
import { defineCommand, flag, value } from "./parser.ts";
import { printStored } from "./stored.ts";
import { formatBytes, formatSeconds } from "./units.ts";

export const loadCommand = defineCommand({
  name: "load",
  args: [
    { name: "FILE", help: "the archive (tar, plain or gzip-compressed); - reads standard input" },
    { name: "NAME[:TAG]", help: "store it as load/NAME[:TAG] (default tag latest)" },
  ],
  options: {
    platform: value(
      "--platform <OS/ARCH[/VARIANT]>",
      "the platform to take from a multi-platform archive (default: this machine's)",
    ),
    centralizedRepository: flag(
      "--centralized-repository",
      "store it in the site's repository for everyone (root)",
    ),
  },
  more: `
Reads docker-archive files (\`docker save\`, \`podman save\`, classic and
Docker 25+ layouts) and oci-archive files (\`podman save --format oci-archive\`,
\`skopeo copy ... oci-archive:FILE\`). When the archive holds several images,
the one named NAME (or tagged TAG) is taken, else the one for this machine's
platform. Loading an archive whose image NAME already names does no work.

The image is stored as load/NAME[:TAG], apart from pulled images, so a load
never replaces one. \`shoal run NAME[:TAG]\` finds it while no other stored
image has that name; \`shoal run load/NAME[:TAG]\` always does.

Examples:
  docker save busybox:latest -o busybox.tar && shoal load busybox.tar busybox
  shoal load tools.tar.gz mylab/tools:1.4
  ssh build-host docker save app:2 | gzip | shoal load - app:2
  sudo shoal load --centralized-repository pytorch.tar site/pytorch:24.05`,
  async action({ args: [file, name], options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { load } = await import("../image/load.ts");
    const quiet = logger.verbosity === "quiet";
    const result = await load(loaded, {
      file: file!,
      name: name!,
      platform: opts.platform,
      centralized: opts.centralizedRepository,
    }, { logger, onEvent: quiet ? undefined : loadProgress });
    const img = result.image;
    if (quiet) return;
    const t = result.timings;
    printStored("Loaded", img, result.upToDate, t.read + t.convert);
    if (result.upToDate) return;
    logger.verbose(
      `read ${formatSeconds(t.read)}, convert ${
        formatSeconds(t.convert)
      }; stored in ${img.squashfsPath}`,
    );
  },
});

const enc = new TextEncoder();

/** One plain line per step on stderr: reading a local file is quick, bars would only flicker. */
function loadProgress(e: LoadEvent): void {
  let line: string | undefined;
  switch (e.kind) {
    case "reading":
      line = `Reading ${e.source}`;
      break;
    case "found": {
      const total = e.layers.reduce((n, l) => n + l.size, 0);
      const what = e.compressed
        ? `a gzip-compressed ${e.format}`
        : `${/^[aeiou]/.test(e.format) ? "an" : "a"} ${e.format}`;
      const layers = `${e.layers.length} layer${e.layers.length === 1 ? "" : "s"}`;
      line = `Loading ${e.reference} from ${what} (${e.platform}, ${layers}, ${
        formatBytes(total)
      })`;
      break;
    }
    case "converting":
      line = `Converting ${e.layers} layer${e.layers === 1 ? "" : "s"} to squashfs`;
      break;
    case "committing":
      break;
  }
  if (line !== undefined) Deno.stderr.writeSync(enc.encode(line + "\n"));
}
