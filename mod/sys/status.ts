/**
 * This process's ids, groups and capabilities, from /proc/self/status: one
 * file read, where libc would take a call each (getresuid, getgroups, capget,
 * a prctl per capability for the bounding set), and every run's start needs
 * them.
 */

export interface ProcessStatus {
  /** Real, effective, saved and filesystem uid. */
  uids: [number, number, number, number];
  gids: [number, number, number, number];
  /** Supplementary groups. */
  groups: number[];
  /** Capability sets as 64-bit masks. */
  capInheritable: bigint;
  capPermitted: bigint;
  capEffective: bigint;
  capBounding: bigint;
  noNewPrivs: boolean;
  /** Signals blocked on the main thread (bit n-1 for signal n). */
  sigBlocked: bigint;
}

let read: ProcessStatus | undefined;

/**
 * Read once per process: a run asks for its credentials and for its
 * capabilities, and shoal never changes either (libc.ts).
 */
export function processStatus(): ProcessStatus {
  read ??= parse(Deno.readTextFileSync("/proc/self/status"));
  return read;
}

function parse(text: string): ProcessStatus {
  const fields = new Map(
    text.split("\n").map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon), line.slice(colon + 1).trim()] as const;
    }),
  );
  const field = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw new Error(`/proc/self/status has no ${name} line`);
    return value;
  };
  const numbers = (name: string) => {
    const value = field(name);
    return value === "" ? [] : value.split(/\s+/).map(Number);
  };
  const ids = (name: string) => {
    const [real, effective, saved, fs] = numbers(name);
    return [real!, effective!, saved!, fs!] as [number, number, number, number];
  };
  const mask = (name: string) => BigInt(`0x${field(name)}`);
  return {
    uids: ids("Uid"),
    gids: ids("Gid"),
    groups: numbers("Groups"),
    capInheritable: mask("CapInh"),
    capPermitted: mask("CapPrm"),
    capEffective: mask("CapEff"),
    capBounding: mask("CapBnd"),
    noNewPrivs: field("NoNewPrivs") === "1",
    sigBlocked: mask("SigBlk"),
  };
}
