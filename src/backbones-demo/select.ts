/**
 * Selections the demo experiment needs, on in-memory features: Algorithm 1 (greedy
 * non-overlapping nearest neighbours, docs/method.md §2: `src/retrieval/algorithm1.ts`) per
 * class, and the Random baseline (uniform per class, without replacement).
 */
import { mulberry32 as rng, streamSeed } from '../core/rng.js';
import { algorithm1 } from '../retrieval/algorithm1.js';

/** Squared L2 distances [nq, nc] between rows of `q` and rows of `c` (dimension `dim`). */
export function sqDist(q: Float32Array, qRows: number[], c: Float32Array, cRows: number[], dim: number): Float64Array {
  const out = new Float64Array(qRows.length * cRows.length);
  for (let a = 0; a < qRows.length; a++) {
    const qo = qRows[a]! * dim;
    for (let b = 0; b < cRows.length; b++) {
      const co = cRows[b]! * dim;
      let s = 0;
      for (let d = 0; d < dim; d++) {
        const t = q[qo + d]! - c[co + d]!;
        s += t * t;
      }
      out[a * cRows.length + b] = s;
    }
  }
  return out;
}

/**
 * Algorithm 1 for one class: every seed gets its `k` nearest candidates, no candidate is
 * used twice, the globally closest (seed, candidate) pair is served first; ties break by
 * lower seed then lower candidate index.
 *
 * @param dist [nSeeds, nCand] row-major squared distances
 * @returns selected candidate positions (indices into 0..nCand-1), in selection order
 */
export function greedySelect(dist: Float64Array, nSeeds: number, nCand: number, k: number): number[] {
  return Array.from(algorithm1(dist, nSeeds, nCand, k).cand);
}

/**
 * Algorithm 1 over all classes: for each class y, seeds with label y against pool rows
 * with weak label y (minus `exclude`).
 *
 * @returns selected pool rows, grouped by class in increasing class order
 */
export function selectAlgorithm1Local(opts: {
  seedFeat: Float32Array;
  seedLabels: Int32Array;
  poolFeat: Float32Array;
  poolWeak: Int32Array;
  dim: number;
  k: number;
  classes: number[];
  exclude?: Set<number>;
}): number[] {
  const out: number[] = [];
  for (const y of opts.classes) {
    const s: number[] = [];
    for (let i = 0; i < opts.seedLabels.length; i++) if (opts.seedLabels[i] === y) s.push(i);
    const c: number[] = [];
    for (let j = 0; j < opts.poolWeak.length; j++) if (opts.poolWeak[j] === y && !opts.exclude?.has(j)) c.push(j);
    if (!s.length || !c.length) continue;
    const d = sqDist(opts.seedFeat, s, opts.poolFeat, c, opts.dim);
    for (const p of greedySelect(d, s.length, c.length, opts.k)) out.push(c[p]!);
  }
  return out;
}

/** Random baseline: for each class, `counts[y]` pool rows drawn uniformly without replacement from those with weak label y. */
export function randomSelect(poolWeak: Int32Array, counts: Map<number, number>, seed: number, exclude?: Set<number>): number[] {
  const rand = rng(streamSeed(seed, 'random-baseline'));
  const out: number[] = [];
  for (const [y, m] of [...counts.entries()].sort((a, b) => a[0] - b[0])) {
    const c: number[] = [];
    for (let j = 0; j < poolWeak.length; j++) if (poolWeak[j] === y && !exclude?.has(j)) c.push(j);
    for (let i = 0; i < Math.min(m, c.length); i++) {
      const r = i + Math.floor(rand() * (c.length - i));
      [c[i], c[r]] = [c[r]!, c[i]!];
      out.push(c[i]!);
    }
  }
  return out;
}
