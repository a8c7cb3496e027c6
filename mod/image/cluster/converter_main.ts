/**
 * What runs as the store's owner: the converter (the helper starts it) and
 * the garbage collector. Never as root (the converter parses what users
 * send) and never as anyone else (nothing they write may be trusted as the
 * store's).
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";
import { convertPublished, type ConvertRequest, type ConvertResult } from "./convert.ts";
import { type ClusterStore, prepareStore, trustedStore } from "./open.ts";
import { collectGarbage, type GcReport } from "./gc.ts";
import { widenPipe } from "../../sys/pipe.ts";

/** The store, when this process is its owner. */
function ownStore(loaded: LoadedConfig): ClusterStore {
  const store = trustedStore(loaded);
  if (store === undefined) {
    throw new ShoalError("this site has no cluster store", {
      hint: "set store.path and store.owner in the site config",
    });
  }
  if (Deno.uid() !== store.owner.uid) {
    throw new ShoalError(
      `the converter runs as the store's owner ${store.owner.name} (uid ${store.owner.uid}), not as uid ${Deno.uid()}`,
      { hint: `publish with 'shoal pull'; run 'store gc' as ${store.owner.name}` },
    );
  }
  prepareStore(store);
  Deno.umask(0o022);
  return store;
}

/**
 * The publisher's stream, on standard input: a pipe from the user's shoal
 * (through the helper), widened to 1 MiB so that a layer comes in reads of up
 * to that (stream.ts); a smaller pipe only makes it slower.
 */
export function publishedInput(): ReadableStream<Uint8Array> {
  widenPipe(0, 1 << 20);
  return Deno.stdin.readable;
}

export async function convertAsOwner(
  loaded: LoadedConfig,
  req: ConvertRequest,
): Promise<ConvertResult> {
  const store = ownStore(loaded);
  const { claimStaleSeconds, quotaGiB } = loaded.config.store!;
  const staleMs = claimStaleSeconds * 1000;
  return await convertPublished(loaded, store.paths, {
    claim: { staleMs, heartbeatMs: staleMs / 12, timeoutMs: 30 * 60_000 },
    ...(quotaGiB > 0 && { quotaBytes: quotaGiB * 2 ** 30 }),
    ...req,
  });
}

/** `shoal store gc`, as the store's owner. */
export async function collectAsOwner(loaded: LoadedConfig): Promise<GcReport> {
  const store = ownStore(loaded);
  const { claimStaleSeconds, retentionDays } = loaded.config.store!;
  return await collectGarbage(store.paths, {
    retentionMs: retentionDays * 86_400_000,
    staleMs: claimStaleSeconds * 1000,
  });
}
