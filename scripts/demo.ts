/**
 * The README's demo, after scripts/bootstrap: shoal's version and doctor,
 * then a loopback registry with a small image built here, pulled and listed
 * as a user would, into a repository of its own. The registry and that
 * repository are removed at the end: the demo leaves nothing behind.
 */
import { startRegistry } from "../tests/support/registry.ts";
import { busyboxImage, pushImage } from "../tests/support/oci.ts";
import { shoalScript } from "../tests/support/shoal.ts";

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
