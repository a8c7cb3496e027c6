/**
 * The C library through Deno FFI, opened on first use. Only process-wide calls
 * belong here: Deno is multi-threaded, so a call that changes the calling
 * thread's namespaces or credentials (unshare, setns, setuid) would split the
 * process (docs/design/architecture.md, "Deno and namespaces"); those happen in
 * child processes instead.
 */
import { hostBytes } from "../bytes.ts";

const symbols = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  statfs: { parameters: ["pointer", "pointer"], result: "i32" },
  getxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  getpwuid_r: { parameters: ["u32", "pointer", "pointer", "usize", "pointer"], result: "i32" },
  getpwnam_r: { parameters: ["pointer", "pointer", "pointer", "usize", "pointer"], result: "i32" },
  getgrgid_r: { parameters: ["u32", "pointer", "pointer", "usize", "pointer"], result: "i32" },
  // dirfd.ts: directories held by descriptor, never re-resolved by name.
  openat: { parameters: ["i32", "pointer", "i32", "u32"], result: "i32" },
  statx: { parameters: ["i32", "pointer", "i32", "u32", "pointer"], result: "i32" },
  mkdirat: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "pointer", "i32"], result: "i32" },
  renameat2: { parameters: ["i32", "pointer", "i32", "pointer", "u32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  // glibc 2.36's (kernel 5.1); optional, a missing one is null.
  pidfd_send_signal: {
    parameters: ["i32", "i32", "pointer", "u32"],
    result: "i32",
    optional: true,
  },
  // spawn.ts
  pipe2: { parameters: ["pointer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  posix_spawnp: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  posix_spawn_file_actions_adddup2: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["pointer", "i32", "pointer", "i32", "u32"],
    result: "i32",
  },
  posix_spawn_file_actions_destroy: { parameters: ["pointer"], result: "i32" },
  // signals.ts
  signalfd: { parameters: ["i32", "pointer", "i32"], result: "i32" },
  // Signals Deno.kill cannot name (the helper's SIGRTMIN+2).
  kill: { parameters: ["i32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  // Blocking calls run on a thread of Deno's pool, so the event loop goes on.
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
  // A wait with a time limit, without a timer: Deno's first setTimeout costs ~5 ms.
  // pidfd_open is glibc 2.36's (kernel 5.3): optional, a missing one is null.
  pidfd_open: { parameters: ["i32", "u32"], result: "i32", nonblocking: true, optional: true },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
type Scalar = "i32" | "isize" | "pointer";

let bound: Symbols | undefined;
/** Kept open (and referenced) for as long as shoal runs. */
let library: Deno.DynamicLibrary<Deno.ForeignLibraryInterface> | undefined;

/** The libc symbols, all bound on the first call. */
export function libc(): Symbols {
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    // The struct layouts read in mod/sys/ are those of 64-bit Linux.
    throw new Error(`shoal's libc bindings support 64-bit Linux only, not ${Deno.build.target}`);
  }
  bound ??= bind();
  return bound;
}

/**
 * Deno compiles machine code for each symbol it binds with scalar types (a
 * fast-call trampoline, with Cranelift), ~0.15 ms a symbol: a run's ten
 * symbols cost ~1.5 ms of its start. A symbol whose result is a struct gets
 * none and is called through libffi, a few microseconds slower a call; all
 * of them bind in ~0.6 ms. So each synchronous symbol is bound as returning
 * a one-field struct of its C result type, which both 64-bit ABIs shoal
 * supports (x86-64 System V, AArch64 PCS) return in the same register as the
 * scalar, and the struct is read back here. Nonblocking symbols get no
 * trampoline and stay as they are.
 */
function bind(): Symbols {
  const table: Record<string, Deno.ForeignFunction> = {};
  for (const [name, def] of Object.entries(symbols) as [string, Deno.ForeignFunction][]) {
    table[name] = "nonblocking" in def
      ? def
      : { ...def, result: { struct: [def.result as Scalar] } };
  }
  library = Deno.dlopen("libc.so.6", table);
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(library.symbols)) {
    const def = symbols[name as keyof typeof symbols] as Deno.ForeignFunction;
    out[name] = fn === null || "nonblocking" in def
      ? fn
      : scalarOf(fn as (...args: unknown[]) => Uint8Array<ArrayBuffer>, def.result as Scalar);
  }
  return out as Symbols;
}

/** A struct-returning binding (bind()) as the function returning its one field. */
function scalarOf(
  fn: (...args: unknown[]) => Uint8Array<ArrayBuffer>,
  type: Scalar,
): (...args: unknown[]) => number | bigint | Deno.PointerValue {
  // Both ABIs are little-endian on Linux.
  const view = (bytes: Uint8Array) =>
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (type === "i32") return (...args) => view(fn(...args)).getInt32(0, true);
  if (type === "isize") return (...args) => view(fn(...args)).getBigInt64(0, true);
  return (...args) => Deno.UnsafePointer.create(view(fn(...args)).getBigUint64(0, true));
}

/** A failed libc call: which call, on what, and errno. */
export class ErrnoError extends Error {
  constructor(readonly call: string, readonly errno: number, subject?: string) {
    super(`${call}${subject === undefined ? "" : ` ${subject}`}: ${strerror(errno)}`);
    this.name = "ErrnoError";
  }
}

const ARM = Deno.build.arch === "aarch64";
/** open(2) flags; O_DIRECTORY and O_NOFOLLOW differ between x86-64 and the generic ABI. */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  NONBLOCK: 0o4000,
  DIRECTORY: ARM ? 0o40000 : 0o200000,
  NOFOLLOW: ARM ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

/** Well-known errno values the callers branch on. */
export const Errno = {
  ENOENT: 2,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ELOOP: 40,
  ERANGE: 34,
  ENOTEMPTY: 39,
  ENODATA: 61,
  EOPNOTSUPP: 95,
} as const;

/**
 * errno of the calling thread. Valid only right after a synchronous FFI call:
 * a nonblocking one runs on another thread and leaves this one untouched.
 */
export function errno(): number {
  const ptr = libc().__errno_location();
  return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32();
}

function strerror(code: number): string {
  const ptr = libc().strerror(code);
  return ptr === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(ptr);
}

/** Returns `result`, or throws the errno behind a negative one. */
export function check<T extends number | bigint>(call: string, result: T, subject?: string): T {
  if (result < 0) throw new ErrnoError(call, errno(), subject);
  return result;
}

/** The address of a buffer, for a "pointer" parameter; the caller keeps the buffer alive. */
export function ptr(buf: BufferSource): Deno.PointerValue {
  return Deno.UnsafePointer.of(buf);
}

/** A NUL-terminated copy of `s` for a `const char *` argument (hostBytes: paths that are not UTF-8 too). */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = hostBytes(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The NUL-terminated string at `offset` of a buffer the C side filled in. */
export function readCString(buf: Uint8Array, offset = 0, max = buf.length - offset): string {
  const field = buf.subarray(offset, offset + max);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** The NUL-terminated string a `char *` stored at `offset` of `buf` points to (or null). */
export function readCStringPointer(buf: Uint8Array, offset: number): string | null {
  const ptr = readPointer(buf, offset);
  return ptr === null ? null : Deno.UnsafePointerView.getCString(ptr);
}

/** The pointer stored at `offset` of `buf`. */
export function readPointer(buf: Uint8Array, offset: number): Deno.PointerValue {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return Deno.UnsafePointer.create(view.getBigUint64(offset, true));
}
