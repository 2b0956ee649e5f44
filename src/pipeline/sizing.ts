/**
 * Selection sizing and the warnings that keep a selection meaningful.
 *
 * The paper's debug-train set is a small share of its weak pool: 47,426 picks (1,031 seed images ×
 * k_train 46) of 952,022 filtered pool images, 5.0%, while Complete adds all of them (20× more).
 * A selection that takes most of a class's pool cannot differ from Random or Complete: it *is* the
 * pool. So `select.pool_share` sizes k_train from the measured failure count once the failures stage
 * has run (the select stage calls {@link kTrainForShare}), and `dcd init` / `dcd run` warn, before
 * any method is trained, when the numbers leave the comparison without meaning
 * ({@link selectionWarnings}, {@link seedWarnings}).
 */
import { DEFAULT_K_TRAIN } from '../core/config.js';

/** The paper's share of the pool that debug-train takes: 47,426 / 952,022 (Section 4.1, Table 3). */
export const PAPER_POOL_SHARE = 47426 / 952022;

/** Above this share of a class's pool, the picks are most of the pool and stop differing from a uniform draw. */
export const WARN_SHARE = 0.25;

/** One subset class's counts: its pool images (weak label y, after the leakage filter) and its seed images. */
export interface ClassCounts {
  label: number;
  /** Class name for messages (default: the label). */
  name?: string;
  pool: number;
  seeds: number;
}

/**
 * k_train that makes the debug-train set about `share` of the subset classes' pool: one k for every
 * seed image (as the paper's 46), floor(share · pool / seeds), at least 1.
 * @param poolSub pool images whose weak label is a subset class (after the leakage filter)
 * @param seedsSub seed images (the original's failures on MFreq, subset classes)
 */
export function kTrainForShare(poolSub: number, seedsSub: number, share: number): number {
  if (!(share > 0 && share <= 1)) throw new RangeError(`kTrainForShare: share must be in (0, 1]; received ${share}`);
  if (seedsSub <= 0) return 1;
  return Math.max(1, Math.floor((share * poolSub) / seedsSub));
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * Warnings about a selection of `kVal` de-val and `kTrain` debug-train images per seed image:
 * - a class whose debug-train picks would be more than `maxShare` of its pool (the picks are then
 *   nearly the pool, and DCD cannot differ from Random or Complete);
 * - a class with fewer pool images than seed images × (k_val + k_train) (Algorithm 1 runs out, and
 *   the seeds served last get fewer picks).
 * Each message gives the numbers and what to change. `estimate`: the seed counts are an upper
 * bound (`dcd init`: every MFreq image of the class failing), not measured failures.
 */
export function selectionWarnings(classes: readonly ClassCounts[], kTrain: number, kVal: number, opts: { maxShare?: number; estimate?: boolean } = {}): string[] {
  const maxShare = opts.maxShare ?? WARN_SHARE;
  const out: string[] = [];
  const what = opts.estimate ? 'if every MFreq image of the class failed' : 'with the measured failures';
  for (const c of classes) {
    if (c.seeds <= 0) continue;
    const name = c.name ?? String(c.label);
    const need = c.seeds * (kVal + kTrain);
    const picks = Math.min(c.pool, c.seeds * kTrain);
    const share = c.pool > 0 ? picks / c.pool : 1;
    if (share > maxShare) {
      const kFit = Math.floor((maxShare * c.pool) / c.seeds);
      out.push(
        `class ${name}: k_train ${kTrain} × ${c.seeds} seed images (${what}) would take ${picks} of its ${c.pool} pool images (${pct(share)}), ` +
          `above ${pct(maxShare)}: the picks would be most of the pool and could not differ from Random or Complete. ` +
          (kFit >= 1
            ? `Set select.pool_share: ${+PAPER_POOL_SHARE.toFixed(2)} (the paper's share), or select.k_train ≤ ${kFit}.`
            : `Even k_train 1 takes ${pct(c.seeds / c.pool)}: add pool images of ${name} (about ${Math.ceil(c.seeds / PAPER_POOL_SHARE)} for the paper's ${pct(PAPER_POOL_SHARE)}).`),
      );
    }
    if (c.pool < need)
      out.push(
        `class ${name}: ${c.pool} pool images for ${c.seeds} seed images × (k_val ${kVal} + k_train ${kTrain}) = ${need} (${what}): ` +
          `Algorithm 1 runs out of candidates and the seed images served last get fewer picks. ` +
          `Lower select.k_train to ${Math.max(1, Math.floor(c.pool / c.seeds) - kVal)} or less, or add pool images of ${name}.`,
      );
  }
  return out;
}

export { DEFAULT_K_TRAIN };

/**
 * The warning for a k_train that will not be used: with `pool_share` set the run sizes k_train from
 * the measured failures, so a k_train other than the default (set by hand, e.g. `--set
 * select.k_train=2`) would be ignored without a word.
 */
export function kTrainWarnings(select: { k_train: number; pool_share?: number }): string[] {
  if (select.pool_share === undefined || select.k_train === DEFAULT_K_TRAIN) return [];
  return [
    `config.select.k_train ${select.k_train} is ignored: select.pool_share ${select.pool_share} sizes k_train from the measured failures. ` +
      `Change pool_share instead, or set select.pool_share=null to give k_train yourself.`,
  ];
}

/** The warning for fewer than two seeds: the table then shows no spread, and no difference can be judged against it. */
export function seedWarnings(seeds: readonly number[], worldSeed?: number): string[] {
  if (seeds.length >= 2) return [];
  const w = worldSeed ?? seeds[0] ?? 0;
  return [
    `config.seeds has ${seeds.length} seed (${seeds.join(', ')}): the table shows no spread, so no gap between rows can be told from seed noise. ` +
      `Set seeds: [0, 1, 2] (with world_seed: ${w}, one original model and one selection, the seeds varying the Random draw and the fine-tunes).`,
  ];
}

/** Per-class counts from weak labels of the pool and labels of the seed set, over the subset classes `subset`. */
export function classCounts(subset: readonly number[], poolWeakLabels: Iterable<number>, seedLabels: Iterable<number>, names?: readonly string[]): ClassCounts[] {
  const pool = new Map<number, number>();
  const seeds = new Map<number, number>();
  for (const y of poolWeakLabels) pool.set(y, (pool.get(y) ?? 0) + 1);
  for (const y of seedLabels) seeds.set(y, (seeds.get(y) ?? 0) + 1);
  return subset.map((y) => ({ label: y, ...(names?.[y] !== undefined ? { name: names[y] } : {}), pool: pool.get(y) ?? 0, seeds: seeds.get(y) ?? 0 }));
}

/** What the select stage used: k_train (configured, or sized from `pool_share`) and the warnings. */
export interface SelectionSizing {
  kTrain: number;
  kVal: number;
  /** `select.pool_share` when it sized k_train. */
  poolShare?: number;
  /** Debug-train picks asked for over the subset pool (before Algorithm 1 runs out anywhere). */
  share: number;
  warnings: string[];
}

/** k_train for the select stage from `select` (k_train, k_val, pool_share) and the measured counts. */
export function sizeSelection(select: { k_train: number; k_val: number; pool_share?: number }, classes: readonly ClassCounts[]): SelectionSizing {
  const pool = classes.reduce((s, c) => s + c.pool, 0);
  const seeds = classes.reduce((s, c) => s + c.seeds, 0);
  const kTrain = select.pool_share !== undefined ? kTrainForShare(pool, seeds, select.pool_share) : select.k_train;
  return {
    kTrain,
    kVal: select.k_val,
    ...(select.pool_share !== undefined ? { poolShare: select.pool_share } : {}),
    share: pool > 0 ? Math.min(pool, seeds * kTrain) / pool : 0,
    warnings: selectionWarnings(classes, kTrain, select.k_val),
  };
}
