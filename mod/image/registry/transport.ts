/**
 * HTTP for one registry client: the TLS policy per host (system CAs plus the
 * configured CA file, or that file's own certificate pinned when the
 * registry presents it (node_https.ts); unverified HTTPS then plain HTTP for
 * insecure hosts),
 * time limits that also cover a stalled body, and redirects followed by hand
 * so credentials never travel to another host (blob storage, CDNs).
 */
import { ConfigError } from "../../errors.ts";
import { insecureHttpsFetch, NotPinned, type Pin, pinnedHttpsFetch } from "./node_https.ts";
import { certificateProblem, describeNetworkError, RegistryError } from "./responses.ts";

export interface TransportOptions {
  /** PEM CA bundle file per `host[:port]` (config registries.ca). */
  caFiles: Record<string, string>;
  /** Hosts reached without TLS verification, or over plain HTTP (config registries.insecure). */
  insecure: string[];
  /** `--tls-verify=false`: every host is insecure. */
  tlsVerify: boolean;
  /** Longest wait for response headers and between two body chunks. */
  timeoutMs: number;
}

export interface SendInit {
  method?: "GET" | "HEAD" | "POST";
  headers?: HeadersInit;
  body?: string;
}

const maxRedirects = 10;

export class Transport {
  readonly #clients = new Map<string, Deno.HttpClient>();
  readonly #schemes = new Map<string, Promise<"https" | "http">>();
  /** Hosts found presenting a certificate of their CA file as their own: pinned to it. */
  readonly #pinned = new Map<string, Pin>();

  constructor(readonly options: TransportOptions) {}

  isInsecure(host: string): boolean {
    return !this.options.tlsVerify || this.options.insecure.includes(host);
  }

  /**
   * The base URL of a registry. Insecure hosts are probed like Docker does:
   * HTTPS (unverified) first, plain HTTP when no TLS answers.
   */
  baseUrl(host: string): Promise<URL> {
    let scheme = this.#schemes.get(host);
    if (scheme === undefined) {
      scheme = this.isInsecure(host) ? this.#probe(host) : Promise.resolve("https");
      this.#schemes.set(host, scheme);
    }
    return scheme.then((s) => new URL(`${s}://${host}`));
  }

  async #probe(host: string): Promise<"https" | "http"> {
    try {
      const res = await this.#sendOnce(new URL(`https://${host}/v2/`), "GET", new Headers());
      await res.body?.cancel();
      return "https";
    } catch {
      return "http";
    }
  }

  /**
   * One request, following redirects; Authorization is dropped when the origin
   * changes. `onBehalfOf` is the registry a token server or blob store serves:
   * its CA file and insecure setting apply too.
   */
  async send(url: URL, init: SendInit = {}, onBehalfOf?: string): Promise<Response> {
    let method = init.method ?? "GET";
    let body = init.body;
    const headers = new Headers(init.headers);
    const origin = url.origin;
    let current = url;
    for (let hop = 0;; hop++) {
      const res = await this.#sendOnce(current, method, headers, body, onBehalfOf);
      const location = res.headers.get("location");
      if (![301, 302, 303, 307, 308].includes(res.status) || location === null) return res;
      await res.body?.cancel();
      if (hop >= maxRedirects) {
        throw new TypeError(`too many redirects (more than ${maxRedirects}) from ${url.href}`);
      }
      current = new URL(location, current);
      if (current.origin !== origin) headers.delete("authorization");
      if (res.status === 303 || (res.status !== 307 && res.status !== 308 && method === "POST")) {
        method = "GET";
        body = undefined;
      }
    }
  }

  async #sendOnce(
    url: URL,
    method: string,
    headers: Headers,
    body?: string,
    onBehalfOf?: string,
  ): Promise<Response> {
    const controller = new AbortController();
    const { timeoutMs } = this.options;
    const timeout = () => controller.abort(new DOMException("timed out", "TimeoutError"));
    let timer = setTimeout(timeout, timeoutMs);
    let res: Response;
    try {
      const unverified = this.isInsecure(url.host) ||
        (onBehalfOf !== undefined && this.isInsecure(onBehalfOf));
      const init = { method, headers, body, signal: controller.signal };
      const pinned = this.#pinned.get(url.host);
      if (url.protocol === "https:" && unverified) res = await insecureHttpsFetch(url, init);
      else if (url.protocol === "https:" && pinned) res = await pinnedHttpsFetch(url, init, pinned);
      else {
        try {
          res = await fetch(url, {
            ...init,
            redirect: "manual",
            client: this.#clientFor(url.host, onBehalfOf),
          });
        } catch (err) {
          const pin = url.protocol === "https:" && refusedCertificate(err)
            ? this.#pinFor(url.host, onBehalfOf)
            : undefined;
          if (pin === undefined) throw err;
          res = await pinnedHttpsFetch(url, init, pin).catch((pinErr) => {
            throw pinErr instanceof NotPinned ? refusedFor(url.host, pin, err) : pinErr;
          });
          this.#pinned.set(url.host, pin);
        }
      }
    } finally {
      clearTimeout(timer);
    }
    if (res.body === null) return res;
    // The body gets the same limit per chunk, so a stalled transfer fails instead of hanging.
    const reader = res.body.getReader();
    const watched = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        timer = setTimeout(timeout, timeoutMs);
        try {
          const { done, value } = await reader.read();
          if (done) ctrl.close();
          else ctrl.enqueue(value);
        } finally {
          clearTimeout(timer);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
    return new Response(watched, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  }

  #clientFor(host: string, onBehalfOf?: string): Deno.HttpClient {
    const key = onBehalfOf === undefined || onBehalfOf === host ? host : `${host} ${onBehalfOf}`;
    let client = this.#clients.get(key);
    if (client === undefined) {
      const caCerts = this.#caFilesFor(host, onBehalfOf).map((f) => f.pem);
      // A client of our own also without a CA, so close() frees every connection.
      client = Deno.createHttpClient({ caCerts: [...new Set(caCerts)] });
      this.#clients.set(key, client);
    }
    return client;
  }

  /** The CA files configured for `host` and the registry it serves, read. */
  #caFilesFor(host: string, onBehalfOf?: string): { file: string; pem: string }[] {
    return [...new Set([host, onBehalfOf])].flatMap((h) => {
      const file = h === undefined ? undefined : this.options.caFiles[h];
      if (file === undefined) return [];
      try {
        return [{ file, pem: Deno.readTextFileSync(file) }];
      } catch (err) {
        throw new ConfigError(
          `cannot read the CA file ${file} configured for registry ${h}: ${(err as Error).message}`,
        );
      }
    });
  }

  /** The pin for a host whose certificate failed verification: its CA files' certificates. */
  #pinFor(host: string, onBehalfOf?: string): Pin | undefined {
    const files = this.#caFilesFor(host, onBehalfOf);
    if (files.length === 0) return undefined;
    return {
      certificates: files.flatMap((f) => pemCertificates(f.pem)),
      file: files.map((f) => f.file).join(" and "),
    };
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}

/** A registry whose certificate neither its CA file's CA signed nor that file holds. */
function refusedFor(host: string, pin: Pin, err: unknown): RegistryError {
  const why = certificateProblem(describeNetworkError(err)) ?? "its certificate was refused";
  return new RegistryError(
    `cannot trust ${host}: ${why}, and it is not the certificate in ${pin.file} either`,
    undefined,
    false,
    {
      hint: `${pin.file} (registries.ca) must hold the CA that signed the registry's ` +
        "certificate, or that certificate itself",
      cause: err,
    },
  );
}

/** rustls refused the server's certificate (not a connection or protocol failure). */
function refusedCertificate(err: unknown): boolean {
  for (let cur = err, depth = 0; cur instanceof Error && depth < 5; cur = cur.cause, depth++) {
    if (/invalid peer certificate/i.test(cur.message)) return true;
  }
  return false;
}

/** The DER bytes of each certificate in a PEM text. */
function pemCertificates(pem: string): Uint8Array[] {
  const blocks = pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g);
  return [...blocks].flatMap((m) => {
    try {
      return [Uint8Array.from(atob(m[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0))];
    } catch {
      return []; // not base64: matches nothing
    }
  });
}
