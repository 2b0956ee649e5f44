import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { checkCriterion, formatTable, runDemoExperiment, type DemoExperimentConfig } from '../src/backbones-demo/experiment.js';
import { createSmallCnn, conv3x3 } from '../src/backbones-demo/small-cnn.js';
import { trainDemoBackbone } from '../src/backbones-demo/backbones.js';

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
    const m = await trainDemoBackbone({ kind: 'broad_cnn', widths: [4, 8], broadSize: 72, steps: 3 }, { imageSize: 16 });
    expect(m.numClasses).toBe(36); // joint (class, context) labels: 6 × 6
    expect(m.numFeatures).toBe(8);
    m.dispose();
    const r = await trainDemoBackbone({ kind: 'random_cnn', widths: [4, 8] }, {});
    expect(r.numClasses).toBe(0);
    r.dispose();
    await expect(trainDemoBackbone({ kind: 'self' }, {})).rejects.toThrow(/debugged model itself/);
  });
});

describe('demo experiment (tiny)', () => {
  it('runs every method on every seed, with consistent sizes and no leaked tensor', async () => {
    await initBackend('wasm', { quiet: true });
    const cfg: DemoExperimentConfig = {
      synthetic: {
        train: { size: 240, homeRate: 0.75 },
        test: { size: 60 },
        shifted: { size: 120, rareRate: 0.8 },
        pool: { size: 400, homeRate: 0.4, wrongLabelRate: 0.15, objectlessRate: 0.15 },
      },
      seeds: [0, 1],
      model: { widths: [4, 8], steps: 10, lr: 3e-3, batchSize: 32 },
      finetune: { steps: 3, lr: 1e-3, batchSize: 32 },
      selection: { kVal: 1, kTrain: 2 },
      backbones: [
        { name: 'broad', kind: 'broad_cnn', widths: [4, 8], broadSize: 72, steps: 3 },
        { name: 'self', kind: 'self' },
      ],
    };
    const before = tf.memory().numTensors;
    const res = await runDemoExperiment(cfg, () => undefined);
    expect(tf.memory().numTensors).toBe(before);
    expect(res.methods).toEqual(['original', 'random', 'complete', 'dcd-broad', 'dcd-self']);
    expect(res.results).toHaveLength(10);
    for (const f of res.failures) {
      const orig = res.results.find((r) => r.seed === f.seed && r.method === 'original')!;
      expect(orig.acc.seed).toBe(f.seedSize ? 0 : NaN); // the original gets every seed image wrong
      const dcd = res.results.find((r) => r.seed === f.seed && r.method === 'dcd-broad')!;
      const rnd = res.results.find((r) => r.seed === f.seed && r.method === 'random')!;
      expect(dcd.added).toBeLessThanOrEqual(2 * f.seedSize);
      expect(rnd.added).toBe(dcd.added); // Random takes as many per class as DCD
      const complete = res.results.find((r) => r.seed === f.seed && r.method === 'complete')!;
      expect(complete.added).toBe(400);
    }
    expect(formatTable(res)).toMatch(/\| dcd-broad \| \d+ \| /);
    expect(checkCriterion(res)).toHaveLength(2);
  }, 180_000);
});
