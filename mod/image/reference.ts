/**
 * Image references, parsed and normalized exactly as Docker does
 * (github.com/distribution/reference, ParseNormalizedNamed), so a name that
 * works with `docker pull` means the same image here:
 *
 *   [registry[:port]/]path[:tag][@algorithm:hex]
 *   debian               -> docker.io/library/debian:latest
 *   user/img             -> docker.io/user/img:latest
 *   localhost:5000/x     -> localhost:5000/x:latest
 *   load/tool:1          -> load/tool:1 (an image `shoal load` stored, as Sarus names them)
 *
 * Unlike Docker's single "invalid reference format", every refusal names
 * what is wrong, in one line.
 *
 * A name written without its registry ("busybox:1.0", "mylab/tool") is also
 * a short name: the store finds it on whichever registry it was pulled from
 * (query.ts), so the names `shoal images` lists work however they are typed.
 */
import { UsageError } from "../errors.ts";

export interface ImageReference {
  /** "docker.io", "quay.io", "127.0.0.1:5000", "[::1]:5000". */
  registry: string;
  /** Path inside the registry: "library/debian", "user/img". */
  repository: string;
  /** "latest" when neither a tag nor a digest was given; absent for digest-only references. */
  tag?: string;
  /** "sha256:<64 hex>" (or sha384/sha512); when present it, not the tag, selects the image. */
  digest?: string;
}

export const DEFAULT_REGISTRY = "docker.io";
/**
 * The pseudo-registry of loaded images: no registry serves it, so a loaded
 * image can never take the name of a pulled one. Docker Hub's own "load/"
 * namespace stays reachable as docker.io/load/NAME.
 */
export const LOAD_REGISTRY = "load";
const LEGACY_DEFAULT_REGISTRY = "index.docker.io";
const OFFICIAL_PREFIX = "library/";
const DEFAULT_TAG = "latest";
/** Docker's NameTotalLengthMax, counted over registry + "/" + repository. */
export const NAME_MAX_LENGTH = 255;

const HOST_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const REGISTRY_RE = new RegExp(
  `^(?:${HOST_COMPONENT}(?:\\.${HOST_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^\w[\w.-]{0,127}$/;
/** What distribution's regexp lets through; the algorithm table below then decides. */
const DIGEST_SHAPE_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** go-digest's registered algorithms and their hex lengths; hex must be lower case. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
const IMAGE_ID_RE = /^[a-f0-9]{64}$/;

function refuse(input: string, reason: string): never {
  return fail(`invalid image reference ${JSON.stringify(input)}: ${reason}`);
}

function fail(message: string): never {
  throw new UsageError(message);
}

/**
 * Docker's splitDockerDomain: the first component is a registry when it is
 * "localhost", contains "." or ":", or has upper case (which a repository
 * path may not); otherwise the reference is on Docker Hub, where one-word
 * names live under "library/". shoal adds "load". `written` says the name
 * gave its registry rather than leaving it to the default.
 */
function splitRegistry(name: string): { registry: string; rest: string; written: boolean } {
  const slash = name.indexOf("/");
  if (slash < 0) {
    return { registry: DEFAULT_REGISTRY, rest: OFFICIAL_PREFIX + name, written: false };
  }
  const first = name.slice(0, slash);
  let registry = DEFAULT_REGISTRY;
  let rest = name;
  let written = true;
  if (first === LEGACY_DEFAULT_REGISTRY) {
    rest = name.slice(slash + 1);
  } else if (
    first === "localhost" || first === LOAD_REGISTRY || /[.:]/.test(first) ||
    first.toLowerCase() !== first
  ) {
    registry = first;
    rest = name.slice(slash + 1);
  } else {
    written = false;
  }
  if (registry === DEFAULT_REGISTRY && !rest.includes("/")) rest = OFFICIAL_PREFIX + rest;
  return { registry, rest, written };
}

function checkDigest(input: string, digest: string): void {
  if (digest === "") refuse(input, "empty digest after '@'");
  const colon = digest.indexOf(":");
  const algorithm = digest.slice(0, colon);
  const expected = DIGEST_HEX_LENGTH[algorithm];
  if (colon > 0 && expected !== undefined) {
    const hex = digest.slice(colon + 1);
    if (hex.length !== expected || !/^[a-f0-9]+$/.test(hex)) {
      refuse(input, `a ${algorithm} digest is ${expected} lower-case hex digits`);
    }
    return;
  }
  if (!DIGEST_SHAPE_RE.test(digest)) {
    refuse(input, `digest ${JSON.stringify(digest)} is not ALGORITHM:HEX (e.g. sha256:<64 hex>)`);
  }
  refuse(
    input,
    `unsupported digest algorithm ${JSON.stringify(algorithm)} (sha256, sha384, sha512)`,
  );
}

function checkPathComponent(input: string, component: string): void {
  if (component === "") refuse(input, "empty path component (leading, trailing or double '/')");
  if (component.toLowerCase() !== component) refuse(input, "repository name must be lower case");
  if (!PATH_COMPONENT_RE.test(component)) {
    refuse(
      input,
      `invalid path component ${JSON.stringify(component)}: lower-case letters and digits, ` +
        "separated by one '.', one or two '_', or '-'s",
    );
  }
}

/** Why the port of `HOST:PORT` cannot be used (URLs take 1-65535 only); undefined when it can. */
export function portOutOfRange(hostPort: string): string | undefined {
  const port = /:(\d+)$/.exec(hostPort)?.[1];
  if (port === undefined || (Number(port) >= 1 && Number(port) <= 65535)) return undefined;
  return `port ${port} is out of range (1-65535)`;
}

/**
 * Parses and normalizes a reference; throws UsageError naming the problem.
 * A bare 64-hex string is refused as Docker does: it would be an image ID.
 */
export function parseReference(input: string): ImageReference {
  return parseName(input).ref;
}

/** A name as the user typed it, for finding a stored image. */
export interface ParsedName {
  /** What the name means to Docker (`busybox` is docker.io/library/busybox). */
  ref: ImageReference;
  /**
   * The repository path as written ("busybox", "mylab/tool") when the name
   * leaves out its registry: a stored image of that path on any registry fits.
   */
  shortPath?: string;
}

/** parseReference, also saying whether the name is a short one (see ParsedName). */
export function parseName(input: string): ParsedName {
  if (input === "") fail("invalid image reference: empty");
  if (IMAGE_ID_RE.test(input)) {
    refuse(input, "64 hex digits is an image ID, not a repository name");
  }
  // A digest holds no '@', a name and a tag hold none either: the first '@' splits.
  const at = input.indexOf("@");
  const digest = at < 0 ? undefined : input.slice(at + 1);
  const nameAndTag = at < 0 ? input : input.slice(0, at);
  // A tag follows the last ':' that comes after every '/' (earlier ones are a port).
  const colon = nameAndTag.lastIndexOf(":");
  const hasTag = colon > nameAndTag.lastIndexOf("/");
  const name = hasTag ? nameAndTag.slice(0, colon) : nameAndTag;
  const tag = hasTag ? nameAndTag.slice(colon + 1) : undefined;

  if (name === "") refuse(input, "empty repository name");
  // Neither a host nor a path component may hold "..": say so before either is blamed.
  if (name.includes("..")) refuse(input, "'..' is not allowed in an image name");
  const { registry, rest, written } = splitRegistry(name);
  if (registry !== DEFAULT_REGISTRY && !REGISTRY_RE.test(registry)) {
    refuse(input, `invalid registry ${JSON.stringify(registry)}: expected HOST[:PORT]`);
  }
  const badPort = portOutOfRange(registry);
  if (badPort !== undefined) refuse(input, badPort);
  for (const component of rest.split("/")) checkPathComponent(input, component);
  if (registry.length + 1 + rest.length > NAME_MAX_LENGTH) {
    refuse(input, `name longer than ${NAME_MAX_LENGTH} characters`);
  }
  if (tag !== undefined) {
    if (tag === "") refuse(input, "empty tag after ':'");
    if (!TAG_RE.test(tag)) {
      refuse(
        input,
        `invalid tag ${JSON.stringify(tag)}: up to 128 letters, digits, '_', '.', '-', ` +
          "not starting with '.' or '-'",
      );
    }
  }
  if (digest !== undefined) checkDigest(input, digest);

  const ref: ImageReference = { registry, repository: rest };
  if (tag !== undefined || digest === undefined) ref.tag = tag ?? DEFAULT_TAG;
  if (digest !== undefined) ref.digest = digest;
  return written ? { ref } : { ref, shortPath: name };
}

/** A reference to pull: a loaded image's name is refused, no registry has it. */
export function parseRemoteReference(input: string): ImageReference {
  const ref = parseReference(input);
  if (ref.registry === LOAD_REGISTRY) {
    throw new UsageError(
      `${JSON.stringify(input)} names an image stored by \`shoal load\`; no registry serves it`,
      { hint: `for Docker Hub's "load" namespace write docker.io/${input}` },
    );
  }
  return ref;
}

/**
 * The name `shoal load` stores an image under: load/NAME[:TAG], whether
 * NAME is given as "tool:1", "load/tool:1" or with docker.io. A name with
 * another registry or a digest is refused: a loaded image is no registry's.
 */
export function loadedReference(input: string): ImageReference {
  const ref = parseReference(input);
  if (ref.digest !== undefined) {
    fail(`load stores an image under NAME[:TAG], not a digest: ${JSON.stringify(input)}`);
  }
  if (ref.registry === LOAD_REGISTRY) return ref;
  if (ref.registry !== DEFAULT_REGISTRY) {
    throw new UsageError(
      `load stores an image as load/NAME[:TAG]; ${
        JSON.stringify(input)
      } names the registry ${ref.registry}`,
      { hint: "give NAME[:TAG] without a registry" },
    );
  }
  return { registry: LOAD_REGISTRY, repository: hubPath(ref.repository), tag: ref.tag! };
}

/** "docker.io/library/debian", the fully qualified name without tag or digest. */
export function referenceName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The short name Docker shows: "debian", "user/img", "quay.io/org/img". */
export function familiarName(ref: ImageReference): string {
  if (ref.registry !== DEFAULT_REGISTRY) return referenceName(ref);
  // Short, "load/x" would name a loaded image.
  if (ref.repository.startsWith(LOAD_REGISTRY + "/")) return referenceName(ref);
  return hubPath(ref.repository);
}

/** A Docker Hub path without the "library/" of official images: "debian", "user/img". */
function hubPath(repository: string): string {
  const rest = repository.slice(OFFICIAL_PREFIX.length);
  return repository.startsWith(OFFICIAL_PREFIX) && !rest.includes("/") ? rest : repository;
}

/**
 * The reference as text: fully qualified ("docker.io/library/debian:latest")
 * by default, which parses back to the same reference; `familiar` gives
 * Docker's short form ("debian:latest").
 */
export function formatReference(ref: ImageReference, options: { familiar?: boolean } = {}): string {
  const name = options.familiar ? familiarName(ref) : referenceName(ref);
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ""}${
    ref.digest !== undefined ? `@${ref.digest}` : ""
  }`;
}

/** Docker Hub's name is docker.io, but its API is served from registry-1.docker.io. */
export function registryApiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? "registry-1.docker.io" : registry;
}
