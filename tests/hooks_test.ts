/**
 * OCI hooks (mod/runtime/hooks.ts): the files of `<prefix>/etc/hooks.d` in
 * the oci-hooks(5) 1.0.0 format, checked like the rest of the installation,
 * selected by `when` and run by the real runc on both run paths.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { type RunSite, runSite, type Who } from "./support/run.ts";
import { type HookFacts, readHooks, selectHooks } from "../mod/runtime/hooks.ts";
import { rootOwnedTempDir } from "./support/install.ts";

/**
 * Records what runc gives a hook at the stage named by $1: the state on
 * stdin, the hook's uid and user namespace. At createContainer it writes into
 * the container's /tmp (it runs in the container's mount namespace); with
 * "inject" it enters that namespace itself first, as GPU hooks do.
 */
const RECORDER = `#!/bin/sh
out="$OUT/$1"
cat > "$out.state"
id -u > "$out.uid"
readlink /proc/self/ns/user > "$out.userns"
rootfs=$(sed -n 's/.*"bundle":"\\([^"]*\\)".*/\\1/p' "$out.state")/rootfs
if [ "$1" = createContainer ]; then
  echo created > "$rootfs/tmp/created"
fi
if [ "$2" = inject ]; then
  pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p' "$out.state")
  nsenter -t "$pid" -m sh -c "echo injected > $rootfs/tmp/injected" 2>"$out.err"
fi
exit 0
`;

interface Fixture {
  site: RunSite;
  hooksDir: string;
  recorder: string;
}

async function fixture(helper: boolean): Promise<Fixture> {
  const site = await runSite(helper);
  const hooksDir = `${site.dir}/prefix/etc/hooks.d`;
  await Deno.mkdir(hooksDir, { recursive: true, mode: 0o755 });
  const recorder = `${site.dir}/recorder`;
  await Deno.writeTextFile(recorder, RECORDER, { mode: 0o755 });
  await Deno.chmod(recorder, 0o755);
  return { site, hooksDir, recorder };
}

async function writeHook(dir: string, name: string, hook: unknown): Promise<string> {
  const file = `${dir}/${name}`;
  await Deno.writeTextFile(file, typeof hook === "string" ? hook : JSON.stringify(hook));
  await Deno.chmod(file, 0o644);
  return file;
}

/** A dir the hooks of `who`'s run may write in. */
async function outDir(site: RunSite, who: Who): Promise<string> {
  const out = await Deno.makeTempDir({ dir: site.dir, prefix: "out-" });
  const user = await site.user(who);
  await Deno.chmod(out, 0o700);
  if (user !== undefined) await Deno.chown(out, user.uid, user.gid);
  return out;
}

function readOr(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

const STAGES = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"];

for (const helper of [true, false]) {
  const path = helper ? "helper path" : "unprivileged path";
  for (const who of ["user", "root"] as const) {
    Deno.test(`${path}, ${who}: runc runs the hooks a run matches, each stage with the state on stdin`, async () => {
      const { site, hooksDir, recorder } = await fixture(helper);
      const out = await outDir(site, who);
      for (const [i, stage] of STAGES.entries()) {
        await writeHook(hooksDir, `${i}-${stage}.json`, {
          version: "1.0.0",
          hook: { path: recorder, args: ["recorder", stage], env: [`OUT=${out}`] },
          when: { always: true },
          stages: [stage],
        });
      }
      // As a GPU hook: chosen by an annotation, enters the container's mount namespace.
      await writeHook(hooksDir, "7-inject.json", {
        version: "1.0.0",
        hook: { path: recorder, args: ["recorder", "inject", "inject"], env: [`OUT=${out}`] },
        when: { annotations: { "^org\\.example\\.gpu$": "^(yes|all)$" } },
        stages: ["prestart"],
      });
      // startContainer runs in the container: its program is the image's.
      await writeHook(hooksDir, "8-start.json", {
        version: "1.0.0",
        hook: { path: "/bin/sh", args: ["sh", "-c", "cat > /tmp/start-state"] },
        when: { commands: ["^cat$"] },
        stages: ["startContainer"],
      });
      await writeHook(hooksDir, "9-binds.json", {
        version: "1.0.0",
        hook: { path: recorder, args: ["recorder", "binds"], env: [`OUT=${out}`] },
        when: { hasBindMounts: true },
        stages: ["prestart"],
      });
      const image = await site.image(who);
      const name = `hooks-${who}-${helper ? "a" : "b"}`;
      const run = await site.shoal(who, [
        "run",
        "--name",
        name,
        "--annotation",
        "org.example.gpu=yes",
        image,
        "cat",
        "/tmp/created",
        "/tmp/injected",
        "/tmp/start-state",
      ]);
      // The helper path's runc runs as the caller, who may not enter the container's
      // namespaces (runc init is not dumpable); path B's runs as root of the user namespace.
      const enters = !helper || who === "root";
      assertEquals(run.code, enters ? 0 : 1, run.stderr);
      // The start state was written without a newline.
      const lines = run.stdout.split("\n");
      const started = lines.pop()!;
      assertEquals(lines, enters ? ["created", "injected"] : ["created"]);
      for (const stage of STAGES) {
        const state = JSON.parse(readOr(`${out}/${stage}.state`) ?? "null");
        assert(state !== null, `the ${stage} hook did not run`);
        assertEquals(state.id, name);
        assertEquals(state.annotations, { "org.example.gpu": "yes" });
        assertMatch(state.bundle, new RegExp(`/${name}$`));
        assertEquals(
          state.status,
          stage === "poststop" ? "stopped" : stage === "poststart" ? "created" : "creating",
        );
      }
      // startContainer's state, as the container saw it from its own /tmp.
      assertEquals(JSON.parse(started).id, name);
      assert(readOr(`${out}/inject.state`) !== undefined, "the annotation's hook did not run");
      assertEquals(
        readOr(`${out}/binds.state`),
        undefined,
        "a hook for bind mounts ran without any",
      );
      // What rootless runc runs its own hooks as: the caller (helper path), or
      // root of the user namespace it runs in (unprivileged path).
      const user = await site.user(who);
      const hostUid = helper ? String(user?.uid ?? 0) : "0";
      assertEquals(readOr(`${out}/prestart.uid`), hostUid);
      assertEquals(readOr(`${out}/createContainer.uid`), "0");
    });
  }

  Deno.test(`${path}: a hook whose when does not match is not run`, async () => {
    const { site, hooksDir, recorder } = await fixture(helper);
    const out = await outDir(site, "user");
    const hook = (stage: string, when: unknown) => ({
      version: "1.0.0",
      hook: { path: recorder, args: ["recorder", stage], env: [`OUT=${out}`] },
      when,
      stages: ["prestart"],
    });
    await writeHook(hooksDir, "1.json", hook("annotated", { annotations: { "^gpu$": "^yes$" } }));
    await writeHook(hooksDir, "2.json", hook("systemd", { commands: [".*/systemd$"] }));
    await writeHook(hooksDir, "3.json", hook("binds", { hasBindMounts: true }));
    await writeHook(hooksDir, "4.json", hook("both", { always: true, commands: ["^true$"] }));
    const image = await site.image("user");
    const run = await site.shoal("user", ["run", "--annotation", "gpu=no", image, "true"]);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(
      [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.endsWith(".state")),
      [
        "both.state",
      ],
    );
  });

  Deno.test(`${path}: a hook that fails before the command stops the run, in one line`, async () => {
    const { site, hooksDir } = await fixture(helper);
    await writeHook(hooksDir, "10-refuse.json", {
      version: "1.0.0",
      hook: { path: "/bin/sh", args: ["sh", "-c", "echo no GPU on this node >&2; exit 3"] },
      when: { always: true },
      stages: ["createRuntime"],
    });
    const image = await site.image("user");
    const run = await site.shoal("user", ["run", image, "echo", "ran"]);
    assertEquals(run.stdout, "");
    assertEquals(run.code, 125, run.stderr);
    // runc's fatal message ends with the hook's own newline, which reaches stderr as an
    // empty line (supervise.ts holds back only the message's first line).
    const lines = run.stderr.split("\n").filter((l) => l !== "");
    assertEquals(lines, [
      "shoal: error: the container did not start: a site hook (#0 of its stage) failed: " +
      "exit status 3: no GPU on this node (`shoal hooks` with this run's options and IMAGE " +
      "lists the hooks it gets; ask your admin)",
    ]);
  });

  Deno.test(`${path}: a broken hook file fails the run in one line naming file and field`, async () => {
    const { site, hooksDir, recorder } = await fixture(helper);
    const file = await writeHook(hooksDir, "50-bad.json", {
      version: "1.0.0",
      hook: { path: recorder },
      when: { commands: ["(unclosed"] },
      stages: ["prestart"],
    });
    const image = await site.image("user");
    const name = `broken-hook-${helper ? "a" : "b"}`;
    const run = await site.shoal("user", ["run", "--name", name, image, "true"]);
    assertEquals(run.code, 1);
    assertMatch(
      run.stderr,
      new RegExp(
        `^shoal: error: hook "${file}": when\\.commands\\.0: expected a regular expression`,
      ),
    );
    assertEquals(run.stderr.trim().split("\n").length, 1, run.stderr);
    // Nothing is left of the run: its bundle dir is gone.
    const user = await site.user("user");
    const bundle = await Deno.stat(`/tmp/shoal-${user!.uid}/${name}`).then(() => true, () => false);
    assertEquals(bundle, false);
  });
}

Deno.test("a hook file or program others can change fails the run (the installation's checks)", async () => {
  const { site, hooksDir, recorder } = await fixture(true);
  const image = await site.image("user");
  const file = await writeHook(hooksDir, "10-ok.json", {
    version: "1.0.0",
    hook: { path: recorder },
    when: { always: true },
    stages: ["poststop"],
  });
  assertEquals((await site.shoal("user", ["run", image, "true"])).code, 0);
  await Deno.chmod(recorder, 0o775);
  let run = await site.shoal("user", ["run", image, "true"]);
  assertEquals(run.code, 1);
  assertMatch(run.stderr, new RegExp(`"${recorder}" must not be writable by group or others`));
  await Deno.chmod(recorder, 0o755);
  const user = await site.user("user");
  await Deno.chown(file, user!.uid, user!.gid);
  run = await site.shoal("user", ["run", image, "true"]);
  assertEquals(run.code, 1);
  assertMatch(run.stderr, new RegExp(`"${file}" must be owned by root`));
});

Deno.test("shoal hooks lists the hooks, and which a run would get", async () => {
  const { site, hooksDir, recorder } = await fixture(true);
  await writeHook(hooksDir, "20-gpu.json", {
    version: "1.0.0",
    hook: { path: recorder },
    when: { annotations: { "^gpu$": "." } },
    stages: ["prestart", "poststop"],
  });
  await writeHook(hooksDir, "10-all.json", {
    version: "1.0.0",
    hook: { path: recorder },
    when: { always: true },
    stages: ["createRuntime"],
  });
  const image = await site.image("user");
  const list = await site.shoal("user", ["hooks"]);
  assertEquals(list.code, 0, list.stderr);
  const lines = list.stdout.trim().split("\n");
  assertMatch(lines[0]!, /^FILE\s+STAGES\s+WHEN\s+PROGRAM$/);
  assertMatch(lines[1]!, /^10-all\.json\s+createRuntime\s+always=true\s+\S+recorder$/);
  assertMatch(
    lines[2]!,
    /^20-gpu\.json\s+prestart,poststop\s+annotation \^gpu\$=\.\s+\S+recorder$/,
  );
  const which = await site.shoal("user", ["hooks", "--format", "json", image, "true"]);
  assertEquals(which.code, 0, which.stderr);
  assertEquals(
    JSON.parse(which.stdout).map((
      h: { file: string; runs: boolean; why?: string },
    ) => [h.file, h.runs, h.why]),
    [["10-all.json", true, undefined], ["20-gpu.json", false, "no --annotation matches ^gpu$=."]],
  );
  const withGpu = await site.shoal("user", ["hooks", "--annotation", "gpu=all", image]);
  assertMatch(withGpu.stdout, /20-gpu\.json.*\byes$/m);
  await writeHook(hooksDir, "30-bad.json", '{"version": "0.1.0"}');
  const broken = await site.shoal("user", ["hooks"]);
  assertEquals(broken.code, 1);
  assertMatch(broken.stdout, /20-gpu\.json/);
  assertMatch(broken.stderr, /30-bad\.json": version: expected "1\.0\.0"/);
});

// ---- Reading and choosing, without runc ----

async function hooksDirWith(files: Record<string, unknown>): Promise<string> {
  const dir = await rootOwnedTempDir();
  for (const [name, content] of Object.entries(files)) await writeHook(dir, name, content);
  return dir;
}

const SH = { path: "/bin/sh" };
const facts = (over: Partial<HookFacts> = {}): HookFacts => ({
  annotations: {},
  command: "true",
  hasBindMounts: false,
  ...over,
});

Deno.test("NVIDIA's container toolkit hook file parses unmodified and runs at prestart for every command", async () => {
  // oci-nvidia-hook.json as the toolkit ships it; its program is the one thing this host lacks.
  const nvidia = {
    version: "1.0.0",
    hook: {
      path: "/usr/bin/nvidia-container-toolkit",
      args: ["nvidia-container-toolkit", "prestart"],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    },
    when: { always: true, commands: [".*"] },
    stages: ["prestart"],
  };
  const dir = await hooksDirWith({ "oci-nvidia-hook.json": nvidia });
  try {
    const missing = readHooks(dir, true);
    assertEquals(missing.errors.map((e) => e.message), [
      `hook "${dir}/oci-nvidia-hook.json": hook.path: /usr/bin/nvidia-container-toolkit does not exist`,
    ]);
    await writeHook(dir, "oci-nvidia-hook.json", { ...nvidia, hook: { ...nvidia.hook, ...SH } });
    const { hooks, errors } = readHooks(dir, true);
    assertEquals(errors, []);
    assertEquals(selectHooks(hooks, facts({ command: "/usr/bin/python3" })), {
      prestart: [{ ...nvidia.hook, ...SH }],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hook files are read in the order of their lower-cased names; other names are not hooks", async () => {
  const hook = (arg: string) => ({
    version: "1.0.0",
    hook: { ...SH, args: ["sh", arg] },
    when: { always: true },
    stages: ["prestart"],
  });
  const dir = await hooksDirWith({
    "B.json": hook("B"),
    "a.json": hook("a"),
    "10-c.json": hook("10-c"),
    "README": "not a hook",
    "a.json.bak": "{",
  });
  try {
    const { hooks, errors } = readHooks(dir, true);
    assertEquals(errors, []);
    assertEquals(selectHooks(hooks, facts()).prestart?.map((h) => h.args?.[1]), ["10-c", "a", "B"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a hook file is checked strictly: each mistake is named by file and field", async () => {
  const good = { version: "1.0.0", hook: SH, when: { always: true }, stages: ["prestart"] };
  const cases: [unknown, string][] = [
    ["{", "not JSON: "],
    [{ ...good, version: "0.1.0" }, 'version: expected "1.0.0"'],
    [{ ...good, stages: ["prestart", "afterwards"] }, "stages.1: expected one of prestart, "],
    [{ ...good, stages: [] }, "stages: expected a stage"],
    [
      { ...good, when: {} },
      "when: expected at least one of always, annotations, commands, hasBindMounts",
    ],
    [
      { ...good, when: { alway: true } },
      'when: expected only the keys always, annotations, commands, hasBindMounts, not "alway"',
    ],
    [
      { ...good, stage: ["prestart"] },
      'expected only the keys version, hook, when, stages, not "stage"',
    ],
    [{ ...good, hook: { path: "sh" } }, "hook.path: expected an absolute path"],
    [{ ...good, hook: { ...SH, timeout: 0 } }, "hook.timeout: expected an integer of at least 1"],
    [{ ...good, hook: { ...SH, env: ["NOVALUE"] } }, "hook.env.0: expected a NAME=VALUE string"],
    [
      { ...good, when: { annotations: { "a": "[" } } },
      "when.annotations.a: expected a regular expression",
    ],
    [
      { ...good, when: { annotations: { "(": "x" } } },
      "when.annotations (the key (): expected a regular expression",
    ],
    [{ ...good, when: { always: "yes" } }, "when.always: expected true or false"],
    [
      { ...good, hook: { path: "/nonexistent/hook" } },
      "hook.path: /nonexistent/hook does not exist",
    ],
  ];
  const dir = await hooksDirWith(Object.fromEntries(cases.map(([c], i) => [`${i}.json`, c])));
  try {
    const { hooks, errors } = readHooks(dir, true);
    assertEquals(hooks, []);
    assertEquals(errors.length, cases.length);
    for (const [i, [, message]] of cases.entries()) {
      const error = errors.find((e) => e.message.startsWith(`hook "${dir}/${i}.json": `))!;
      assert(error !== undefined, `no error for case ${i}`);
      assert(error.message.includes(`": ${message}`), `case ${i}: ${error.message}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("when: every condition set must hold, patterns match anywhere unless anchored", async () => {
  const dir = await hooksDirWith({
    "1.json": {
      version: "1.0.0",
      hook: SH,
      when: { annotations: { "gpu": "all" } },
      stages: ["prestart"],
    },
    "2.json": {
      version: "1.0.0",
      hook: SH,
      when: { commands: ["^/opt/.*"], hasBindMounts: true },
      stages: ["poststop"],
    },
    "3.json": { version: "1.0.0", hook: SH, when: { always: false }, stages: ["poststart"] },
  });
  try {
    const { hooks } = readHooks(dir, true);
    const stages = (f: HookFacts) => Object.keys(selectHooks(hooks, f)).sort();
    assertEquals(stages(facts()), []);
    assertEquals(stages(facts({ annotations: { "com.example.gpu": "gpus=all" } })), ["prestart"]);
    assertEquals(stages(facts({ command: "/opt/app" })), []);
    assertEquals(stages(facts({ command: "/opt/app", hasBindMounts: true })), ["poststop"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
