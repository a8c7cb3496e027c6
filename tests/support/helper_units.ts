/**
 * The helper's pure C units (helper/json.c, idmap.c, paths.c) as a shared
 * object, built from a copy of helper/ with its own Makefile and called
 * through FFI: tests run the helper's real code, not a copy of its rules.
 */
import type { IdMapping } from "../../mod/runtime/idmap.ts";
import { repoRoot, runCommand } from "./shoal.ts";

const SYMBOLS = {
  json_read: {
    parameters: ["buffer", "usize", "pointer", "buffer", "usize", "buffer"],
    result: "i32",
  },
  json_key_name: { parameters: ["i32"], result: "pointer" },
  shoal_json_values_size: { parameters: [], result: "usize" },
  shoal_json_nkeys: { parameters: [], result: "i32" },
  shoal_json_kind: { parameters: ["pointer", "i32"], result: "i32" },
  shoal_json_number: { parameters: ["pointer", "i32"], result: "f64" },
  shoal_json_string: { parameters: ["pointer", "i32"], result: "pointer" },
  shoal_idmap: {
    parameters: ["buffer", "usize", "buffer", "u32", "u32", "i32", "buffer"],
    result: "i32",
  },
  shoal_max_extents: { parameters: [], result: "i32" },
  digest_ok: { parameters: ["buffer"], result: "i32" },
  store_image_in: { parameters: ["buffer", "buffer"], result: "pointer" },
  bundle_why: {
    parameters: ["buffer", "buffer", "u32", "buffer", "buffer", "i32", "buffer"],
    result: "pointer",
  },
} as const;

type Units = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let units: Promise<Units> | undefined;

async function build(): Promise<Units> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-helper-units-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const r = await runCommand("cp", ["-R", `${repoRoot}/helper`, `${dir}/helper`]);
  if (r.code !== 0) throw new Error(`cp: ${r.stderr}`);
  const made = await runCommand("make", [
    "-s",
    "-B",
    "-C",
    `${dir}/helper`,
    "libshoalhelper-test.so",
  ]);
  if (made.code !== 0) throw new Error(`make libshoalhelper-test.so: ${made.stderr}`);
  return Deno.dlopen(`${dir}/helper/libshoalhelper-test.so`, SYMBOLS).symbols;
}

/** The library, built once per test process. */
export function helperUnits(): Promise<Units> {
  return units ??= build();
}

export const JSON_KIND = [
  "absent",
  "string",
  "true",
  "false",
  "number",
  "other",
  "unusable",
] as const;
export type JsonKind = typeof JSON_KIND[number];

export interface JsonValue {
  kind: JsonKind;
  string?: string;
  number?: number;
}

export type JsonReading =
  | { ok: true; values: Record<string, JsonValue> }
  | { ok: false; error: string; at: number };

const cString = (p: Deno.PointerValue) => Deno.UnsafePointerView.getCString(p!);

/** helper/json.c's json_read on `bytes`: each key the helper reads, by its dotted name. */
export async function readConfigJson(bytes: Uint8Array): Promise<JsonReading> {
  const u = await helperUnits();
  const values = new Uint8Array(Number(u.shoal_json_values_size()));
  const v = Deno.UnsafePointer.of(values);
  const err = new Uint8Array(128);
  const at = new BigUint64Array(1);
  if (u.json_read(bytes, BigInt(bytes.length), v, err, BigInt(err.length), at) !== 0) {
    const error = new TextDecoder().decode(err.subarray(0, err.indexOf(0)));
    return { ok: false, error, at: Number(at[0]) };
  }
  const out: Record<string, JsonValue> = {};
  for (let k = 0; k < u.shoal_json_nkeys(); k++) {
    const kind = JSON_KIND[u.shoal_json_kind(v, k)]!;
    out[cString(u.json_key_name(k))] = kind === "string"
      ? { kind, string: cString(u.shoal_json_string(v, k)) }
      : kind === "number"
      ? { kind, number: u.shoal_json_number(v, k) }
      : { kind };
  }
  return { ok: true, values: out };
}

/**
 * helper/idmap.c's map for caller id `own` (uid or gid) from the subuid or
 * subgid file `text`, the owner being `name` or `uid`.
 */
export async function helperIdMap(
  text: string | Uint8Array,
  name: string,
  uid: number,
  own: number,
  root: boolean,
): Promise<IdMapping[]> {
  const u = await helperUnits();
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  const out = new BigUint64Array(3 * u.shoal_max_extents());
  const n = u.shoal_idmap(
    bytes,
    BigInt(bytes.length),
    new TextEncoder().encode(`${name}\0`),
    uid,
    own,
    root ? 1 : 0,
    out,
  );
  return Array.from({ length: n }, (_, i) => ({
    containerID: Number(out[3 * i]),
    hostID: Number(out[3 * i + 1]),
    size: Number(out[3 * i + 2]),
  }));
}

/** What lstat says of one component of a bundle path. */
export interface PathFact {
  uid: number;
  /** st_mode: file type and permission bits. */
  mode: number;
}

/**
 * helper/paths.c's bundle rule: null when `bundle` may be mounted on by
 * `caller`, else why and the index of the refused component (-1: the path).
 * `facts` describe "/" first and the bundle dir last; `runDir` "" when unset.
 */
export async function helperJudgeBundle(
  bundle: string,
  runDir: string,
  caller: number,
  facts: PathFact[],
): Promise<{ why: string; component: number } | null> {
  const u = await helperUnits();
  const z = (t: string) => new TextEncoder().encode(`${t}\0`);
  const bad = new Int32Array(1);
  const why = u.bundle_why(
    z(bundle),
    z(runDir),
    caller,
    new Uint32Array(facts.map((f) => f.uid)),
    new Uint32Array(facts.map((f) => f.mode)),
    facts.length,
    bad,
  );
  return why === null ? null : { why: cString(why), component: bad[0]! };
}

const cBytes = (s: string) => new TextEncoder().encode(s + "\0");

/** helper/paths.c's digest_ok. */
export async function helperDigestOk(digest: string): Promise<boolean> {
  return (await helperUnits()).digest_ok(cBytes(digest)) === 1;
}

/** helper/paths.c's store_image_in: "<algorithm>/<hex>", or null when `image` is not a store image. */
export async function helperStoreImage(image: string, store: string): Promise<string | null> {
  const p = (await helperUnits()).store_image_in(cBytes(image), cBytes(store));
  return p === null ? null : Deno.UnsafePointerView.getCString(p);
}
