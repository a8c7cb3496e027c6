/**
 * The documentation held to the code: the configuration reference to the
 * schema, the command-line reference and every example command to the
 * parser, the JSON examples to the config validator, links between pages to
 * the pages and their headings, and the pages the code cites to the pages.
 * A newcomer follows the docs literally; these tests fail where that would
 * fail.
 */
import { program } from "../mod/cli/program.ts";
import { type Command, type OptionInfo, parseArgv, programHelp } from "../mod/cli/parser.ts";
import { siteConfigSchema, userPreferencesSchema } from "../mod/config/schema.ts";
import { expand } from "../mod/config/load.ts";
import { validateSiteConfig } from "../mod/config/validate.ts";
import { ConfigError, renderError, UsageError } from "../mod/errors.ts";
import { dirname, join, normalize } from "../mod/path.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./support/assert.ts";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

function read(path: string): string {
  return Deno.readTextFileSync(join(ROOT, path));
}

function exists(path: string): boolean {
  try {
    Deno.statSync(join(ROOT, path));
    return true;
  } catch {
    return false;
  }
}

/** Files under `dir` (relative to the checkout) whose names pass `keep`. */
function walk(dir: string, keep: (name: string) => boolean): string[] {
  const found: string[] = [];
  for (const e of Deno.readDirSync(join(ROOT, dir))) {
    const path = join(dir, e.name);
    if (e.isDirectory) found.push(...walk(path, keep));
    else if (e.isFile && keep(e.name)) found.push(path);
  }
  return found.sort();
}

/** Every page of documentation: the top-level ones and docs/. */
const PAGES = [
  "README.md",
  "CONTRIBUTING.md",
  "SECURITY.md",
  ...walk("docs", (n) => n.endsWith(".md")),
];

// ---- Markdown, as far as these pages use it ----

interface Block {
  lang: string;
  lines: string[];
}

/** Fenced and indented code blocks, and the prose paragraphs (each joined into one line). */
function split(text: string): { blocks: Block[]; prose: string[] } {
  const blocks: Block[] = [];
  const prose: string[] = [];
  let fence: Block | undefined;
  let indented: Block | undefined;
  let paragraph: string[] = [];
  const endParagraph = () => {
    if (paragraph.length > 0) prose.push(paragraph.join(" "));
    paragraph = [];
  };
  for (const line of text.split("\n")) {
    if (fence) {
      if (line.trimStart().startsWith("```")) fence = undefined;
      else fence.lines.push(line.replace(/^ {0,4}/, ""));
      continue;
    }
    const open = line.match(/^\s*```(\w*)/);
    if (open) {
      endParagraph();
      fence = { lang: open[1]!, lines: [] };
      blocks.push(fence);
      continue;
    }
    if (/^ {4}/.test(line) && (indented || paragraph.length === 0)) {
      if (indented === undefined) {
        indented = { lang: "", lines: [] };
        blocks.push(indented);
      }
      indented.lines.push(line.trimStart());
      continue;
    }
    indented = undefined;
    if (line.trim() === "" || line.startsWith("#") || line.startsWith("|")) {
      endParagraph();
      if (line.startsWith("|")) prose.push(line);
    } else paragraph.push(line.trim());
  }
  endParagraph();
  return { blocks, prose };
}

function codeSpans(line: string): string[] {
  return [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

/** The cells of a table row, `\|` kept inside a cell; undefined for other lines and separators. */
function cells(line: string): string[] | undefined {
  if (!line.startsWith("|")) return undefined;
  const row = line.slice(1, line.trimEnd().endsWith("|") ? line.trimEnd().length - 1 : undefined)
    .split(/(?<!\\)\|/).map((c) => c.trim());
  return row.every((c) => /^:?-+:?$/.test(c)) ? undefined : row;
}

interface Section {
  heading: string;
  body: string[];
}

function sections(text: string): Section[] {
  const found: Section[] = [];
  let inFence = false;
  for (const line of text.split("\n")) {
    if (line.trimStart().startsWith("```")) inFence = !inFence;
    const h = inFence ? null : line.match(/^#{1,6} (.*)$/);
    if (h) found.push({ heading: h[1]!.trim(), body: [] });
    else found.at(-1)?.body.push(line);
  }
  return found;
}

function section(page: string, heading: string): Section {
  const found = sections(read(page)).find((s) => s.heading === heading);
  assert(found, `${page} has no heading "${heading}"`);
  return found;
}

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

function anchors(page: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const s of sections(read(page))) {
    const base = slug(s.heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

// ---- The configuration reference ----

/** The part of a zod/mini schema's definition that says its shape and defaults. */
interface SchemaNode {
  _zod: {
    def: {
      type: string;
      innerType?: SchemaNode;
      defaultValue?: unknown;
      shape?: Record<string, SchemaNode>;
      element?: SchemaNode;
    };
  };
}

/** Every key of a config schema, dotted (`mounts[].source` for fields of list entries), with its default. */
function schemaKeys(schema: SchemaNode, prefix = ""): Map<string, { default?: unknown }> {
  const keys = new Map<string, { default?: unknown }>();
  for (const [name, field] of Object.entries(schema._zod.def.shape!)) {
    const key = prefix + name;
    let node = field;
    let fallback: { default?: unknown } = {};
    for (;;) {
      const def = node._zod.def;
      if (def.type === "default") fallback = { default: def.defaultValue };
      if (!["default", "prefault", "optional"].includes(def.type)) break;
      node = def.innerType!;
    }
    const def = node._zod.def;
    if (def.type === "object") {
      for (const [k, v] of schemaKeys(node, `${key}.`)) keys.set(k, v);
      continue;
    }
    keys.set(key, fallback);
    if (def.type === "array" && def.element!._zod.def.type === "object") {
      for (const [k, v] of schemaKeys(def.element!, `${key}[].`)) keys.set(k, v);
    }
  }
  return keys;
}

/** The rows of a section's table that name a key: key -> default cell. */
function documentedKeys(page: string, heading: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of section(page, heading).body) {
    const row = cells(line);
    const key = row?.[0]?.match(/^`([^`]+)`$/)?.[1];
    if (key === undefined || row![1] === "Default") continue;
    assert(!rows.has(key), `${page}: ${key} is documented twice`);
    rows.set(key, row![1] ?? "");
  }
  return rows;
}

function checkReference(schema: SchemaNode, page: string, heading: string): void {
  const keys = schemaKeys(schema);
  const documented = documentedKeys(page, heading);
  const undocumented = [...keys.keys()].filter((k) => !documented.has(k));
  const unknown = [...documented.keys()].filter((k) => !keys.has(k));
  assertEquals(undocumented, [], `keys of the schema missing from ${page}, "${heading}"`);
  assertEquals(unknown, [], `keys in ${page}, "${heading}" that the schema does not have`);
  for (const [key, known] of keys) {
    const cell = documented.get(key)!;
    if ("default" in known) {
      const want = `\`${JSON.stringify(known.default)}\``;
      assert(
        cell.includes(want),
        `${page}: the default of ${key} is ${want}, the page says ${cell}`,
      );
    } else assert(cell !== "", `${page}: ${key} has no default written`);
  }
}

Deno.test("the configuration reference documents every site config key with its default, and no other", () => {
  checkReference(
    siteConfigSchema as unknown as SchemaNode,
    "docs/admin/configuration.md",
    "Site config keys",
  );
});

Deno.test("the configuration reference documents every user preference, and no other", () => {
  checkReference(
    userPreferencesSchema as unknown as SchemaNode,
    "docs/admin/configuration.md",
    "User preferences",
  );
});

Deno.test("every JSON example of a site config in the docs is a valid site config", () => {
  let examples = 0;
  for (const page of PAGES) {
    for (const block of split(read(page)).blocks.filter((b) => b.lang === "json")) {
      validateSiteConfig(block.lines.join("\n"), `${page} (example)`);
      examples++;
    }
  }
  assert(examples >= 3, `only ${examples} JSON examples found`);
});

Deno.test("the configuration page shows the errors the loader gives for what it refuses", () => {
  const page = read("docs/admin/configuration.md");
  const site = "/opt/shoal/etc/shoal.json";
  const prefs = "/home/alice/.config/shoal/config.json";
  const alice = { home: "/home/alice", user: "alice" };
  const refusal = (refuse: () => unknown) => renderError(assertThrows(refuse, ConfigError), false);
  const siteRefusal = (text: string) => refusal(() => validateSiteConfig(text, site));
  assertStringIncludes(page, siteRefusal('{"squashfs": {"blockSizeKiB": 100}}'));
  assertStringIncludes(
    page,
    siteRefusal('{"mounts": [{"source": "/scratch/$GROUP", "destination": "/scratch"}]}'),
  );
  assertStringIncludes(
    page,
    refusal(() => expand("$SCRATCH/shoal", alice, site, "repositories.local")),
  );
  assertStringIncludes(
    page,
    refusal(() => expand("$SCRATCH/shoal", alice, prefs, "localRepository", () => undefined)),
  );
  // What the page says is accepted.
  validateSiteConfig('{"repositories": {"local": "$HOME/images"}}', site);
  assertEquals(
    expand("/scratch/$USER/shoal", alice, site, "repositories.local"),
    "/scratch/alice/shoal",
  );
  assertEquals(
    expand(
      "$SCRATCH/shoal",
      alice,
      prefs,
      "localRepository",
      (v) => v === "SCRATCH" ? "/s/alice" : undefined,
    ),
    "/s/alice/shoal",
  );
});

// ---- The command-line reference and the example commands ----

/** The global options, as `shoal --help` lists them. */
function globalOptions(): Set<string> {
  const names = new Set<string>();
  const help = programHelp(program);
  for (const line of help.slice(help.indexOf("Options:"), help.indexOf("Commands:")).split("\n")) {
    const m = line.match(/^\s+(?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)/);
    if (m?.[1]) names.add(m[1]);
    if (m?.[2]) names.add(m[2]);
  }
  return names;
}

async function commands(): Promise<Map<string, Command>> {
  const loaded = new Map<string, Command>();
  for (const entry of program.commands) loaded.set(entry.name, await entry.load());
  return loaded;
}

function spellings(options: readonly OptionInfo[]): Set<string> {
  return new Set(options.flatMap((o) => o.short ? [o.short, o.long] : [o.long]));
}

/** The options a reference section's tables name (the first cell's code spans). */
function tableOptions(body: string[]): Set<string> {
  const names = new Set<string>();
  for (const line of body) {
    for (const span of codeSpans(cells(line)?.[0] ?? "")) {
      const name = span.match(/^(--?[a-zA-Z][a-zA-Z0-9-]*)/)?.[1];
      if (name) names.add(name);
    }
  }
  return names;
}

const REFERENCE = "docs/user/commands.md";

Deno.test("the command-line reference documents every option of every command, and no other", async () => {
  const globals = globalOptions();
  assertEquals(
    [...tableOptions(section(REFERENCE, "Global options").body)].sort(),
    [...globals].sort(),
    "global options",
  );
  const all = await commands();
  const documented = sections(read(REFERENCE)).flatMap((s) => {
    const name = s.heading.match(/^`shoal (\S+)`$/)?.[1];
    return name === undefined ? [] : [name];
  });
  assertEquals(documented.sort(), [...all.keys(), "help"].sort(), "commands with a section");
  for (const [name, command] of all) {
    const has = spellings(Object.values(command.options));
    const inPage = tableOptions(section(REFERENCE, `\`shoal ${name}\``).body);
    const missing = [...has].filter((o) => !inPage.has(o));
    const unknown = [...inPage].filter((o) => !has.has(o) && !globals.has(o));
    assertEquals(missing, [], `options of 'shoal ${name}' missing from ${REFERENCE}`);
    assertEquals(unknown, [], `options in ${REFERENCE} that 'shoal ${name}' does not take`);
  }
});

/** A command line as sh splits it, up to the first operator or comment. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (word === undefined && /[|;&#<>)]/.test(c)) break;
    else word = (word ?? "") + c;
  }
  if (word !== undefined) words.push(word);
  return words;
}

interface Example {
  where: string;
  argv: string[];
  /** A code span in prose names a command and options, without the rest of its arguments. */
  mention: boolean;
  /** The error line printed under it, for an example of a mistake. */
  error?: string;
}

/**
 * Every `shoal ...` command line in the docs: in code blocks (only the `$ `
 * lines of a block that shows a session; none in a `text` block), and in code
 * spans. Bracketed parts of a synopsis (`[OPTIONS]`) are left out; a line
 * whose command is a placeholder (`shoal COMMAND`) is no example.
 */
function examples(): Example[] {
  const found: Example[] = [];
  const take = (where: string, line: string, mention: boolean, next?: string) => {
    let text = line.replace(/^\$ /, "");
    while (/\[[^[\]]*\]/.test(text)) text = text.replace(/\[[^[\]]*\]/g, "");
    const words = shellWords(text);
    const at = words.findIndex((w) => w === "shoal" || /(^|\/)(bin|scripts)\/shoal$/.test(w));
    if (at < 0) return;
    const argv = words.slice(at + 1);
    const first = argv.find((w) => !w.startsWith("-"));
    if (first === undefined || /^[A-Z]/.test(first)) return;
    if (first === "help" && argv.some((w) => /^[A-Z]/.test(w))) return;
    const error = next?.startsWith("shoal: error: ") ? next : undefined;
    found.push({ where, argv, mention, error });
  };
  for (const page of PAGES) {
    const { blocks, prose } = split(read(page));
    for (const block of blocks.filter((b) => b.lang !== "text")) {
      const session = block.lines.some((line) => line.startsWith("$ "));
      block.lines.forEach((line, i) => {
        if (!session || line.startsWith("$ ")) take(page, line, false, block.lines[i + 1]);
      });
    }
    for (const paragraph of prose) {
      for (const span of codeSpans(paragraph)) take(page, span, true);
    }
  }
  return found;
}

/** What is wrong with a mention: an option its command does not take. */
async function mentionProblem(argv: string[], globals: Set<string>): Promise<string | undefined> {
  const name = argv.find((w) => !w.startsWith("-"))!;
  const entry = program.commands.find((c) => c.name === name);
  if (entry === undefined) return `no command '${name}'`;
  const known = spellings(Object.values((await entry.load()).options));
  const unknown = argv.filter((w) => w.startsWith("-")).map((w) => w.split("=")[0]!)
    .filter((o) => !known.has(o) && !globals.has(o));
  return unknown.length > 0 ? `'shoal ${name}' takes no ${unknown.join(", ")}` : undefined;
}

Deno.test("every shoal command line in the docs is one the parser accepts, or fails as shown", async () => {
  const all = examples();
  assert(all.length >= 40, `only ${all.length} example command lines found`);
  const globals = globalOptions();
  const wrong: string[] = [];
  for (const { where, argv, mention, error } of all) {
    let got: string | undefined;
    if (mention) got = await mentionProblem(argv, globals);
    else {
      try {
        await parseArgv(program, argv);
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        got = renderError(err, false);
      }
    }
    if (got !== error) wrong.push(`${where}: shoal ${argv.join(" ")}: ${got ?? "accepted"}`);
  }
  assertEquals(wrong, []);
});

// ---- Links and citations ----

Deno.test("every relative link between the pages resolves, #anchors included", () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    const { prose } = split(read(page));
    for (const paragraph of prose) {
      for (const m of paragraph.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const [path, anchor] = target.split("#") as [string, string | undefined];
        const file = path === "" ? page : normalize(join(dirname(page), path));
        if (!exists(file)) broken.push(`${page}: ${target} (no ${file})`);
        else if (anchor !== undefined && !anchors(file).has(anchor)) {
          broken.push(`${page}: ${target} (no heading #${anchor} in ${file})`);
        }
      }
    }
  }
  assertEquals(broken, []);
});

Deno.test("every page the code cites exists, with the heading it names", () => {
  const sources = [
    "main.ts",
    "install.sh",
    ".ci/run",
    ...walk("mod", (n) => n.endsWith(".ts")),
    ...walk("helper", (n) => /\.[ch]$/.test(n)),
    ...walk("scripts", () => true),
    ...walk("bench", () => true),
    ...walk("share", () => true),
  ];
  const problems: string[] = [];
  let citations = 0;
  for (const source of sources) {
    const text = read(source).replace(/\n\s*(\*|#|\/\/)\s*/g, " ");
    for (const m of text.matchAll(/\b((?:docs\/[\w/.-]+|[A-Z]+)\.md)\b(?:, "([^"]+)")?/g)) {
      citations++;
      const [, page, heading] = m as unknown as [string, string, string | undefined];
      if (!exists(page)) problems.push(`${source}: ${page} does not exist`);
      else if (
        heading !== undefined &&
        !sections(read(page)).some((s) => s.heading.replaceAll("`", "") === heading)
      ) {
        problems.push(`${source}: ${page} has no heading "${heading}"`);
      }
    }
  }
  assertEquals(problems, []);
  assert(citations >= 5, `only ${citations} citations found`);
});
