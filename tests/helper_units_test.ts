/**
 * The helper's pure C units run through FFI (tests/support/helper_units.ts)
 * against what shoal itself does: the site config's JSON reader against
 * JSON.parse on seeded random documents and their malformed variants; the id
 * mapping against mod/runtime/idmap.ts on a table of subuid/subgid layouts;
 * the run dir rule against mod/runtime/rundir.ts on a table of bundle paths.
 */
import { assert, assertEquals } from "./support/assert.ts";
import {
  helperDigestOk,
  helperIdMap,
  helperJudgeBundle,
  helperStoreImage,
  type JsonValue,
  type PathFact,
  readConfigJson,
} from "./support/helper_units.ts";
import { idMap, MAX_RANGES } from "../mod/runtime/idmap.ts";
import { canonicalPath, componentWhy, NAME_PATTERN } from "../mod/runtime/rundir.ts";
import { parseSubidFile, rangesOf } from "../mod/sys/subid.ts";
import { isDigest } from "../mod/image/registry/digest.ts";
import { storeImageDigest } from "../mod/image/cluster/layout.ts";

/** mulberry32: a small seeded generator, so that a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WANTED = [
  "repositories.local",
  "repositories.centralized",
  "runtime.runc",
  "runDir",
  "helper.kernelMountUserImages",
  "helper.maxLoopDevicesPerUser",
  "helper.writableTmpfsSize",
];

class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  ws(): string {
    return this.chance(0.7)
      ? ""
      : Array.from({ length: 1 + this.int(3) }, () => this.pick([" ", "\t", "\n", "\r"])).join("");
  }

  /** A string's content: paths, escapes' targets, non-ASCII, surrogates (paired and lone). */
  text(): string {
    const parts = [
      "/opt/shoal",
      "$HOME/x",
      "a",
      "Z",
      "/",
      "\0",
      '"',
      "\\",
      "\n",
      "\u0001",
      "\u001f",
      "\u007f",
      "é",
      "€",
      "😀",
      "\ud800",
      "\udfff",
      "\ud83d",
      "runDir",
      " ",
    ];
    if (this.chance(0.02)) return "x".repeat(4090 + this.int(12));
    return Array.from({ length: this.int(6) }, () => this.pick(parts)).join("");
  }

  /** JSON text of a string, each character written raw or escaped at random. */
  quote(s: string): string {
    let out = '"';
    for (const ch of s) {
      const code = ch.codePointAt(0)!;
      const short: Record<string, string> = {
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
      };
      const u = (c: number) => {
        const h = c.toString(16).padStart(4, "0");
        return `\\u${this.chance(0.5) ? h : h.toUpperCase()}`;
      };
      const lone = code >= 0xd800 && code < 0xe000;
      if (short[ch] !== undefined && !this.chance(0.3)) out += short[ch];
      else if (code < 0x20 || ch === '"' || ch === "\\" || lone || this.chance(0.15)) {
        out += code > 0xffff
          ? u(0xd800 + ((code - 0x10000) >> 10)) + u(0xdc00 + (code & 0x3ff))
          : u(code);
      } else if (ch === "/" && this.chance(0.3)) out += "\\/";
      else out += ch;
    }
    return out + '"';
  }

  number(): string {
    const sign = this.chance(0.3) ? "-" : "";
    const int = this.chance(0.3)
      ? "0"
      : String(1 + this.int(9)) + "0123456789".slice(0, this.int(25));
    const frac = this.chance(0.3) ? "." + String(this.int(1000000)) : "";
    const exp = this.chance(0.3)
      ? this.pick(["e", "E"]) + this.pick(["", "+", "-"]) + String(this.int(400))
      : "";
    return sign + int + frac + exp;
  }

  /** A key: one the helper reads (sometimes escaped), a near miss, or noise. */
  key(wanted: string[]): string {
    if (wanted.length && this.chance(0.6)) return this.quote(this.pick(wanted));
    return this.quote(
      this.pick([
        "rundir",
        "runDir ",
        "repositories",
        "helper",
        "runtime",
        "local",
        "securityChecks",
        "k".repeat(70),
        "__proto__",
        "",
      ]).concat(this.chance(0.2) ? this.text() : ""),
    );
  }

  value(depth: number, path: string[]): string {
    const wantedBelow = WANTED.map((w) => w.split(".")).filter((w) =>
      w.length > path.length && path.every((p, i) => w[i] === p)
    ).map((w) => w[path.length]!);
    const kind = depth > 5 ? this.int(5) : this.int(wantedBelow.length ? 8 : 7);
    switch (kind) {
      case 0:
        return this.quote(this.text());
      case 1:
        return this.number();
      case 2:
        return this.pick(["true", "false", "null"]);
      case 3:
      case 4:
        return this.quote(this.pick(["/x", "$HOME/.local/share/shoal", "/run/user/1000/shoal"]));
      case 5: {
        const items = Array.from(
          { length: this.int(4) },
          () => this.ws() + this.value(depth + 1, ["\u0001"]) + this.ws(),
        );
        return `[${items.join(",")}]`;
      }
      default: {
        const members = Array.from({ length: this.int(6) }, () => {
          const key = this.key(wantedBelow);
          const name = JSON.parse(key) as string;
          return `${this.ws()}${key}${this.ws()}:${this.ws()}${
            this.value(depth + 1, [...path, name])
          }${this.ws()}`;
        });
        return `{${members.join(",")}}`;
      }
    }
  }

  document(): string {
    const members = Array.from({ length: this.int(7) }, () => {
      const key = this.key(["repositories", "runtime", "runDir", "helper"]);
      return `${this.ws()}${key}${this.ws()}:${this.ws()}${
        this.value(1, [JSON.parse(key)])
      }${this.ws()}`;
    });
    return `${this.ws()}{${members.join(",")}}${this.ws()}`;
  }

  /** The document with one random slip: what a hand-edited config looks like. */
  malformed(doc: string): string {
    const at = this.int(doc.length + 1);
    const token = this.pick([
      ",",
      "}",
      "]",
      "{",
      "[",
      ":",
      '"',
      "\\",
      "\u0001",
      "'",
      "01",
      "-",
      ".",
      "e",
      "tru",
      "nul",
      "/*x*/",
      "\u00a0",
      "\ufeff",
      "NaN",
      "+1",
      "\\u12",
      "\\x41",
      " ",
    ]);
    switch (this.int(4)) {
      case 0:
        return doc.slice(0, at) + doc.slice(at + 1);
      case 1:
        return doc.slice(0, at) + token + doc.slice(at);
      case 2:
        return doc.slice(0, at) + token + doc.slice(at + 1);
      default:
        return doc.slice(0, at);
    }
  }
}

/** What JSON.parse gives for the key `dotted`, in the terms of helper/json.h. */
function expected(doc: Record<string, unknown>, dotted: string): JsonValue {
  const [a, b] = dotted.split(".") as [string, string | undefined];
  if (!Object.hasOwn(doc, a)) return { kind: "absent" };
  let v = doc[a];
  if (b !== undefined) {
    if (typeof v !== "object" || v === null || Array.isArray(v) || !Object.hasOwn(v, b)) {
      return { kind: "absent" };
    }
    v = (v as Record<string, unknown>)[b];
  }
  if (typeof v === "string") {
    const usable = !v.includes("\0") && new TextEncoder().encode(v).length < 4096;
    return usable ? { kind: "string", string: v.toWellFormed() } : { kind: "unusable" };
  }
  if (typeof v === "number") return { kind: "number", number: v };
  if (v === true || v === false) return { kind: String(v) as "true" | "false" };
  return { kind: "other" };
}

/**
 * Both readers on `text` (shoal decodes the file as Deno.readTextFile does):
 * how many of the keys the helper reads it has, or -1 when both refused it.
 */
async function compare(text: string): Promise<number> {
  const bytes = new TextEncoder().encode(text);
  const decoded = new TextDecoder().decode(bytes);
  let parsed: unknown;
  let valid = true;
  try {
    parsed = JSON.parse(decoded);
  } catch {
    valid = false;
  }
  const isObject = valid && typeof parsed === "object" && parsed !== null && !Array.isArray(parsed);
  const c = await readConfigJson(bytes);
  assertEquals(c.ok, isObject, `accepts ${JSON.stringify(text)} (${c.ok ? "" : c.error})`);
  if (!c.ok || !isObject) return -1;
  let present = 0;
  for (const key of WANTED) {
    const want = expected(parsed as Record<string, unknown>, key);
    const got = c.values[key]!;
    if (want.kind === "number") {
      assert(got.kind === "number" && Object.is(got.number, want.number), `${key} of ${text}`);
    } else assertEquals(got, want, `${key} of ${JSON.stringify(text)}`);
    if (want.kind !== "absent") present++;
  }
  return present;
}

Deno.test("the helper's config reader accepts exactly what JSON.parse accepts, with its values", async () => {
  const gen = new Gen(random(20260512));
  let accepted = 0;
  let refused = 0;
  let values = 0;
  for (let i = 0; i < 3000; i++) {
    const doc = gen.document();
    for (const text of [doc, gen.malformed(doc), gen.malformed(gen.malformed(doc))]) {
      const present = await compare(text);
      if (present < 0) refused++;
      else accepted++;
      values += Math.max(present, 0);
    }
  }
  // Both verdicts, and the keys' values, were exercised widely.
  assert(accepted > 2500 && refused > 2500, `accepted ${accepted}, refused ${refused}`);
  assert(values > 2000, `only ${values} values of keys the helper reads`);
});

Deno.test("the helper's config reader: duplicates, replaced parents and the error's byte offset", async () => {
  for (
    const text of [
      '{"runDir": "/a", "runDir": "/b"}',
      '{"runDir": 5, "runDir": "/b"}',
      '{"repositories": {"local": "/a"}, "repositories": {"centralized": "/c"}}',
      '{"repositories": {"local": "/a"}, "repositories": 1}',
      '{"helper": {"kernelMountUserImages": true}, "helper": []}',
      '{"r\\u0075nDir": "\\ud83d\\ude00 \\ud83d \\/"}',
      '{"runDir": "a\\u0000b"}',
      "[]",
      '"runDir"',
      "{} {}",
      "",
      '{"a": 01}',
      '{"a": 1.}',
      '{"a": tru}',
      '{"a": "\t"}',
      `${"[".repeat(300)}${"]".repeat(300)}`,
      `{"a": ${"[".repeat(500)}${"]".repeat(500)}}`,
    ]
  ) await compare(text);
  assertEquals(await readConfigJson(new TextEncoder().encode('{"runDir": "/tmp",}')), {
    ok: false,
    error: "expected a string",
    at: 18,
  });
});

/** Subordinate id files, as sites write them and as they go wrong; the user is alice, uid 1000. */
const LAYOUTS: Record<string, string> = {
  "one range by name": "alice:100000:65536\n",
  "one range by uid": "1000:100000:65536\n",
  "none": "",
  "another user's only": "bob:100000:65536\nalicia:200000:65536\n",
  "two small ranges": "alice:100000:1000\nalice:200000:64536\n",
  "first range overlaps the own uid": "alice:1000:65536\nalice:200000:65536\n",
  "a huge range": "alice:100000:1000000\n",
  "overlapping ranges": "alice:100000:65536\nalice:150000:65536\nalice:165536:10\nalice:100000:5\n",
  "by name and by uid": "alice:100000:100\n1000:100100:100\nbob:300000:5\n1000:100000:1\n",
  "more than the cap": "alice:100000:60000\n1000:300000:60000\nalice:500000:10\n",
  "more than 64 ranges": Array.from(
    { length: MAX_RANGES + 6 },
    (_, i) => `alice:${100000 + i * 100}:10\n`,
  ).join(""),
  "malformed lines": [
    "alice:100000",
    "alice:1e5:10",
    "alice: 100000:65536",
    "alice:100000:0",
    "alice:4294967295:2",
    "alice:-1:5",
    "alice:100000:65536:x",
    ":100000:5",
    "# alice:1:2",
    "ALICE:1:2",
    "alice :5:5",
    "alice:99999999999999999999:1",
    "alice:+5:5",
    "alice:5:",
    "alice:0x10:5",
    "alice:١٢:5",
    "  alice:300000:10  \r",
    "\u00a0alice:400000:10\u2028\ufeff",
    "\talice:0000000000000000000500000:010\v",
    "alice:4294901760:65536",
  ].join("\n"),
  "windows line ends": "alice:100000:100\r\n1000:200000:100\r\n",
  "an own id inside a range": "alice:0:2000\nalice:100000:65536\n",
};

/** Seeded random layouts from valid, overlapping and malformed lines of alice's and others'. */
function randomLayouts(n: number): string[] {
  const gen = new Gen(random(7));
  const line = () => {
    const owner = gen.pick(["alice", "1000", "bob", "1001", "", "alice "]);
    const start = gen.pick([0, 1, 999, 1000, 1001, 65536, 100000, 100500, 4294967295]) +
      gen.int(3) * 50000;
    const count = gen.pick([0, 1, 10, 1000, 65535, 65536, 70000, 1000000]);
    const sep = gen.chance(0.05) ? gen.pick(["::", ": ", ":x"]) : ":";
    const pad = gen.chance(0.1) ? gen.pick([" ", "\t", "\u3000", "\r"]) : "";
    return gen.chance(0.05) ? "# comment" : `${pad}${owner}${sep}${start}:${count}${pad}`;
  };
  return Array.from({ length: n }, () => Array.from({ length: gen.int(8) }, line).join("\n"));
}

Deno.test("the helper's id mapping is shoal's, on every layout of /etc/subuid and /etc/subgid", async () => {
  const layouts = [
    ...Object.entries(LAYOUTS),
    ...randomLayouts(300).map((t, i) => [`random ${i}`, t]),
  ];
  for (const [what, text] of layouts) {
    const ranges = rangesOf(parseSubidFile(text!), "alice", 1000);
    // own: the caller's uid (1000), or another gid, or ids that fall inside ranges.
    for (const own of [1000, 0, 2000, 100050, 150000, 70000]) {
      for (const root of [true, false]) {
        const want = idMap(own, ranges, root).mappings;
        const got = await helperIdMap(text!, "alice", 1000, own, root);
        assertEquals(got, want, `${what}, own id ${own}${root ? ", --root" : ""}`);
      }
    }
  }
  // What the table stands for, in two of its rows.
  assertEquals(await helperIdMap(LAYOUTS["two small ranges"]!, "alice", 1000, 1000, false), [
    { containerID: 0, hostID: 100000, size: 1000 },
    { containerID: 1000, hostID: 1000, size: 1 },
    { containerID: 1001, hostID: 200000, size: 64536 },
  ]);
  assertEquals(
    await helperIdMap(LAYOUTS["first range overlaps the own uid"]!, "alice", 1000, 1000, true),
    [{ containerID: 0, hostID: 1000, size: 1 }, { containerID: 1, hostID: 200000, size: 65536 }],
  );
});

const DIR = 0o040000;
const LINK = 0o120000;
const FILE = 0o100000;
const root = (perm: number): PathFact => ({ uid: 0, mode: DIR | perm });
const own = (perm: number): PathFact => ({ uid: 1000, mode: DIR | perm });

/**
 * The run dir/bundle rule as a table (rows: bundle, runDir, facts from "/" to
 * the bundle, the refused component or null), for the helper's C and, once
 * written, shoal's judgeRunBase (mod/runtime/rundir.ts).
 */
export const BUNDLE_RULE: [string, string, PathFact[], number | null][] = [
  ["/tmp/shoal-1000.abcdef12/run-1", "", [root(0o755), root(0o1777), own(0o700), own(0o700)], null],
  ["/run/user/1000/shoal/c", "", [
    root(0o755),
    root(0o755),
    root(0o755),
    own(0o700),
    own(0o700),
    own(0o700),
  ], null],
  ["/run/user/1000/shoal/c", "/run/user/1000/shoal", [
    root(0o755),
    root(0o755),
    root(0o755),
    own(0o700),
    own(0o700),
    own(0o700),
  ], null],
  ["/run/user/1000/shoal/c", "/run/user/1000/other", [
    root(0o755),
    root(0o755),
    root(0o755),
    own(0o700),
    own(0o700),
    own(0o700),
  ], -1],
  ["/tmp/x/c", "", [root(0o755), root(0o1777), { uid: 0, mode: LINK | 0o777 }, own(0o700)], 2],
  ["/tmp/x/c", "", [root(0o755), root(0o1777), { uid: 1001, mode: DIR | 0o700 }, own(0o700)], 2],
  ["/tmp/x/c", "", [root(0o755), root(0o1777), own(0o755), own(0o700)], 2],
  ["/tmp/x/c", "", [root(0o755), root(0o1777), own(0o700), own(0o750)], 3],
  ["/tmp/x/c", "", [root(0o755), root(0o1777), own(0o700), { uid: 1000, mode: FILE | 0o700 }], 3],
  ["/a/x/c", "", [root(0o755), own(0o1777), own(0o700), own(0o700)], 1],
  ["/a/x/c", "", [root(0o755), root(0o777), own(0o700), own(0o700)], 1],
  ["/a/x/c", "", [root(0o755), { uid: 1001, mode: DIR | 0o755 }, own(0o700), own(0o700)], 1],
  ["/a/x/c", "", [root(0o755), { uid: 1000, mode: LINK | 0o777 }, own(0o700), own(0o700)], 1],
  ["/a/x/c", "", [root(0o755), own(0o755), own(0o700), own(0o700)], null],
  ["/tmp/x/.c", "", [root(0o755), root(0o1777), own(0o700), own(0o700)], -1],
  ["/tmp/x/" + "c".repeat(129), "", [root(0o755), root(0o1777), own(0o700), own(0o700)], -1],
  ["/tmp/x/c_1.2-3", "", [root(0o755), root(0o1777), own(0o700), own(0o700)], null],
  ["/tmp/x/../c", "", [root(0o755), root(0o1777), own(0o700), own(0o700), own(0o700)], -1],
];

Deno.test("the helper's run dir rule on a table of bundle paths", async () => {
  for (const [bundle, runDir, facts, refused] of BUNDLE_RULE) {
    const verdict = await helperJudgeBundle(bundle, runDir, 1000, facts);
    assertEquals(verdict?.component ?? null, refused, `${bundle} (${verdict?.why})`);
  }
});

/**
 * shoal's side of the same table: the path as rundir.ts walks it, the run's
 * name, the site's runDir, then each component's facts by rundir.ts's own
 * rule (componentWhy; a bundle dir is judged as a base). The index of the
 * first refused component, -1 for the path itself, null when accepted.
 */
function shoalJudgeBundle(
  bundle: string,
  runDir: string,
  caller: number,
  facts: PathFact[],
): number | null {
  let canonical: string;
  try {
    canonical = canonicalPath(bundle);
  } catch {
    return -1;
  }
  const base = bundle.slice(0, bundle.lastIndexOf("/")) || "/";
  if (canonical !== bundle || !NAME_PATTERN.test(bundle.slice(base.length + 1))) return -1;
  if (runDir !== "" && base !== runDir) return -1;
  const refused = facts.findIndex((f, i) =>
    componentWhy(
      i < facts.length - 2 ? "above" : "base",
      { type: f.mode & 0o170000, perm: f.mode & 0o7777, uid: f.uid },
      caller,
    ) !== undefined
  );
  return refused < 0 ? null : refused;
}

Deno.test("shoal and the helper judge run dirs alike, on the same table of bundle paths", async () => {
  for (const [bundle, runDir, facts, _] of BUNDLE_RULE) {
    const helper = await helperJudgeBundle(bundle, runDir, 1000, facts);
    assertEquals(shoalJudgeBundle(bundle, runDir, 1000, facts), helper?.component ?? null, bundle);
  }
});

/** Digests as manifests carry them, good and bad. */
const DIGESTS = [
  `sha256:${"a".repeat(64)}`,
  `sha384:${"0".repeat(96)}`,
  `sha512:${"f".repeat(128)}`,
  `sha256:${"a".repeat(63)}`,
  `sha256:${"a".repeat(65)}`,
  `sha256:${"A".repeat(64)}`,
  `sha512:${"f".repeat(64)}`,
  `md5:${"a".repeat(32)}`,
  `sha256-${"a".repeat(64)}`,
  `sha256:${"a".repeat(63)}g`,
  "sha256:",
  "",
];

Deno.test("shoal and the helper take the same digests", async () => {
  for (const d of DIGESTS) assertEquals(await helperDigestOk(d), isDigest(d), d);
  assert(await helperDigestOk(DIGESTS[0]!));
  assert(!await helperDigestOk(DIGESTS[3]!));
});

Deno.test("shoal and the helper find the same cluster store images, and nothing else of the store", async () => {
  const store = "/shared/shoal";
  const hex = "b".repeat(64);
  const cases: [string, string | null][] = [
    [`${store}/images/sha256/${hex}/image.sqsh`, `sha256/${hex}/image.sqsh`],
    [
      `${store}/images/sha512/${"c".repeat(128)}/image.sqsh`,
      `sha512/${"c".repeat(128)}/image.sqsh`,
    ],
    [`${store}/images/sha256/${hex}/meta.json`, null],
    [`${store}/images/sha256/${hex}/image.sqsh.tmp`, null],
    [`${store}/images/sha256/${hex}/x/image.sqsh`, null],
    [`${store}/images/sha256/${hex.slice(1)}/image.sqsh`, null],
    [`${store}/images/md5/${"a".repeat(32)}/image.sqsh`, null],
    [`${store}/staging/sha256-${hex}.claim/work-1/image.sqsh`, null],
    [`${store}x/images/sha256/${hex}/image.sqsh`, null],
    [`/other/images/sha256/${hex}/image.sqsh`, null],
    [`${store}/images/sha256/${hex.toUpperCase()}/image.sqsh`, null],
  ];
  for (const [path, rel] of cases) {
    assertEquals(await helperStoreImage(path, store), rel, path);
    const digest = storeImageDigest(path, store);
    assertEquals(digest === undefined ? null : `${digest.replace(":", "/")}/image.sqsh`, rel, path);
  }
});
