/**
 * Reading an image archive (`docker save`, `podman save`, an OCI layout in a
 * tar) in one streaming pass: the outer tar, gzip-compressed or not, is read
 * once and every regular member is written to a file of its own in a work
 * directory, hashed on the way. Member names are only ever keys of a map:
 * the files get names of their own, so a hostile name cannot reach anything.
 * Blobs named `blobs/<alg>/<hex>` are verified against that digest as they
 * are read; a bounded byte count stops decompression bombs.
 */
import { createHash, type Hash } from "node:crypto";
import { dirname, join, normalize } from "../../path.ts";
import { ShoalError, UsageError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { type DigestAlgorithm, isDigest } from "../registry/digest.ts";
import { readTar } from "../tar/reader.ts";

/** What `shoal load` reads: a file, or standard input for `-`. */
export interface ArchiveSource {
  /** For messages: the file name as given, or "standard input". */
  label: string;
  open(): Promise<ReadableStream<Uint8Array>>;
}

/** A regular member of the archive, stored in the work directory. */
export interface Member {
  /** Where its bytes are: a file in the work directory. */
  path: string;
  size: number;
  /** "sha256:<hex>" of its bytes. */
  sha256: string;
}

export type ArchiveCompression = "gzip" | "none";

/** Largest JSON document read into memory (manifest.json, index.json, manifests, configs). */
const MAX_JSON = 4 * 1024 * 1024;
/** Symbolic links followed in a row when looking a member up (docker save links duplicate layers). */
const MAX_LINKS = 16;

/**
 * The source for `file`, checked before anything else happens: a missing
 * file or a directory is a bad argument.
 */
export async function archiveSource(file: string): Promise<ArchiveSource> {
  if (file === "-") {
    if (Deno.stdin.isTerminal()) {
      throw new UsageError("standard input is a terminal, not an image archive", {
        hint: "pipe the archive in: docker save IMAGE | shoal load - NAME",
      });
    }
    return { label: "standard input", open: () => Promise.resolve(Deno.stdin.readable) };
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (err) {
    throw unreadable(file, err);
  }
  if (info.isDirectory) {
    throw new UsageError(`"${file}" is a directory, not an image archive`, {
      hint: "give the tar file that `docker save` or `podman save` wrote",
    });
  }
  return {
    label: file,
    open: async () => {
      try {
        return (await Deno.open(file, { read: true })).readable;
      } catch (err) {
        throw unreadable(file, err);
      }
    },
  };
}

function unreadable(file: string, err: unknown): ShoalError {
  if (err instanceof Deno.errors.NotFound) {
    return new UsageError(`no such file "${file}"`, { cause: err });
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new UsageError(`cannot read "${file}": permission denied`, { cause: err });
  }
  return new ShoalError(`cannot read "${file}": ${(err as Error).message}`, { cause: err });
}

/** The members of an archive, by name, once it has been read to its end. */
export class ArchiveContents {
  constructor(
    readonly label: string,
    readonly compression: ArchiveCompression,
    readonly members: ReadonlyMap<string, Member>,
    /** Symbolic and hard links: name -> the name they point at (already resolved to a key). */
    readonly links: ReadonlyMap<string, string | undefined>,
  ) {}

  /** The member a name (from a manifest, say) refers to, following links; undefined if none. */
  member(name: string): Member | undefined {
    let key = memberKey(name);
    for (let hops = 0; key !== undefined && hops <= MAX_LINKS; hops++) {
      const member = this.members.get(key);
      if (member !== undefined) return member;
      if (!this.links.has(key)) return undefined;
      key = this.links.get(key);
    }
    return undefined;
  }

  /** The member `blobs/<alg>/<hex>` of an OCI layout. */
  blob(digest: string): Member | undefined {
    return isDigest(digest) ? this.member(`blobs/${digest.replace(":", "/")}`) : undefined;
  }

  /** A member's bytes, for the JSON documents of an archive (bounded). */
  async bytes(member: Member, what: string): Promise<Uint8Array> {
    if (member.size > MAX_JSON) {
      throw new ShoalError(
        `${this.label}: ${what} is ${member.size} bytes, more than the ${MAX_JSON} a JSON document may have`,
      );
    }
    return await Deno.readFile(member.path);
  }

  /** A member parsed as JSON. */
  async json(member: Member, what: string): Promise<unknown> {
    const bytes = await this.bytes(member, what);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new ShoalError(`${this.label}: ${what} is not valid JSON`);
    }
  }
}

export interface ReadOptions {
  /** Largest number of uncompressed bytes read from the archive. */
  maxBytes: number;
  logger?: Logger;
}

/** Reads the whole archive into `workDir` (which must be empty and private to this load). */
export async function readArchive(
  source: ArchiveSource,
  workDir: string,
  options: ReadOptions,
): Promise<ArchiveContents> {
  const label = source.label;
  const { stream, compression } = await decompressed(await source.open(), label);
  const members = new Map<string, Member>();
  const links = new Map<string, string | undefined>();
  const seen = new Set<string>();
  let entries = 0;
  for await (
    const entry of readTar(guarded(stream, label, compression, options.maxBytes), label)
  ) {
    entries++;
    const h = entry.header;
    const key = memberKey(h.path);
    if (key === undefined) {
      throw new ShoalError(
        `${label}: member ${JSON.stringify(h.path)} has an absolute path or '..'; ` +
          "image archives never do, so this one is refused",
      );
    }
    if (h.type === "directory") continue;
    if (seen.has(key)) {
      throw new ShoalError(`${label}: member ${JSON.stringify(key)} appears twice`);
    }
    seen.add(key);
    if (h.type === "symlink") {
      // A link target is relative to the link's directory, and stays inside the archive.
      links.set(
        key,
        h.linkpath.startsWith("/") ? undefined : memberKey(
          join(dirname(key), h.linkpath),
        ),
      );
      continue;
    }
    if (h.type === "hardlink") {
      links.set(key, memberKey(h.linkpath));
      continue;
    }
    if (h.type !== "file") {
      options.logger?.verbose(`${label}: ignoring ${h.type} ${JSON.stringify(key)}`);
      continue;
    }
    const path = `${workDir}/member-${members.size}`;
    members.set(key, await storeMember(key, entry.body(), path, label));
  }
  if (entries === 0) throw new ShoalError(`${label}: not an image archive (it is empty)`);
  options.logger?.debug(`${label}: ${members.size} members, ${links.size} links`);
  return new ArchiveContents(label, compression, members, links);
}

/**
 * A member name as a key: normalized (`./a//b` is `a/b`); undefined for a
 * name that is absolute or climbs out with `..`.
 */
export function memberKey(name: string): string | undefined {
  if (name === "" || name.startsWith("/")) return undefined;
  const key = normalize(name).replace(/\/+$/, "");
  if (key === ".." || key.startsWith("../") || key.startsWith("/")) return undefined;
  return key === "." ? "" : key;
}

/** The digest a member's name claims (`blobs/sha256/<hex>`), if it claims one. */
function claimedDigest(key: string): string | undefined {
  const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(key);
  const digest = m ? `${m[1]}:${m[2]}` : undefined;
  return digest !== undefined && isDigest(digest) ? digest : undefined;
}

async function storeMember(
  key: string,
  body: AsyncIterable<Uint8Array>,
  path: string,
  label: string,
): Promise<Member> {
  const claimed = claimedDigest(key);
  const algorithm = claimed?.split(":")[0] as DigestAlgorithm | undefined;
  const sha256 = createHash("sha256");
  const named: Hash | undefined = algorithm && algorithm !== "sha256"
    ? createHash(algorithm)
    : undefined;
  let size = 0;
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
  try {
    for await (const chunk of body) {
      sha256.update(chunk);
      named?.update(chunk);
      for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
      size += chunk.length;
    }
  } finally {
    file.close();
  }
  const digest = `sha256:${sha256.digest("hex")}`;
  if (claimed !== undefined) {
    const got = named ? `${algorithm}:${named.digest("hex")}` : digest;
    if (got !== claimed) {
      throw new ShoalError(
        `${label}: blob ${claimed} does not match its digest (its content hashes to ${got})`,
        { hint: "the archive is corrupt or was tampered with; save the image again" },
      );
    }
  }
  return { path, size, sha256: digest };
}

/** The archive's tar stream: gzip is told by its magic bytes, whatever the file is called. */
async function decompressed(
  input: ReadableStream<Uint8Array>,
  label: string,
): Promise<{ stream: ReadableStream<Uint8Array>; compression: ArchiveCompression }> {
  const reader = input.getReader();
  let head = new Uint8Array(0);
  try {
    while (head.length < 6) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(head.length + value.length);
      joined.set(head);
      joined.set(value, head.length);
      head = joined;
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw new ShoalError(`cannot read ${label}: ${(err as Error).message}`, { cause: err });
  }
  const other = otherCompression(head);
  if (other !== undefined) {
    await reader.cancel().catch(() => {});
    throw new ShoalError(
      `${label} is ${other}-compressed; shoal load reads tar archives, plain or gzip-compressed`,
      { hint: `decompress it first with ${other === "bzip2" ? "bunzip2" : `${other} -d`}` },
    );
  }
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head.length > 0) controller.enqueue(head);
    },
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = new DecompressionStream("gzip") as ReadableWritablePair<
      Uint8Array<ArrayBuffer>,
      Uint8Array
    >;
    return { stream: stream.pipeThrough(gunzip), compression: "gzip" };
  }
  return { stream, compression: "none" };
}

function otherCompression(head: Uint8Array): string | undefined {
  const starts = (...bytes: number[]) => bytes.every((b, i) => head[i] === b);
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  return undefined;
}

/**
 * Counts the uncompressed bytes against the limit and turns read and
 * decompression failures into one-line errors naming the archive.
 */
function guarded(
  stream: ReadableStream<Uint8Array>,
  label: string,
  compression: ArchiveCompression,
  maxBytes: number,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  let total = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        const what = compression === "gzip" ? "corrupt or truncated gzip data" : "cannot read it";
        throw new ShoalError(`${label}: ${what} (${(err as Error).message})`, { cause: err });
      }
      if (next.done) return controller.close();
      total += next.value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new ShoalError(
          `${label}: the archive holds more than ${maxBytes / 2 ** 30} GiB uncompressed`,
          { hint: "raise pull.maxImageGiB in the site configuration if the archive is genuine" },
        );
      }
      controller.enqueue(next.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
