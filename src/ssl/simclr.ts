/**
 * SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of
 * Visual Representations", 2020, Eq. 1), the second `pretrain.method` beside DINO. It shares
 * DINO's multi-crop augmentation (its two global views are SimCLR's pair) and training loop
 * (src/ssl/train.ts); its projection is the DINO head's MLP up to the L2-normalised
 * bottleneck (DinoHead.project).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';

/**
 * NT-Xent over 2B L2-normalised projections, view-major: rows b and B + b are a positive pair,
 * every other row of the batch a negative.
 *
 * @param z [2B, D], rows L2-normalised
 * @param temperature τ
 * @returns mean over the 2B anchors of −log( exp(z_i·z_p(i)/τ) / Σ_{k≠i} exp(z_i·z_k/τ) )
 */
export function ntXentLoss(z: tf.Tensor2D, temperature: number): tf.Scalar {
  const n = z.shape[0];
  if (n % 2 !== 0 || n < 4) throw new ConfigError(`ntXentLoss: expected [2B, D] with B ≥ 2 (two views per image); received [${z.shape.join(', ')}]`);
  if (!(temperature > 0)) throw new ConfigError(`pretrain.temperature: expected a number > 0; received ${temperature}`);
  const B = n / 2;
  return tf.tidy(() => {
    const sim = tf.div(tf.matMul(z, z, false, true), temperature);
    // exclude self-similarity: −∞ on the diagonal (a large negative constant keeps gradients finite)
    const masked = tf.sub(sim, tf.mul(tf.eye(n), 1e9));
    const logp = tf.logSoftmax(masked);
    const pos = Int32Array.from({ length: n }, (_, i) => (i < B ? i + B : i - B));
    const pick = tf.oneHot(tf.tensor1d(pos, 'int32'), n);
    return tf.neg(tf.mean(tf.sum(tf.mul(pick, logp), 1))) as tf.Scalar;
  });
}
