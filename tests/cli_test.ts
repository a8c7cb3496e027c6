import { assert, assertEquals, assertMatch, assertStringIncludes } from "./support/assert.ts";
import { shoal } from "./support/shoal.ts";
import { formatTable } from "../mod/cli/output.ts";
import { renderError, ShoalError, UsageError } from "../mod/errors.ts";

/** Usage errors are exactly one line on stderr, prefixed, with exit status 2. */
function assertUsageError(r: { code: number; stdout: string; stderr: string }, pattern: RegExp) {
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

Deno.test("--version prints the version and exits 0", async () => {
  const r = await shoal(["--version"]);
  assertEquals(r.code, 0);
  assertMatch(r.stdout, /^shoal \d+\.\d+\.\d+\n$/);
});

Deno.test("--help lists every command with examples", async () => {
  const r = await shoal(["--help"]);
  assertEquals(r.code, 0);
  for (const cmd of ["doctor", "version", "help"]) {
    assertMatch(r.stdout, new RegExp(`\\n  ${cmd}\\b`));
  }
  for (const flag of ["--debug", "--verbose", "--quiet", "--version"]) {
    assertStringIncludes(r.stdout, flag);
  }
  assertStringIncludes(r.stdout, "Examples:");
});

Deno.test("'help COMMAND' and 'COMMAND --help' show the same text, with examples", async () => {
  for (const cmd of ["doctor", "version"]) {
    const a = await shoal(["help", cmd]);
    const b = await shoal([cmd, "--help"]);
    assertEquals(a.code, 0);
    assertEquals(a.stdout, b.stdout);
    assertMatch(a.stdout, new RegExp(`^Usage: shoal ${cmd}`));
    assertStringIncludes(a.stdout, "Examples:");
    assertStringIncludes(a.stdout, `shoal ${cmd}`);
  }
});

Deno.test("no command prints the usage to stderr and exits 2", async () => {
  const r = await shoal([]);
  assertEquals(r.code, 2);
  assertEquals(r.stdout, "");
  assertMatch(r.stderr, /^Usage: shoal/);
});

Deno.test("unknown command names the closest one and exits 2", async () => {
  assertUsageError(await shoal(["verson"]), /did you mean version\?/);
  assertUsageError(await shoal(["doctr"]), /unknown command 'doctr' \(did you mean doctor\?\)/);
  assertUsageError(
    await shoal(["frobnicate"]),
    /unknown command 'frobnicate' \(see 'shoal --help'\)$/,
  );
  assertUsageError(
    await shoal(["help", "verion"]),
    /unknown command 'verion' \(did you mean version\?\)/,
  );
});

Deno.test("unknown option names the closest one and the command's help", async () => {
  assertUsageError(
    await shoal(["version", "--fromat", "json"]),
    /unknown option '--fromat' \(did you mean --format\?\) \(see 'shoal version --help'\)$/,
  );
  assertUsageError(await shoal(["--verbsoe", "version"]), /unknown option '--verbsoe'/);
});

Deno.test("invalid option value and extra arguments are usage errors", async () => {
  assertUsageError(
    await shoal(["version", "--format", "xml"]),
    /--format takes table or json, not 'xml'/,
  );
  assertUsageError(await shoal(["version", "extra"]), /too many arguments for 'version'/);
});

Deno.test("global flags are accepted before and after the command", async () => {
  for (const args of [["--quiet", "version"], ["version", "--quiet"], ["-q", "version"]]) {
    const r = await shoal(args);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "shoal");
  }
});

Deno.test("--debug adds the cause chain to an error", async () => {
  const plain = await shoal(["version", "--format", "xml"]);
  const debug = await shoal(["--debug", "version", "--format", "xml"]);
  assertEquals(debug.code, 2);
  assert(debug.stderr.split("\n").length > plain.stderr.split("\n").length);
  assertStringIncludes(debug.stderr, "UsageError");
});

Deno.test("version --format json is machine-readable", async () => {
  const r = await shoal(["version", "--format", "json"]);
  assertEquals(r.code, 0);
  const info = JSON.parse(r.stdout);
  assertMatch(info.shoal, /^\d+\.\d+\.\d+$/);
  assertMatch(info.deno, /^2\.9\./);
});

Deno.test("tables align columns", () => {
  assertEquals(
    formatTable(["A", "LONGER"], [["xxxxx", "1"], ["y", "22"]]),
    "A       LONGER\nxxxxx   1\ny       22",
  );
});

Deno.test("errors render as one line with hint; debug adds causes", () => {
  const err = new ShoalError("cannot read x", { hint: "check y", cause: new Error("EACCES") });
  assertEquals(renderError(err, false), "shoal: error: cannot read x (check y)");
  const debug = renderError(err, true);
  assertStringIncludes(debug, "EACCES");
  assertEquals(new UsageError("bad").exitCode, 2);
  assertEquals(err.exitCode, 1);
});
