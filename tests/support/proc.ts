/** Processes seen through /proc, for tests that check what a run left behind. */

/**
 * The live (not zombie) processes whose `kind` namespace is `ns`, as its
 * /proc/PID/ns link reads (`user:[4026531837]`).
 */
export function pidsInNamespace(kind: "net" | "user", ns: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const state = Deno.readTextFileSync(`/proc/${entry.name}/stat`).replace(/^.*\) /s, "");
      if (Deno.readLinkSync(`/proc/${entry.name}/ns/${kind}`) === ns && !/^[ZX]/.test(state)) {
        pids.push(Number(entry.name));
      }
    } catch { /* gone meanwhile */ }
  }
  return pids;
}
