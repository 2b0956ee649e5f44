/**
 * The supervised objective of the training loop: weighted cross-entropy of a model's logits
 * (BN in train mode), with gradient accumulation over micro-batches.
 */
import * as tf from '@tensorflow/tfjs';
import type { ImageModel } from '../core/types.js';
import { weightedCrossEntropy } from './loss.js';
import { optimiserStep, type Objective } from './loop.js';
import type { Optimizer } from './optimizer.js';

/** One effective batch. */
export interface SupervisedBatch {
  /** NHWC float32, [B, H, W, 3]. */
  x: Float32Array;
  /** int32 [B]. */
  labels: Int32Array;
  /** float32 [B] loss weights. */
  weights: Float32Array;
  imageShape: readonly [number, number, number];
}

/**
 * A cross-entropy form: Σᵢ wᵢ·ℓᵢ / `normaliser` of logits [B, C], int32 labels [B] and float32
 * weights [B]. The default is {@link weightedCrossEntropy}; the demo backbones use
 * {@link tfjsCrossEntropy}.
 */
export type CrossEntropy = (logits: tf.Tensor2D, labels: tf.Tensor1D, weights: tf.Tensor1D, normaliser: number) => tf.Scalar;

/**
 * The weighted mean of `tf.losses.softmaxCrossEntropy` (tfjs's fused form, whose gradient is
 * softmax − onehot), which the demo backbones were trained with: it rounds differently from
 * {@link weightedCrossEntropy}'s log-softmax, and keeping it keeps their weights bit for bit.
 */
export const tfjsCrossEntropy: CrossEntropy = (logits, labels, weights, normaliser) => {
  const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(labels, logits.shape[1]), logits, undefined, undefined, tf.Reduction.NONE);
  return tf.div(tf.sum(tf.mul(ce, weights)), normaliser);
};

/** Options of {@link supervisedObjective}. */
export interface SupervisedOptions {
  /** Images per forward/backward pass; gradients are summed over the passes. Default: the whole batch. */
  microBatch?: number;
  labelSmoothing?: number;
  crossEntropy?: CrossEntropy;
}

/** Metrics of a supervised step besides the loss. */
export interface SupervisedMetrics {
  /** Top-1 hits of the batch (train mode). */
  correct: number;
  images: number;
}

/**
 * Supervised training of `model`: each micro-batch's loss is normalised by the weight sum of the
 * whole batch, so that the accumulated gradient is the full batch's.
 */
export function supervisedObjective(model: ImageModel, o: SupervisedOptions = {}): Objective<SupervisedBatch, SupervisedMetrics> {
  const params = model.params();
  const varList = [...params.values()];
  const names = [...params.keys()];
  const nameOf = new Map(varList.map((v, i) => [v.name, names[i]!]));
  const smoothing = o.labelSmoothing ?? 0;
  const crossEntropy: CrossEntropy = o.crossEntropy ?? ((logits, y, w, normaliser) => weightedCrossEntropy(logits, y, w, { smoothing, normaliser }));
  return {
    params,
    async gradients(b) {
      const n = b.labels.length;
      const micro = o.microBatch ?? n;
      const [H, W] = b.imageShape;
      const per = H * W * 3;
      let wsum = 0;
      for (const v of b.weights) wsum += v;
      const acc = new Map<string, tf.Tensor>();
      let loss = 0;
      let correct = 0;
      try {
        for (let m0 = 0; m0 < n; m0 += micro) {
          const m1 = Math.min(n, m0 + micro);
          const { value, grads, hits } = tf.tidy(() => {
            const xb = tf.tensor4d(b.x.subarray(m0 * per, m1 * per), [m1 - m0, H, W, 3]);
            const yb = tf.tensor1d(b.labels.subarray(m0, m1), 'int32');
            const wb = tf.tensor1d(b.weights.subarray(m0, m1), 'float32');
            let logits: tf.Tensor2D | undefined;
            const r = tf.variableGrads(() => {
              logits = tf.keep(model.forwardHead(model.forwardFeatures(xb, true)));
              return crossEntropy(logits, yb, wb, wsum);
            }, varList);
            const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits!, 1), yb), 'int32'));
            logits!.dispose();
            return { ...r, hits };
          });
          // read asynchronously (webgpu reads no other way); the sum is the same in any order of reading
          const [lv, hv] = await Promise.all([value.data(), hits.data()]);
          value.dispose();
          hits.dispose();
          loss += lv[0]!;
          correct += hv[0]!;
          for (const [vname, g] of Object.entries(grads)) {
            const name = nameOf.get(vname)!;
            const prev = acc.get(name);
            if (prev) {
              acc.set(name, tf.add(prev, g));
              prev.dispose();
              g.dispose();
            } else acc.set(name, g);
          }
        }
      } catch (e) {
        for (const g of acc.values()) g.dispose();
        throw e;
      }
      return { loss, correct, images: n, grads: acc };
    },
  };
}

/** A batch with the settings of one step, for {@link trainStep}. */
export type StepBatch = SupervisedBatch & { microBatch?: number; lr: number; labelSmoothing?: number };

/**
 * One optimiser step of the supervised objective outside the loop (tests, benchmarks).
 * @returns the batch's weighted loss and its number of top-1 hits
 */
export async function trainStep(model: ImageModel, opt: Optimizer, b: StepBatch): Promise<{ loss: number; correct: number }> {
  const objective = supervisedObjective(model, { ...(b.microBatch ? { microBatch: b.microBatch } : {}), labelSmoothing: b.labelSmoothing ?? 0 });
  const { loss, correct } = await optimiserStep(objective, opt, b, 0, b.lr);
  return { loss, correct };
}
