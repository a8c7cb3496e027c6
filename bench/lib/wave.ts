import type { RunSite } from "./run_site.ts";
import { median } from "./stats.ts";

/** Total wall time of a wave of containers started at once, and the median per container. */
export interface Wave {
  wall: number;
  each: number;
}

/** Starts `count` commands at once as the site's user (`start(i)`: command and args); all must succeed. */
export async function wave(
  site: RunSite,
  count: number,
  start: (i: number) => [string, string[]],
): Promise<Wave> {
  const began = performance.now();
  const times = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const [cmd, args] = start(i);
      const t = performance.now();
      const r = await site.run(cmd, args);
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
      return performance.now() - t;
    }),
  );
  return { wall: performance.now() - began, each: median(times) };
}
