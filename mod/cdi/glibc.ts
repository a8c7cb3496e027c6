/**
 * Host libraries a CDI spec mounts need the image's glibc to be new enough:
 * a driver library built against GLIBC_2.34 fails to load in an image of
 * glibc 2.31 with a message that names neither. shoal's generators record
 * the newest GLIBC_x.y their files need in the spec's annotations; a run
 * compares it with the image's (kept with the image, image/glibc.ts) and
 * refuses in one line that names the library. Specs from other generators
 * carry no such annotation and are not checked.
 */
import { ShoalError } from "../errors.ts";
import type { ResolvedDevice } from "./registry.ts";
import { compareVersions } from "../mpi/checks.ts";

export const GLIBC_ANNOTATION = "shoal.dev/glibc";
export const GLIBC_LIBRARY_ANNOTATION = "shoal.dev/glibc-library";

/** The newest glibc the spec files of `devices` say their files need, and which file. */
export function driverGlibcNeed(
  devices: ResolvedDevice[],
): { version: string; library: string } | undefined {
  let need: { version: string; library: string } | undefined;
  for (const { spec } of new Set(devices.map((d) => d.file))) {
    const version = spec.annotations?.[GLIBC_ANNOTATION];
    if (version === undefined || !/^\d+(\.\d+)+$/.test(version)) continue;
    if (need === undefined || compareVersions(version, need.version) > 0) {
      need = {
        version,
        library: spec.annotations?.[GLIBC_LIBRARY_ANNOTATION] ?? "a driver library",
      };
    }
  }
  return need;
}

/** Refuses a run whose image's glibc is older than what its devices' files need. */
export async function checkDriverGlibc(
  devices: ResolvedDevice[],
  image: { reference?: string; squashfsPath?: string; glibc?: string },
): Promise<void> {
  const need = driverGlibcNeed(devices);
  if (need === undefined) return;
  // Images stored before shoal kept their glibc version are read here.
  const path = image.squashfsPath;
  const have = image.glibc ?? (path === undefined ? undefined : await (await import(
    "../image/glibc.ts"
  )).imageGlibc(path).catch(() => undefined));
  if (have === undefined || compareVersions(need.version, have) <= 0) return;
  const which = image.reference === undefined ? "the image" : `the image ${image.reference}`;
  throw new ShoalError(
    `the host's ${need.library} needs GLIBC_${need.version}, and ${which} has only up to GLIBC_${have}`,
    {
      hint:
        `use an image with glibc ${need.version} or newer, or a driver built for an older glibc`,
    },
  );
}
