/**
 * Path calls for paths that are not UTF-8 (held with mod/bytes.ts's escapes):
 * Deno's file API takes its paths as strings and replaces such bytes, so it
 * would name another file. These go to libc with the exact bytes. They are
 * bound apart from libc.ts's table, on first use: only a run given such a
 * path pays for binding them.
 */
import { hostString } from "../bytes.ts";
import { cString, ErrnoError } from "./libc.ts";

const PATH_MAX = 4096;

const symbols = {
  __errno_location: { parameters: [], result: "pointer" },
  realpath: { parameters: ["buffer", "buffer"], result: "pointer" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let bound: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;

function lib() {
  bound ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return bound;
}

function fail(call: string, subject: string): never {
  const at = lib().__errno_location();
  throw new ErrnoError(call, at === null ? 0 : new Deno.UnsafePointerView(at).getInt32(), subject);
}

/** realpath(3) of `path`, byte for byte. */
export function realPathRaw(path: string): string {
  const c = lib();
  const out = new Uint8Array(PATH_MAX);
  if (c.realpath(cString(path), out) === null) fail("realpath", path);
  return hostString(out.subarray(0, out.indexOf(0)));
}

/** A symlink `name` in directory `dirfd` whose target is `target`, byte for byte. */
export function symlinkAtRaw(target: string, dirfd: number, name: string): void {
  if (lib().symlinkat(cString(target), dirfd, cString(name)) < 0) fail("symlinkat", name);
}
