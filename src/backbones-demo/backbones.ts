/**
 * Backbones for the embedded demo.
 *
 * The paper's heldout gain comes from a backbone that keeps *context* in its features
 * (DINO, pre-trained on broad data): the nearest neighbours of a failure then share both
 * its object and its setting. The demo's backbones are therefore never trained on the
 * debug sets (train, test, mfreq, complement, pool); each is documented by what it saw:
 *
 * - `broad_cnn`: a small CNN trained on a separate *broad draw* ({@link generateBroad}:
 *   every (class, context) pair equally often, no label noise, its own seed stream) to
 *   predict the joint (class, context) label, so its features keep both object and setting.
 * - `random_cnn`: the same architecture, untrained (seeded random weights): random
 *   convolutional features, which keep colour and texture (context) but little shape.
 * - `self`: the debugged model's own penultimate features (the paper's "ResNet standard"
 *   analogue); it is trained on the debug train set, so it is a contrast, not a default.
 */
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { generateBroad, type DeepPartial, type ObjectSource, type SyntheticOptions, syntheticOptions } from '../data/synthetic.js';
import { createSmallCnn } from './small-cnn.js';
import { fitClassifier } from './fit.js';

/** Kinds of demo backbones. */
export const DEMO_BACKBONES = ['broad_cnn', 'random_cnn', 'self'] as const;
export type DemoBackboneKind = (typeof DEMO_BACKBONES)[number];

/** How to build one demo backbone. */
export interface DemoBackboneSpec {
  kind: DemoBackboneKind;
  /** Conv widths; default [16, 32, 64]. */
  widths?: number[];
  /** Broad-draw size (broad_cnn). */
  broadSize?: number;
  /** Training steps of batch 64 (broad_cnn). */
  steps?: number;
  lr?: number;
  /** Seed of the weights and of the broad draw; fixed across experiment seeds like a public checkpoint. */
  seed?: number;
}

/**
 * Builds a demo backbone (head-less use: call `forwardFeatures`). `self` is not built
 * here: the experiment passes the debugged model itself.
 *
 * @param spec what to build and train
 * @param synthetic the benchmark's options (image size, classes, contexts) for the broad draw
 * @param objects object source (Fashion-MNIST garments, or shapes by default)
 */
export async function trainDemoBackbone(spec: DemoBackboneSpec, synthetic: DeepPartial<SyntheticOptions>, objects?: ObjectSource, onStep?: (step: number, loss: number) => void): Promise<ImageModel> {
  const o = syntheticOptions(objects ? { ...synthetic, numClasses: objects.numClasses } : synthetic);
  const seed = spec.seed ?? 1000;
  switch (spec.kind) {
    case 'random_cnn':
      return createSmallCnn({ widths: spec.widths ?? [16, 32, 64], numClasses: 0, seed, name: 'random_cnn' });
    case 'broad_cnn': {
      const broad = generateBroad(o, spec.broadSize ?? 3000, seed, objects);
      const joint = new Int32Array(broad.n);
      for (let i = 0; i < broad.n; i++) joint[i] = broad.labels[i]! * o.numContexts + broad.contexts[i]!;
      const m = createSmallCnn({ widths: spec.widths ?? [16, 32, 64], numClasses: o.numClasses * o.numContexts, seed, name: 'broad_cnn' });
      await fitClassifier(m, { images: broad.images, size: broad.size, n: broad.n, labels: joint }, { steps: spec.steps ?? 400, lr: spec.lr ?? 2e-3, seed, flip: true, onStep });
      return m;
    }
    case 'self':
      throw new ConfigError('backbone "self" is the debugged model itself: the experiment supplies it, trainDemoBackbone does not build it');
  }
}

/** Labelled in-memory images a demo backbone can learn from (a folder dataset's pool or an ImageFolder). */
export interface DemoTrainingImages {
  /** HWC uint8 RGB, [n, size, size, 3]. */
  images: Uint8Array;
  size: number;
  n: number;
  /** Class per image; rows with label < 0 are skipped. */
  labels: Int32Array;
  numClasses: number;
}

/**
 * Builds a demo backbone from given images instead of a synthetic broad draw: `broad_cnn`
 * learns their labels, `random_cnn` stays untrained (seeded).
 */
export async function trainDemoBackboneOn(spec: DemoBackboneSpec, data: DemoTrainingImages, onStep?: (step: number, loss: number) => void): Promise<ImageModel> {
  const seed = spec.seed ?? 1000;
  const widths = spec.widths ?? [16, 32, 64];
  if (spec.kind === 'random_cnn') return createSmallCnn({ widths, numClasses: 0, seed, name: 'random_cnn' });
  if (spec.kind !== 'broad_cnn') throw new ConfigError(`demo backbone kind "${spec.kind}": only broad_cnn and random_cnn learn from given images`);
  const m = createSmallCnn({ widths, numClasses: data.numClasses, seed, name: 'broad_cnn' });
  await fitClassifier(m, data, { steps: spec.steps ?? 400, lr: spec.lr ?? 2e-3, seed, flip: true, onStep });
  return m;
}
