/**
 * Batched penultimate features of a model over a list of images: decoded and
 * preprocessed batch by batch (src/data/images.ts), run with BatchNorm in eval mode.
 */
import * as tf from '@tensorflow/tfjs';
import type { ImageModel, Preprocess } from '../core/types.js';
import { imageBatches, type ImageItem, type SkippedImage } from '../data/images.js';

/** Options of {@link streamFeatures} and {@link featuresOf}. */
export interface FeatureOptions {
  batchSize: number;
  /** Images decoded in parallel. */
  concurrency: number;
  /** Called after each batch with the number of images it took (embedded or skipped). */
  onBatch?: (n: number) => void;
}

/**
 * Streams penultimate features batch by batch: `onFeatures(ids, features)` gets each
 * decoded batch's ids and its row-major [ids.length, numFeatures] features (a fresh array).
 * Nothing of earlier batches is kept, so memory is one batch whatever the set's size.
 * @returns the images that could not be decoded, in input order
 */
export async function streamFeatures(
  model: ImageModel,
  items: ImageItem[],
  pre: Preprocess,
  opts: FeatureOptions,
  onFeatures: (ids: string[], features: Float32Array) => void | Promise<void>,
): Promise<SkippedImage[]> {
  const skipped: SkippedImage[] = [];
  const [h, w] = [pre.crop, pre.crop];
  for await (const b of imageBatches(items, { resize: pre.resize, crop: pre.crop, mean: pre.mean, std: pre.std }, opts.batchSize, { concurrency: opts.concurrency })) {
    skipped.push(...b.skipped);
    if (b.ids.length) {
      const feats = tf.tidy(() => model.forwardFeatures(tf.tensor4d(b.data, [b.ids.length, h, w, 3]), false));
      let arr: Float32Array;
      try {
        arr = (await feats.data()) as Float32Array;
      } finally {
        feats.dispose();
      }
      await onFeatures(b.ids, arr);
    }
    opts.onBatch?.(b.ids.length + b.skipped.length);
  }
  return skipped;
}

/**
 * Penultimate features of every image of `items`, in order.
 * @returns row-major float32 [items.length, model.numFeatures] (rows of skipped images stay 0)
 */
export async function featuresOf(model: ImageModel, items: ImageItem[], pre: Preprocess, opts: FeatureOptions): Promise<{ data: Float32Array; skipped: SkippedImage[] }> {
  const dim = model.numFeatures;
  const out = new Float32Array(items.length * dim);
  const pos = new Map(items.map((it, i) => [it.id, i]));
  const skipped = await streamFeatures(model, items, pre, opts, (ids, arr) => {
    ids.forEach((id, j) => out.set(arr.subarray(j * dim, (j + 1) * dim), pos.get(id)! * dim));
  });
  return { data: out, skipped };
}
