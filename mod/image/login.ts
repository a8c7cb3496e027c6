/**
 * `shoal login` / `shoal logout`: check credentials against the registry, then
 * keep them in shoal's own credential file (Docker's config.json format, 0600).
 */
import { UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { SiteConfig } from "../config/schema.ts";
import { portOutOfRange } from "./reference.ts";
import { createRegistryClient } from "./registry/client.ts";
import { removeCredential, storeCredential } from "./registry/auth_file.ts";
import {
  createCredentialProvider,
  credentialFiles,
  type Env,
  normalizeAuthKey,
  shoalAuthFile,
} from "./registry/credentials.ts";

export interface LoginRequest {
  registry: string;
  username: string;
  password: string;
  /** false: unverified HTTPS, then plain HTTP (`--tls-verify=false`). */
  tlsVerify?: boolean;
}

export interface LoginResult {
  /** The registry as stored (`docker.io` for Docker Hub). */
  registry: string;
  file: string;
}

/**
 * The registry a user names on the command line, as a credential key: a host
 * with an optional port, or a URL of one (`https://index.docker.io/v1/`).
 */
export function registryArgument(arg: string): string {
  const key = normalizeAuthKey(arg);
  const hostPort = /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?$/i;
  if (!hostPort.test(key)) {
    throw new UsageError(
      `'${arg}' is not a registry: expected HOST[:PORT], e.g. ghcr.io or localhost:5000`,
    );
  }
  const badPort = portOutOfRange(key);
  if (badPort !== undefined) throw new UsageError(`'${arg}' is not a registry: ${badPort}`);
  return key;
}

export async function login(
  config: Pick<SiteConfig, "registries" | "pull">,
  env: Env,
  request: LoginRequest,
  logger: Logger,
): Promise<LoginResult> {
  const registry = registryArgument(request.registry);
  if (request.username === "") throw new UsageError("the username is empty");
  if (request.password === "") throw new UsageError("the password is empty");
  using client = createRegistryClient({
    config,
    logger,
    tlsVerify: request.tlsVerify,
    credentials: createCredentialProvider({ env, logger }),
  });
  await client.verifyLogin(registry, {
    kind: "basic",
    username: request.username,
    password: request.password,
  });
  const file = shoalAuthFile(env);
  await storeCredential(file, registry, request.username, request.password);
  return { registry, file };
}

export interface LogoutResult {
  registry: string;
  /** Whether shoal's own file held credentials for the registry. */
  removed: boolean;
  file: string;
  /** Other credential files (Docker's, Podman's) that still hold some: shoal does not edit those. */
  elsewhere: string[];
}

export async function logout(env: Env, registryArg: string): Promise<LogoutResult> {
  const registry = registryArgument(registryArg);
  const file = shoalAuthFile(env);
  const removed = await removeCredential(file, registry);
  const elsewhere: string[] = [];
  for (const other of credentialFiles(env).slice(1)) {
    if (await holdsRegistry(other, registry)) elsewhere.push(other);
  }
  return { registry, removed, file, elsewhere };
}

async function holdsRegistry(file: string, registry: string): Promise<boolean> {
  let data: unknown;
  try {
    data = JSON.parse(await Deno.readTextFile(file));
  } catch {
    return false;
  }
  const auths = (data as { auths?: Record<string, unknown> })?.auths;
  return auths !== undefined && auths !== null &&
    Object.keys(auths).some((k) => normalizeAuthKey(k) === registry);
}
