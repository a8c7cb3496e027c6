/** The running kernel: uname(2) and its version as numbers. */
import { check, libc, readCString } from "./libc.ts";

export interface Uname {
  sysname: string;
  nodename: string;
  release: string;
  version: string;
  machine: string;
}

// struct utsname on Linux: six fields of 65 bytes each.
const FIELD = 65;

export function uname(): Uname {
  const buf = new Uint8Array(FIELD * 6);
  check("uname", libc().uname(buf));
  const field = (i: number) => readCString(buf, i * FIELD, FIELD);
  return {
    sysname: field(0),
    nodename: field(1),
    release: field(2),
    version: field(3),
    machine: field(4),
  };
}

/** `[major, minor]` of a release string such as "6.1.0-18-amd64", or null if it has none. */
export function kernelVersion(release: string): [number, number] | null {
  const m = release.match(/^(\d+)\.(\d+)/);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Whether `version` is at least `[major, minor]`. */
export function atLeast(version: [number, number], major: number, minor: number): boolean {
  return version[0] > major || (version[0] === major && version[1] >= minor);
}
