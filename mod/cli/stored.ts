/** The closing line of a command that stored an image (pull, load). */
import type { ImageRecord } from "../image/store/metadata.ts";
import { printLine } from "./output.ts";
import { formatBytes, formatSeconds, shortId } from "./units.ts";

export function printStored(
  verb: "Pulled" | "Loaded",
  image: ImageRecord,
  upToDate: boolean,
  seconds: number,
): void {
  const id = `IMAGE ID ${shortId(image.configDigest)}`;
  if (upToDate) printLine(`${image.reference} is up to date (${id})`);
  else {
    printLine(
      `${verb} ${image.reference} (${id}, ${formatBytes(image.size)}) in ${formatSeconds(seconds)}`,
    );
  }
}
