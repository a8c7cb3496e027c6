/**
 * The converter's start: it must run as the store's owner (the helper makes
 * it so), never as root (it parses what users send) and never as anyone else
 * (nothing they write may be trusted as the store's).
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";
import { convertPublished, type ConvertRequest, type ConvertResult } from "./convert.ts";
import { prepareStore, trustedStore } from "./open.ts";

export async function convertAsOwner(
  loaded: LoadedConfig,
  req: ConvertRequest,
): Promise<ConvertResult> {
  const store = trustedStore(loaded);
  if (store === undefined) {
    throw new ShoalError("this site has no cluster store", {
      hint: "set store.path and store.owner in the site config",
    });
  }
  if (Deno.uid() !== store.owner.uid) {
    throw new ShoalError(
      `the converter runs as the store's owner ${store.owner.name} (uid ${store.owner.uid}), not as uid ${Deno.uid()}`,
      { hint: "publish with 'shoal pull', which starts it through the helper" },
    );
  }
  prepareStore(store);
  Deno.umask(0o022);
  const staleMs = loaded.config.store!.claimStaleSeconds * 1000;
  return await convertPublished(loaded, store.paths, {
    claim: { staleMs, heartbeatMs: staleMs / 12, timeoutMs: 30 * 60_000 },
    ...req,
  });
}
