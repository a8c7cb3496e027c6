/** "Did you mean ...?" for misspelt names. */

/**
 * The candidate closest to `word`, if it is close enough to be what was meant:
 * one edit for a word of 3 to 7 letters, two from 8 (leading dashes of options
 * not counted). A looser rule turns unrelated words into confident advice
 * (`shell` was "help", `logs` was "load": two edits in four or five letters).
 */
export function closestName(word: string, candidates: readonly string[]): string | undefined {
  const letters = word.replace(/^-+/, "").length;
  const allowed = letters < 3 ? 0 : letters < 8 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = allowed + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** Levenshtein distance, counting an adjacent swap ("rnuc" for "runc") as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const get = (i: number, j: number) => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(get(i - 1, j) + 1, get(i, j - 1) + 1, get(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(get(i, j), get(i - 2, j - 2) + 1);
      }
    }
  }
  return get(a.length, b.length);
}
