/**
 * This process's ids, groups and capabilities, from /proc/self/status: one
 * file read, where the libc calls would bind a symbol each (~0.1-0.2 ms apiece
 * in a fresh process, and every run's start needs them).
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
}

export function processStatus(): ProcessStatus {
  const text = Deno.readTextFileSync("/proc/self/status");
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(text);
    if (m === null) throw new Error(`/proc/self/status has no ${name} line`);
    return m[1]!.trim();
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
  };
}
