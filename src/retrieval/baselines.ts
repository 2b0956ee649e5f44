import { ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { mulberry32 } from '../core/rng.js';


/** Per-class summary of a baseline selection. */
export interface BaselineClassSummary {
  label: number;
  /** Pool images of the class (m_y). */
  candidates: number;
  /** Images wanted (Random) or n_y (Complete). */
  requested: number;
  selected: number;
  /** Random only: fewer pool images than requested. */
  exhausted: boolean;
}

/**
 * DCD-Random (docs/method.md §3): for each class y of `counts`, `counts[y]` pool images drawn
 * uniformly without replacement from the pool images of weak label y, with a seeded
 * PRNG (partial Fisher–Yates over the pool order). Classes short of images give all
 * they have, with a warning.
 * @returns indices into `poolLabels`, grouped by class (ascending), then draw order
 */
export function randomBaseline(
  poolLabels: Int32Array,
  counts: ReadonlyMap<number, number>,
  seed: number,
): { indices: Int32Array; summary: BaselineClassSummary[] } {
  if (!Number.isInteger(seed)) throw new ConfigError(`--seed: expected an integer, received ${seed}`);
  const byClass = new Map<number, number[]>();
  poolLabels.forEach((y, i) => {
    if (!counts.has(y)) return;
    if (!byClass.has(y)) byClass.set(y, []);
    byClass.get(y)!.push(i);
  });
  const out: number[] = [];
  const summary: BaselineClassSummary[] = [];
  for (const y of [...counts.keys()].sort((a, b) => a - b)) {
    const want = counts.get(y)!;
    const pool = byClass.get(y) ?? [];
    // One PRNG stream per class, so a class's draw does not depend on the other classes.
    const rnd = mulberry32((seed ^ Math.imul(y + 1, 0x9e3779b1)) >>> 0);
    const n = Math.min(want, pool.length);
    for (let t = 0; t < n; t++) {
      const s = t + Math.floor(rnd() * (pool.length - t));
      [pool[t], pool[s]] = [pool[s]!, pool[t]!];
      out.push(pool[t]!);
    }
    if (n < want) log.warn(`random baseline: class ${y} has ${pool.length} pool image(s), fewer than the ${want} requested; taking all`);
    summary.push({ label: y, candidates: pool.length, requested: want, selected: n, exhausted: n < want });
  }
  return { indices: Int32Array.from(out), summary };
}

/**
 * DCD-Complete (docs/method.md §3): every pool image of W' with weight n_y / (n_y + m_y),
 * n_y = train images of class y, m_y = pool images of class y, so each class keeps its
 * train total weight.
 * @param trainCounts n_y per class; every pool class must have n_y ≥ 1
 * @param source names the file of `trainCounts` in errors
 * @returns Float32 weight per pool row
 */
export function completeBaseline(
  poolLabels: Int32Array,
  trainCounts: ReadonlyMap<number, number>,
  source = '<train counts>',
): { weights: Float32Array; summary: BaselineClassSummary[] } {
  const m = new Map<number, number>();
  for (const y of poolLabels) m.set(y, (m.get(y) ?? 0) + 1);
  for (const y of m.keys()) {
    const n = trainCounts.get(y) ?? 0;
    if (n <= 0)
      throw new DataError(`${source}: column label has no train image of class ${y}, which the pool has; n_y / (n_y + m_y) would be 0 (empty class): give the train set of every pool class`);
  }
  const weights = Float32Array.from(poolLabels, (y) => trainCounts.get(y)! / (trainCounts.get(y)! + m.get(y)!));
  const summary = [...m.keys()].sort((a, b) => a - b).map((y) => ({ label: y, candidates: m.get(y)!, requested: trainCounts.get(y)!, selected: m.get(y)!, exhausted: false }));
  return { weights, summary };
}

/** Count of each label. */
export function labelCounts(labels: ArrayLike<number>): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) m.set(labels[i]!, (m.get(labels[i]!) ?? 0) + 1);
  return m;
}
