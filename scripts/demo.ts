/**
 * The README's demo, after scripts/bootstrap: shoal's version and doctor,
 * then a loopback registry with images built here, pulled and listed as a
 * user would, into a repository of its own; then the images run as an
 * unprivileged user, ending with the request that started the project: root
 * inside a Debian container, `apt-get install cowsay`. The registry and the
 * repositories are removed at the end: the demo leaves nothing behind.
 */
import { startRegistry } from "../tests/support/registry.ts";
import { busyboxImage, pushImage } from "../tests/support/oci.ts";
import { debianImage } from "../tests/support/debian.ts";
import { shoalScript } from "../tests/support/shoal.ts";
import { testUser, userArgv } from "../tests/support/users.ts";

// The demo's own repository, so that it neither sees nor leaves images in the user's.
const dataHome = await Deno.makeTempDir({ prefix: "shoal-demo-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dataHome, { recursive: true }));

async function show(args: string[], allowFailure = false): Promise<void> {
  console.log(`\n$ shoal ${args.join(" ")}`);
  const { code } = await new Deno.Command(shoalScript, {
    args,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
    env: { XDG_DATA_HOME: dataHome },
  }).spawn().status;
  if (code !== 0 && !allowFailure) {
    throw new Error(`demo: 'shoal ${args.join(" ")}' failed with exit status ${code}`);
  }
}

await show(["version"]);
await show(["doctor"], true);

await using registry = await startRegistry("plain");
const demo = busyboxImage({
  extraEntries: [{
    type: "file",
    path: "etc/motd",
    content: "Hello from a rootless shoal container!\n",
  }],
  spec: { cmd: ["cat", "/etc/motd"], labels: { "org.opencontainers.image.title": "shoal demo" } },
});
await pushImage(registry, "demo/hello", "latest", demo);
console.log(`\n(a loopback registry runs at ${registry.url}, serving demo/hello:latest)`);

const image = `${registry.host}/demo/hello:latest`;
await show(["pull", "--tls-verify=false", image]);
await show(["pull", "--tls-verify=false", image]);
await show(["images"]);
console.log(`\n(the demo used the repository ${dataHome}/shoal; it is removed now)`);

// ---- Running it: the pulled image as an unprivileged user, then as root inside ----

/**
 * Who runs the containers: the invoking user, or, when the demo runs as root,
 * the unprivileged user `shoal-demo` (created like the tests' user, with a
 * subordinate id range), in a repository of their own removed at the end.
 */
const runner = Deno.uid() === 0 ? await testUser("shoal-demo", true) : undefined;
const runHome = await Deno.makeTempDir({ prefix: "shoal-demo-run-" });
globalThis.addEventListener("unload", () => Deno.removeSync(runHome, { recursive: true }));
if (runner !== undefined) {
  await Deno.chown(runHome, runner.uid, runner.gid);
  // Without the setuid helper, images are mounted with squashfuse, which needs /dev/fuse
  // usable by users: the admin fix `shoal doctor` names above.
  if (((await Deno.stat("/dev/fuse")).mode ?? 0) & 0o006 ^ 0o006) {
    console.log("\n(as the admin: chmod 0666 /dev/fuse, the fix shoal doctor names)");
    await Deno.chmod("/dev/fuse", 0o666);
  }
}

async function showAs(args: string[]): Promise<void> {
  const name = runner?.name ?? Deno.env.get("USER") ?? "you";
  const quoted = args.map((a) =>
    /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`
  );
  console.log(`\n${name}$ shoal ${quoted.join(" ")}`);
  const env = { XDG_DATA_HOME: runHome };
  const argv = runner === undefined
    ? [shoalScript, ...args]
    : userArgv(runner, shoalScript, args, env);
  const { code } = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: runHome,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
    env: runner === undefined ? env : {},
  }).spawn().status;
  if (code !== 0) {
    throw new Error(`demo: 'shoal ${args.join(" ")}' failed with exit status ${code}`);
  }
}

await showAs(["pull", "--tls-verify=false", image]);
await showAs(["run", image]);
await showAs(["run", image, "sh", "-c", 'id; echo "HOME=$HOME"; ls -ln /bin/busybox']);
await showAs([
  "run",
  "--root",
  image,
  "sh",
  "-c",
  "id && mkdir -p /usr/local/bin && cp /bin/busybox /usr/local/bin/tool && chown 65534:65534" +
  " /usr/local/bin/tool && ls -ln /usr/local/bin/tool",
]);
console.log(
  "\n(the user ran the image as themselves, then as root inside it, installing a file owned by" +
    " another id: it lived in the container's writable layer and is gone; the image is unchanged)",
);

// The request that started the project: apt-get inside a container, as root
// inside only. The Debian image is built with debootstrap once per machine.
console.log("\n(building a Debian bookworm image with debootstrap; once per machine, ~30 s)");
let debian;
try {
  debian = await debianImage();
} catch (err) {
  console.log(`(skipped the Debian part: ${(err as Error).message})`);
}
if (debian !== undefined) {
  await pushImage(registry, "library/debian", "bookworm", debian);
  const ref = `${registry.host}/library/debian:bookworm`;
  await showAs(["pull", "-q", "--tls-verify=false", ref]);
  await showAs([
    "run",
    "--root",
    ref,
    "bash",
    "-c",
    "apt-get update -qq && apt-get install -qq -y --no-install-recommends cowsay >/dev/null" +
    " && /usr/games/cowsay 'Hello from rootless shoal'",
  ]);
}
