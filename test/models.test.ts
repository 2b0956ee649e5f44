import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { createModel, getModelSpec, modelNames } from '../src/models/registry.js';
import { bicubicMatrix } from '../src/models/vit.js';
import { readFileSync } from 'node:fs';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('model registry contract', () => {
  for (const name of ['resnet_tiny', 'resnet_bottleneck_tiny', 'resnet_robust_tiny', 'vit_tiny']) {
    it(`${name}: features and logits have the declared shapes, no tensor leaks`, () => {
      const spec = getModelSpec(name);
      const start = tf.memory().numTensors;
      const m = createModel(name, { numClasses: 5, seed: 1 });
      const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      tf.dispose(m.forwardFeatures(x)); // the first eval call may cache folded conv+BN weights in the model
      const before = tf.memory().numTensors;
      const f = m.forwardFeatures(x);
      expect(f.shape).toEqual([2, spec.numFeatures]);
      const l = m.forwardHead(f);
      expect(l.shape).toEqual([2, 5]);
      expect(Number.isFinite(f.dataSync()[0])).toBe(true);
      tf.dispose([f, l]);
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      m.dispose();
      expect(tf.memory().numTensors, 'dispose frees the model, caches included').toBe(start);
    });
  }

  it('official architectures have exactly the official keys and shapes (torchvision resnet50, DINO ViT-S/16, ViT-S/8)', () => {
    const official = JSON.parse(readFileSync('test/fixtures/parity/official_keys.json', 'utf8')) as Record<string, Record<string, number[]>>;
    const cases: [string, string, number][] = [
      ['resnet50', 'resnet50', 25_557_032],
      ['resnet50_robust', 'resnet50', 25_557_032],
      ['dino_vits16', 'dino_vits16', 21_665_664],
      ['dino_vits8', 'dino_vits8', 21_665_664 - 384 * 3 * (256 - 64) + (785 - 197) * 384],
    ];
    for (const [name, ref, nParams] of cases) {
      const m = createModel(name);
      const ours: Record<string, number[]> = {};
      for (const [k, v] of [...m.params(), ...m.buffers()]) if (!k.startsWith('normalizer.')) ours[k] = v.shape;
      const theirs = Object.fromEntries(Object.entries(official[ref]!).filter(([k]) => !k.endsWith('num_batches_tracked')));
      expect(ours, name).toEqual(theirs);
      let n = 0;
      for (const v of m.params().values()) n += v.size;
      expect(n, `${name} parameters`).toBe(nParams);
      expect(m.numFeatures).toBe(getModelSpec(name).numFeatures);
      m.dispose();
    }
  });

  it('lists the official backbones', () => {
    for (const n of ['resnet50', 'resnet50_robust', 'dino_vits16', 'dino_vits8', 'resnet_tiny', 'vit_tiny']) expect(modelNames()).toContain(n);
    expect(() => getModelSpec('resnet51')).toThrow(/unknown model "resnet51".*resnet50/);
  });

  it('same seed gives the same weights, another seed others', () => {
    const a = createModel('resnet_tiny', { seed: 7 });
    const b = createModel('resnet_tiny', { seed: 7 });
    const c = createModel('resnet_tiny', { seed: 8 });
    const w = (m: typeof a) => m.params().get('layer1.0.conv1.weight')!.dataSync();
    expect(Array.from(w(a))).toEqual(Array.from(w(b)));
    expect(Array.from(w(a))).not.toEqual(Array.from(w(c)));
    // kaiming normal fan_out: std ≈ sqrt(2 / (16·9))
    const v = w(a);
    const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    expect(std).toBeGreaterThan(0.8 * Math.sqrt(2 / 144));
    expect(std).toBeLessThan(1.2 * Math.sqrt(2 / 144));
    [a, b, c].forEach((m) => m.dispose());
  });

  it('ResNet eval folds BN into the convolutions: same features as the unfolded path, refolded after Variable.assign', () => {
    for (const name of ['resnet_tiny', 'resnet_bottleneck_tiny']) {
      const m = createModel(name, { seed: 4 });
      // non-trivial BN statistics and affine, so a wrong fold shows
      let seed = 20;
      for (const [k, v] of m.buffers()) if (k.endsWith('running_mean') || k.endsWith('running_var')) v.assign(tf.randomUniform(v.shape, k.endsWith('var') ? 0.5 : -0.5, k.endsWith('var') ? 2 : 0.5, 'float32', seed++));
      for (const [k, v] of m.params()) if (/bn\d\.|downsample\.1\./.test(k)) v.assign(tf.randomUniform(v.shape, 0.5, 1.5, 'float32', seed++));
      const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
      // inside a gradient tape the model never uses folded weights: the reference eval path
      const unfolded = (): Float32Array => {
        let out: tf.Tensor | undefined;
        const g = tf.variableGrads(() => {
          out = tf.keep(m.forwardFeatures(x, false));
          return tf.sum(out) as tf.Scalar;
        });
        tf.dispose([g.value, ...Object.values(g.grads)]);
        const d = out!.dataSync() as Float32Array;
        out!.dispose();
        return d;
      };
      const folded = (): Float32Array => tf.tidy(() => m.forwardFeatures(x).dataSync() as Float32Array);
      const close = (a: Float32Array, b: Float32Array, what: string) => {
        let scale = 0, worst = 0;
        for (let i = 0; i < a.length; i++) {
          scale = Math.max(scale, Math.abs(b[i]!));
          worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        }
        expect(worst / scale, what).toBeLessThan(1e-5);
      };
      close(folded(), unfolded(), `${name}: folded vs unfolded`);
      // a changed BN statistic (as after training) must be seen by the next eval call
      const rv = m.buffers().get('bn1.running_var')!;
      const before = folded();
      rv.assign(tf.mul(rv, 4));
      const after = folded();
      close(after, unfolded(), `${name}: after assign`);
      expect(Math.max(...after.map((v, i) => Math.abs(v - before[i]!)))).toBeGreaterThan(1e-3);
      x.dispose();
      m.dispose();
    }
  });

  it('resnet_tiny trains: gradients reach every parameter and BN running stats update (unbiased var)', () => {
    const m = createModel('resnet_tiny', { numClasses: 3, seed: 2 });
    const x = tf.randomNormal([4, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, m.forwardHead(m.forwardFeatures(x, true))) as tf.Scalar, [
      ...m.params().values(),
    ]);
    for (const [name, v] of m.params()) {
      const g = grads[v.name];
      expect(g, name).toBeDefined();
      expect(g!.shape).toEqual(v.shape);
    }
    expect(tf.tidy(() => tf.max(tf.abs(grads[m.params().get('conv1.weight')!.name]!)).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    // conv1 → bn1: running_mean = 0.1·batch mean (started at 0); running_var = 0.9 + 0.1·unbiased var.
    const h = tf.tidy(() => tf.conv2d(x, tf.transpose(m.params().get('conv1.weight')!, [2, 3, 1, 0]) as tf.Tensor4D, 2, 3));
    const { mean, variance } = tf.moments(h, [0, 1, 2]);
    const n = h.shape[0] * h.shape[1] * h.shape[2];
    const rm = m.buffers().get('bn1.running_mean')!.dataSync();
    const rv = m.buffers().get('bn1.running_var')!.dataSync();
    const mm = mean.dataSync();
    const vv = variance.dataSync();
    for (let c = 0; c < 4; c++) {
      expect(rm[c]).toBeCloseTo(0.1 * mm[c]!, 5);
      expect(rv[c]).toBeCloseTo(0.9 + (0.1 * vv[c]! * n) / (n - 1), 5);
    }
    tf.dispose([h, mean, variance, x, y]);
    m.dispose();
  });
});

describe('bicubic position-embedding interpolation', () => {
  it('rows sum to 1 and identity scale reproduces the grid', () => {
    const m = bicubicMatrix(4, 6, 6.1 / 4);
    for (let o = 0; o < 6; o++) {
      let s = 0;
      for (let i = 0; i < 4; i++) s += m[o * 4 + i]!;
      expect(s).toBeCloseTo(1, 6);
    }
    const id = bicubicMatrix(5, 5, 1);
    for (let o = 0; o < 5; o++) for (let i = 0; i < 5; i++) expect(id[o * 5 + i]).toBeCloseTo(o === i ? 1 : 0, 6);
  });
});
