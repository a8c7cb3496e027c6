/**
 * A user's references to store images (STORE/refs/UID/<algorithm>-<hex>),
 * which the garbage collector counts: the helper records one when a pull
 * finds the image in the store (the converter when it publishes one) and
 * drops it at `shoal rmi`; only the helper may write in the store.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";

async function helper(loaded: LoadedConfig, action: "ref" | "unref", digest: string) {
  const r = await new Deno.Command(loaded.paths.helper, {
    args: [action, digest],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output().catch((err: Error) => {
    throw new ShoalError(`cannot run ${loaded.paths.helper}: ${err.message}`, {
      hint: "the cluster store needs the setuid helper: ask your admin",
    });
  });
  if (!r.success) {
    const said = new TextDecoder().decode(r.stderr).trim().split("\n").at(-1) ?? "";
    throw new ShoalError(
      `the cluster store ${
        action === "ref" ? "did not record" : "kept"
      } your reference to ${digest}: ${said.replace(/^shoal-mount: error: /, "")}`,
    );
  }
}

/** Records the caller's reference to an image the store has. */
export async function referStoreImage(loaded: LoadedConfig, digest: string): Promise<void> {
  await helper(loaded, "ref", digest);
}

export async function releaseStoreImages(loaded: LoadedConfig, digests: string[]): Promise<void> {
  for (const digest of digests) await helper(loaded, "unref", digest);
}
