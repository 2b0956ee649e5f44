import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { mulberry32, streamSeed } from '../src/core/rng.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { createSmallCnn, conv3x3 } from '../src/models/small-cnn.js';
import { trainDemoBackbone } from '../src/train/demo-backbones.js';
import { fitClassifier, toPixels, type ImageData } from '../src/train/in-memory.js';
import { Adam } from '../src/train/optimizer.js';

/**
 * The demo backbones' training as it was before it ran through the shared loop: tf.train.adam,
 * tf.losses.softmaxCrossEntropy, a seeded shuffle reshuffled when it runs out and flips from the
 * same generator. The shared loop must reproduce it bit for bit.
 */
function referenceFit(model: ReturnType<typeof createSmallCnn>, data: ImageData, steps: number, lr: number, seed: number): number[] {
  const rows: number[] = [];
  for (let i = 0; i < data.n; i++) if (data.labels[i]! >= 0 && data.labels[i]! < model.numClasses) rows.push(i);
  const rand = mulberry32(streamSeed(seed, 'fit'));
  const order = rows.slice();
  let pos = order.length;
  const optimizer = tf.train.adam(lr);
  const vars = [...model.params().values()];
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const batch: number[] = [];
    while (batch.length < Math.min(64, rows.length)) {
      if (pos >= order.length) {
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        pos = 0;
      }
      batch.push(order[pos++]!);
    }
    const flips = batch.map(() => rand() < 0.5);
    const lossT = tf.tidy(() => {
      const x = tf.tensor4d(toPixels(data.images, data.size, batch, flips), [batch.length, data.size, data.size, 3]);
      const y = tf.oneHot(tf.tensor1d(batch.map((i) => data.labels[i]!), 'int32'), model.numClasses);
      const w = tf.tensor1d(batch.map(() => 1));
      return optimizer.minimize(() => {
        const logits = model.forwardHead(model.forwardFeatures(x, true));
        const ce = tf.losses.softmaxCrossEntropy(y, logits, undefined, undefined, tf.Reduction.NONE);
        return tf.div(tf.sum(tf.mul(ce, w)), tf.sum(w)) as tf.Scalar;
      }, true, vars)!;
    });
    losses.push(lossT.dataSync()[0]!);
    lossT.dispose();
  }
  optimizer.dispose();
  return losses;
}

describe('small CNN (im2col conv)', () => {
  it('conv3x3 equals tf.conv2d with the same weights', async () => {
    await initBackend('wasm', { quiet: true });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 6, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const w = tf.randomNormal([3, 3, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D; // HWIO
      const b = tf.randomNormal([4], 0, 1, 'float32', 3) as tf.Tensor1D;
      const ref = tf.add(tf.conv2d(x, w, 1, 'same'), b);
      const got = conv3x3(x, w.reshape([27, 4]) as tf.Tensor2D, b);
      expect(got.shape).toEqual([2, 5, 6, 4]);
      const diff = tf.max(tf.abs(tf.sub(ref, got))).dataSync()[0]!;
      expect(diff).toBeLessThan(1e-4);
    });
    const m = createSmallCnn({ widths: [4, 8], numClasses: 3, seed: 0 });
    const f = tf.tidy(() => m.forwardHead(m.forwardFeatures(tf.zeros([2, 16, 16, 3]) as tf.Tensor4D)));
    expect(f.shape).toEqual([2, 3]);
    f.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a broad_cnn backbone is trained on the broad draw only and has no head', async () => {
    await initBackend('wasm', { quiet: true });
    const before = tf.memory().numTensors;
    const m = await trainDemoBackbone({ kind: 'broad_cnn', widths: [4, 8], broadSize: 72, steps: 3 }, { imageSize: 16 });
    expect(m.numClasses).toBe(36); // joint (class, context) labels: 6 × 6
    expect(m.numFeatures).toBe(8);
    m.dispose();
    const r = await trainDemoBackbone({ kind: 'random_cnn', widths: [4, 8] }, {});
    expect(r.numClasses).toBe(0);
    r.dispose();
    await expect(trainDemoBackbone({ kind: 'self' }, {})).rejects.toThrow(/debugged model itself/);
    expect(tf.memory().numTensors).toBe(before);
  });
});


describe('demo backbone training through the shared loop', () => {
  // the demo trains on these (native where its addon is built)
  for (const backend of ['wasm', ...(registerNativeBackend().ok ? ['native'] : [])]) {
    it(`gives bit for bit the weights and losses of tf.train.adam + softmaxCrossEntropy (${backend})`, async () => {
      await initBackend(backend, { quiet: true });
      const d = generateSynthetic({ imageSize: 16, train: { size: 100, homeRate: 0.75 }, test: { size: 6 }, shifted: { size: 6, rareRate: 0.8 }, pool: { size: 6 } }, 3);
      const data = d.sets.train;
      const ref = createSmallCnn({ widths: [4, 8], numClasses: 6, seed: 5 });
      const refLosses = referenceFit(ref, data, 7, 3e-3, 11);
      const before = tf.memory().numTensors;
      const m = createSmallCnn({ widths: [4, 8], numClasses: 6, seed: 5 });
      const losses: number[] = [];
      const tail = await fitClassifier(m, data, { steps: 7, lr: 3e-3, seed: 11, flip: true, every: 1, onStep: (_s, l) => losses.push(l) });
      expect(losses).toEqual(refLosses);
      expect(tail).toBe(refLosses[6]);
      for (const [k, v] of m.params()) expect(Array.from(v.dataSync()), k).toEqual(Array.from(ref.params().get(k)!.dataSync()));
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
      ref.dispose();
    }, 300_000);
  }

  it('Adam with float32 bias correction is tf.train.adam, with exact correction PyTorch\'s formula', async () => {
    await initBackend('cpu', { quiet: true });
    const before = tf.memory().numTensors;
    const param = () => tf.tidy(() => tf.variable(tf.tensor1d([0.5, -1.25, 2])));
    const [a, b, c] = [param(), param(), param()];
    const ref = tf.train.adam(0.01);
    const ours = new Adam({ eps: tf.backend().epsilon(), biasCorrection: 'float32' });
    const exact = new Adam({ eps: 1e-8 });
    const g = tf.tensor1d([0.3, -0.7, 0.01]);
    for (let t = 1; t <= 40; t++) {
      ref.applyGradients({ [a.name]: g });
      ours.step(new Map([['p', b]]), new Map([['p', g]]), 0.01);
      exact.step(new Map([['p', c]]), new Map([['p', g]]), 0.01);
    }
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    // a constant gradient: m̂ = g and v̂ = g², so each step moves p by lr·g/(|g| + ε), about lr·sign(g)
    const want = [0.5 - 0.4 * (0.3 / (0.3 + 1e-8)), -1.25 + 0.4 * (0.7 / (0.7 + 1e-8)), 2 - 0.4 * (0.01 / (0.01 + 1e-8))];
    Array.from(c.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 4));
    ref.dispose();
    ours.dispose();
    exact.dispose();
    tf.dispose([a, b, c, g]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
