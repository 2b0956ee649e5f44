/**
 * Batched classification over a {@link Dataset}: logits (BatchNorm in eval mode), reduced
 * per batch to what the caller keeps (arg-max classes, or top-k classes with softmax
 * scores). `dcd eval`, the failures and evaluate stages all go through here.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import type { Dataset } from '../train/dataset.js';

/**
 * Runs `model` over every sample of `ds` in batches of `batchSize`. For each batch,
 * `reduce` turns the logits [n, classes] into the tensors to keep (inside a tidy), and
 * `onBatch(outputs, start, n)` reads them; they are disposed afterwards.
 */
export async function forEachLogits(
  model: ImageModel,
  ds: Dataset,
  batchSize: number,
  reduce: (logits: tf.Tensor2D) => tf.Tensor[],
  onBatch: (outputs: tf.Tensor[], start: number, n: number) => void | Promise<void>,
): Promise<void> {
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new ConfigError(`batch size must be a positive integer, received ${batchSize}`);
  const [h, w] = ds.imageShape;
  for (let s = 0; s < ds.size; s += batchSize) {
    const idx = Int32Array.from({ length: Math.min(batchSize, ds.size - s) }, (_, k) => s + k);
    const x = await ds.getBatch(idx);
    const outs = tf.tidy(() => reduce(model.forwardHead(model.forwardFeatures(tf.tensor4d(x, [idx.length, h, w, 3]), false))));
    try {
      await onBatch(outs, s, idx.length);
    } finally {
      tf.dispose(outs);
    }
  }
}

/**
 * Arg-max class of every sample of `ds`.
 * @returns Int32Array [ds.size]; -1 for samples that could not be decoded
 */
export async function predictDataset(model: ImageModel, ds: Dataset, batchSize: number, onBatch?: (n: number) => void): Promise<Int32Array> {
  const pred = new Int32Array(ds.size);
  await forEachLogits(model, ds, batchSize, (logits) => [tf.argMax(logits, 1)], async ([am], s, n) => {
    const arr = (await am!.data()) as Int32Array;
    for (let b = 0; b < n; b++) pred[s + b] = ds.skipped.has(s + b) ? -1 : arr[b]!;
    onBatch?.(n);
  });
  return pred;
}

/**
 * Top-`k` classes of every sample of `ds` with their softmax probabilities, best first.
 * @returns row-major [ds.size, k] classes and scores (rows of undecodable samples included)
 */
export async function topkDataset(model: ImageModel, ds: Dataset, batchSize: number, k: number, onBatch?: (n: number) => void): Promise<{ topk: Int32Array; scores: Float32Array }> {
  const topk = new Int32Array(ds.size * k);
  const scores = new Float32Array(ds.size * k);
  await forEachLogits(
    model,
    ds,
    batchSize,
    (logits) => {
      const r = tf.topk(tf.softmax(logits), k);
      return [r.values, r.indices];
    },
    async ([v, i], s, n) => {
      scores.set((await v!.data()) as Float32Array, s * k);
      topk.set((await i!.data()) as Int32Array, s * k);
      onBatch?.(n);
    },
  );
  return { topk, scores };
}
