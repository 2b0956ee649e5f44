/**
 * Training hooks (see {@link TrainHook}): each is a pure function of its inputs plus a
 * thin wrapper, so the loop stays small.
 */
import { ConfigError } from '../core/errors.js';
import type { TrainHook } from './trainer.js';

/**
 * Per-class factors that give every class the same total weight: n / (C · W_c), where
 * W_c is the summed sample weight of class c (classes without samples get 0).
 */
export function balancedClassWeights(labels: Int32Array, weights: Float32Array | undefined, numClasses: number): Float32Array {
  const tot = new Float64Array(numClasses);
  let all = 0;
  labels.forEach((y, i) => {
    const w = weights?.[i] ?? 1;
    tot[y] = tot[y]! + w;
    all += w;
  });
  const present = tot.filter((v) => v > 0).length;
  return Float32Array.from(tot, (v) => (v > 0 ? all / (present * v) : 0));
}

/** Multiplies each sample's loss weight by its class's factor (class re-weighting). */
export function classWeightsHook(perClass: Float32Array): TrainHook {
  return {
    name: 'class-weights',
    weights(w, labels) {
      return Float32Array.from(w, (v, i) => {
        const y = labels[i]!;
        if (!(y >= 0 && y < perClass.length)) throw new ConfigError(`class-weights hook: label ${y} has no weight (${perClass.length} classes)`);
        return v * perClass[y]!;
      });
    },
  };
}
