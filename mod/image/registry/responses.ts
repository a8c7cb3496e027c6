/**
 * Turning a failed registry response into one user-facing error: the
 * registry's own message (Distribution error JSON `errors[].message`), whether
 * a retry may help, and for 429 the registry's reset hint.
 */
import { ShoalError } from "../../errors.ts";

export class RegistryError extends ShoalError {
  /** First Distribution error code (MANIFEST_UNKNOWN, BLOB_UNKNOWN, DENIED, ...). */
  readonly code: string | undefined;

  constructor(
    message: string,
    readonly status: number | undefined,
    /** Worth retrying: 5xx, 408, connection reset, timeout. */
    readonly transient: boolean,
    options: { hint?: string; cause?: unknown; code?: string } = {},
  ) {
    super(message, options);
    this.code = options.code;
  }
}

const maxErrorBody = 64 * 1024;

/** Reads at most 64 KiB of an error body; a registry may answer with a whole HTML page. */
async function readBounded(res: Response): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < maxErrorBody) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all.subarray(0, maxErrorBody));
}

interface DistributionError {
  code?: string;
  message?: string;
}

function parseErrorBody(text: string): { code?: string; message: string } {
  try {
    const body = JSON.parse(text) as { errors?: DistributionError[]; details?: string };
    const errors = Array.isArray(body.errors) ? body.errors : [];
    const messages = errors
      .map((e) => [e.code, e.message].filter((x) => typeof x === "string" && x !== "").join(": "))
      .filter((m) => m !== "");
    if (messages.length > 0) return { code: errors[0]?.code, message: messages.join("; ") };
    if (typeof body.details === "string") return { message: body.details };
  } catch {
    // not JSON: fall through to the text itself
  }
  const line = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return { message: line.length > 200 ? `${line.slice(0, 200)}...` : line };
}

/** Docker Hub and others say when a rate limit resets in one of these headers. */
export function rateLimitReset(headers: Headers): string | undefined {
  const retryAfter = headers.get("retry-after");
  if (retryAfter !== null) {
    const secs = /^\d+$/.test(retryAfter.trim())
      ? Number(retryAfter)
      : Math.max(0, Math.round((Date.parse(retryAfter) - Date.now()) / 1000));
    if (Number.isFinite(secs)) return `retry after ${secs} s`;
  }
  const reset = headers.get("ratelimit-reset") ?? headers.get("x-ratelimit-reset");
  if (reset !== null) return `the limit resets in ${reset.split(";")[0]!.trim()} s`;
  const limit = headers.get("ratelimit-limit");
  if (limit !== null) {
    const [count, window] = limit.split(";w=");
    if (window !== undefined) return `the limit is ${count} requests per ${window} s`;
  }
  return undefined;
}

/**
 * Builds the error for a non-success response and consumes its body.
 * `what` names the object ("manifest docker.io/library/debian:12").
 */
export async function errorFromResponse(
  res: Response,
  what: string,
  registry: string,
): Promise<RegistryError> {
  const { code, message } = parseErrorBody(await readBounded(res));
  const said = message === "" ? "" : `: ${message}`;
  const s = res.status;
  if (s === 401 || s === 403) {
    return new RegistryError(
      `${what}: ${s === 401 ? "authentication required" : "access denied"} by ${registry}${said}`,
      s,
      false,
      { code, hint: `check the name, or log in with 'shoal login ${registry}'` },
    );
  }
  if (s === 404) {
    return new RegistryError(`${what}: not found on ${registry}${said}`, s, false, { code });
  }
  if (s === 429) {
    const reset = rateLimitReset(res.headers);
    return new RegistryError(`${what}: ${registry} rate limit reached${said}`, s, false, {
      code,
      hint: `${reset ? `${reset}; ` : ""}'shoal login ${registry}' raises the limit, ` +
        `or configure a mirror in registries.mirrors`,
    });
  }
  const transient = s >= 500 || s === 408;
  return new RegistryError(
    `${what}: ${registry} answered ${s}${res.statusText ? ` ${res.statusText}` : ""}${said}`,
    s,
    transient,
    { code },
  );
}

/** A failure below HTTP (refused, reset, TLS, timeout); these are worth a retry. */
export function networkError(err: unknown, what: string, registry: string): RegistryError {
  if (err instanceof RegistryError) return err;
  const detail = describeNetworkError(err);
  const certificate = certificateProblem(detail);
  // A certificate problem does not go away by retrying; it needs the CA or an explicit opt-out.
  const tls = certificate !== undefined || /certificate|tls handshake/i.test(detail);
  // rustls' words for an HTTPS request answered in plain HTTP.
  const plain = /InvalidContentType|corrupt message|wrong version number/i.test(detail);
  // A self-signed certificate is its own CA: the file to give is the certificate itself.
  const trust = /CaUsedAsEndEntity/.test(detail)
    ? `give the registry's own certificate in registries.ca in the site config ({"${registry}": "/path/cert.pem"})`
    : `trust the registry's CA with registries.ca in the site config ({"${registry}": "/path/ca.pem"})`;
  const hint = tls
    ? `${trust}, or pass --tls-verify=false`
    : plain
    ? `the registry answers in plain HTTP, not HTTPS: name it in registries.insecure in the site config, or pass --tls-verify=false`
    : undefined;
  const message = certificate !== undefined
    ? `cannot trust ${registry}: ${certificate}`
    : `cannot reach ${registry}: ${plain ? "no HTTPS there" : detail}`;
  return new RegistryError(`${what}: ${message}`, undefined, !tls && !plain, { cause: err, hint });
}

const CERTIFICATE_PROBLEMS: [RegExp, string][] = [
  [/UnknownIssuer/, "its certificate is not signed by a CA this machine trusts"],
  [/CaUsedAsEndEntity/, "it presents a CA certificate as its own (a self-signed one)"],
  [/NotValidYet/, "its certificate is not valid yet (check this machine's clock)"],
  [/Expired/, "its certificate has expired"],
  [/NotValidForName/, "its certificate is not issued for this host name or address"],
  [/BadSignature/, "its certificate's signature does not verify"],
  [/Revoked/, "its certificate was revoked"],
  [/InvalidPurpose/, "its certificate is not one for a TLS server"],
  [/BadEncoding/, "its certificate is malformed"],
];

/**
 * rustls' reason for refusing a server's certificate, as a plain sentence;
 * undefined when `detail` is no such refusal. Its own words
 * (`Other(OtherError(CaUsedAsEndEntity))`) mean nothing to users.
 */
export function certificateProblem(detail: string): string | undefined {
  const m = /invalid peer certificate: (.*)$/i.exec(detail);
  if (m === null) return undefined;
  const reason = m[1]!;
  const known = CERTIFICATE_PROBLEMS.find(([re]) => re.test(reason));
  if (known !== undefined) return known[1];
  // Unknown to this table: its innermost name, in words.
  const name = reason.match(/[A-Z][A-Za-z]+/g)?.findLast((n) => !/^Other/.test(n));
  const words = name?.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return `its certificate was refused${words ? ` (${words})` : ""}`;
}

export function describeNetworkError(err: unknown): string {
  if (err instanceof DOMException && err.name === "TimeoutError") return "timed out";
  let cur: unknown = err;
  let last = String(err);
  for (let depth = 0; cur instanceof Error && depth < 5; depth++) {
    last = cur.message;
    cur = cur.cause;
  }
  // Deno's fetch wraps the useful part: "error sending request ...: client error (Connect): <why>"
  const m = /client error \([^)]*\): (.*)$/.exec(last);
  return (m ? m[1]! : last).trim();
}
