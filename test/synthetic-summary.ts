/** Test helper: what a synthetic draw's set holds (counts per class × context, noise), for the draw's tests. */
import type { SyntheticSet } from '../src/data/synthetic.js';

/** Per-set counts: images per class × context, object-less and wrong-label counts. */
export function summarizeSet(set: SyntheticSet, numClasses: number, numContexts: number): {
  n: number;
  pairs: number[][];
  objectless: number;
  wrongLabel: number;
  homeFraction: (home: number[]) => number;
} {
  const pairs = Array.from({ length: numClasses }, () => new Array<number>(numContexts).fill(0));
  let objectless = 0;
  let wrongLabel = 0;
  for (let i = 0; i < set.n; i++) {
    const y = set.labels[i]!;
    if (y < 0) objectless++;
    else pairs[y]![set.contexts[i]!]!++;
    if (y >= 0 && y !== set.weakLabels[i]) wrongLabel++;
  }
  return {
    n: set.n,
    pairs,
    objectless,
    wrongLabel,
    homeFraction: (home) => {
      let h = 0;
      for (let i = 0; i < set.n; i++) if (set.contexts[i] === home[set.weakLabels[i]!]) h++;
      return set.n ? h / set.n : 0;
    },
  };
}
