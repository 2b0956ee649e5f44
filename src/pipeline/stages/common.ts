/**
 * Helpers the stage adapters share: reading the data stage's sets and classes, a
 * model stage's weights, preprocessing, and predictions of a model on a set.
 */
import { readFileSync } from 'node:fs';
import type { Config, SyntheticConfig } from '../../core/config.js';
import type { Preprocess } from '../../core/types.js';
import { createModel, getModelSpec } from '../../models/registry.js';
import { loadAnyCheckpoint } from '../../models/load.js';
import { predictDataset } from '../../infer/predict.js';
import type { StageContext, StageResult } from '../runner.js';
import { readImageSet, toDataset, type ImageSet } from '../imagesets.js';
import { DEFAULT_FASHION_CLASSES, fashionObjects } from '../../data/fashion-shift.js';
import type { ObjectSource } from '../../data/synthetic.js';

/** The image sets every run materialises. */
export const IMAGE_SETS = ['train', 'test', 'mfreq', 'complement', 'pool'] as const;

/** Whether each seed draws the data anew (synthetic, Fashion-MNIST); ImageNet and a user's folders are fixed sets. */
export function drawsPerSeed(cfg: Config): boolean {
  return cfg.data.kind !== 'imagenet' && cfg.data.kind !== 'folders';
}

/** The class names (and Y_sub, where the data defines it) recorded by the data stage. */
export function classesOf(data: StageResult): { names: string[]; subset: number[] | null } {
  return JSON.parse(readFileSync(data.file('classes'), 'utf8')) as { names: string[]; subset: number[] | null };
}

/** The image set `name` of a stage's outputs. */
export async function readSet(r: StageResult, name: string): Promise<ImageSet> {
  return readImageSet(r.file(name));
}

/** The preprocessing for `model` on `set`: in-memory sets keep their own size. */
export function preFor(modelName: string, set: ImageSet): Preprocess {
  const p = getModelSpec(modelName).preprocess;
  if (set.pixels) return { ...p, resize: set.pixels.shape[0], crop: set.pixels.shape[0] };
  return p;
}

/** `data.fashion` splits into the synthetic options and the garment classes (`classes`). */
export function fashionParts(cfg: Config): { synthetic: SyntheticConfig; classes?: number[] } {
  const { classes, ...synthetic } = cfg.data.fashion ?? {};
  return { synthetic, ...(classes ? { classes } : {}) };
}

/**
 * What the run's broad draws are drawn from (the demo backbones' training images, and
 * `pretrain.data: broad`): the synthetic benchmark's options, or for Fashion-MNIST data its
 * options with the garments' class count and the garment images as objects. `key` is what
 * a stage's config slice records of it.
 */
export function broadDrawSource(cfg: Config): { synthetic: SyntheticConfig; objects: () => ObjectSource | undefined; key: { synthetic: SyntheticConfig; kind: string; fashion_dir: string | null } } {
  const fp = cfg.data.kind === 'fashion-mnist' ? fashionParts(cfg) : undefined;
  const synthetic = fp ? { ...fp.synthetic, numClasses: (fp.classes ?? DEFAULT_FASHION_CLASSES).length } : (cfg.data.synthetic ?? {});
  const objects = () => (fp ? fashionObjects({ dir: cfg.data.fashion_dir, ...(fp.classes ? { classes: fp.classes } : {}) }) : undefined);
  return { synthetic, objects, key: { synthetic, kind: cfg.data.kind, fashion_dir: fp ? cfg.data.fashion_dir : null } };
}

/** Absolute weights file of a model stage (trained or given). */
export function weightsOf(r: StageResult): string {
  return typeof r.manifest.extra.weights === 'string' ? r.manifest.extra.weights : r.file('weights');
}

/** The model name a model stage recorded, else `fallback`. */
export function modelNameOf(r: StageResult, fallback: string): string {
  return typeof r.manifest.extra.model === 'string' ? r.manifest.extra.model : fallback;
}

// ---------------------------------------------------------------------------------
// failures

/** Arg-max class of every image of `set` under a model and its weights (-1 = not decodable), with a progress bar. */
export async function predictSet(modelName: string, weights: string, numClasses: number, set: ImageSet, batchSize: number, ctx: StageContext): Promise<Int32Array> {
  const model = createModel(modelName, { numClasses, seed: 0 });
  try {
    await loadAnyCheckpoint(model, weights);
    const bar = ctx.progress(set.rows.length, 'img');
    const pred = await predictDataset(model, toDataset(set, preFor(modelName, set)), batchSize, (n) => bar.tick(n));
    bar.stop();
    return pred;
  } finally {
    model.dispose();
  }
}
