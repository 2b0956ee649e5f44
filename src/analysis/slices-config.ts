/**
 * Config keys for failure slices and cleaner picks (read by the slices and select stages):
 *
 * ```yaml
 * select:
 *   per_slice: 40        # debug-train picks per failure slice (needs slices.enabled); absent = k_train per seed
 *   clean: knn           # none (default) | knn: drop picks whose k-NN weak-label vote disagrees, refill
 *   clean_k: 10          # pool neighbours per pick
 *   clean_rule: agreement  # agreement (share ≥ clean_min_agreement) | confident (per-class thresholds)
 *   clean_min_agreement: 0.3
 *   clean_max_rounds: 10
 * slices:
 *   enabled: false       # default off
 *   backbone: ssl        # label (or name) of one of `backbones`; default: the first
 *   k: auto              # number of slices, or auto = best mean silhouette over k_range
 *   k_range: [2, 8]
 *   seed: 0
 *   central: 6           # central images shown per slice
 *   normalize: true      # L2-normalise features first
 *   restarts: 5          # k-means++ starts, lowest inertia kept
 *   map_sample: 2000     # pool / train images drawn on the map
 * ```
 *
 * `src/core/config.ts` mounts {@link SELECT_SLICE_KEYS} into `select` and {@link SlicesSchema} as
 * the top-level `slices`; {@link checkSlicesConfig} runs in the pipeline's `checkConfig`, before
 * the first stage, on what is known then ({@link planFacts}); the library functions check
 * the exact counts again when the data exist.
 */
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { formatIssues, nearest } from '../core/config-errors.js';
import { syntheticOptions } from '../data/synthetic.js';

export { SELECT_SLICE_KEYS, SlicesSchema, SliceFragmentSchema, type SliceConfig } from '../core/slices-schema.js';
import { SliceFragmentSchema, SELECT_SLICE_KEYS, type SliceConfig } from '../core/slices-schema.js';

/** What is known of the data before the first stage; absent = unknown (checked at run time). */
export interface PlanFacts {
  /** At most this many debug-seed images (e.g. the size of the set the failures come from). */
  seedImagesAtMost?: number;
  /** Pool images (before the leakage filter). */
  poolImages?: number;
}

/** The facts a config states itself: for `data.kind: synthetic`, the shifted-set and pool sizes. */
export function planFacts(data: { kind: string; synthetic?: Record<string, unknown> }): PlanFacts {
  if (data.kind !== 'synthetic') return {};
  const o = syntheticOptions((data.synthetic ?? {}) as Parameters<typeof syntheticOptions>[0]);
  return { seedImagesAtMost: o.shifted.size, poolImages: o.pool.size };
}

/**
 * Validates the fragment (zod, with the house messages) and the rules across keys, throwing
 * one ConfigError that lists every problem:
 * - `select.per_slice` needs `slices.enabled`, and per_slice × the fewest slices tried must fit the pool;
 * - `slices.backbone` names one of `backbones`;
 * - `slices.k_range` is [min, max] with min ≤ max;
 * - more slices than seed images (`slices.k`, or the least `k_range` tries) is refused;
 * - `select.clean_k` must leave a neighbour besides the image itself: clean_k ≤ pool − 1.
 * @param raw `{ select, slices }` as written (other select keys are ignored here)
 * @param backbones labels (or names) of the config's backbones
 * @returns the fragment with defaults filled in
 */
export function checkSlicesConfig(raw: { select?: unknown; slices?: unknown }, backbones: readonly string[], facts: PlanFacts = {}, where = '<config>'): SliceConfig {
  const { problems, config } = slicesConfigProblems(raw, backbones, facts);
  if (problems.length) throw new ConfigError(`${where}: invalid config (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${problems.join('\n  ')}`);
  return config!;
}

/** The problems {@link checkSlicesConfig} reports, one line each (for a validation pass that collects them), and the fragment when there are none. */
export function slicesConfigProblems(raw: { select?: unknown; slices?: unknown }, backbones: readonly string[], facts: PlanFacts = {}): { problems: string[]; config?: SliceConfig } {
  const r = SliceFragmentSchema.safeParse({ select: pickKeys(raw.select, Object.keys(SELECT_SLICE_KEYS)), slices: raw.slices }, { reportInput: true });
  const problems: string[] = r.success ? [] : formatIssues(r.error.issues, SliceFragmentSchema);
  if (r.success) {
    const { select: sel, slices: s } = r.data;
    if (sel.per_slice !== undefined && !s.enabled) problems.push(`config.select.per_slice: budgets picks per failure slice, but slices.enabled is false; set slices.enabled: true or remove per_slice`);
    if (s.backbone !== undefined && !backbones.includes(s.backbone)) {
      const near = nearest(s.backbone, backbones);
      problems.push(`config.slices.backbone: expected one of ${backbones.map((b) => JSON.stringify(b)).join(', ')}, received ${JSON.stringify(s.backbone)}${near ? `; did you mean "${near}"?` : ''}`);
    }
    const [lo, hi] = s.k_range;
    if (lo > hi) problems.push(`config.slices.k_range: expected [min, max] with min ≤ max, received [${lo}, ${hi}]; swap them`);
    const n = facts.seedImagesAtMost;
    if (s.enabled && n !== undefined) {
      if (s.k !== 'auto' && s.k > n) problems.push(`config.slices.k: ${s.k} slices, but there are at most ${n} debug-seed images; there cannot be more slices than seed images — lower slices.k or use auto`);
      if (s.k === 'auto' && lo > n - 1) problems.push(`config.slices.k_range: tries at least ${lo} slices, but there are at most ${n} debug-seed images (silhouette needs ≤ ${n - 1}); lower k_range`);
    }
    const p = facts.poolImages;
    // every slice asks for per_slice picks; the fewest slices the run can make, times per_slice, must fit the pool
    const leastSlices = s.k === 'auto' ? lo : s.k;
    if (sel.per_slice !== undefined && s.enabled && p !== undefined && sel.per_slice * leastSlices > p)
      problems.push(
        `config.select.per_slice: ${sel.per_slice} debug-train picks × at least ${leastSlices} slice(s) = ${sel.per_slice * leastSlices}, but the pool has ${p} image(s); lower select.per_slice to ${Math.max(1, Math.floor(p / leastSlices))} or less (or fewer slices)`,
      );
    if (sel.clean === 'knn' && p !== undefined && sel.clean_k > p - 1)
      problems.push(`config.select.clean_k: ${sel.clean_k} neighbours per pick, but the pool has ${p} image(s) (at most ${p - 1} besides the pick itself); lower clean_k`);
  }
  return r.success && !problems.length ? { problems, config: r.data } : { problems };
}

/** The keys of `obj` that are in `keys` (the rest of `select` belongs to the main schema). */
function pickKeys(obj: unknown, keys: readonly string[]): unknown {
  if (obj === undefined || obj === null || typeof obj !== 'object' || Array.isArray(obj)) return obj;
  return Object.fromEntries(Object.entries(obj as Record<string, unknown>).filter(([k]) => keys.includes(k)));
}

/**
 * Debug-train picks per seed image under `select.per_slice`: each slice's `perSlice` picks are
 * shared evenly by its seed images, ⌊perSlice / size⌋ each, and the remainder goes one each
 * to the seeds nearest the slice's centre (`byCentre`: by distance to the centroid, ties by
 * lower index). A slice with more seed images than `perSlice` leaves its outer seeds at 0.
 * @param slices members of each slice, and its members sorted by distance to the centre
 * @param seedCount seed images in all
 */
export function perSliceBudget(slices: readonly { members: readonly number[]; byCentre: readonly number[] }[], seedCount: number, perSlice: number): Int32Array {
  if (!Number.isInteger(perSlice) || perSlice < 1) throw new ConfigError(`select.per_slice: expected an integer ≥ 1, received ${perSlice}`);
  const k = new Int32Array(seedCount).fill(-1);
  for (const s of slices) {
    if (s.byCentre.length !== s.members.length) throw new ConfigError(`select.per_slice: a slice lists ${s.byCentre.length} members by centre distance but has ${s.members.length}`);
    const base = Math.floor(perSlice / s.members.length);
    const extra = perSlice - base * s.members.length;
    for (const i of s.members) k[i] = base;
    for (let t = 0; t < extra; t++) k[s.byCentre[t]!]! += 1;
  }
  const missing = k.indexOf(-1);
  if (missing >= 0) throw new ConfigError(`select.per_slice: seed image ${missing} is in no slice; the slices must cover every seed image`);
  return k;
}
