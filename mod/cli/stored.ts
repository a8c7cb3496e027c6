/** The closing line of a command that stored an image (pull, load). */
import type { ImageRecord } from "../image/store/metadata.ts";
import { printLine } from "./output.ts";
import { formatBytes, formatSeconds, shortId } from "./units.ts";

export function printStored(
  verb: "Pulled" | "Loaded",
  image: ImageRecord,
  upToDate: boolean,
  seconds: number,
  cluster?: "converted" | "found",
): void {
  const id = `IMAGE ID ${shortId(image.configDigest)}`;
  const where = cluster === "found"
    ? ": found in the cluster store, nothing downloaded"
    : cluster === "converted"
    ? ", into the cluster store"
    : "";
  if (upToDate) printLine(`${image.reference} is up to date (${id})`);
  else {
    printLine(
      `${verb} ${image.reference} (${id}, ${formatBytes(image.size)}) in ${
        formatSeconds(seconds)
      }${where}`,
    );
  }
}
