/**
 * HTTPS without certificate verification, for registries named insecure.
 * Deno's fetch cannot skip verification per request (only the process-wide
 * `--unsafely-ignore-certificate-errors` flag can), but node:https honours
 * `rejectUnauthorized: false`, so these requests go through it. It does not
 * use HTTP(S)_PROXY: such registries are reached directly.
 */
import https from "node:https";
import { Readable } from "node:stream";

export function insecureHttpsFetch(
  url: URL,
  init: { method: string; headers: Headers; signal: AbortSignal },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    init.headers.forEach((v, k) => (headers[k] = v));
    const req = https.request(
      {
        protocol: "https:",
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port === "" ? 443 : Number(url.port),
        path: url.pathname + url.search,
        method: init.method,
        headers,
        rejectUnauthorized: false,
        signal: init.signal,
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
    req.end();
  });
}
