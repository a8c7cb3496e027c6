/**
 * Image references mean what they mean to Docker: cases taken from
 * distribution/reference's own tests (reference_test.go, normalize_test.go),
 * plus the one-line reasons shoal gives where Docker only says
 * "invalid reference format".
 */
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  familiarName,
  formatReference,
  type ImageReference,
  loadedReference,
  parseName,
  parseReference,
  parseRemoteReference,
  registryApiHost,
} from "../mod/image/reference.ts";
import { UsageError } from "../mod/errors.ts";

const HEX64 = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const SHA256 = `sha256:${HEX64}`;
const SHA512 = `sha512:${HEX64}${HEX64}`;
const REDIS = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

/** input -> expected normalized reference, familiar name. */
const valid: [string, ImageReference, string][] = [
  ["debian", { registry: "docker.io", repository: "library/debian", tag: "latest" }, "debian"],
  ["redis:latest", { registry: "docker.io", repository: "library/redis", tag: "latest" }, "redis"],
  [
    "docker.io/library/redis:latest",
    { registry: "docker.io", repository: "library/redis", tag: "latest" },
    "redis",
  ],
  ["docker.io/foo", { registry: "docker.io", repository: "library/foo", tag: "latest" }, "foo"],
  [
    "index.docker.io/library/debian",
    { registry: "docker.io", repository: "library/debian", tag: "latest" },
    "debian",
  ],
  [
    "dmcgowan/myapp",
    { registry: "docker.io", repository: "dmcgowan/myapp", tag: "latest" },
    "dmcgowan/myapp",
  ],
  [
    "library/foo/bar",
    { registry: "docker.io", repository: "library/foo/bar", tag: "latest" },
    "library/foo/bar",
  ],
  [
    `redis@${REDIS}`,
    { registry: "docker.io", repository: "library/redis", digest: REDIS },
    "redis",
  ],
  [
    `busybox:latest@${REDIS}`,
    { registry: "docker.io", repository: "library/busybox", tag: "latest", digest: REDIS },
    "busybox",
  ],
  // One word with '.' or ':' but no '/' is a Docker Hub name plus a tag.
  [
    "test.com:tag",
    { registry: "docker.io", repository: "library/test.com", tag: "tag" },
    "test.com",
  ],
  [
    "test.com:5000",
    { registry: "docker.io", repository: "library/test.com", tag: "5000" },
    "test.com",
  ],
  [
    "test_com",
    { registry: "docker.io", repository: "library/test_com", tag: "latest" },
    "test_com",
  ],
  [
    "test_com/foo",
    { registry: "docker.io", repository: "test_com/foo", tag: "latest" },
    "test_com/foo",
  ],
  [
    "foo/foo_bar.com:8080",
    { registry: "docker.io", repository: "foo/foo_bar.com", tag: "8080" },
    "foo/foo_bar.com",
  ],
  [
    "test.com/repo:tag",
    { registry: "test.com", repository: "repo", tag: "tag" },
    "test.com/repo",
  ],
  [
    "test:5000/repo",
    { registry: "test:5000", repository: "repo", tag: "latest" },
    "test:5000/repo",
  ],
  [
    `test:5000/repo:tag@${SHA256}`,
    { registry: "test:5000", repository: "repo", tag: "tag", digest: SHA256 },
    "test:5000/repo",
  ],
  [
    `test:5000/repo@${SHA256}`,
    { registry: "test:5000", repository: "repo", digest: SHA256 },
    "test:5000/repo",
  ],
  [
    "test-com:8080/foo",
    { registry: "test-com:8080", repository: "foo", tag: "latest" },
    "test-com:8080/foo",
  ],
  [
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    { registry: "sub-dom1.foo.com", repository: "bar/baz/quux", tag: "some-long-tag" },
    "sub-dom1.foo.com/bar/baz/quux",
  ],
  [
    "b.gcr.io/test.example.com/my-app:test.example.com",
    { registry: "b.gcr.io", repository: "test.example.com/my-app", tag: "test.example.com" },
    "b.gcr.io/test.example.com/my-app",
  ],
  [
    `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
    { registry: "xn--7o8h.com", repository: "myimage", tag: "xn--7o8h.com", digest: SHA512 },
    "xn--7o8h.com/myimage",
  ],
  [
    "localhost/x",
    { registry: "localhost", repository: "x", tag: "latest" },
    "localhost/x",
  ],
  [
    "localhost:5000/x",
    { registry: "localhost:5000", repository: "x", tag: "latest" },
    "localhost:5000/x",
  ],
  [
    "127.0.0.1:5000/private/moonbase",
    { registry: "127.0.0.1:5000", repository: "private/moonbase", tag: "latest" },
    "127.0.0.1:5000/private/moonbase",
  ],
  [
    "[::1]:5000/x:v1",
    { registry: "[::1]:5000", repository: "x", tag: "v1" },
    "[::1]:5000/x",
  ],
  [
    "[2001:db8::1]/x",
    { registry: "[2001:db8::1]", repository: "x", tag: "latest" },
    "[2001:db8::1]/x",
  ],
  // An upper-case first component cannot be a repository, so it is a host.
  ["Foo/bar", { registry: "Foo", repository: "bar", tag: "latest" }, "Foo/bar"],
  [
    "docker---rules/dock__er",
    { registry: "docker.io", repository: "docker---rules/dock__er", tag: "latest" },
    "docker---rules/dock__er",
  ],
  ["d/t", { registry: "docker.io", repository: "d/t", tag: "latest" }, "d/t"],
  [
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    {
      registry: "docker.io",
      repository: "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
      tag: "latest",
    },
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
  ],
  // With a registry, 64 hex digits are a name, not an image ID.
  [
    `docker.io/${HEX64}`,
    { registry: "docker.io", repository: `library/${HEX64}`, tag: "latest" },
    HEX64,
  ],
  [
    "foo:TAG_5.x-y",
    { registry: "docker.io", repository: "library/foo", tag: "TAG_5.x-y" },
    "foo",
  ],
  [
    `foo:${"t".repeat(128)}`,
    { registry: "docker.io", repository: "library/foo", tag: "t".repeat(128) },
    "foo",
  ],
  // 255 characters of name, counted with the registry.
  [
    `a.io/${"a/".repeat(124)}ab`,
    { registry: "a.io", repository: `${"a/".repeat(124)}ab`, tag: "latest" },
    `a.io/${"a/".repeat(124)}ab`,
  ],
];

/** input -> words the one-line reason must contain. */
const invalid: [string, string][] = [
  ["", "empty"],
  [":justtag", "empty repository name"],
  [`@${SHA256}`, "empty repository name"],
  ["foo:", "empty tag"],
  ["foo@", "empty digest"],
  ["docker/", "empty path component"],
  ["/docker", "empty path component"],
  ["docker///docker", "empty path component"],
  ["docker.io/docker///docker", "empty path component"],
  ["docker/Docker", "lower case"],
  ["docker.io/docker/Docker", "lower case"],
  ["localhost:5000/MyImage", "lower case"],
  ["../etc/passwd", "'..'"],
  ["foo/../bar", "'..'"],
  ["dock..er/docker", "'..'"],
  ["registry.io/a/..", "'..'"],
  ["-docker", "invalid path component"],
  ["-docker/docker", "invalid path component"],
  ["docker-/docker", "invalid path component"],
  ["____/____", "invalid path component"],
  ["_docker/_docker", "invalid path component"],
  ["docker/dock_.er", "invalid path component"],
  ["docker/dock-.er", "invalid path component"],
  ["dock_.er/docker", "invalid registry"],
  ["dock-.er/docker", "invalid registry"],
  ["aa/asdf$$^/aa", "invalid path component"],
  ["-docker.io/docker/docker", "invalid registry"],
  ["https://github.com/docker/docker", "invalid registry"],
  ["foo_bar.com/x", "invalid registry"],
  ["[fc00::1%eth0]:5000/debian", "invalid registry"],
  ["[::1]:port/x", "invalid registry"],
  [HEX64, "image ID"],
  ["foo:-tag", "invalid tag"],
  ["foo:.tag", "invalid tag"],
  ["foo:ta/g", "invalid registry"],
  ["foo:ta$g", "invalid tag"],
  [`foo:${"t".repeat(129)}`, "invalid tag"],
  [`validname@invaliddigest:${HEX64}`, "unsupported digest algorithm"],
  ["foo@sha256:abc", "64 lower-case hex"],
  [`foo@sha256:${HEX64.toUpperCase()}`, "64 lower-case hex"],
  [`foo@sha256:${HEX64}0`, "64 lower-case hex"],
  [`foo@sha512:${HEX64}`, "128 lower-case hex"],
  ["foo@sha256", "not ALGORITHM:HEX"],
  [`foo@${HEX64}`, "not ALGORITHM:HEX"],
  [`${"a/".repeat(128)}a:tag`, "longer than 255"],
  // Normalization counts too: "docker.io/" pushes 255 characters over the limit.
  [`${"a/".repeat(127)}a`, "longer than 255"],
  [`a.io/${"a/".repeat(124)}abc`, "longer than 255"],
  [
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
    "longer than 255",
  ],
];

Deno.test("valid references normalize like Docker's", () => {
  for (const [input, expected, familiar] of valid) {
    const ref = parseReference(input);
    assertEquals(ref, expected, input);
    assertEquals(familiarName(ref), familiar, input);
  }
});

Deno.test("invalid references are refused with a one-line UsageError naming the reason", () => {
  for (const [input, reason] of invalid) {
    const err = assertThrows(() => parseReference(input), UsageError, reason);
    assertEquals(err.exitCode, 2);
    assertEquals(err.message.includes("\n"), false, input);
  }
});

Deno.test("formatReference gives the full form that parses back, or Docker's familiar form", () => {
  for (const [input] of valid) {
    const ref = parseReference(input);
    assertEquals(parseReference(formatReference(ref)), ref, input);
  }
  const busybox = parseReference(`busybox:latest@${REDIS}`);
  assertEquals(formatReference(busybox), `docker.io/library/busybox:latest@${REDIS}`);
  assertEquals(formatReference(busybox, { familiar: true }), `busybox:latest@${REDIS}`);
  assertEquals(formatReference(parseReference("debian")), "docker.io/library/debian:latest");
  assertEquals(
    formatReference(parseReference(`127.0.0.1:5000/x@${SHA256}`), { familiar: true }),
    `127.0.0.1:5000/x@${SHA256}`,
  );
});

Deno.test("registryApiHost sends docker.io to registry-1.docker.io and leaves others alone", () => {
  assertEquals(registryApiHost(parseReference("debian").registry), "registry-1.docker.io");
  assertEquals(
    registryApiHost(parseReference("index.docker.io/x/y").registry),
    "registry-1.docker.io",
  );
  assertEquals(registryApiHost(parseReference("quay.io/x/y").registry), "quay.io");
  assertEquals(registryApiHost(parseReference("[::1]:5000/y").registry), "[::1]:5000");
});

Deno.test("a name without its registry is a short name, with its path as written", () => {
  const cases: [string, string | undefined][] = [
    ["busybox:1.0", "busybox"],
    ["mylab/tool", "mylab/tool"],
    ["library/debian", "library/debian"],
    [`busybox@${SHA256}`, "busybox"],
    ["docker.io/library/debian", undefined],
    ["index.docker.io/debian", undefined],
    ["127.0.0.1:5000/busybox:1.0", undefined],
    ["localhost/busybox", undefined],
    ["load/tool:1", undefined],
  ];
  for (const [input, shortPath] of cases) {
    const parsed = parseName(input);
    assertEquals(parsed.shortPath, shortPath, input);
    assertEquals(parsed.ref, parseReference(input), input);
  }
});

Deno.test("load/ names a loaded image; Docker Hub's load namespace is docker.io/load/", () => {
  assertEquals(parseReference("load/tool:1"), { registry: "load", repository: "tool", tag: "1" });
  const hub = parseReference("docker.io/load/tool");
  assertEquals(hub, { registry: "docker.io", repository: "load/tool", tag: "latest" });
  assertEquals(familiarName(hub), "docker.io/load/tool");
  assertEquals(parseReference(formatReference(hub, { familiar: true })), hub);
  assertEquals(parseRemoteReference("docker.io/load/tool"), hub);
  const err = assertThrows(() => parseRemoteReference("load/tool:1"), UsageError, "shoal load");
  assertEquals(err.hint, `for Docker Hub's "load" namespace write docker.io/load/tool:1`);
});

Deno.test("shoal load's names: load/NAME[:TAG], however NAME is written; no registry, no digest", () => {
  const cases: [string, string][] = [
    ["tool", "load/tool:latest"],
    ["tool:1", "load/tool:1"],
    ["mylab/tool:1", "load/mylab/tool:1"],
    ["docker.io/library/tool:1", "load/tool:1"],
    ["load/mylab/tool:2", "load/mylab/tool:2"],
  ];
  for (const [input, stored] of cases) {
    assertEquals(formatReference(loadedReference(input)), stored, input);
  }
  assertThrows(() => loadedReference("127.0.0.1:5000/tool"), UsageError, "names the registry");
  assertThrows(() => loadedReference(`tool@${SHA256}`), UsageError, "not a digest");
});
