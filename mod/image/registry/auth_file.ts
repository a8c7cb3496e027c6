/**
 * shoal's own credential store, written by `shoal login` / `shoal logout` in
 * the format of ~/.docker/config.json (`{"auths": {"host": {"auth": base64}}}`),
 * so the file can also be handed to Docker or Podman (REGISTRY_AUTH_FILE).
 * Mode 0600 in a 0700 directory; replaced atomically, so a crash mid-write
 * leaves the old file.
 */
import { dirname } from "../../path.ts";
import { ShoalError } from "../../errors.ts";
import { normalizeAuthKey } from "./credentials.ts";

type AuthFileData = Record<string, unknown> & { auths?: Record<string, unknown> };

async function readAuthFile(file: string): Promise<AuthFileData> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return {};
    throw new ShoalError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ShoalError(`${file} is not a JSON object`, {
      hint: "fix or remove it, then log in again",
    });
  }
  return data as AuthFileData;
}

async function writeAuthFile(file: string, data: AuthFileData): Promise<void> {
  const dir = dirname(file);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${Deno.pid}-${crypto.randomUUID()}`;
  try {
    await Deno.writeTextFile(tmp, JSON.stringify(data, null, "\t") + "\n", {
      mode: 0o600,
      createNew: true,
    });
    // The umask cannot loosen 0600, but chmod makes the mode independent of it altogether.
    await Deno.chmod(tmp, 0o600);
    await Deno.rename(tmp, file);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new ShoalError(`cannot write ${file}: ${(err as Error).message}`);
  }
}

/** Records `username`/`password` for `registry`, replacing any entry for the same registry. */
export async function storeCredential(
  file: string,
  registry: string,
  username: string,
  password: string,
): Promise<void> {
  const data = await readAuthFile(file);
  const auths = removeEntries({ ...(data.auths ?? {}) }, registry);
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  auths[normalizeAuthKey(registry)] = { auth: btoa(String.fromCharCode(...bytes)) };
  await writeAuthFile(file, { ...data, auths });
}

/** Removes the entries for `registry`; false when there was none. */
export async function removeCredential(file: string, registry: string): Promise<boolean> {
  const data = await readAuthFile(file);
  const before = Object.keys(data.auths ?? {}).length;
  const auths = removeEntries({ ...(data.auths ?? {}) }, registry);
  if (Object.keys(auths).length === before) return false;
  await writeAuthFile(file, { ...data, auths });
  return true;
}

/** Drops every spelling of the registry's own key (`https://host/v1/`, `host`), not per-repository keys. */
function removeEntries(auths: Record<string, unknown>, registry: string): Record<string, unknown> {
  const host = normalizeAuthKey(registry);
  for (const key of Object.keys(auths)) {
    if (normalizeAuthKey(key) === host) delete auths[key];
  }
  return auths;
}
