import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';

/** Deterministic pseudo-random values in [-1, 1). */
function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

/** dL/dW for L = Σ conv2d(x, w) ⊙ r on the given backend. */
function filterGrad(backend: string, xs: number[], ws: number[], stride: number, pad: Pad, seed: number): { data: Float32Array; shape: number[] } {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor4d(rand(xs.reduce((a, b) => a * b), seed), xs as [number, number, number, number]);
    const w = tf.tensor4d(rand(ws.reduce((a, b) => a * b), seed + 1), ws as [number, number, number, number]);
    const y0 = tf.conv2d(x, w, stride, pad);
    const r = tf.tensor(rand(y0.size, seed + 2), y0.shape);
    const g = tf.grad((wv: tf.Tensor4D) => tf.sum(tf.mul(tf.conv2d(x, wv, stride, pad), r)))(w);
    return { data: g.dataSync() as Float32Array, shape: g.shape };
  });
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m / scale;
}

describe('wasm Conv2DBackpropFilter', () => {
  beforeAll(async () => {
    await initBackend('wasm', { quiet: true });
  });

  const cases: { xs: number[]; ws: number[]; stride: number; pad: Pad }[] = [
    { xs: [1, 7, 9, 3], ws: [3, 3, 3, 5], stride: 1, pad: 'same' },
    { xs: [2, 9, 7, 4], ws: [3, 3, 4, 6], stride: 2, pad: 'same' },
    { xs: [2, 11, 10, 3], ws: [7, 7, 3, 8], stride: 2, pad: 'same' },
    { xs: [1, 13, 12, 3], ws: [7, 7, 3, 4], stride: 2, pad: [[0, 0], [3, 3], [3, 3], [0, 0]] },
    { xs: [3, 8, 8, 5], ws: [1, 1, 5, 7], stride: 1, pad: 'valid' },
    { xs: [2, 9, 9, 6], ws: [1, 1, 6, 4], stride: 2, pad: 'valid' },
    { xs: [1, 10, 8, 2], ws: [3, 3, 2, 3], stride: 2, pad: 'valid' },
    { xs: [2, 6, 5, 3], ws: [3, 3, 3, 2], stride: 1, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
    // few output positions, wide channels: the im2col order
    { xs: [1, 3, 3, 8], ws: [3, 3, 8, 32], stride: 1, pad: 'same' },
    { xs: [2, 5, 4, 16], ws: [3, 3, 16, 24], stride: 2, pad: 'same' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`matches cpu: x ${c.xs.join('×')}, w ${c.ws.join('×')}, stride ${c.stride}, pad ${JSON.stringify(c.pad)}`, () => {
      const before = (tf.setBackend('wasm'), tf.memory().numTensors);
      const want = filterGrad('cpu', c.xs, c.ws, c.stride, c.pad, 17 + i);
      const got = filterGrad('wasm', c.xs, c.ws, c.stride, c.pad, 17 + i);
      expect(got.shape).toEqual(c.ws);
      expect(maxRelErr(got.data, want.data)).toBeLessThan(1e-5);
      tf.setBackend('wasm');
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('gives the gradients of a conv/BN/ReLU/max-pool/dense block equal to cpu (every kernel present)', () => {
    function grads(backend: string): Float32Array[] {
      tf.setBackend(backend);
      return tf.tidy(() => {
        const x = tf.tensor4d(rand(2 * 12 * 12 * 3, 5), [2, 12, 12, 3]);
        const w1 = tf.tensor4d(rand(3 * 3 * 3 * 4, 6), [3, 3, 3, 4]);
        const gamma = tf.tensor1d(rand(4, 7)).add(1.5);
        const beta = tf.tensor1d(rand(4, 8));
        const w2 = tf.tensor2d(rand(4 * 3, 9), [4, 3]);
        const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor): tf.Scalar => {
          const y = tf.conv2d(x, a as tf.Tensor4D, 2, 'same');
          const { mean, variance } = tf.moments(y, [0, 1, 2]);
          const bn = tf.relu(tf.batchNorm(y, mean, variance, c as tf.Tensor1D, b as tf.Tensor1D, 1e-5));
          const p = tf.maxPool(bn as tf.Tensor4D, 3, 2, 'same');
          const feat = tf.mean(p, [1, 2]) as tf.Tensor2D;
          const logits = tf.matMul(feat, d as tf.Tensor2D);
          return tf.losses.softmaxCrossEntropy(tf.oneHot([0, 2], 3), logits) as tf.Scalar;
        };
        const gs = tf.grads(f)([w1, beta, gamma, w2]);
        return gs.map((g) => g.dataSync() as Float32Array);
      });
    }
    const want = grads('cpu');
    const got = grads('wasm');
    for (let i = 0; i < want.length; i++) expect(maxRelErr(got[i]!, want[i]!)).toBeLessThan(1e-4);
  });
});
