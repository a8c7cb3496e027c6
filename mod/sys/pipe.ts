/**
 * A pipe's kernel buffer, made larger for bulk transfers: with the default
 * 64 KiB, each read of a layer sent to the converter returns 64 KiB at most
 * and the two processes take turns 16 times a megabyte. Bound apart from
 * libc.ts's table, on first use: only the converter pays for it.
 */
const F_SETPIPE_SZ = 1031;

const symbols = {
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let bound: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;

/**
 * Asks for a buffer of `bytes` for the pipe `fd`; returns the size the kernel
 * gave, or undefined where it refused (`fd` is no pipe, or over the user's
 * share of pipe memory: /proc/sys/fs/pipe-max-size, pipe-user-pages-soft).
 */
export function widenPipe(fd: number, bytes: number): number | undefined {
  bound ??= Deno.dlopen("libc.so.6", symbols).symbols;
  const size = bound.fcntl(fd, F_SETPIPE_SZ, bytes);
  return size < 0 ? undefined : size;
}
