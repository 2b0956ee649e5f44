/**
 * Backbones for the embedded demo: small CNNs (src/models/small-cnn.ts, registry name
 * `small_cnn`) trained by {@link fitClassifier}.
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
import type { DemoPretrainConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { generateBroad, type DeepPartial, type ObjectSource, type SyntheticOptions, syntheticOptions } from '../data/synthetic.js';
import { createSmallCnn } from '../models/small-cnn.js';
import { fitClassifier, type ImageData } from './in-memory.js';

/**
 * How to build one demo backbone: a config's `pretrain` block of a `weights: demo` backbone
 * (src/core/config.ts documents its keys) but its data, with the kind given.
 */
export type DemoBackboneSpec = Omit<DemoPretrainConfig, 'data' | 'kind'> & { kind: NonNullable<DemoPretrainConfig['kind']> };

/**
 * Builds a demo backbone (head-less use: call `forwardFeatures`). `self` is not built
 * here: the experiment passes the debugged model itself.
 *
 * @param spec what to build and train
 * @param synthetic the benchmark's options (image size, classes, contexts) for the broad draw
 * @param objects object source (Fashion-MNIST garments, or shapes by default)
 */
export async function trainDemoBackbone(
  spec: DemoBackboneSpec,
  synthetic: DeepPartial<SyntheticOptions>,
  objects?: ObjectSource,
  onStep?: (step: number, loss: number) => void,
): Promise<ImageModel> {
  if (spec.kind === 'self') throw new ConfigError('backbone "self" is the debugged model itself: the experiment supplies it, trainDemoBackbone does not build it');
  if (spec.kind !== 'broad_cnn') return trainDemoBackboneOn(spec, { images: new Uint8Array(0), size: 0, n: 0, labels: new Int32Array(0), numClasses: 0 }, onStep);
  const o = syntheticOptions(objects ? { ...synthetic, numClasses: objects.numClasses } : synthetic);
  const broad = generateBroad(o, spec.broadSize ?? 3000, spec.seed ?? 1000, objects);
  // the joint (class, context) label
  const labels = Int32Array.from(broad.labels, (y, i) => y * o.numContexts + broad.contexts[i]!);
  return trainDemoBackboneOn(spec, { images: broad.images, size: broad.size, n: broad.n, labels, numClasses: o.numClasses * o.numContexts }, onStep);
}

/** Labelled in-memory images a demo backbone can learn from (a broad draw, a folder dataset's pool or an ImageFolder). */
export type DemoTrainingImages = ImageData & { numClasses: number };

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
  try {
    await fitClassifier(m, data, { steps: spec.steps ?? 400, lr: spec.lr ?? 2e-3, seed, flip: true, ...(onStep ? { onStep, every: 1 } : {}) });
    return m;
  } catch (e) {
    m.dispose();
    throw e;
  }
}
