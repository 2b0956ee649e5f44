/**
 * The demo's small training loop and inference helpers, on in-memory uint8 images.
 *
 * Loss: Σ_i w_i · CE(model(x_i), y_i) / Σ_i w_i over each batch (METHOD.md §3's choice).
 * Optimiser: Adam. Batches come from a seeded shuffle; optional seeded horizontal flips.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { mulberry32 as rng, streamSeed } from '../core/rng.js';

/** In-memory labelled images. */
export interface ImageData {
  /** HWC uint8 RGB, [n, size, size, 3]. */
  images: Uint8Array;
  size: number;
  n: number;
  /** Class per image; rows with label < 0 are skipped in training. */
  labels: Int32Array;
  /** Per-sample loss weights (default 1). */
  weights?: Float32Array;
}

/** Options of {@link fitClassifier}. */
export interface FitOptions {
  /** Optimisation steps (each one batch). */
  steps: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  /** Random horizontal flips. */
  flip?: boolean;
  /** Called after each step with the batch loss every `every` steps. */
  onStep?: (step: number, loss: number) => void;
  every?: number;
}

/**
 * Converts rows of uint8 images to a normalised NHWC float tensor [B, size, size, 3]
 * ((x/255 − 0.5) / 0.25, the demo models' preprocessing).
 */
export function toTensor(images: Uint8Array, size: number, rows: ArrayLike<number>, flips?: boolean[]): tf.Tensor4D {
  const px = size * size * 3;
  const buf = new Float32Array(rows.length * px);
  for (let k = 0; k < rows.length; k++) {
    const src = images.subarray(rows[k]! * px, (rows[k]! + 1) * px);
    const o = k * px;
    if (flips?.[k]) {
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++)
          for (let c = 0; c < 3; c++) buf[o + (y * size + x) * 3 + c] = (src[(y * size + (size - 1 - x)) * 3 + c]! / 255 - 0.5) / 0.25;
    } else for (let i = 0; i < px; i++) buf[o + i] = (src[i]! / 255 - 0.5) / 0.25;
  }
  return tf.tensor4d(buf, [rows.length, size, size, 3]);
}

/**
 * Trains `model` (features + head) in place on `data` for `opts.steps` batches.
 * @returns the mean loss of the last 10% of steps
 */
export async function fitClassifier(model: ImageModel, data: ImageData, opts: FitOptions): Promise<number> {
  const B = opts.batchSize ?? 64;
  if (!(opts.steps >= 0)) throw new ConfigError(`train.steps: expected an integer ≥ 0; received ${opts.steps}`);
  const rows: number[] = [];
  for (let i = 0; i < data.n; i++) if (data.labels[i]! >= 0 && data.labels[i]! < model.numClasses) rows.push(i);
  if (rows.length === 0) throw new ConfigError(`fitClassifier: no labelled images with labels in 0..${model.numClasses - 1}`);
  const rand = rng(streamSeed(opts.seed ?? 0, 'fit'));
  const order = rows.slice();
  let pos = order.length;
  const optimizer = tf.train.adam(opts.lr ?? 2e-3);
  const vars = [...model.params().values()];
  const tail: number[] = [];
  const tailFrom = Math.floor(opts.steps * 0.9);
  for (let step = 0; step < opts.steps; step++) {
    const batch: number[] = [];
    while (batch.length < Math.min(B, rows.length)) {
      if (pos >= order.length) {
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        pos = 0;
      }
      batch.push(order[pos++]!);
    }
    const flips = opts.flip ? batch.map(() => rand() < 0.5) : undefined;
    const lossT = tf.tidy(() => {
      const x = toTensor(data.images, data.size, batch, flips);
      const y = tf.oneHot(tf.tensor1d(batch.map((i) => data.labels[i]!), 'int32'), model.numClasses);
      const w = tf.tensor1d(batch.map((i) => data.weights?.[i] ?? 1));
      return optimizer.minimize(() => {
        const logits = model.forwardHead(model.forwardFeatures(x, true));
        const ce = tf.losses.softmaxCrossEntropy(y, logits, undefined, undefined, tf.Reduction.NONE);
        return tf.div(tf.sum(tf.mul(ce, w)), tf.sum(w)) as tf.Scalar;
      }, true, vars)!;
    });
    const loss = (await lossT.data())[0]!; // asynchronously: the webgpu backend reads no other way
    lossT.dispose();
    if (step >= tailFrom) tail.push(loss);
    if (opts.onStep && (step + 1) % (opts.every ?? 50) === 0) opts.onStep(step + 1, loss);
  }
  optimizer.dispose();
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : NaN;
}

/** Runs `fn` over the images in batches and concatenates its per-row outputs (width `dim`). */
function mapBatches(images: Uint8Array, size: number, n: number, dim: number, batchSize: number, fn: (x: tf.Tensor4D) => tf.Tensor2D): Float32Array {
  const out = new Float32Array(n * dim);
  for (let s = 0; s < n; s += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, n - s) }, (_, k) => s + k);
    const y = tf.tidy(() => fn(toTensor(images, size, rows)));
    out.set(y.dataSync(), s * dim);
    y.dispose();
  }
  return out;
}

/** Penultimate features [n, model.numFeatures] (row-major) of uint8 images. */
export function embedImages(model: ImageModel, images: Uint8Array, size: number, n: number, batchSize = 256): Float32Array {
  return mapBatches(images, size, n, model.numFeatures, batchSize, (x) => model.forwardFeatures(x, false));
}

/** Arg-max predictions of uint8 images. */
export function predictLabels(model: ImageModel, images: Uint8Array, size: number, n: number, batchSize = 256): Int32Array {
  const logits = mapBatches(images, size, n, model.numClasses, batchSize, (x) => model.forwardHead(model.forwardFeatures(x, false)));
  const pred = new Int32Array(n);
  const K = model.numClasses;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < K; k++) if (logits[i * K + k]! > logits[i * K + best]!) best = k;
    pred[i] = best;
  }
  return pred;
}

/** Copies every parameter of `from` into a new model made by `make` (same architecture). */
export function cloneModel(from: ImageModel, make: () => ImageModel): ImageModel {
  const m = make();
  const src = from.params();
  for (const [k, v] of m.params()) {
    const s = src.get(k);
    if (!s) throw new ConfigError(`cloneModel: parameter ${k} missing in ${from.name}`);
    v.assign(s);
  }
  return m;
}
