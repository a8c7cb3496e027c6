/** Printing data to stdout: aligned tables for people, JSON for programs. */

const encoder = new TextEncoder();

export function printLine(line = ""): void {
  const bytes = encoder.encode(line + "\n");
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch (err) {
    // The reader went away (`shoal images | head`): stop quietly, as a shell tool would.
    if (err instanceof Deno.errors.BrokenPipe) Deno.exit(0);
    throw err;
  }
}

export function printJson(value: unknown): void {
  printLine(JSON.stringify(value, null, 2));
}

/** Left-aligned columns separated by at least three spaces, as docker and sarus print. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

export function printTable(headers: string[], rows: string[][]): void {
  printLine(formatTable(headers, rows));
}
