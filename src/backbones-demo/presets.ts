/**
 * The demo experiments' settings as TypeScript values: `configs/demo.yaml` and
 * `configs/fashion-mnist.yaml` hold the same numbers for `dcd run`; the science script
 * (`scripts/science/demo.ts`) runs these directly.
 */
import type { DemoExperimentConfig } from './experiment.js';

/** The synthetic "objects in contexts" demo. */
export const DEMO_CONFIG: DemoExperimentConfig = {
  synthetic: {
    imageSize: 16,
    numClasses: 6,
    numContexts: 6,
    subsetClasses: 4,
    train: { size: 2400, homeRate: 0.75 },
    test: { size: 1200 },
    shifted: { size: 800, rareRate: 0.8 },
    pool: { size: 8000, homeRate: 0.4, wrongLabelRate: 0.15, objectlessRate: 0.15 },
  },
  seeds: [0, 1, 2],
  model: { widths: [8, 16, 32], steps: 300, lr: 3e-3, batchSize: 64 },
  finetune: { steps: 100, lr: 1e-3, batchSize: 64 },
  selection: { kVal: 1, kTrain: 4 },
  backbones: [
    { name: 'broad_cnn', kind: 'broad_cnn', widths: [8, 16, 32], broadSize: 3000, steps: 300, lr: 3e-3, seed: 1000 },
    { name: 'random_cnn', kind: 'random_cnn', widths: [16, 32, 64], seed: 1000 },
  ],
};

/** Fashion-MNIST garments on context backgrounds. */
export const FASHION_CONFIG: DemoExperimentConfig = {
  ...DEMO_CONFIG,
  synthetic: { ...DEMO_CONFIG.synthetic, imageSize: 20 },
};
