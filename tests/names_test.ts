/**
 * The names `shoal images` shows work everywhere: images pulled from
 * loopback registries and loaded from archives, in the user's repository and
 * the site's centralized one, run and removed by the name listed and by the
 * short name (without the registry), with one-line errors that list the
 * candidates or say which repository has the image.
 */
import { assertEquals, assertMatch, assertThrows } from "./support/assert.ts";
import { UsageError } from "../mod/errors.ts";
import { parseTemplate } from "../mod/cli/template.ts";
import { archive, ociFlat } from "./support/archive.ts";
import { busyboxImage, pushImage } from "./support/oci.ts";
import { startRegistry } from "./support/registry.ts";
import { IMAGE_OS_RELEASE, type RunSite, runSite, testImages } from "./support/run.ts";
import type { Result } from "./support/shoal.ts";

const SHORT = "shoal/run-test:1";

function oneLine(r: Result, pattern: RegExp): void {
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A busybox image whose /etc/which says `which`, as an oci-archive the test user can read. */
async function archiveFile(site: RunSite, which: string, name = `${which}.tar`): Promise<string> {
  const image = busyboxImage({
    extraEntries: [{ type: "file", path: "etc/which", content: `${which}\n` }],
  });
  const path = `${site.dir}/${name}`;
  await Deno.writeFile(path, archive(ociFlat([image])), { mode: 0o644 });
  return path;
}

Deno.test("an image from a private registry runs and is removed by the name `images` lists and by its short name", async () => {
  const site = await runSite(false);
  const { registry } = await testImages();
  const full = await site.image("user");
  assertEquals(full, `${registry.host}/${SHORT}`);

  const table = await site.shoal("user", ["images"]);
  assertEquals(table.code, 0, table.stderr);
  const [header, ...rows] = table.stdout.trimEnd().split("\n");
  assertMatch(header!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\s+SERVER$/);
  assertEquals(rows.length, 1, table.stdout);
  // One word per column: a script splits the row on blanks.
  const [repository, tag, id, created, size, server, ...more] = rows[0]!.split(/\s+/);
  assertEquals([repository, tag, server, more], [
    `${registry.host}/shoal/run-test`,
    "1",
    registry.host,
    [],
  ]);
  assertMatch(id!, /^[0-9a-f]{12}$/);
  assertMatch(created!, /^(\d{4}-\d\d-\d\dT\d\d:\d\d|-)$/);
  assertMatch(size!, /^\d+(\.\d+)?(B|kB|MB)$/);

  const names = await site.shoal("user", ["images", "--format", "{{.Repository}}:{{.Tag}}"]);
  assertEquals([names.code, names.stdout], [0, `${full}\n`], names.stderr);
  const template = await site.shoal("user", ["images", "--format", "{{.ID}}\\t{{.Server}}"]);
  assertEquals(template.stdout, `${id}\t${registry.host}\n`);
  const typo = await site.shoal("user", ["images", "--format", "{{.Repo}}"]);
  assertEquals(typo.code, 2);
  oneLine(typo, /--format: no field \.Repo \(the fields are \{\{\.Repository\}\} /);

  for (const name of [`${repository}:${tag}`, SHORT]) {
    const run = await site.shoal("user", ["run", name, "cat", "/etc/os-release"]);
    assertEquals([run.code, run.stdout, run.stderr], [0, IMAGE_OS_RELEASE, ""], name);
  }

  const rmi = await site.shoal("user", ["rmi", SHORT]);
  assertEquals(rmi.code, 0, rmi.stderr);
  assertEquals(rmi.stdout.split("\n")[0], `Untagged: ${full}`);
  const gone = await site.shoal("user", ["run", SHORT, "true"]);
  assertEquals(gone.code, 1);
  oneLine(
    gone,
    /no image "shoal\/run-test:1" in your repository ".*" \(`shoal images` lists them\)$/,
  );
});

Deno.test("a short name two registries have, or a pulled and a loaded image have, is refused with their full names; each full name runs its image", async () => {
  const site = await runSite(false);
  const { registry } = await testImages();
  await using second = await startRegistry("plain");
  await pushImage(
    second,
    "shoal/run-test",
    "1",
    busyboxImage({ extraEntries: [{ type: "file", path: "etc/which", content: "second\n" }] }),
  );
  await site.writeConfig({ registries: { insecure: [registry.host, second.host] } });
  const first = await site.image("user");
  const other = `${second.host}/${SHORT}`;
  assertEquals((await site.shoal("user", ["pull", "-q", other])).code, 0);

  const both = [first, other].sort();
  const ambiguous = await site.shoal("user", ["run", SHORT, "true"]);
  assertEquals(ambiguous.code, 1);
  oneLine(
    ambiguous,
    new RegExp(
      `"shoal/run-test:1" could be 2 images: ${escape(both.join(", "))} ` +
        "\\(give the full name of the one you mean, as `shoal images` lists it\\)$",
    ),
  );
  const second1 = await site.shoal("user", ["run", other, "cat", "/etc/which"]);
  assertEquals([second1.code, second1.stdout], [0, "second\n"], second1.stderr);
  const first1 = await site.shoal("user", ["run", first, "cat", "/etc/os-release"]);
  assertEquals([first1.code, first1.stdout], [0, IMAGE_OS_RELEASE], first1.stderr);

  // A load under a name a pull has: stored beside it, never over it.
  const tar = await archiveFile(site, "loaded");
  const loaded = await site.shoal("user", ["load", tar, "app:2"]);
  assertEquals(loaded.code, 0, loaded.stderr);
  assertMatch(loaded.stdout, /^Loaded load\/app:2 /);
  const short = await site.shoal("user", ["run", "app:2", "cat", "/etc/which"]);
  assertEquals([short.code, short.stdout], [0, "loaded\n"], short.stderr);
  const again = await site.shoal("user", ["load", tar, `${SHORT}`]);
  assertEquals(again.code, 0, again.stderr);
  const three = await site.shoal("user", ["rmi", SHORT]);
  assertEquals(three.code, 1);
  oneLine(three, /"shoal\/run-test:1" could be 3 images: .*, load\/shoal\/run-test:1 \(/);
  const listed = await site.shoal("user", ["images", "--format", "{{.Reference}}"]);
  assertEquals(
    listed.stdout.trimEnd().split("\n"),
    [...both, "load/app:2", `load/${SHORT}`].sort(),
  );
  const byLoad = await site.shoal("user", ["run", `load/${SHORT}`, "cat", "/etc/which"]);
  assertEquals([byLoad.code, byLoad.stdout], [0, "loaded\n"], byLoad.stderr);
});

Deno.test("an image only in the other repository: the error says which has it and which flag to add or leave out", async () => {
  const site = await runSite(false);
  const { registry } = await testImages();
  const full = `${registry.host}/${SHORT}`;
  const central = await site.shoal("root", ["pull", "-q", "--centralized-repository", full]);
  assertEquals(central.code, 0, central.stderr);

  for (const command of [["run", SHORT, "true"], ["rmi", SHORT]]) {
    const missing = await site.shoal("user", command);
    assertEquals(missing.code, 1, command.join(" "));
    oneLine(
      missing,
      new RegExp(
        `no image "shoal/run-test:1" in your repository ".*" \\(the site's centralized repository has ${
          escape(full)
        }: add --centralized-repository\\)$`,
      ),
    );
  }
  const run = await site.shoal("user", [
    "run",
    "--centralized-repository",
    SHORT,
    "cat",
    "/etc/os-release",
  ]);
  assertEquals([run.code, run.stdout], [0, IMAGE_OS_RELEASE], run.stderr);

  const tar = await archiveFile(site, "mine", "my 100% image.tar");
  const loaded = await site.shoal("user", ["load", tar, "mine:1"]);
  assertEquals(loaded.code, 0, loaded.stderr);
  // Even a SERVER from a file name with blanks stays one word.
  const table = await site.shoal("user", ["images"]);
  const row = table.stdout.trimEnd().split("\n")[1]!.split(/\s+/);
  assertEquals([row[0], row[1], row[5], row.length], [
    "load/mine",
    "1",
    "file:my%20100%25%20image.tar",
    6,
  ]);
  const wrong = await site.shoal("user", ["run", "--centralized-repository", "mine:1", "true"]);
  assertEquals(wrong.code, 1);
  oneLine(
    wrong,
    /no image "mine:1" in the centralized repository ".*" \(your own repository has load\/mine:1: leave out --centralized-repository\)$/,
  );
});

Deno.test("pull refuses a load/ name: no registry serves it", async () => {
  const site = await runSite(false);
  const r = await site.shoal("user", ["pull", "load/tool:1"]);
  assertEquals(r.code, 2);
  oneLine(
    r,
    /"load\/tool:1" names an image stored by `shoal load`; no registry serves it \(for Docker Hub's "load" namespace write docker\.io\/load\/tool:1\)$/,
  );
});

Deno.test("--format templates: fields as docker spells them, \\t and \\n as docker reads them, anything else refused", () => {
  const fields = ["Repository", "Tag"];
  const t = parseTemplate("--format", "{{.Repository}}:{{ .Tag }}\\t}x\\n", fields);
  assertEquals(t({ Repository: "load/tool", Tag: "1" }), "load/tool:1\t}x\n");
  for (
    const [text, reason] of [["{{.Size}}", "no field .Size"], ["{{json .}}", "only {{.Field}}"]]
  ) {
    const err = assertThrows(() => parseTemplate("--format", text!, fields), UsageError, reason);
    assertEquals(err.hint, "the fields are {{.Repository}} {{.Tag}}");
  }
});
