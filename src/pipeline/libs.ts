/**
 * The pipeline's seam to the other areas' libraries. Stages call only these. Where an
 * area's function has not landed in this build, its wrapper throws a
 * {@link NotImplementedStageError} that names the missing module: the stage fails
 * loudly rather than producing a made-up result.
 */
import * as tf from '@tensorflow/tfjs';
import { DcdError, ConfigError } from '../core/errors.js';
import type { ImageModel, Preprocess } from '../core/types.js';
import { createModel, getModelSpec } from '../models/registry.js';
import { readSafetensors } from '../models/safetensors.js';
import { assignWeights } from '../train/checkpoint.js';
import { createSmallCnn, SMALL_CNN_PREPROCESS } from '../backbones-demo/small-cnn.js';
import { imageBatches, type ImageItem } from '../data/images.js';
import { loadCheckpoint, saveCheckpoint } from '../models/load.js';
import type { Dataset } from '../train/dataset.js';

/** A stage needs a library function that this build does not have yet. */
export class NotImplementedStageError extends DcdError {}

/** Throws the error for a missing library function. */
export function missing(stage: string, what: string, owner: string): never {
  throw new NotImplementedStageError(`stage ${stage}: not implemented in this build: it needs ${what} (${owner}), which is not there yet`);
}

/** Model names the pipeline can build: the registry plus the demo's small CNN (`small_cnn`, `small_cnn:<w1>-<w2>-...`). */
export function makeModel(name: string, opts: { numClasses: number; seed: number }): ImageModel {
  const m = /^small_cnn(?::([0-9-]+))?$/.exec(name);
  if (m) return createSmallCnn({ numClasses: opts.numClasses, seed: opts.seed, name, ...(m[1] ? { widths: m[1].split('-').map(Number) } : {}) });
  return createModel(name, { numClasses: opts.numClasses, seed: opts.seed });
}

/** Preprocessing of a model name (see {@link makeModel}). */
export function preprocessOf(name: string): Preprocess {
  if (/^small_cnn(:|$)/.test(name)) return SMALL_CNN_PREPROCESS;
  return getModelSpec(name).preprocess;
}

/** Head classes a model name has by default (0 for backbones without a head). */
export function defaultClasses(name: string): number {
  if (/^small_cnn(:|$)/.test(name)) return 0;
  return getModelSpec(name).defaultNumClasses;
}

/** Checks that a model name is buildable, with the config key in the error. */
export function checkModelName(name: string, key: string): void {
  if (/^small_cnn(?::[0-9]+(-[0-9]+)*)?$/.test(name)) return;
  try {
    getModelSpec(name);
  } catch (e) {
    throw new ConfigError(`${key}: ${(e as Error).message}, or small_cnn[:widths]`);
  }
}

/**
 * Loads a PyTorch-named safetensors state dict (as written by the trainer) into `model`.
 * With `newHead`, the classifier head is left at its initialisation when its shape differs.
 */
export async function loadWeights(model: ImageModel, file: string): Promise<void> {
  const { tensors } = await readSafetensors(file);
  assignWeights(model, tensors as Map<string, { shape: number[]; data: Float32Array | Int32Array | BigInt64Array }>, file);
}

/**
 * Streams penultimate features batch by batch: `onFeatures(ids, features)` gets each
 * decoded batch's ids and its row-major [ids.length, numFeatures] features (a fresh array).
 * Nothing of earlier batches is kept, so memory is one batch whatever the set's size.
 */
export async function streamFeatures(
  model: ImageModel,
  items: ImageItem[],
  pre: Preprocess,
  opts: { batchSize: number; concurrency: number; onBatch?: (n: number) => void },
  onFeatures: (ids: string[], features: Float32Array) => void | Promise<void>,
): Promise<{ skipped: { id: string; reason: string }[] }> {
  const skipped: { id: string; reason: string }[] = [];
  const [h, w] = [pre.crop, pre.crop];
  for await (const b of imageBatches(items, { resize: pre.resize, crop: pre.crop, mean: pre.mean, std: pre.std }, opts.batchSize, { concurrency: opts.concurrency })) {
    for (const s of b.skipped) skipped.push({ id: s.id, reason: s.reason });
    if (b.ids.length) {
      const feats = tf.tidy(() => model.forwardFeatures(tf.tensor4d(b.data, [b.ids.length, h, w, 3]), false));
      const arr = (await feats.data()) as Float32Array;
      feats.dispose();
      await onFeatures(b.ids, arr);
    }
    opts.onBatch?.(b.ids.length + b.skipped.length);
  }
  return { skipped };
}

/**
 * Penultimate features of every image of `items`, in order.
 * @returns row-major float32 [items.length, model.numFeatures]
 */
export async function featuresOf(
  model: ImageModel,
  items: ImageItem[],
  pre: Preprocess,
  opts: { batchSize: number; concurrency: number; onBatch?: (n: number) => void },
): Promise<{ data: Float32Array; skipped: { id: string; reason: string }[] }> {
  const dim = model.numFeatures;
  const out = new Float32Array(items.length * dim);
  const pos = new Map(items.map((it, i) => [it.id, i]));
  const { skipped } = await streamFeatures(model, items, pre, opts, (ids, arr) => {
    ids.forEach((id, j) => out.set(arr.subarray(j * dim, (j + 1) * dim), pos.get(id)! * dim));
  });
  return { data: out, skipped };
}

/**
 * Loads any checkpoint into `model`: a safetensors state dict with PyTorch names (what
 * the trainer and the pipeline write) directly, anything else through the models
 * area's strict loader (PyTorch zip or legacy, tfjs) and its key mapping.
 */
export async function loadAnyCheckpoint(model: ImageModel, file: string): Promise<void> {
  if (file.endsWith('.safetensors')) return loadWeights(model, file);
  await loadCheckpoint(model, file);
}

/** Saves `model`'s params and buffers as a PyTorch-named safetensors file (atomic). */
export async function saveWeights(model: ImageModel, file: string, metadata: Record<string, string> = {}): Promise<void> {
  await saveCheckpoint(model, file, 'safetensors', metadata);
}

/**
 * Arg-max class of every sample of `ds` (eval transform, BatchNorm in eval mode).
 * @returns Int32Array [ds.size]; -1 for samples that could not be decoded
 */
export async function predictDataset(model: ImageModel, ds: Dataset, batchSize: number, onBatch?: (n: number) => void): Promise<Int32Array> {
  const pred = new Int32Array(ds.size);
  const [h, w] = ds.imageShape;
  for (let s = 0; s < ds.size; s += batchSize) {
    const idx = Int32Array.from({ length: Math.min(batchSize, ds.size - s) }, (_, k) => s + k);
    const x = await ds.getBatch(idx);
    const am = tf.tidy(() => tf.argMax(model.forwardHead(model.forwardFeatures(tf.tensor4d(x, [idx.length, h, w, 3]), false)), 1));
    const arr = (await am.data()) as Int32Array;
    am.dispose();
    idx.forEach((k, b) => (pred[k] = ds.skipped.has(k) ? -1 : arr[b]!));
    onBatch?.(idx.length);
  }
  return pred;
}
