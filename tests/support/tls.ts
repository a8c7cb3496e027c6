/**
 * Throw-away TLS material for the loopback test registries, made with the
 * `openssl` CLI (WebCrypto cannot issue X.509 certificates). EC P-256 keys keep
 * generation to a few milliseconds, so every fixture gets its own CA.
 */
import { runCommand } from "./shoal.ts";

export interface TlsFiles {
  /** The test CA certificate (PEM, mode 0644 so the unprivileged test user can trust it). */
  caFile: string;
  /** Server certificate for IP:127.0.0.1 and DNS:localhost, signed by the CA. */
  certFile: string;
  keyFile: string;
}

export interface SigningFiles {
  /** Self-signed certificate; the registry trusts tokens whose x5c chain ends at it. */
  certFile: string;
  /** PKCS#8 private key, importable with WebCrypto. */
  keyFile: string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await runCommand("openssl", args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.trim()}`);
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];

/** Creates a CA and a loopback server certificate it signs, in `dir`. */
export async function makeServerTls(dir: string): Promise<TlsFiles> {
  const files = {
    caFile: `${dir}/ca.crt`,
    certFile: `${dir}/server.crt`,
    keyFile: `${dir}/server.key`,
  };
  const caKey = `${dir}/ca.key`;
  await openssl([
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    caKey,
    "-out",
    files.caFile,
    "-subj",
    "/CN=shoal test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  // OpenSSL 3 signs a new request with -CA in one step; rustls (Deno's fetch)
  // wants a real end-entity certificate: SAN, serverAuth, not a CA.
  await openssl([
    "req",
    "-x509",
    ...EC_KEY,
    "-CA",
    files.caFile,
    "-CAkey",
    caKey,
    "-keyout",
    files.keyFile,
    "-out",
    files.certFile,
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "extendedKeyUsage=serverAuth",
  ]);
  await Deno.remove(caKey);
  await Deno.chmod(files.caFile, 0o644);
  return files;
}

/**
 * The common `openssl req -x509` server certificate: self-signed, and so
 * CA:TRUE by OpenSSL 3's defaults, for 127.0.0.1 and localhost unless told. It is its own
 * CA file (`caFile` = `certFile`), as admins give it in registries.ca.
 */
export async function makeSelfSignedTls(
  dir: string,
  name = "server",
  subjectAltName = "IP:127.0.0.1,DNS:localhost",
): Promise<TlsFiles> {
  const files = {
    caFile: `${dir}/${name}.crt`,
    certFile: `${dir}/${name}.crt`,
    keyFile: `${dir}/${name}.key`,
  };
  await openssl([
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    files.keyFile,
    "-out",
    files.certFile,
    "-subj",
    "/CN=localhost",
    "-addext",
    `subjectAltName=${subjectAltName}`,
  ]);
  await Deno.chmod(files.certFile, 0o644);
  return files;
}

/** Creates the key and certificate a token server signs its JWTs with. */
export async function makeSigningCert(dir: string): Promise<SigningFiles> {
  const files = { certFile: `${dir}/token-signer.crt`, keyFile: `${dir}/token-signer.key` };
  await openssl([
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    files.keyFile,
    "-out",
    files.certFile,
    "-subj",
    "/CN=shoal test token issuer",
  ]);
  return files;
}

/** The DER bytes of the first certificate in a PEM file, base64 (standard alphabet) as in x5c. */
export function pemBody(pem: string): string {
  const m = pem.match(/-----BEGIN [A-Z ]+-----([\s\S]*?)-----END [A-Z ]+-----/);
  if (!m?.[1]) throw new Error("no PEM block found");
  return m[1].replace(/\s+/g, "");
}
