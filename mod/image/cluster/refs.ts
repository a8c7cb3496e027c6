/**
 * A user's references to store images (STORE/refs/UID/<algorithm>-<hex>):
 * the converter records one with each publish; `shoal rmi` drops them
 * through the helper, which alone may write in the store. The garbage
 * collector removes images no reference names.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";

export async function releaseStoreImages(loaded: LoadedConfig, digests: string[]): Promise<void> {
  for (const digest of digests) {
    const r = await new Deno.Command(loaded.paths.helper, {
      args: ["unref", digest],
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
      throw new ShoalError(`the cluster store kept your reference to ${digest}: ${said}`);
    }
  }
}
