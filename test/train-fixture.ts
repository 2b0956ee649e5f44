/**
 * The PyTorch one-step training fixture (test/fixtures/train/step.safetensors) as a dataset the
 * trainer visits in the fixture's sample order: sample i sits at the position that the
 * trainer's seeded epoch order (8 samples, seed 7, epoch 0) visits i-th.
 */
import { fromArrays } from '../src/train/dataset.js';
import { epochOrder } from '../src/train/trainer.js';

/** `x`: NHWC float32 [8, 32, 32, 3]; `y`, `w`: the fixture's labels and sample weights. */
export function fixtureInTrainerOrder(x: Float32Array, y: Int32Array, w: Float32Array) {
  const per = 32 * 32 * 3;
  const images = new Float32Array(8 * per);
  const labels = new Int32Array(8);
  const weights = new Float32Array(8);
  epochOrder(8, 7, 0).forEach((k, i) => {
    images.set(x.subarray(i * per, (i + 1) * per), k * per);
    labels[k] = y[i]!;
    weights[k] = w[i]!;
  });
  return fromArrays({ images, shape: [32, 32, 3], labels, weights });
}
