/**
 * Training and inference on in-memory uint8 images (the demo backbones, the science scripts):
 * {@link fitClassifier} is the training loop (loop.ts) with Adam and the supervised objective,
 * on batches drawn from a seeded shuffle with optional seeded horizontal flips.
 *
 * Loss: Σ_i w_i · CE(model(x_i), y_i) / Σ_i w_i over each batch (docs/method.md §3's choice).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { mulberry32, shuffleInPlace, streamSeed } from '../core/rng.js';
import { Adam } from './optimizer.js';
import { trainLoop } from './loop.js';
import { supervisedObjective, tfjsCrossEntropy, type SupervisedBatch } from './supervised.js';

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
 * Normalised NHWC float32 pixels [B, size, size, 3] of rows of uint8 images
 * ((x/255 − 0.5) / 0.25, the demo models' preprocessing), each row mirrored where `flips` says.
 */
export function toPixels(images: Uint8Array, size: number, rows: ArrayLike<number>, flips?: boolean[]): Float32Array {
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
  return buf;
}

/**
 * Batches of `batchSize` labelled rows, one after another from a seeded shuffle that is
 * shuffled again (from its last order) whenever it runs out; the same generator then draws
 * each row's flip.
 */
function shuffledBatches(model: ImageModel, data: ImageData, batchSize: number, seed: number, flip: boolean): () => SupervisedBatch {
  const order: number[] = [];
  for (let i = 0; i < data.n; i++) if (data.labels[i]! >= 0 && data.labels[i]! < model.numClasses) order.push(i);
  if (order.length === 0) throw new ConfigError(`fitClassifier: no labelled images with labels in 0..${model.numClasses - 1}`);
  const rand = mulberry32(streamSeed(seed, 'fit'));
  let pos = order.length;
  return () => {
    const rows: number[] = [];
    while (rows.length < Math.min(batchSize, order.length)) {
      if (pos >= order.length) {
        shuffleInPlace(order, rand);
        pos = 0;
      }
      rows.push(order[pos++]!);
    }
    const flips = flip ? rows.map(() => rand() < 0.5) : undefined;
    return {
      x: toPixels(data.images, data.size, rows, flips),
      labels: Int32Array.from(rows, (i) => data.labels[i]!),
      weights: Float32Array.from(rows, (i) => data.weights?.[i] ?? 1),
      imageShape: [data.size, data.size, 3],
    };
  };
}

/**
 * Trains `model` (features + head) in place on `data` for `opts.steps` batches.
 * @returns the mean loss of the last 10% of steps
 */
export async function fitClassifier(model: ImageModel, data: ImageData, opts: FitOptions): Promise<number> {
  if (!(opts.steps >= 0)) throw new ConfigError(`train.steps: expected an integer ≥ 0; received ${opts.steps}`);
  const next = shuffledBatches(model, data, opts.batchSize ?? 64, opts.seed ?? 0, opts.flip ?? false);
  const lr = opts.lr ?? 2e-3;
  // tf.train.adam's ε and bias correction, with which the demo backbones were trained
  const optimizer = new Adam({ eps: tf.backend().epsilon(), biasCorrection: 'float32' });
  const tail: number[] = [];
  const tailFrom = Math.floor(opts.steps * 0.9);
  try {
    await trainLoop({
      start: 0,
      total: opts.steps,
      lr: () => lr,
      batch: next,
      objective: supervisedObjective(model, { crossEntropy: tfjsCrossEntropy }),
      optimizer,
      record({ step, loss }) {
        if (step >= tailFrom) tail.push(loss);
        if (opts.onStep && (step + 1) % (opts.every ?? 50) === 0) opts.onStep(step + 1, loss);
      },
      diverged: (step, loss) => new ConfigError(`training of ${model.name} diverged at step ${step + 1} (loss ${loss}); lower its lr`),
    });
  } finally {
    optimizer.dispose();
  }
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : NaN;
}

/** Runs `fn` over the images in batches and concatenates its per-row outputs (width `dim`). */
function mapBatches(images: Uint8Array, size: number, n: number, dim: number, batchSize: number, fn: (x: tf.Tensor4D) => tf.Tensor2D): Float32Array {
  const out = new Float32Array(n * dim);
  for (let s = 0; s < n; s += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, n - s) }, (_, k) => s + k);
    const y = tf.tidy(() => fn(tf.tensor4d(toPixels(images, size, rows), [rows.length, size, size, 3])));
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
