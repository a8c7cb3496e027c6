/**
 * Which repository a command uses. Apart from the store itself so that
 * `shoal run` and `shoal images` open a repository without loading the
 * registry client that `pull` needs.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { ShoalError } from "../../errors.ts";
import { type Logger, silentLogger } from "../../log.ts";
import { type ImageStore, openStore } from "./store.ts";

/** The repository a command reads or writes: the user's own, or the site's centralized one. */
export function repositoryFor(
  loaded: LoadedConfig,
  centralized: boolean | undefined,
  logger: Logger = silentLogger,
): ImageStore {
  const lockTimeoutSeconds = loaded.config.locks.timeoutSeconds;
  if (!centralized) {
    return openStore(loaded.paths.localRepository, { lockTimeoutSeconds, logger });
  }
  const root = loaded.paths.centralizedRepository;
  if (root === undefined) {
    throw new ShoalError("this site has no centralized repository", {
      hint: `an admin sets repositories.centralized in ${loaded.layout.configFile}`,
    });
  }
  return openStore(root, { centralized: true, lockTimeoutSeconds, logger });
}
