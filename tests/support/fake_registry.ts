/**
 * An in-process registry (Deno.serve on 127.0.0.1) for the registry client's
 * unit tests: it serves manifests and blobs from memory, records every request,
 * and lets a test take over any request (`intercept`) to play an unreliable,
 * rate-limited, redirecting or authenticating registry. The real registry
 * (registry.ts) covers what a real server does; this covers failures a real
 * one will not produce on demand.
 */
import type { Blob, Image, ImageIndex } from "./oci.ts";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Headers;
}

export interface FakeRegistry {
  /** "127.0.0.1:PORT". */
  host: string;
  url: string;
  requests: RecordedRequest[];
  /** Takes over a request when it returns a Response. */
  intercept:
    | ((req: Request, url: URL) => Response | undefined | Promise<Response | undefined>)
    | undefined;
  /** Serves an image or index as `repository:tag` (and by digest), with its blobs. */
  add(repository: string, tag: string, image: Image | ImageIndex): void;
  addBlob(blob: Pick<Blob, "digest" | "data">): void;
  /** The default handling, for proxies and intercepts that pass a request on. */
  handle(req: Request): Promise<Response>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface FakeRegistryOptions {
  /** Serve HTTPS with this certificate. */
  tls?: { certFile: string; keyFile: string };
}

function rangeResponse(data: Uint8Array, range: string | null): Response {
  const m = range === null ? null : /^bytes=(\d+)-$/.exec(range);
  if (m === null) {
    return new Response(data as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(data.length) },
    });
  }
  const start = Number(m[1]);
  if (start >= data.length) return new Response(null, { status: 416 });
  return new Response(data.slice(start) as Uint8Array<ArrayBuffer>, {
    status: 206,
    headers: { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` },
  });
}

export function startFakeRegistry(options: FakeRegistryOptions = {}): FakeRegistry {
  const manifests = new Map<string, Blob>();
  const blobs = new Map<string, Uint8Array>();
  const addBlob = (b: Pick<Blob, "digest" | "data">) => blobs.set(b.digest, b.data);

  const handle = (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (url.pathname === "/v2/") return Promise.resolve(Response.json({}));
    const notFound = (code: string) =>
      Response.json({ errors: [{ code, message: `${code.toLowerCase()} here` }] }, {
        status: 404,
      });
    if (m === null) return Promise.resolve(notFound("NAME_UNKNOWN"));
    const [, repository, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === "manifests") {
      const manifest = manifests.get(`${repository}:${ref}`) ??
        manifests.get(`${repository}@${ref}`);
      if (manifest === undefined) return Promise.resolve(notFound("MANIFEST_UNKNOWN"));
      return Promise.resolve(
        new Response(req.method === "HEAD" ? null : manifest.data as Uint8Array<ArrayBuffer>, {
          headers: { "content-type": manifest.mediaType, "docker-content-digest": manifest.digest },
        }),
      );
    }
    const data = blobs.get(ref);
    if (data === undefined) return Promise.resolve(notFound("BLOB_UNKNOWN"));
    return Promise.resolve(rangeResponse(data, req.headers.get("range")));
  };

  const fake: FakeRegistry = {
    host: "",
    url: "",
    requests: [],
    intercept: undefined,
    add(repository, tag, image) {
      const images = "images" in image ? image.images : [image];
      for (const img of images) {
        for (const b of [img.config, ...img.layers]) addBlob(b);
        manifests.set(`${repository}@${img.manifest.digest}`, img.manifest);
      }
      manifests.set(`${repository}:${tag}`, image.manifest);
      manifests.set(`${repository}@${image.manifest.digest}`, image.manifest);
    },
    addBlob,
    handle,
    stop: () => server.shutdown(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };

  const serveOptions = {
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    ...(options.tls
      ? {
        cert: Deno.readTextFileSync(options.tls.certFile),
        key: Deno.readTextFileSync(options.tls.keyFile),
      }
      : {}),
  };
  const server = Deno.serve(serveOptions, async (req) => {
    const url = new URL(req.url);
    fake.requests.push({ method: req.method, path: url.pathname, headers: req.headers });
    return (await fake.intercept?.(req, url)) ?? await handle(req);
  });
  fake.host = `127.0.0.1:${server.addr.port}`;
  fake.url = `${options.tls ? "https" : "http"}://${fake.host}`;
  return fake;
}
