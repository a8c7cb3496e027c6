/** The running kernel's version as numbers. */

/** `[major, minor]` of a release string such as "6.1.0-18-amd64", or null if it has none. */
export function kernelVersion(release: string): [number, number] | null {
  const m = release.match(/^(\d+)\.(\d+)/);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Whether `version` is at least `[major, minor]`. */
export function atLeast(version: [number, number], major: number, minor: number): boolean {
  return version[0] > major || (version[0] === major && version[1] >= minor);
}
