/**
 * The repository a command writes (or reads and writes). Apart from the store
 * itself so that `shoal images` and `rmi` open one without loading the
 * registry client that `pull` needs; `shoal run` only reads (reader.ts).
 */
import type { LoadedConfig } from "../../config/load.ts";
import { type Logger, silentLogger } from "../../log.ts";
import { repositoryLocation } from "./reader.ts";
import { type ImageStore, openStore } from "./store.ts";

/** The repository a command reads or writes: the user's own, or the site's centralized one. */
export function repositoryFor(
  loaded: LoadedConfig,
  centralized: boolean | undefined,
  logger: Logger = silentLogger,
): ImageStore {
  const { root, options } = repositoryLocation(loaded, centralized);
  return openStore(root, { ...options, logger });
}
