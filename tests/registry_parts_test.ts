/** The registry client's parsers: authentication challenges and platforms. */
import { UsageError } from "../mod/errors.ts";
import { parseChallenges } from "../mod/image/registry/challenge.ts";
import { parsePlatform } from "../mod/image/registry/platform.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";

Deno.test("WWW-Authenticate: several challenges, quoted commas and escapes, any case", () => {
  const header = 'Basic realm="a, b", BEARER Realm="https://auth.example/token",' +
    'service="registry \\"x\\"",scope="repository:a:pull repository:b:pull,push", error=insufficient_scope';
  assertEquals(parseChallenges(header), [
    { scheme: "basic", params: { realm: "a, b" } },
    {
      scheme: "bearer",
      params: {
        realm: "https://auth.example/token",
        service: 'registry "x"',
        scope: "repository:a:pull repository:b:pull,push",
        error: "insufficient_scope",
      },
    },
  ]);
  assertEquals(parseChallenges(""), []);
});

Deno.test("--platform accepts os/arch[/variant] with the usual aliases and refuses anything else", () => {
  assertEquals(parsePlatform("linux/arm64/v8"), {
    os: "linux",
    architecture: "arm64",
    variant: "v8",
  });
  assertEquals(parsePlatform("Linux/x86_64"), { os: "linux", architecture: "amd64" });
  assertEquals(parsePlatform("linux/aarch64"), { os: "linux", architecture: "arm64" });
  for (const bad of ["linux", "linux/", "/amd64", "linux/amd64/v2/x", "linux/am d64"]) {
    assertThrows(() => parsePlatform(bad), UsageError, "expected OS/ARCH[/VARIANT]");
  }
});
