/**
 * A small token server for Docker's bearer-token protocol
 * (distribution's docs/spec/auth/token.md), so registry clients are tested
 * against the same flow Docker Hub, GHCR or Harbor use:
 *
 *   GET <realm>?service=S&scope=repository:NAME:pull,push[&scope=...]
 *   Authorization: Basic ...   (optional: anonymous requests get public pulls only)
 *   -> 200 {"token", "access_token", "expires_in", "issued_at"}
 *
 * Tokens are ES256 JWTs whose header carries the signing certificate in
 * `x5c`; the registry trusts them through its `rootcertbundle`.
 */
import { pemBody, type SigningFiles } from "./tls.ts";

export type TokenAction = "pull" | "push" | "delete" | "*";

export interface TokenUser {
  password: string;
  /**
   * Actions per repository name; the key "*" applies to every repository.
   * Only the token mode enforces this; htpasswd users may do everything.
   */
  access?: Record<string, TokenAction[]>;
}

export interface GrantedAccess {
  type: string;
  name: string;
  actions: string[];
}

/** One request the token server answered, for tests that assert caching or scopes. */
export interface TokenRequest {
  /** The authenticated user, or null for an anonymous request. */
  user: string | null;
  /** The scope parameters as sent. */
  scopes: string[];
  status: number;
  granted: GrantedAccess[];
}

export interface TokenServerOptions {
  service: string;
  issuer: string;
  signing: SigningFiles;
  users: Record<string, TokenUser>;
  /** Repositories anyone may pull without credentials. */
  publicRepositories?: string[];
  /** Lifetime of issued tokens in seconds (the registry refuses them after it). */
  expiresIn?: number;
  /** Serve over HTTPS with this certificate (else plain HTTP). */
  tls?: { certFile: string; keyFile: string };
}

export interface TokenServer {
  /** The realm: the URL the registry's challenge points to. */
  url: string;
  service: string;
  /** Number of requests received so far (token caching means it stays low). */
  readonly requests: number;
  /** Every request, in order. */
  readonly log: readonly TokenRequest[];
  /** Lifetime of tokens issued from now on, in seconds; tests lower it to check renewal. */
  expiresIn: number;
  stop(): Promise<void>;
}

/**
 * distribution 2.8 accepts a token up to 60 s after its `exp` (clock-skew
 * leeway, registry/auth/token/token.go). The server backdates `exp` by that
 * much so a token the client was told lives `expires_in` seconds is refused
 * by the registry right after that, and expiry tests need not wait a minute.
 */
const REGISTRY_LEEWAY_SECONDS = 60;

const encoder = new TextEncoder();

function base64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Splits `type:name:actions`; names may hold ':' only in exotic types, so cut at both ends. */
function parseScope(scope: string): { type: string; name: string; actions: string[] } | null {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first <= 0 || last === first) return null;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(",").filter((a) => a !== ""),
  };
}

function allowedActions(
  user: TokenUser | null,
  repository: string,
  publicRepositories: Set<string>,
): Set<string> {
  const allowed = new Set<string>();
  if (publicRepositories.has(repository)) allowed.add("pull");
  if (user) {
    for (const key of [repository, "*"]) {
      for (const a of user.access?.[key] ?? []) {
        if (a === "*") ["pull", "push", "delete", "*"].forEach((x) => allowed.add(x));
        else allowed.add(a);
      }
    }
  }
  return allowed;
}

function parseBasic(header: string | null): { user: string; password: string } | null {
  const m = header?.match(/^Basic\s+(\S+)$/i);
  if (!m?.[1]) return null;
  const text = new TextDecoder().decode(decodeBase64(m[1]));
  const colon = text.indexOf(":");
  if (colon < 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const keyPem = await Deno.readTextFile(options.signing.keyFile);
  const certPem = await Deno.readTextFile(options.signing.certFile);
  const key = await crypto.subtle.importKey(
    "pkcs8",
    decodeBase64(pemBody(keyPem)),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const header = base64url(JSON.stringify({ typ: "JWT", alg: "ES256", x5c: [pemBody(certPem)] }));
  const publicRepositories = new Set(options.publicRepositories ?? []);
  const log: TokenRequest[] = [];

  async function sign(subject: string, access: GrantedAccess[], now: number, expiresIn: number) {
    const claims = base64url(JSON.stringify({
      iss: options.issuer,
      sub: subject,
      aud: options.service,
      iat: now,
      nbf: now,
      exp: now + expiresIn - REGISTRY_LEEWAY_SECONDS,
      jti: crypto.randomUUID(),
      access,
    }));
    // WebCrypto's ECDSA signature is already the raw r||s form JWS wants.
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      encoder.encode(`${header}.${claims}`),
    );
    return `${header}.${claims}.${base64url(new Uint8Array(sig))}`;
  }

  const server: TokenServer = {
    url: "",
    service: options.service,
    get requests() {
      return log.length;
    },
    log,
    expiresIn: options.expiresIn ?? 300,
    stop: async () => {
      await httpServer.shutdown();
    },
  };

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const scopes = url.searchParams.getAll("scope").flatMap((s) => s.split(" ")).filter(Boolean);
    const entry: TokenRequest = { user: null, scopes, status: 200, granted: [] };
    log.push(entry);
    const fail = (status: number, message: string, headers: Record<string, string> = {}) => {
      entry.status = status;
      return json(status, { details: message }, headers);
    };
    if (url.pathname !== "/token") return fail(404, "not found");
    // 405 lets clients that try the OAuth2 POST flow first fall back to GET, as with Docker Hub.
    if (req.method !== "GET") return fail(405, "only GET is supported");
    if (url.searchParams.get("service") !== options.service) {
      return fail(400, `unknown service ${JSON.stringify(url.searchParams.get("service"))}`);
    }
    let user: TokenUser | null = null;
    const authz = req.headers.get("authorization");
    if (authz !== null) {
      const creds = parseBasic(authz);
      const known = creds ? options.users[creds.user] : undefined;
      if (!creds || !known || known.password !== creds.password) {
        return fail(401, "incorrect username or password", {
          "www-authenticate": `Basic realm="${options.service}"`,
        });
      }
      user = known;
      entry.user = creds.user;
    }
    for (const scope of scopes) {
      const parsed = parseScope(scope);
      if (!parsed) return fail(400, `malformed scope ${JSON.stringify(scope)}`);
      if (parsed.type !== "repository") continue;
      const allowed = allowedActions(user, parsed.name, publicRepositories);
      const actions = parsed.actions.filter((a) => allowed.has(a));
      if (actions.length > 0) entry.granted.push({ ...parsed, actions });
    }
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = server.expiresIn;
    const token = await sign(entry.user ?? "", entry.granted, now, expiresIn);
    return json(200, {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date(now * 1000).toISOString(),
    });
  }

  const tls = options.tls
    ? {
      cert: await Deno.readTextFile(options.tls.certFile),
      key: await Deno.readTextFile(options.tls.keyFile),
    }
    : {};
  const httpServer = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...tls },
    handle,
  );
  const scheme = options.tls ? "https" : "http";
  server.url = `${scheme}://127.0.0.1:${httpServer.addr.port}/token`;
  return server;
}
