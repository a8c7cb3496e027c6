/**
 * Files of an image read before its run, straight from its squashfs in the
 * store with squashfs-tools-ng's rdsquashfs: one listing of the whole tree
 * (`--describe`), then the few files needed (`--cat`). Symlinks are resolved
 * in that listing, as the container will see them, never on the host.
 */
import { join, normalize } from "../path.ts";
import { ConfigError, ShoalError } from "../errors.ts";
import { findTool } from "../config/load.ts";

/** Links followed on one path at most, as the kernel's limit (ELOOP). */
const MAX_LINKS = 40;

export class ImageFiles {
  readonly #rdsquashfs: string;
  readonly #image: string;
  /** Path (no leading '/') → its kind in rdsquashfs's words (file, dir, slink, ...) and link target. */
  readonly #entries: Map<string, { kind: string; target: string }>;

  private constructor(rdsquashfs: string, image: string, listing: string) {
    this.#rdsquashfs = rdsquashfs;
    this.#image = image;
    this.#entries = new Map();
    for (const line of listing.split("\n")) {
      const m = line.match(/^(\S+) ("(?:[^"\\]|\\.)*"|\S+) \S+ \S+ \S+ ?(.*)$/);
      if (m === null) continue;
      const path = m[2]!.startsWith('"') ? unquote(m[2]!) : m[2]!;
      this.#entries.set(path, { kind: m[1]!, target: m[1] === "slink" ? m[3]! : "" });
    }
  }

  /** Lists the image `squashfs` (a path in the store). */
  static async open(squashfs: string): Promise<ImageFiles> {
    const rdsquashfs = findTool(["rdsquashfs"]);
    if (rdsquashfs === undefined) {
      throw new ConfigError("--mpi: rdsquashfs not found (it reads the image's libraries)", {
        hint: "install squashfs-tools-ng",
      });
    }
    const listing = await run(rdsquashfs, ["--describe", squashfs], squashfs);
    return new ImageFiles(rdsquashfs, squashfs, new TextDecoder().decode(listing));
  }

  /**
   * The path `path` (absolute) leads to inside the image, every symlink
   * followed; undefined when it leads nowhere or loops.
   */
  resolve(path: string): string | undefined {
    const todo = normalize(path).split("/").filter((p) => p !== "");
    const done: string[] = [];
    let links = 0;
    while (todo.length > 0) {
      const part = todo.shift()!;
      if (part === "..") {
        done.pop();
        continue;
      }
      const entry = this.#entries.get([...done, part].join("/"));
      if (entry === undefined) return undefined;
      if (entry.kind !== "slink") {
        done.push(part);
        continue;
      }
      if (++links > MAX_LINKS) return undefined;
      const target = entry.target.split("/").filter((p) => p !== "" && p !== ".");
      if (entry.target.startsWith("/")) done.length = 0;
      todo.unshift(...target);
    }
    return `/${done.join("/")}`;
  }

  /** Whether `path` leads to a regular file. */
  isFile(path: string): boolean {
    const real = this.resolve(path);
    return real !== undefined && this.#entries.get(real.slice(1))?.kind === "file";
  }

  /** The bytes of the regular file `path` leads to. */
  async read(path: string): Promise<Uint8Array> {
    const real = this.resolve(path);
    if (real === undefined || !this.isFile(real)) {
      throw new ShoalError(`the image has no file ${path}`);
    }
    return await run(this.#rdsquashfs, ["--cat", real, this.#image], this.#image);
  }

  /** The file `path` leads to, looked up as `dir/name` for each of `dirs`. */
  findIn(dirs: string[], name: string): string | undefined {
    for (const dir of dirs) {
      if (!dir.startsWith("/")) continue;
      const candidate = join(dir, name);
      if (this.isFile(candidate)) return this.resolve(candidate);
    }
    return undefined;
  }
}

/** rdsquashfs quotes a name with spaces or quotes, escaping `"` and `\` with a backslash. */
function unquote(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(.)/g, "$1");
}

async function run(tool: string, args: string[], image: string): Promise<Uint8Array> {
  const out = await new Deno.Command(tool, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
    throw new ShoalError(`--mpi: cannot read the image ${image}: ${why}`);
  }
  return out.stdout;
}
