/** Generated run names, Docker style: `adjective_scientist`. */

const ADJECTIVES = [
  "agile",
  "bold",
  "brave",
  "calm",
  "clever",
  "cosmic",
  "crisp",
  "eager",
  "fancy",
  "gentle",
  "happy",
  "jolly",
  "keen",
  "lucid",
  "merry",
  "nimble",
  "quick",
  "quiet",
  "rapid",
  "serene",
  "sharp",
  "steady",
  "sunny",
  "swift",
  "tidy",
  "vivid",
  "witty",
  "zesty",
];

const NAMES = [
  "babbage",
  "bohr",
  "curie",
  "dijkstra",
  "einstein",
  "euler",
  "fermi",
  "feynman",
  "gauss",
  "hopper",
  "kepler",
  "knuth",
  "lamport",
  "lovelace",
  "maxwell",
  "meitner",
  "newton",
  "noether",
  "pascal",
  "planck",
  "ritchie",
  "shannon",
  "thompson",
  "torvalds",
  "turing",
  "wirth",
];

function pick<T>(list: readonly T[]): T {
  const [n] = crypto.getRandomValues(new Uint32Array(1));
  return list[n! % list.length]!;
}

/** A random name; the caller retries on a clash (mkdir of the bundle dir decides). */
export function generateName(): string {
  return `${pick(ADJECTIVES)}_${pick(NAMES)}`;
}
