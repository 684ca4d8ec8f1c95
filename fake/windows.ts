/** Most of `times` (ms) in any window of `windowMs`, start included: the busiest second an upstream saw. */
export function busiestWindow(times: readonly number[], windowMs = 1000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to++) {
    while ((sorted[to] ?? 0) - (sorted[from] ?? 0) >= windowMs) from += 1;
    best = Math.max(best, to - from + 1);
  }
  return best;
}
