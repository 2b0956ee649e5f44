/**
 * Losses of the trainer, as pure functions (composer style: the trainer calls them,
 * hooks change their inputs).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';

/**
 * Label smoothing as in PyTorch's `CrossEntropyLoss(label_smoothing=ε)`: the target
 * distribution is (1 − ε)·onehot(y) + ε / C.
 * @param labels int32 [B]
 * @returns float32 [B, C]
 */
export function smoothLabels(labels: tf.Tensor1D, numClasses: number, smoothing: number): tf.Tensor2D {
  if (!(smoothing >= 0 && smoothing < 1)) throw new ConfigError(`label smoothing must be in [0, 1), received ${smoothing}`);
  return tf.tidy(() => {
    const oh = tf.oneHot(tf.cast(labels, 'int32'), numClasses).toFloat() as tf.Tensor2D;
    return smoothing === 0 ? oh : (tf.add(tf.mul(oh, 1 - smoothing), smoothing / numClasses) as tf.Tensor2D);
  });
}

/**
 * Cross-entropy with per-sample weights: Σᵢ wᵢ·ℓᵢ / `normaliser`, where ℓᵢ is the
 * (optionally label-smoothed) cross-entropy of sample i and `normaliser` defaults to
 * Σᵢ wᵢ (the batch's weight sum, as PyTorch's class-weighted `reduction='mean'`).
 * With gradient accumulation the trainer passes the weight sum of the whole
 * effective batch, so the accumulated gradient equals the full-batch one.
 *
 * @param logits float32 [B, C]
 * @param labels int32 [B], each in [0, C)
 * @param weights float32 [B], ≥ 0
 * @returns scalar
 */
export function weightedCrossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  weights: tf.Tensor1D,
  opts: { smoothing?: number; normaliser?: number } = {},
): tf.Scalar {
  const [B, C] = logits.shape;
  if (labels.shape[0] !== B || weights.shape[0] !== B)
    throw new ConfigError(`weightedCrossEntropy: logits have ${B} rows, labels ${labels.shape[0]}, weights ${weights.shape[0]}; they must match`);
  return tf.tidy(() => {
    const target = smoothLabels(labels, C, opts.smoothing ?? 0);
    const logp = tf.logSoftmax(logits);
    const perSample = tf.neg(tf.sum(tf.mul(target, logp), 1)); // [B]
    const num = tf.sum(tf.mul(perSample, weights));
    // an all-zero-weight batch contributes nothing (instead of 0/0 = NaN); no read-back: the sum stays a tensor
    const den = opts.normaliser != null ? Math.max(opts.normaliser, 1e-12) : tf.maximum(tf.sum(weights), 1e-12);
    return tf.div(num, den) as tf.Scalar;
  });
}
