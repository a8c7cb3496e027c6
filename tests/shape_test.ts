/** The checks of shoal's own JSON files (mod/shape.ts), on damaged and hand-edited values. */
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  array,
  dictionary,
  integer,
  nonEmpty,
  object,
  oneOf,
  optional,
  ShapeError,
  string,
  tryShape,
} from "../mod/shape.ts";
import { imageMetadata, indexEntry } from "../mod/image/store/metadata.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

Deno.test("shape: values pass with their type; unknown keys go, absent optional ones stay out", () => {
  const check = object({
    name: nonEmpty,
    tags: array(string()),
    size: integer(0),
    kind: oneOf(["a", "b"]),
    labels: dictionary(string()),
    note: optional(string()),
  });
  assertEquals(
    check({ name: "x", tags: ["t"], size: 0, kind: "b", labels: { k: "v" }, extra: 1 }, ""),
    { name: "x", tags: ["t"], size: 0, kind: "b", labels: { k: "v" } },
  );
  assertEquals(
    check({ name: "x", tags: [], size: 3, kind: "a", labels: {}, note: "n" }, "").note,
    "n",
  );
});

Deno.test("shape: a damaged value is one line naming where and what was expected", () => {
  const check = object({ layers: array(string((s) => s.startsWith("sha256:"), "a digest")) });
  const why = (value: unknown) => {
    const r = tryShape(check, value);
    return r.ok ? "passed" : r.why;
  };
  assertEquals(why({ layers: ["sha256:1", "md5:2"] }), "layers.1: expected a digest");
  assertEquals(why({ layers: "sha256:1" }), "layers: expected an array");
  assertEquals(why(null), "expected an object");
  assertEquals(why([]), "expected an object");
  assertEquals(tryShape(integer(1), 1.5), { ok: false, why: "expected an integer of at least 1" });
  assertEquals(tryShape(oneOf([1]), 2), { ok: false, why: "expected 1" });
  assertEquals(tryShape(dictionary(string()), { a: 1 }), {
    ok: false,
    why: "a: expected a string",
  });
  // Only ShapeErrors are answers; anything else is a bug and propagates.
  assertThrows(() =>
    tryShape(() => {
      throw new TypeError("bug");
    }, 1), TypeError);
  assertThrows(() => nonEmpty("", "tag"), ShapeError, "tag: expected a non-empty string");
});

Deno.test("shape: the store's records need a tag or a digest, and digests that are digests", () => {
  const origin = {
    registry: "r",
    repository: "p",
    server: "r",
    pulledAt: "2026-01-01T00:00:00Z",
    configDigest: DIGEST,
  };
  assertEquals(tryShape(indexEntry, origin), { ok: false, why: "expected a tag or a digest" });
  assertEquals(tryShape(indexEntry, { ...origin, tag: "1" }).ok, true);
  assertEquals(tryShape(indexEntry, { ...origin, digest: DIGEST }).ok, true);
  assertEquals(tryShape(indexEntry, { ...origin, tag: "1", configDigest: "sha256:abc" }), {
    ok: false,
    why: "configDigest: expected a digest (sha256:<64 hex>)",
  });
  const meta = {
    ...origin,
    tag: "1",
    schemaVersion: 1 as const,
    platform: { os: "linux", architecture: "amd64" },
    env: [],
    entrypoint: [],
    cmd: ["sh"],
    workdir: "",
    user: "",
    labels: {},
    passwd: "",
    group: "",
    size: 10,
    squashfs: `sha256-${"a".repeat(64)}.sqsh`,
    layers: [DIGEST],
  };
  assertEquals(tryShape(imageMetadata, meta), { ok: true, value: meta });
  assertEquals(tryShape(imageMetadata, { ...meta, schemaVersion: 2 }), {
    ok: false,
    why: "schemaVersion: expected 1",
  });
  assertEquals(tryShape(imageMetadata, { ...meta, squashfs: "../x.sqsh" }), {
    ok: false,
    why: "squashfs: expected a squashfs file name",
  });
});
