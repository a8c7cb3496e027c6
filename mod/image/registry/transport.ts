/**
 * HTTP for one registry client: the TLS policy per host (system CAs plus the
 * configured CA file; unverified HTTPS then plain HTTP for insecure hosts),
 * time limits that also cover a stalled body, and redirects followed by hand
 * so credentials never travel to another host (blob storage, CDNs).
 */
import { ConfigError } from "../../errors.ts";
import { insecureHttpsFetch } from "./insecure_https.ts";

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
      res = url.protocol === "https:" && unverified
        ? await insecureHttpsFetch(url, { method, headers, signal: controller.signal })
        : await fetch(url, {
          method,
          headers,
          body,
          redirect: "manual",
          signal: controller.signal,
          client: this.#clientFor(url.host, onBehalfOf),
        });
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
      const caCerts = [host, onBehalfOf].flatMap((h) => {
        const caFile = h === undefined ? undefined : this.options.caFiles[h];
        if (caFile === undefined) return [];
        try {
          return [Deno.readTextFileSync(caFile)];
        } catch (err) {
          throw new ConfigError(
            `cannot read the CA file ${caFile} configured for registry ${h}: ${
              (err as Error).message
            }`,
          );
        }
      });
      // A client of our own also without a CA, so close() frees every connection.
      client = Deno.createHttpClient({ caCerts: [...new Set(caCerts)] });
      this.#clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
