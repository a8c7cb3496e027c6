/**
 * HTTPS through node:https, for what Deno's fetch (rustls) cannot do per
 * request:
 *
 * - registries named insecure: no certificate verification at all (Deno's
 *   fetch can skip it only process-wide, `--unsafely-ignore-certificate-errors`);
 * - registries whose configured CA file holds the very certificate they
 *   present: the common `openssl req -x509` certificate, self-signed with
 *   CA:TRUE, which webpki refuses as a server certificate
 *   (CaUsedAsEndEntity) although Docker's certs.d, skopeo and curl accept
 *   it. Such a registry is pinned: its certificate must equal, byte for
 *   byte, one in the file the admin configured for it, name the registry's
 *   host, and be within its validity dates. That trusts nothing the file did not already vouch for:
 *   whoever can present a CA's own certificate holds its key, and could
 *   sign any certificate with it.
 *
 * The certificate is checked after the handshake and before a byte of the
 * request (credentials included) is written. Neither path uses
 * HTTP(S)_PROXY: such registries are reached directly.
 */
import https from "node:https";
import tls from "node:tls";
import { Readable } from "node:stream";
import { RegistryError } from "./responses.ts";

export interface NodeRequest {
  method: string;
  headers: Headers;
  body?: string;
  signal: AbortSignal;
}

/** The certificates a pinned registry may present, from its configured CA file. */
export interface Pin {
  /** DER of each certificate in the file. */
  certificates: Uint8Array[];
  /** The CA file, for messages. */
  file: string;
}

/** The registry presented a certificate that is not in its CA file. */
export class NotPinned extends Error {}

export function insecureHttpsFetch(url: URL, init: NodeRequest): Promise<Response> {
  return request(url, init, { rejectUnauthorized: false });
}

/** HTTPS to a registry that must present one of `pin`'s certificates. */
export async function pinnedHttpsFetch(url: URL, init: NodeRequest, pin: Pin): Promise<Response> {
  const socket = await connectTls(url, init.signal);
  try {
    const peer = socket.getPeerCertificate(true);
    const der = peer?.raw === undefined ? undefined : new Uint8Array(peer.raw);
    if (der === undefined || !pin.certificates.some((c) => sameBytes(c, der))) {
      throw new NotPinned();
    }
    // As curl and Docker check it: the pinned certificate must also name the registry.
    const wrongName = tls.checkServerIdentity(bareHost(url), peer);
    if (wrongName !== undefined) {
      throw new RegistryError(
        `cannot trust ${url.host}: its certificate (the one in ${pin.file}) is not issued ` +
          `for this host name or address (it is for ${peer.subjectaltname || peer.subject?.CN})`,
        undefined,
        false,
        {
          hint: "reach the registry by a name its certificate lists, or give it a new certificate",
        },
      );
    }
    const now = Date.now();
    if (now < Date.parse(peer.valid_from) || now > Date.parse(peer.valid_to)) {
      throw new RegistryError(
        `the certificate of ${url.host} (the one in ${pin.file}) is valid from ${peer.valid_from} ` +
          `to ${peer.valid_to}, not now`,
        undefined,
        false,
        { hint: "renew the registry's certificate and put the new one in registries.ca" },
      );
    }
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return await request(url, init, { createConnection: () => socket });
}

function connectTls(url: URL, signal: AbortSignal): Promise<tls.TLSSocket> {
  const host = bareHost(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port: port(url),
      // SNI takes names only, not addresses.
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
      // Verified by the pin instead, before anything is sent.
      rejectUnauthorized: false,
    });
    const abort = () => socket.destroy(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", abort);
      resolve(socket);
    });
    socket.once("error", (err) => {
      signal.removeEventListener("abort", abort);
      reject(err);
    });
  });
}

function request(
  url: URL,
  init: NodeRequest,
  how: { rejectUnauthorized: false } | { createConnection: () => tls.TLSSocket },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    init.headers.forEach((v, k) => (headers[k] = v));
    const req = https.request(
      {
        protocol: "https:",
        hostname: bareHost(url),
        port: port(url),
        path: url.pathname + url.search,
        method: init.method,
        headers,
        signal: init.signal,
        ...how,
      },
      (res) => {
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v === undefined) continue;
          for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
        }
        const status = res.statusCode ?? 502;
        const bodyless = init.method === "HEAD" || status === 204 || status === 304;
        if (bodyless) res.resume();
        const body = bodyless ? null : Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
        resolve(new Response(body, { status, statusText: res.statusMessage ?? "", headers: out }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, "");
}

function port(url: URL): number {
  return url.port === "" ? 443 : Number(url.port);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
