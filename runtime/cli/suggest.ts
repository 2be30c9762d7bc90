/** The candidate closest to what was typed, if one is close enough to be what was meant. */
export function closest(typed: string, candidates: readonly string[]): string | undefined {
  // One letter ("-x") is close to every other letter: nothing to suggest.
  const letters = typed.replace(/^-+/, '').length;
  if (letters < 2) return undefined;
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    // A prefix ("--plain" for "--plain-http") is what was meant, whatever the length difference.
    const distance = candidate.startsWith(typed) ? 0 : editDistance(typed, candidate);
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.candidate : undefined;
}

/** Levenshtein distance: the fewest single-character insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
