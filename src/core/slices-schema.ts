/**
 * The config schema fragment of failure slices and pick cleaning (docs/slices-and-cleaning.md):
 * the keys added to `select` and the top-level `slices` section. It lives in core so that the
 * config schema (config.ts) imports only core; the rules across keys and the data-size checks are
 * `checkSlicesConfig` in src/analysis/slices-config.ts.
 */
import { z } from 'zod';

/** The defaults of the k-NN label check (src/retrieval/clean.ts takes them from here). */
export const CLEAN_DEFAULTS = { k: 10, rule: 'agreement' as 'agreement' | 'confident', minAgreement: 0.3, thresholdSample: 200, seed: 0, maxRounds: 10 } as const;

/** Keys added to `select`. */
export const SELECT_SLICE_KEYS = {
  per_slice: z
    .number()
    .int()
    .positive()
    .optional()
    .describe('debug-train picks per failure slice, shared by its seed images (needs slices.enabled); absent: k_train per seed image, as in the paper'),
  clean: z.enum(['none', 'knn']).default('none').describe('knn: drop picks whose k nearest pool images mostly carry another weak label, and refill from the next candidates'),
  clean_k: z.number().int().positive().default(CLEAN_DEFAULTS.k).describe('pool neighbours per pick of the k-NN label check'),
  clean_rule: z.enum(['agreement', 'confident']).default(CLEAN_DEFAULTS.rule).describe('agreement: keep when ≥ clean_min_agreement of the neighbours share the label; confident: per-class thresholds (confident learning)'),
  clean_min_agreement: z.number().min(0).max(1).default(CLEAN_DEFAULTS.minAgreement).describe('clean_rule agreement: the share of neighbours that must share the pick\'s label'),
  clean_max_rounds: z.number().int().min(2).default(CLEAN_DEFAULTS.maxRounds).describe('selection rounds at most (each drops flagged picks and refills)'),
};

/** The top-level `slices` section. */
export const SlicesSchema = z.strictObject({
  enabled: z.boolean().default(false).describe('cluster the debug-seed failures into slices and report heldout accuracy per slice'),
  backbone: z.string().min(1).optional().describe('label (or name) of the backbone whose features slice the failures; default: the first of backbones'),
  k: z.union([z.number().int().positive(), z.literal('auto')]).default('auto').describe('number of slices, or auto: the best mean silhouette over k_range'),
  k_range: z.tuple([z.number().int().min(2), z.number().int().min(2)]).default([2, 8]).describe('k tried by k: auto, [min, max]'),
  seed: z.number().int().nonnegative().default(0).describe('seed of the k-means++ starts'),
  central: z.number().int().positive().default(6).describe('most central seed images shown per slice'),
  normalize: z.boolean().default(true).describe('L2-normalise features before clustering'),
  restarts: z.number().int().positive().default(5).describe('k-means++ starts; the lowest inertia is kept'),
  map_sample: z.number().int().positive().default(2000).describe('pool and train images drawn on the map (each)'),
});

/** The fragment on its own (what the two mounts validate), for tests and for `checkSlicesConfig`. */
export const SliceFragmentSchema = z.object({
  select: z.object(SELECT_SLICE_KEYS).prefault({}),
  slices: SlicesSchema.prefault({}),
});
export type SliceConfig = z.output<typeof SliceFragmentSchema>;

