/**
 * A real OCI registry on loopback for the tests: Debian's `docker-registry`
 * (distribution 2.8) on 127.0.0.1 and a random free port, with its config,
 * TLS material and storage in a fresh temp dir.
 *
 * Modes:
 * - "plain": HTTP, no auth.
 * - "tls":   HTTPS with a CA made for this registry (`caFile`), no auth.
 * - "basic": htpasswd (bcrypt) basic auth, over HTTPS by default
 *            (distribution 2.8 also serves basic auth over plain HTTP: `tls: false`).
 * - "token": bearer tokens from an in-process token server (token_server.ts),
 *            HTTPS for both by default, `tls: false` for plain HTTP.
 *
 * Always stop it, also when the test fails:
 *
 *   await using reg = await startRegistry("token");   // stopped at scope end
 *   // or: const reg = await startRegistry("tls"); try { ... } finally { await reg.stop(); }
 *
 * As a last resort, registries still running when the test process exits are
 * killed by an unload handler, and each registry dies with its parent thread
 * (PR_SET_PDEATHSIG via setpriv) if the test process is killed outright.
 */
import { makeSelfSignedTls, makeServerTls, makeSigningCert, type TlsFiles } from "./tls.ts";
import { startTokenServer, type TokenServer, type TokenUser } from "./token_server.ts";

export type RegistryMode = "plain" | "tls" | "basic" | "token";
export type { TokenAction, TokenRequest, TokenServer, TokenUser } from "./token_server.ts";

export const REGISTRY_BIN = "/usr/bin/docker-registry";
/** The `service` the registry announces in its challenge and expects as token audience. */
export const TOKEN_SERVICE = "shoal-test-registry";
export const TOKEN_ISSUER = "shoal-test-token-issuer";

export interface RegistryOptions {
  /** basic and token modes: HTTPS (default true) or plain HTTP. */
  tls?: boolean;
  /**
   * HTTPS with a self-signed CA:TRUE certificate (`openssl req -x509`) that is
   * its own `caFile`. The test tooling cannot trust such a certificate (Deno's
   * fetch refuses it), so push to a plain registry and serve its `storage`.
   */
  selfSigned?: boolean | { subjectAltName: string };
  /** Serve this storage directory (another registry's `dir`/storage) instead of a new one. */
  storage?: string;
  /**
   * Extra users (basic and token modes), besides the default one in
   * `username`/`password` who may pull and push everything. In token mode
   * `access` limits what each may do.
   */
  users?: Record<string, TokenUser>;
  /** token mode: repositories anonymous clients may pull. */
  publicRepositories?: string[];
  /** token mode: token lifetime in seconds (default 300); also settable later. */
  tokenExpiresIn?: number;
}

export interface TestRegistry {
  mode: RegistryMode;
  /** "127.0.0.1:PORT", as it appears in image references. */
  host: string;
  /** "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT". */
  url: string;
  /** The CA to trust for HTTPS registries (and the HTTPS token server); world-readable. */
  caFile?: string;
  /** The default user, allowed everything (basic and token modes). */
  username?: string;
  password?: string;
  tokenServer?: TokenServer;
  /** The registry's process id (tests check it is gone after stop()). */
  pid: number;
  /** The temp dir holding config, certificates, storage and log (removed by stop()). */
  dir: string;
  /** Kills the registry and the token server and removes the temp dir; idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Registries not yet stopped, for the exit-time safety net. */
const live = new Map<number, string>();
let unloadHandlerInstalled = false;

function installUnloadHandler(): void {
  if (unloadHandlerInstalled) return;
  unloadHandlerInstalled = true;
  globalThis.addEventListener("unload", () => {
    for (const [pid, dir] of live) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    }
  });
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomSecret(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

async function htpasswdLine(user: string, password: string): Promise<string> {
  // -B: distribution's htpasswd backend accepts bcrypt only.
  const out = await new Deno.Command("htpasswd", { args: ["-nbB", user, password] }).output();
  if (!out.success) throw new Error(`htpasswd failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** Polls /v2/ until the registry answers, the process dies, or time runs out. */
async function waitReady(
  url: string,
  child: Deno.ChildProcess,
  /** "any": a handshake that gets as far as a certificate counts as an answer. */
  caFile: string | "any" | undefined,
  logFile: string,
): Promise<"ready" | "port-taken"> {
  let exited = false;
  child.status.then(() => exited = true);
  const client = Deno.createHttpClient(
    caFile && caFile !== "any" ? { caCerts: [await Deno.readTextFile(caFile)] } : {},
  );
  try {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (exited) {
        const log = await Deno.readTextFile(logFile).catch(() => "");
        if (log.includes("address already in use")) return "port-taken";
        throw new Error(`docker-registry exited at start: ${log.trim()}`);
      }
      try {
        const res = await fetch(`${url}/v2/`, { client });
        await res.body?.cancel();
        if (res.status === 200 || res.status === 401) return "ready";
      } catch (err) {
        // Not listening yet, unless it presented a certificate.
        if (caFile === "any" && /certificate/.test(String((err as Error).cause))) return "ready";
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    client.close();
  }
  throw new Error(`docker-registry did not answer ${url}/v2/ within 10 s`);
}

function launch(configFile: string, logFile: string): Deno.ChildProcess {
  // setpriv sets the parent-death signal, sh sends output to the log and execs,
  // so the pid we hold is the registry's own.
  return new Deno.Command("setpriv", {
    args: [
      "--pdeathsig",
      "KILL",
      "--",
      "sh",
      "-c",
      'exec "$0" serve "$1" >"$2" 2>&1',
      REGISTRY_BIN,
      configFile,
      logFile,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Starts a registry in `mode`; see the module comment for what each mode gives. */
export async function startRegistry(
  mode: RegistryMode,
  options: RegistryOptions = {},
): Promise<TestRegistry> {
  installUnloadHandler();
  const dir = await Deno.makeTempDir({ prefix: `shoal-registry-${mode}-` });
  // Unprivileged test users must reach the CA file inside.
  await Deno.chmod(dir, 0o755);
  let tokenServer: TokenServer | undefined;
  try {
    const useTls = mode === "tls" ||
      ((mode === "basic" || mode === "token") && options.tls !== false);
    const tls: TlsFiles | undefined = !useTls
      ? undefined
      : options.selfSigned
      ? await makeSelfSignedTls(
        dir,
        "server",
        options.selfSigned === true ? undefined : options.selfSigned.subjectAltName,
      )
      : await makeServerTls(dir);
    const username = mode === "basic" || mode === "token" ? "shoal-tester" : undefined;
    const password = username ? randomSecret() : undefined;
    const users: Record<string, TokenUser> = { ...options.users };
    if (username && password) users[username] = { password, access: { "*": ["*"] } };

    let auth: Record<string, unknown> | undefined;
    if (mode === "basic") {
      const lines = await Promise.all(
        Object.entries(users).map(([u, { password }]) => htpasswdLine(u, password)),
      );
      await Deno.writeTextFile(`${dir}/htpasswd`, lines.join("\n") + "\n");
      auth = { htpasswd: { realm: "shoal-test", path: `${dir}/htpasswd` } };
    } else if (mode === "token") {
      const signing = await makeSigningCert(dir);
      tokenServer = await startTokenServer({
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        signing,
        users,
        publicRepositories: options.publicRepositories,
        expiresIn: options.tokenExpiresIn,
        tls,
      });
      auth = {
        token: {
          realm: tokenServer.url,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootcertbundle: signing.certFile,
        },
      };
    }

    const logFile = `${dir}/registry.log`;
    const configFile = `${dir}/config.yml`;
    for (let attempt = 0; attempt < 5; attempt++) {
      const host = `127.0.0.1:${freePort()}`;
      const url = `${useTls ? "https" : "http"}://${host}`;
      // JSON is YAML, and spares us quoting rules.
      const config = {
        version: "0.1",
        log: { level: "error", accesslog: { disabled: true } },
        storage: {
          filesystem: { rootdirectory: options.storage ?? `${dir}/storage` },
          delete: { enabled: true },
        },
        http: {
          addr: host,
          secret: randomSecret(),
          ...(tls ? { tls: { certificate: tls.certFile, key: tls.keyFile } } : {}),
        },
        ...(auth ? { auth } : {}),
      };
      await Deno.writeTextFile(configFile, JSON.stringify(config, null, 2));
      const child = launch(configFile, logFile);
      let outcome: "ready" | "port-taken";
      try {
        outcome = await waitReady(url, child, options.selfSigned ? "any" : tls?.caFile, logFile);
      } catch (err) {
        await kill(child);
        throw err;
      }
      if (outcome === "port-taken") {
        await child.status;
        continue;
      }
      live.set(child.pid, dir);
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        await kill(child);
        await tokenServer?.stop();
        await Deno.remove(dir, { recursive: true });
        live.delete(child.pid);
      };
      return {
        mode,
        host,
        url,
        caFile: tls?.caFile,
        username,
        password,
        tokenServer,
        pid: child.pid,
        dir,
        stop,
        [Symbol.asyncDispose]: stop,
      };
    }
    throw new Error("docker-registry found no free port in 5 attempts");
  } catch (err) {
    await tokenServer?.stop();
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
}

/** SIGKILL: the registry's state lives in a temp dir that is deleted anyway. */
async function kill(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch { /* already exited */ }
  await child.status;
}
