/** "Did you mean" for misspelt commands, flags and event names. */

/**
 * The candidate closest to a misspelling (edit distance at most 2, and at most half its length),
 * or null: for "did you mean" hints.
 */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = word.length <= 2 ? 1 : Math.min(2, Math.floor(word.length / 2));
  for (const c of candidates) {
    const d = _distance(word.toLowerCase(), c.toLowerCase());
    if (d <= bestDistance && (best === null || d < bestDistance)) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance, with a transposition counting as one edit (Damerau, restricted). */
function _distance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        (rows[0] as number[])[j] = j;
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(
        (rows[i - 1] as number[])[j]! + 1,
        (rows[i] as number[])[j - 1]! + 1,
        (rows[i - 1] as number[])[j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, (rows[i - 2] as number[])[j - 2]! + 1);
      }
      (rows[i] as number[])[j] = d;
    }
  }
  return (rows[a.length] as number[])[b.length]!;
}
