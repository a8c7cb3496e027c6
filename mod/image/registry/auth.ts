/**
 * Registry authentication: Docker's bearer-token protocol (anonymous or with
 * credentials, refresh tokens for `identitytoken`) and HTTP basic auth. Tokens
 * are cached per registry and scope until shortly before they expire; the
 * challenge a registry sent once is remembered, so later requests carry a
 * token up front instead of costing a 401 each.
 */
import type { Logger } from "../../log.ts";
import { type Challenge, parseChallenges } from "./challenge.ts";
import type { Credential, CredentialProvider } from "./credentials.ts";
import { errorFromResponse, networkError, RegistryError } from "./responses.ts";
import type { Transport } from "./transport.ts";

/** Docker's default when a token response has no `expires_in`. */
const defaultTokenSeconds = 60;
/** Renew this long before expiry (at most a tenth of the lifetime), so a token does not run out mid-request. */
const renewMarginMs = 10_000;
const maxTokenResponse = 1024 * 1024;

interface CachedToken {
  token: string;
  /** When to stop using it: a little before it expires. */
  renewAt: number;
}

export interface AuthorizerOptions {
  transport: Transport;
  credentials: CredentialProvider;
  logger: Logger;
  /** Clock, replaceable in tests of expiry. */
  now?: () => number;
}

export class Authorizer {
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, Promise<CachedToken>>();
  readonly #now: () => number;

  constructor(readonly options: AuthorizerOptions) {
    this.#now = options.now ?? Date.now;
  }

  /** The Authorization header for a request to `host`, from what its challenge asked for. */
  async header(host: string, scope: string, repository: string): Promise<string | undefined> {
    const challenge = this.#challenges.get(host);
    if (!challenge) return undefined;
    return await this.#headerFor(host, challenge, scope === "" ? [] : [scope], repository);
  }

  /**
   * After a 401: learn the challenge, drop the cached token and get a fresh one.
   * Undefined when there is nothing to try (no usable challenge or no credentials).
   */
  async renew(
    host: string,
    scope: string,
    repository: string,
    res: Response,
  ): Promise<string | undefined> {
    const challenges = parseChallenges(res.headers.get("www-authenticate") ?? "");
    const challenge = challenges.find((c) => c.scheme === "bearer") ??
      challenges.find((c) => c.scheme === "basic");
    if (challenge === undefined) return undefined;
    this.#challenges.set(host, challenge);
    const scopes = scope === "" ? [] : [scope];
    const asked = challenge.params.scope;
    if (asked) { for (const s of asked.split(" ")) if (s && !scopes.includes(s)) scopes.push(s); }
    this.#tokens.delete(tokenKey(host, scopes));
    this.#tokens.delete(tokenKey(host, [scope]));
    return await this.#headerFor(host, challenge, scopes, repository);
  }

  async #headerFor(
    host: string,
    challenge: Challenge,
    scopes: string[],
    repository: string,
  ): Promise<string | undefined> {
    const credential = await this.options.credentials.get(host, repository);
    if (challenge.scheme === "basic") {
      if (credential?.kind !== "basic") return undefined;
      const bytes = new TextEncoder().encode(`${credential.username}:${credential.password}`);
      return `Basic ${btoa(String.fromCharCode(...bytes))}`;
    }
    if (challenge.scheme !== "bearer") return undefined;
    const key = tokenKey(host, scopes);
    let cached = this.#tokens.get(key);
    if (cached !== undefined) {
      const t = await cached.catch(() => undefined);
      if (t === undefined || t.renewAt <= this.#now()) {
        if (this.#tokens.get(key) === cached) this.#tokens.delete(key);
        cached = undefined;
      }
    }
    if (cached === undefined) {
      cached = this.#fetchToken(host, challenge, scopes, credential);
      this.#tokens.set(key, cached);
      cached.catch(() => this.#tokens.get(key) === cached && this.#tokens.delete(key));
    }
    return `Bearer ${(await cached).token}`;
  }

  async #fetchToken(
    host: string,
    challenge: Challenge,
    scopes: string[],
    credential: Credential | undefined,
  ): Promise<CachedToken> {
    const { realm, service } = challenge.params;
    let url: URL;
    try {
      url = new URL(realm ?? "");
      if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError();
    } catch {
      throw new RegistryError(
        `registry ${host} sent an unusable authentication realm ${JSON.stringify(realm ?? "")}`,
        401,
        false,
      );
    }
    const what = `token for ${scopes.join(" ")} from ${url.host}`;
    const headers = new Headers();
    let init: { method: "GET" | "POST"; body?: string };
    if (credential?.kind === "identityToken") {
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: credential.token,
        client_id: "shoal",
        scope: scopes.join(" "),
      });
      if (service !== undefined) form.set("service", service);
      headers.set("content-type", "application/x-www-form-urlencoded");
      init = { method: "POST", body: form.toString() };
    } else {
      if (service !== undefined) url.searchParams.set("service", service);
      for (const s of scopes) url.searchParams.append("scope", s);
      if (credential?.kind === "basic") {
        url.searchParams.set("account", credential.username);
        const bytes = new TextEncoder().encode(`${credential.username}:${credential.password}`);
        headers.set("authorization", `Basic ${btoa(String.fromCharCode(...bytes))}`);
      }
      init = { method: "GET" };
    }
    this.options.logger.debug(`requesting ${what}`);
    let res: Response;
    try {
      res = await this.options.transport.send(url, { ...init, headers }, host);
    } catch (err) {
      throw networkError(err, what, url.host);
    }
    if (!res.ok) {
      const err = await errorFromResponse(res, what, url.host);
      if ((res.status === 401 || res.status === 403) && credential !== undefined) {
        const who = credential.kind === "basic"
          ? `user ${credential.username}`
          : "the stored token";
        throw new RegistryError(
          `registry ${host} rejected the credentials of ${who}`,
          res.status,
          false,
          {
            hint: `log in again with 'shoal login ${host}'`,
            cause: err,
          },
        );
      }
      throw err;
    }
    const text = await res.text();
    if (text.length > maxTokenResponse) {
      throw new RegistryError(`${what}: the token response is too large`, res.status, false);
    }
    let body: {
      token?: unknown;
      access_token?: unknown;
      expires_in?: unknown;
      issued_at?: unknown;
    };
    try {
      body = JSON.parse(text);
    } catch {
      throw new RegistryError(`${what}: the token response is not JSON`, res.status, false);
    }
    const token = typeof body.token === "string" && body.token !== ""
      ? body.token
      : typeof body.access_token === "string"
      ? body.access_token
      : "";
    if (token === "") {
      throw new RegistryError(`${what}: the token response holds no token`, res.status, false);
    }
    const seconds = typeof body.expires_in === "number" && body.expires_in > 0
      ? body.expires_in
      : defaultTokenSeconds;
    const received = this.#now();
    let expiresAt = received + seconds * 1000;
    // A token handed out earlier (by a caching proxy) expires earlier; a future
    // issued_at (clock skew) must not extend the lifetime.
    const issued = typeof body.issued_at === "string" ? Date.parse(body.issued_at) : NaN;
    if (Number.isFinite(issued)) expiresAt = Math.min(expiresAt, issued + seconds * 1000);
    return { token, renewAt: expiresAt - Math.min(renewMarginMs, seconds * 100) };
  }
}

function tokenKey(host: string, scopes: string[]): string {
  return `${host}|${[...scopes].sort().join(" ")}`;
}
