/**
 * The start-up rules of `shoal run` (docs/design/architecture.md, "Start-up
 * rules"), checked on the module graph a run loads: main.ts and the run
 * command's chunk, following static imports only (a dynamic import is loaded
 * when its code runs, not at start). Each rule costs milliseconds of every
 * rank of every job when broken, and nothing else would notice.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { runSite } from "./support/run.ts";
import { runCommand } from "./support/shoal.ts";
import { installedShoal } from "./support/install.ts";

const ROOT = new URL("../", import.meta.url);
const DENO = Deno.execPath();

interface InfoDependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface InfoModule {
  specifier: string;
  dependencies?: InfoDependency[];
}

async function moduleGraph(entry: string): Promise<Map<string, InfoModule>> {
  const out = await new Deno.Command(DENO, {
    args: ["info", "--json", "--config", new URL("deno.json", ROOT).pathname, entry],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "null",
  }).output();
  assert(out.success, `deno info ${entry} failed`);
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  return new Map(info.modules.map((m) => [m.specifier, m]));
}

/** The modules `entries` load before any of their code runs: static imports, transitively. */
function staticClosure(graph: Map<string, InfoModule>, entries: string[]): string[] {
  const seen = new Set<string>();
  const todo = [...entries];
  while (todo.length > 0) {
    const spec = todo.pop()!;
    if (seen.has(spec)) continue;
    seen.add(spec);
    for (const dep of graph.get(spec)?.dependencies ?? []) {
      if (!dep.isDynamic && dep.code !== undefined) todo.push(dep.code.specifier);
    }
  }
  return [...seen].sort();
}

const mainUrl = new URL("main.ts", ROOT).href;
const runUrl = new URL("mod/cli/run.ts", ROOT).href;
const graph = await moduleGraph("main.ts");
const runPath = staticClosure(graph, [mainUrl, runUrl]);
const local = (spec: string) => spec.startsWith(ROOT.href) ? spec.slice(ROOT.href.length) : spec;

Deno.test("the run command is loaded by a dynamic import, so other commands' code stays unread", () => {
  const program = graph.get(new URL("mod/cli/program.ts", ROOT).href)!;
  const toRun = program.dependencies!.find((d) => d.code?.specifier === runUrl);
  assert(toRun?.isDynamic === true, "program.ts must import mod/cli/run.ts dynamically");
  const otherCommands = runPath.map(local).filter((p) =>
    /^mod\/cli\/(pull|images|load|login|doctor|ps|kill|version)\.ts$/.test(p)
  );
  assertEquals(otherCommands, []);
});

Deno.test("no node: module and no npm package but zod/mini on the run path", () => {
  const foreign = runPath.filter((s) => !s.startsWith("file:"));
  assertEquals(foreign.filter((s) => s.startsWith("node:")), []);
  assertEquals(
    foreign.filter((s) => s.startsWith("npm:") && !/^npm:\/?zod@[^/]+\/mini$/.test(s)),
    [],
  );
});

Deno.test("the run path reads only the store's reading half, not pull, flatten or the registry", () => {
  const writing = runPath.map(local).filter((p) =>
    /^mod\/image\/(pull|flatten|load|login|squashfs|archive\/|tar\/writer)/.test(p) ||
    (/^mod\/image\/registry\//.test(p) && p !== "mod/image/registry/digest.ts") ||
    /^mod\/image\/store\/(store|repository|temp|space)\.ts$/.test(p)
  );
  assertEquals(writing, []);
});

/** Source lines without comments: a rule may be named in a comment that says why. */
function code(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .split("\n")
    .map((line) => line.replace(/(^|[^:"'`])\/\/.*$/, "$1"))
    .join("\n");
}

Deno.test("no localeCompare in the modules a run loads (its first call loads ICU, ~6 ms)", () => {
  const broken = runPath.filter((spec) =>
    spec.startsWith(ROOT.href) &&
    /\.localeCompare\s*\(/.test(code(Deno.readTextFileSync(new URL(spec))))
  ).map(local);
  assertEquals(broken, [], "compare with mod/compare.ts instead");
});

Deno.test("no timer in the modules a run or a step's rank loads (the first setTimeout or clearTimeout loads Deno's timers, ~5 ms)", () => {
  const joinUrl = new URL("mod/runtime/join.ts", ROOT).href;
  const broken = staticClosure(graph, [...runPath, joinUrl]).filter((spec) =>
    spec.startsWith(ROOT.href) &&
    /\b(setTimeout|clearTimeout|setInterval|clearInterval)\s*\(/.test(
      code(Deno.readTextFileSync(new URL(spec))),
    )
  ).map(local);
  assertEquals(
    broken,
    [],
    "wait on a descriptor in poll(2) instead (mod/sys/spawn.ts, statusWithin)",
  );
});

/** The V8 flags of every start (scripts/shoal says why). */
const V8_FLAGS = [
  "--no-lazy",
  "--no-enable-lazy-source-positions",
  "--single-threaded",
  "--min-semi-space-size=16",
];

Deno.test("the launcher and the compiled binary keep the V8 flags and lazy dynamic imports", () => {
  const launcher = Deno.readTextFileSync(new URL("scripts/shoal", ROOT));
  const denoJson = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  for (const flag of V8_FLAGS) {
    assert(launcher.includes(flag), `scripts/shoal lacks the V8 flag ${flag}`);
    assert(denoJson.tasks.compile.includes(flag), `deno task compile lacks the V8 flag ${flag}`);
  }
  assert(
    launcher.includes("--unstable-lazy-dynamic-imports"),
    "scripts/shoal must load command chunks lazily",
  );
  assert(denoJson.tasks.compile.includes("--code-splitting"), "compile must split chunks");
});

/**
 * The clone(2) calls of shoal's own process (the one that exec'd Deno) during
 * a run, from strace's log: thread creations, posix_spawn (CLONE_VM|CLONE_VFORK)
 * or fork (no CLONE_VM), which copies Deno's page tables (~4 ms a child).
 */
function shoalClones(log: string): { forks: string[]; spawns: number } {
  let shoal: string | undefined;
  const group = new Set<string>();
  const forks: string[] = [];
  let spawns = 0;
  for (const line of log.split("\n")) {
    const m = line.match(/^(\d+)\s+(\w+)\((.*)$/);
    if (m === null) continue;
    const [, pid, call, rest] = m as unknown as [string, string, string, string];
    if (call === "execve" && /\/(deno|denort|shoal)"/.test(rest.split(",")[0]!)) {
      shoal = pid;
      group.clear();
      group.add(pid);
      continue;
    }
    if (shoal === undefined || !group.has(pid) || !/^(clone3?|fork|vfork)$/.test(call)) continue;
    const child = rest.match(/= (\d+)$/)?.[1];
    if (/CLONE_THREAD/.test(rest)) {
      if (child !== undefined) group.add(child);
    } else if (/CLONE_VM/.test(rest)) {
      spawns++;
    } else {
      forks.push(line);
    }
  }
  return { forks, spawns };
}

for (const helper of [true, false]) {
  Deno.test(`a run forks no copy of shoal: children come from posix_spawn (${helper ? "helper" : "unprivileged"} path)`, async () => {
    const site = await runSite(helper);
    const image = await site.image("root");
    const log = await Deno.makeTempFile({ prefix: "shoal-strace-" });
    try {
      // strace 6.1 sometimes leaves a traced runc init hung in its execve for good (Go's SIGURG
      // reaches a thread that the exec is ending, and strace keeps the thread stopped): such a
      // try is ended, which lets the exec go on, and made again.
      let r;
      for (let tries = 0; tries < 3; tries++) {
        r = await runCommand("timeout", [
          ...["-s", "KILL", "60", "strace", "-f", "-qq"],
          ...["-e", "trace=execve,clone,clone3,fork,vfork", "-o", log],
          ...[site.bin, "run", image, "true"],
        ], { env: { PATH: Deno.env.get("PATH") ?? "", HOME: "/root" } });
        if (r.code !== 137) break;
      }
      assertEquals(r!.code, 0, r!.stderr);
      const { forks, spawns } = shoalClones(await Deno.readTextFile(log));
      assert(spawns > 0, "strace saw no child of shoal's process: the log was not understood");
      assertEquals(forks, [], "shoal forked itself; spawn children with mod/sys/spawn.ts");
    } finally {
      await Deno.remove(log);
    }
  });
}

/** The files a bundle's entry loads before any of its code runs: its static imports, transitively. */
function bundleClosure(dir: string, entry: string): string[] {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = Deno.readTextFileSync(`${dir}/${file}`);
    for (const m of text.matchAll(/^import\s+(?:[^;]*?\s+from\s+)?"([^"]+)"/gms)) {
      if (m[1]!.startsWith("./")) todo.push(m[1]!.slice(2));
      else seen.add(m[1]!);
    }
  }
  return [...seen].sort();
}

/** `entry` bundled with code splitting as install.sh does it, into a new directory. */
async function bundled(entry: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-bundle-" });
  const out = await new Deno.Command(DENO, {
    args: ["bundle", "--quiet", "--code-splitting", "--outdir", dir, entry],
    cwd: ROOT.pathname,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return dir;
}

Deno.test("the installed bundles, as install.sh builds them, load no node: module at start either", async () => {
  // The bundler may hoist what one lazily loaded module needs (a CommonJS package's require()
  // shim, node:module) into a chunk every start loads: the source graph above cannot see that.
  for (const entry of ["main", "main_run"]) {
    const dir = await bundled(`${entry}.ts`);
    try {
      const loaded = bundleClosure(dir, `${entry}.js`);
      assert(loaded.length > 1, `the bundle's entry imports nothing: ${loaded}`);
      assertEquals(loaded.filter((f) => !f.endsWith(".js")), [], `${entry}.ts's bundle`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

/**
 * Each file Deno loads costs ~0.1 ms, whatever its size. In the whole
 * program's bundle a run loads ~35 files: its modules are spread over the
 * chunks that each set of commands shares. `shoal run`'s own bundle has only
 * its own lazy parts to split off.
 */
const RUN_BUNDLE_FILES = 10;

Deno.test(`shoal run's own bundle loads at most ${RUN_BUNDLE_FILES} files at start`, async () => {
  const dir = await bundled("main_run.ts");
  try {
    const loaded = bundleClosure(dir, "main_run.js");
    assert(
      loaded.length <= RUN_BUNDLE_FILES,
      `main_run.ts's bundle loads ${loaded.length} files at start: ${loaded.join(" ")}; ` +
        "import what only some runs need with import(), as run.ts does mpi/inject.ts",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the installed launcher starts shoal run's own bundle for run, and the whole program otherwise", async () => {
  const { bin, prefix } = await installedShoal();
  try {
    Deno.statSync(`${prefix}/lib/shoal/shoal.js`);
  } catch {
    // Installed with deno compile: one executable, whose flags deno.json's compile task holds.
    return;
  }
  // The launcher, a script or a static program: either holds the flags as text.
  const launcher = new TextDecoder("latin1").decode(Deno.readFileSync(bin));
  for (const flag of V8_FLAGS) assert(launcher.includes(flag), `the launcher lacks ${flag}`);
  const entries = async (args: string[]) => {
    const log = await Deno.makeTempFile({ prefix: "shoal-strace-" });
    try {
      await runCommand("strace", ["-f", "-qq", "-e", "trace=openat", "-o", log, bin, ...args]);
      const opened = [
        ...(await Deno.readTextFile(log)).matchAll(/"([^"]*\/lib\/shoal\/[^"/]*\.js)"/g),
      ]
        .map((m) => m[1]!.slice(`${prefix}/lib/shoal/`.length));
      return ["shoal.js", "shoal-run.js"].filter((e) => opened.includes(e));
    } finally {
      await Deno.remove(log);
    }
  };
  assertEquals(await entries(["run", "--help"]), ["shoal-run.js"]);
  assertEquals(await entries(["--debug", "-q", "run", "--help"]), ["shoal-run.js"]);
  assertEquals(await entries(["help", "run"]), ["shoal.js"]);
  assertEquals(await entries(["--version"]), ["shoal.js"]);
  // The two programs explain `shoal run` alike.
  const runHelp = await runCommand(bin, ["run", "--help"]);
  const help = await runCommand(bin, ["help", "run"]);
  assertEquals([runHelp.code, runHelp.stdout], [0, help.stdout]);
});
