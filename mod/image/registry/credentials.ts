/**
 * Finding credentials for a registry the way Docker and Podman do, so a user
 * who has logged in with either needs nothing more. Files, first match wins:
 *   1. shoal's own store (`shoal login`): $XDG_CONFIG_HOME/shoal/auth.json
 *   2. Podman: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json;
 *      then ~/.config/containers/auth.json
 *   3. Docker: $DOCKER_CONFIG/config.json, else ~/.docker/config.json
 * In each file: `credHelpers[host]`, then an `auths` entry (base64 `auth`,
 * `username`/`password`, `identitytoken`), then `credsStore`. Helpers are the
 * `docker-credential-<name>` programs Docker runs, with `get` and the server
 * URL on stdin.
 */
import { join } from "../../path.ts";
import type { Logger } from "../../log.ts";
import { silentLogger } from "../../log.ts";

export type Credential =
  | { kind: "basic"; username: string; password: string }
  /** An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token endpoint. */
  | { kind: "identityToken"; token: string };

/** What the registry client asks: credentials for a registry host, optionally per repository. */
export interface CredentialProvider {
  get(registry: string, repository?: string): Promise<Credential | undefined>;
}

export type Env = Record<string, string | undefined>;

/** The Docker Hub aliases users and tools write in credential files. */
const dockerHubAliases = new Set([
  "docker.io",
  "index.docker.io",
  "registry-1.docker.io",
  "registry.hub.docker.com",
]);

/**
 * A credential file key as `host[/path]`: URL keys (`https://index.docker.io/v1/`)
 * keep only their host, Docker Hub aliases become `docker.io`.
 */
export function normalizeAuthKey(key: string): string {
  let k = key.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(k);
  if (scheme) k = k.slice(scheme[0].length).split("/")[0]!;
  k = k.replace(/\/+$/, "");
  const slash = k.indexOf("/");
  const host = (slash < 0 ? k : k.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? "" : k.slice(slash);
  return (dockerHubAliases.has(host) ? "docker.io" : host) + path;
}

/** The server URL Docker hands credential helpers (and writes as the Docker Hub key). */
export function helperServerUrl(registry: string): string {
  return normalizeAuthKey(registry) === "docker.io" ? "https://index.docker.io/v1/" : registry;
}

/** Credential files in lookup order, the first being shoal's own store. */
export function credentialFiles(env: Env): string[] {
  const home = env.HOME ?? "/";
  const files = [shoalAuthFile(env)];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  else if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, "containers/auth.json"));
  files.push(join(env.XDG_CONFIG_HOME || join(home, ".config"), "containers/auth.json"));
  files.push(join(env.DOCKER_CONFIG || join(home, ".docker"), "config.json"));
  return files;
}

/** Where `shoal login` stores credentials. */
export function shoalAuthFile(env: Env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME ?? "/", ".config"), "shoal/auth.json");
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

function decodeEntry(entry: AuthEntry): Credential | undefined {
  if (typeof entry.identitytoken === "string" && entry.identitytoken !== "") {
    return { kind: "identityToken", token: entry.identitytoken };
  }
  if (typeof entry.auth === "string" && entry.auth !== "") {
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(entry.auth), (c) => c.charCodeAt(0)));
    } catch {
      return undefined;
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    return { kind: "basic", username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === "string" && typeof entry.password === "string") {
    return { kind: "basic", username: entry.username, password: entry.password };
  }
  return undefined;
}

/** The most specific key matching `registry[/repository]` (Podman allows per-namespace keys). */
function matchKey(
  keys: string[],
  registry: string,
  repository: string | undefined,
): string | undefined {
  const host = normalizeAuthKey(registry);
  const full = repository === undefined ? host : `${host}/${repository}`;
  let best: string | undefined;
  let bestLen = -1;
  for (const key of keys) {
    const k = normalizeAuthKey(key);
    const matches = k === host || k === full ||
      (k.startsWith(`${host}/`) && full.startsWith(`${k}/`));
    if (matches && k.length > bestLen) {
      best = key;
      bestLen = k.length;
    }
  }
  return best;
}

function findOnPath(program: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? "").split(":")) {
    if (dir === "") continue;
    const candidate = join(dir, program);
    try {
      const st = Deno.statSync(candidate);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function definedOnly(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

export interface CredentialStoreOptions {
  env?: Env;
  logger?: Logger;
  /** Longest a credential helper may run. */
  helperTimeoutMs?: number;
}

export function createCredentialProvider(options: CredentialStoreOptions = {}): CredentialProvider {
  const env = options.env ?? Deno.env.toObject();
  const logger = options.logger ?? silentLogger;
  const helperTimeoutMs = options.helperTimeoutMs ?? 30_000;
  const cache = new Map<string, Promise<Credential | undefined>>();

  const readFile = async (file: string): Promise<AuthFile | undefined> => {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        logger.warn(`cannot read credentials file ${file}: ${(err as Error).message}`);
      }
      return undefined;
    }
    try {
      const parsed = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return parsed;
    } catch {
      // reported below
    }
    logger.warn(`ignoring credentials file ${file}: not a JSON object`);
    return undefined;
  };

  const runHelper = async (name: string, registry: string): Promise<Credential | undefined> => {
    const program = `docker-credential-${name}`;
    const path = findOnPath(program, env.PATH);
    if (path === undefined) {
      logger.warn(`credential helper ${program} (configured for ${registry}) is not on PATH`);
      return undefined;
    }
    let out: Deno.CommandOutput;
    try {
      const child = new Deno.Command(path, {
        args: ["get"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(helperTimeoutMs),
        env: definedOnly(env),
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(helperServerUrl(registry)));
      await writer.close();
      out = await child.output();
    } catch (err) {
      logger.warn(`credential helper ${program} failed for ${registry}: ${(err as Error).message}`);
      return undefined;
    }
    const stdout = new TextDecoder().decode(out.stdout).trim();
    if (!out.success) {
      // Docker's helpers say this when they hold nothing for the server: not an error.
      if (!/credentials not found/i.test(stdout)) {
        const why = stdout || new TextDecoder().decode(out.stderr).trim() ||
          `exit status ${out.code}`;
        logger.warn(`credential helper ${program} failed for ${registry}: ${why}`);
      }
      return undefined;
    }
    try {
      const { Username, Secret } = JSON.parse(stdout) as { Username?: string; Secret?: string };
      if (typeof Secret !== "string" || Secret === "") return undefined;
      if (Username === "<token>") return { kind: "identityToken", token: Secret };
      return { kind: "basic", username: Username ?? "", password: Secret };
    } catch {
      logger.warn(`credential helper ${program} printed something that is not JSON`);
      return undefined;
    }
  };

  const lookup = async (registry: string, repository?: string): Promise<Credential | undefined> => {
    const host = normalizeAuthKey(registry);
    for (const file of credentialFiles(env)) {
      const data = await readFile(file);
      if (data === undefined) continue;
      const helpers = data.credHelpers ?? {};
      const helperKey = matchKey(Object.keys(helpers), host, undefined);
      if (helperKey !== undefined && typeof helpers[helperKey] === "string") {
        const cred = await runHelper(helpers[helperKey], registry);
        if (cred) return cred;
        continue;
      }
      const auths = data.auths ?? {};
      const key = matchKey(Object.keys(auths), host, repository);
      const cred = key === undefined ? undefined : decodeEntry(auths[key] ?? {});
      if (cred) return cred;
      if (typeof data.credsStore === "string" && data.credsStore !== "") {
        const stored = await runHelper(data.credsStore, registry);
        if (stored) return stored;
      }
    }
    return undefined;
  };

  return {
    get(registry, repository) {
      const key = `${registry}/${repository ?? ""}`;
      let found = cache.get(key);
      if (found === undefined) {
        found = lookup(registry, repository);
        cache.set(key, found);
      }
      return found;
    },
  };
}
