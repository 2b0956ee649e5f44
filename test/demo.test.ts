import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/core/backend.js';
import { checkCriterion, formatTable, runDemoExperiment, type DemoExperimentConfig } from '../src/backbones-demo/experiment.js';

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
