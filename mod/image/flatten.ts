/**
 * Flattening the layers of an image into ONE tar stream, without unpacking
 * anything on the host: the layers are read top-down, and each entry is
 * written at most once, by the highest layer that has it, unless a higher
 * layer hides it. The output (in no particular order: tar2sqfs builds its tree
 * in memory) describes the final filesystem, with ownership, modes, mtimes,
 * xattrs, symlinks, hardlinks, device nodes and FIFOs kept as entries.
 *
 * Semantics follow the OCI image-spec (layer.md) and Docker's extraction:
 * - `.wh.NAME` hides NAME of lower layers and everything under it; an opaque
 *   marker `.wh..wh..opq` hides the lower-layer children of its directory.
 *   Whiteouts never hide entries of their own layer.
 * - A non-directory hides a lower path and its whole subtree; a directory
 *   over a lower directory keeps the lower children, over a lower file it
 *   hides the file (and whatever the file itself had hidden).
 * - A hardlink keeps the content its target had when its layer was applied:
 *   if a higher layer replaces the target, the link still gets the lower
 *   content (that layer is read a second time for it, which is rare).
 *
 * Memory: one map entry per path of the image and one per hardlink, never
 * file contents (besides /etc/passwd and /etc/group, which are kept).
 */
import { ShoalError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { makeHeader, type TarHeader } from "./tar/header.ts";
import { readTar, type TarEntry } from "./tar/reader.ts";
import { type ByteSink, TarWriter } from "./tar/writer.ts";
import { ByteBudget, type LayerBlob, layerLabel, openLayer } from "./layer.ts";

export interface FlattenOptions {
  /** Largest uncompressed size of all layers together (decompression bomb guard). */
  maxBytes: number;
  logger?: Logger;
}

export interface FlattenResult {
  /** Entries written to the flattened stream. */
  entries: number;
  /** Bytes of file data written. */
  bytes: number;
  /** Content of the image's /etc/passwd and /etc/group, when they are regular files. */
  passwd?: string;
  group?: string;
}

/** Files whose content the image metadata needs; both are small. */
const CAPTURED = new Set(["etc/passwd", "etc/group"]);
const MAX_CAPTURE = 1024 * 1024;
/** The xattr namespaces squashfs can store. */
const XATTR_PREFIXES = ["user.", "trusted.", "security."];
const MAX_MTIME = 2 ** 32 - 1;
const MAX_PATH = 4096;
const MAX_NAME = 255;
/** Entries of one image: each costs some memory while flattening (about 200 bytes). */
const MAX_ENTRIES = 4_000_000;
const enc = new TextEncoder();

/**
 * Writes the flattened tar stream of `layers` (bottom first, as in the
 * manifest) to `sink`, ending it with the end-of-archive marker. Throws a
 * ShoalError for hostile or broken layers; sink errors pass through as they are.
 */
export async function flattenLayers(
  layers: LayerBlob[],
  sink: ByteSink,
  options: FlattenOptions,
): Promise<FlattenResult> {
  const flattener = new Flattener(layers, new TarWriter(sink), options);
  return await flattener.run();
}

interface PathNode {
  kind: "dir" | "other" | "whiteout";
  /** Index of the layer that decided this path (0 is the bottom layer). */
  layer: number;
  /** Directory: children from layers below this index are hidden. */
  opaqueBelow: number;
  /**
   * Directory known only as the parent of entries above: a lower directory
   * entry still gives its attributes, a lower non-directory is an error.
   * Holds the entry that implied it, for that error.
   */
  implied?: string;
  /** Directory: its own entry has been written. */
  emitted?: boolean;
}

/** What a path of the current layer holds, for hardlinks to it. */
type ContentRef =
  | { kind: "entry"; index: number; emittedAs?: string }
  | { kind: "external"; target: string };

interface LayerContext {
  index: number;
  label: string;
  refs: Map<string, ContentRef>;
}

interface PendingLink {
  layer: number;
  label: string;
  link: string;
}

type Visibility = "visible" | "hidden" | { under: string };

class Flattener {
  readonly #nodes = new Map<string, PathNode>();
  /** Hardlink targets that a lower layer has to provide. */
  readonly #pending = new Map<string, PendingLink>();
  /** Hardlinks, written last. */
  readonly #links: { path: string; target: string }[] = [];
  /** Per layer: entry index -> path under which that hidden content is written. */
  readonly #fixups = new Map<number, Map<number, string>>();
  readonly #dropped = new Map<string, number>();
  readonly #result: FlattenResult = { entries: 0, bytes: 0 };
  #rootEmitted = false;
  #seen = 0;

  constructor(
    private readonly layers: LayerBlob[],
    private readonly out: TarWriter,
    private readonly options: FlattenOptions,
  ) {
    this.#nodes.set("", { kind: "dir", layer: layers.length, opaqueBelow: 0 });
  }

  async run(): Promise<FlattenResult> {
    const budget = new ByteBudget(this.options.maxBytes);
    for (let index = this.layers.length - 1; index >= 0; index--) {
      const layer = this.layers[index]!;
      const label = layerLabel(layer);
      const { stream, compression } = await openLayer(layer, budget);
      this.options.logger?.verbose(`flattening ${label} (${compression})`);
      const ctx: LayerContext = { index, label, refs: new Map() };
      for await (const entry of readTar(stream, label)) await this.#entry(entry, ctx);
    }
    for (const [target, p] of this.#pending) {
      throw new ShoalError(
        `${p.label}: hardlink '${p.link}' points to '${target}', which no layer below provides`,
      );
    }
    for (const [index, wanted] of this.#fixups) await this.#rereadLayer(index, wanted);
    for (const { path, target } of this.#links) {
      await this.#write(makeHeader({ path, type: "hardlink", linkpath: target }));
    }
    await this.out.finish();
    for (const [key, count] of this.#dropped) {
      this.options.logger?.verbose(
        `dropped xattr ${key} from ${count} entries (squashfs cannot store it)`,
      );
    }
    return this.#result;
  }

  async #entry(e: TarEntry, ctx: LayerContext): Promise<void> {
    const h = e.header;
    const fail = (what: string): never => {
      throw new ShoalError(
        `${ctx.label}: ${what} (entry '${h.path.slice(0, 200)}' at offset ${e.offset})`,
      );
    };
    if (++this.#seen > MAX_ENTRIES) fail(`the image has more than ${MAX_ENTRIES} entries`);
    if (h.size > this.options.maxBytes) {
      fail(`entry claims ${h.size} bytes, more than the image may hold`);
    }
    const path = normalize(h.path, fail);
    if (path === "") return await this.#root(e, ctx, fail);
    const parts = path.split("/");
    const base = parts[parts.length - 1]!;
    // AUFS metadata (".wh..wh.plnk" and the like) is skipped, as Docker does.
    if (parts.some((c) => c.startsWith(".wh..wh.") && c !== ".wh..wh..opq")) return;
    if (base === ".wh..wh..opq") return this.#opaque(parts.slice(0, -1), ctx, e);
    if (base.startsWith(".wh.")) {
      const name = base.slice(4);
      if (name === "" || name === "." || name === "..") fail("invalid whiteout name");
      return this.#whiteout([...parts.slice(0, -1), name], ctx);
    }
    if (h.type === "hardlink") return this.#hardlink(e, path, parts, ctx, fail);
    if (h.type === "symlink" && (h.linkpath === "" || enc.encode(h.linkpath).length > MAX_PATH)) {
      fail("symbolic link target empty or too long");
    }
    const visible = this.#claim(path, parts, h.type === "directory", e, ctx, fail);
    if (h.type !== "directory") {
      ctx.refs.set(path, { kind: "entry", index: e.index, emittedAs: visible ? path : undefined });
    }
    if (visible) await this.#emit(h, path, e);
  }

  async #root(e: TarEntry, ctx: LayerContext, fail: (what: string) => never): Promise<void> {
    if (e.header.type !== "directory") fail("the image root is not a directory");
    if (this.#rootEmitted) return;
    this.#rootEmitted = true;
    this.options.logger?.debug(`root directory attributes from ${ctx.label}`);
    await this.#emit(e.header, "./", e);
  }

  /** Where `parts` stands for an entry of layer `layer`, judged by its ancestors. */
  #visibility(parts: string[], layer: number): Visibility {
    let q = "";
    for (let k = 0; k < parts.length; k++) {
      const n = this.#nodes.get(q);
      if (n) {
        if (n.kind === "dir") {
          if (layer < n.opaqueBelow) return "hidden";
        } else if (n.layer > layer) {
          return "hidden";
        } else if (n.kind === "other") {
          return { under: q };
        }
      }
      q = q === "" ? parts[k]! : `${q}/${parts[k]}`;
    }
    return "visible";
  }

  /**
   * Decides whether the entry at `path` is part of the final image and, if it
   * is, records it (and the directories it implies).
   */
  #claim(
    path: string,
    parts: string[],
    isDir: boolean,
    e: TarEntry,
    ctx: LayerContext,
    fail: (what: string) => never,
  ): boolean {
    const L = ctx.index;
    const vis = this.#visibility(parts, L);
    if (typeof vis === "object") {
      fail(
        `it lies under '${vis.under}', a non-directory of the same layer; shoal does not write through it`,
      );
    }
    if (vis === "hidden") return false;
    const n = this.#nodes.get(path);
    if (n && n.layer > L) {
      if (n.kind !== "dir") return false;
      if (isDir) {
        if (!n.implied) return false;
        n.implied = undefined;
        n.emitted = true;
        return true;
      }
      if (n.implied) {
        throw new ShoalError(
          `${n.implied} lies under '${path}', which ${ctx.label} makes a ${
            e.header.type === "symlink" ? "symbolic link" : "non-directory"
          }; shoal does not write through it`,
        );
      }
      // The directory above replaced this file, and with it what the file hid.
      n.opaqueBelow = Math.max(n.opaqueBelow, L);
      return false;
    }
    if (n && n.kind === "dir" && isDir) {
      // Children of this layer came before their directory, or a repeated directory.
      if (n.emitted) return false;
      n.implied = undefined;
      n.emitted = true;
      return true;
    }
    if (n && n.kind !== "whiteout") fail("duplicate entry for the same path in one layer");
    this.#nodes.set(path, {
      kind: isDir ? "dir" : "other",
      layer: L,
      // A whiteout of the same layer makes a directory opaque to lower layers.
      opaqueBelow: isDir && n ? L : 0,
      emitted: isDir,
    });
    const pending = this.#pending.get(path);
    if (pending) {
      if (pending.layer === L) fail(`hardlink '${pending.link}' refers to it before it appears`);
      if (isDir) fail(`hardlink '${pending.link}' of ${pending.label} points to this directory`);
      this.#pending.delete(path);
    }
    this.#implyParents(parts, L, `entry '${e.header.path}' of ${ctx.label} (offset ${e.offset})`);
    return true;
  }

  #implyParents(parts: string[], layer: number, by: string): void {
    let q = "";
    for (let k = 0; k < parts.length - 1; k++) {
      q = q === "" ? parts[k]! : `${q}/${parts[k]}`;
      const n = this.#nodes.get(q);
      if (!n) {
        const pending = this.#pending.get(q);
        if (pending) {
          throw new ShoalError(
            `${pending.label}: hardlink '${pending.link}' points to '${q}', a directory`,
          );
        }
        this.#nodes.set(q, { kind: "dir", layer, opaqueBelow: 0, implied: by });
      } else if (n.kind === "whiteout" && n.layer === layer) {
        this.#nodes.set(q, { kind: "dir", layer, opaqueBelow: layer });
      }
    }
  }

  #whiteout(parts: string[], ctx: LayerContext): void {
    if (this.#visibility(parts, ctx.index) !== "visible") return;
    const target = parts.join("/");
    const n = this.#nodes.get(target);
    if (!n) {
      const pending = this.#pending.get(target);
      if (pending) {
        throw new ShoalError(
          `${pending.label}: hardlink '${pending.link}' points to '${target}', which ${ctx.label} removes`,
        );
      }
      this.#nodes.set(target, { kind: "whiteout", layer: ctx.index, opaqueBelow: 0 });
    } else if (n.kind === "dir") {
      n.opaqueBelow = Math.max(n.opaqueBelow, ctx.index);
      n.implied = undefined;
    }
  }

  #opaque(parts: string[], ctx: LayerContext, e: TarEntry): void {
    if (this.#visibility(parts, ctx.index) !== "visible") return;
    const dir = parts.join("/");
    const n = this.#nodes.get(dir);
    if (!n) {
      this.#nodes.set(dir, {
        kind: "dir",
        layer: ctx.index,
        opaqueBelow: ctx.index,
        implied: `entry '${e.header.path}' of ${ctx.label} (offset ${e.offset})`,
      });
    } else if (n.kind === "dir") {
      n.opaqueBelow = Math.max(n.opaqueBelow, ctx.index);
    } else if (n.kind === "whiteout" && n.layer === ctx.index) {
      this.#nodes.set(dir, { kind: "dir", layer: ctx.index, opaqueBelow: ctx.index });
    }
  }

  #hardlink(
    e: TarEntry,
    path: string,
    parts: string[],
    ctx: LayerContext,
    fail: (what: string) => never,
  ): void {
    const target = normalize(e.header.linkpath, fail);
    if (target === "") fail("hardlink to the image root");
    if (target === path) fail("hardlink to itself");
    const ref: ContentRef = ctx.refs.get(target) ?? { kind: "external", target };
    ctx.refs.set(path, ref);
    if (!this.#claim(path, parts, false, e, ctx, fail)) return;
    if (ref.kind === "entry") {
      if (ref.emittedAs !== undefined) {
        this.#links.push({ path, target: ref.emittedAs });
      } else {
        // Its target is hidden by a higher layer: this link gets the content.
        ref.emittedAs = path;
        let wanted = this.#fixups.get(ctx.index);
        if (!wanted) this.#fixups.set(ctx.index, wanted = new Map());
        wanted.set(ref.index, path);
      }
      return;
    }
    const n = this.#nodes.get(ref.target);
    if (n?.kind === "dir") fail(`hardlink to directory '${ref.target}'`);
    if (n || this.#visibility(ref.target.split("/"), ctx.index) !== "visible") {
      fail(
        `hardlink to '${ref.target}' of a lower layer, which a higher layer replaces or removes (not supported)`,
      );
    }
    this.#links.push({ path, target: ref.target });
    if (!this.#pending.has(ref.target)) {
      this.#pending.set(ref.target, { layer: ctx.index, label: ctx.label, link: path });
    }
  }

  /** Reads a layer again for the contents of hidden files that visible hardlinks need. */
  async #rereadLayer(index: number, wanted: Map<number, string>): Promise<void> {
    const layer = this.layers[index]!;
    const label = layerLabel(layer);
    this.options.logger?.debug(`reading ${label} again for ${wanted.size} hardlinked files`);
    const { stream } = await openLayer(layer);
    let left = wanted.size;
    for await (const entry of readTar(stream, label)) {
      const path = wanted.get(entry.index);
      if (path === undefined) continue;
      await this.#emit(entry.header, path, entry);
      if (--left === 0) return;
    }
    throw new ShoalError(`${label}: changed while it was being read`);
  }

  async #emit(h: TarHeader, path: string, e: TarEntry): Promise<void> {
    const xattrs = new Map<string, Uint8Array>();
    for (const [key, value] of h.xattrs) {
      if (XATTR_PREFIXES.some((p) => key.startsWith(p))) xattrs.set(key, value);
      else this.#dropped.set(key, (this.#dropped.get(key) ?? 0) + 1);
    }
    const header = makeHeader({
      path,
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.size,
      // squashfs keeps whole seconds in 32 bits.
      mtime: Math.min(Math.max(Math.floor(h.mtime), 0), MAX_MTIME),
      linkpath: h.type === "symlink" ? h.linkpath : "",
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs,
    });
    if (h.type !== "file") return await this.#write(header);
    const captured = CAPTURED.has(path) && h.size <= MAX_CAPTURE ? [] as Uint8Array[] : undefined;
    const body = captured ? tee(e.body(), captured) : e.body();
    await this.#write(header, body);
    this.#result.bytes += h.size;
    if (captured) {
      const decoder = new TextDecoder();
      const text = captured.map((c) => decoder.decode(c, { stream: true })).join("") +
        decoder.decode();
      if (path === "etc/passwd") this.#result.passwd = text;
      else this.#result.group = text;
    }
  }

  async #write(header: TarHeader, body?: AsyncIterable<Uint8Array>): Promise<void> {
    await this.out.add(header, body);
    this.#result.entries++;
  }
}

async function* tee(
  body: AsyncIterable<Uint8Array>,
  into: Uint8Array[],
): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    into.push(chunk.slice());
    yield chunk;
  }
}

/**
 * An entry name as a path relative to the image root: leading '/' and '.'
 * components dropped (absolute names land inside the image, as with Docker),
 * '..' resolved lexically and refused when it would climb above the root.
 */
function normalize(name: string, fail: (what: string) => never): string {
  // Linux limits; they also keep the per-path work of flattening small.
  if (enc.encode(name).length > MAX_PATH) fail(`path longer than ${MAX_PATH} bytes`);
  const out: string[] = [];
  for (const c of name.split("/")) {
    if (c === "" || c === ".") continue;
    if (enc.encode(c).length > MAX_NAME) fail(`file name longer than ${MAX_NAME} bytes`);
    if (c === "..") {
      if (out.length === 0) fail("path climbs above the image root with '..'");
      out.pop();
      continue;
    }
    out.push(c);
  }
  return out.join("/");
}
