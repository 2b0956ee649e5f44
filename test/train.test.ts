import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { loadWebgpuBackend } from '../src/backends/webgpu.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { ConfigError } from '../src/core/errors.js';
import { ResNet } from '../src/models/resnet.js';
import { readSafetensors } from '../src/models/safetensors.js';
import { weightedCrossEntropy } from '../src/train/loss.js';
import { learningRate } from '../src/train/schedule.js';
import { concatDatasets, fromArrays, fromManifest } from '../src/train/dataset.js';
import { assignWeights } from '../src/models/load.js';
import { initFromCheckpoint } from '../src/train/init.js';
import { createModel } from '../src/models/registry.js';
import { saveCheckpoint } from '../src/models/load.js';
import { WeightsError } from '../src/core/errors.js';
import { trainModel } from '../src/train/trainer.js';
import { trainStep } from '../src/train/supervised.js';
import { fixtureInTrainerOrder } from './train-fixture.js';
import { Sgd } from '../src/train/optimizer.js';
import type { ImageModel } from '../src/core/types.js';

/** A BN-free model (mean-pool, 1x1 projection, linear head): accumulation must then be exact. */
function linearModel(seed: number): ImageModel {
  const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + s));
  const params = tf.tidy(() => new Map<string, tf.Variable>([
    ['proj.weight', tf.variable(tf.tensor2d(r(12, seed), [4, 3]))],
    ['fc.weight', tf.variable(tf.tensor2d(r(12, seed + 1), [3, 4]))],
    ['fc.bias', tf.variable(tf.tensor1d(r(3, seed + 2)))],
  ]));
  return {
    name: 'linear', numFeatures: 4, numClasses: 3,
    forwardFeatures: (x) => tf.tidy(() => tf.relu(tf.matMul(tf.mean(x, [1, 2]) as tf.Tensor2D, tf.transpose(params.get('proj.weight')!)))),
    forwardHead: (f) => tf.tidy(() => tf.add(tf.matMul(f, tf.transpose(params.get('fc.weight')!)), params.get('fc.bias')!) as tf.Tensor2D),
    params: () => params,
    buffers: () => new Map(),
    dispose: () => params.forEach((v) => v.dispose()),
  };
}

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'train', 'step.safetensors');

beforeAll(async () => {
  await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
});

describe('weightedCrossEntropy', () => {
  it('equals Σ wᵢ ℓᵢ / Σ wᵢ computed by hand, with label smoothing', () => {
    const before = tf.memory().numTensors;
    const logits = [
      [2, 0, -1],
      [0.5, 0.5, 3],
      [-2, 1, 0],
    ];
    const labels = [0, 2, 0];
    const w = [1, 3, 0.5];
    const eps = 0.1;
    // by hand: log-softmax per row, target (1-ε)·onehot + ε/C
    let num = 0;
    logits.forEach((row, i) => {
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      let l = 0;
      row.forEach((v, c) => (l -= ((c === labels[i] ? 1 - eps : 0) + eps / 3) * (v - lse)));
      num += w[i]! * l;
    });
    const want = num / (1 + 3 + 0.5);
    const got = tf.tidy(() => weightedCrossEntropy(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), tf.tensor1d(w), { smoothing: eps }).dataSync()[0]!);
    expect(got).toBeCloseTo(want, 5);
    // the first sample alone, weight 1: plain cross-entropy of row 0 without smoothing
    const plain = tf.tidy(() => weightedCrossEntropy(tf.tensor2d([logits[0]!]), tf.tensor1d([0], 'int32'), tf.tensor1d([1])).dataSync()[0]!);
    expect(plain).toBeCloseTo(-(2 - Math.log(Math.exp(2) + 1 + Math.exp(-1))), 5);
    // zero total weight gives 0, not NaN
    const zero = tf.tidy(() => weightedCrossEntropy(tf.tensor2d([logits[0]!]), tf.tensor1d([0], 'int32'), tf.tensor1d([0])).dataSync()[0]!);
    expect(zero).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
  });
  it('rejects mismatched shapes and bad smoothing', () => {
    expect(() => weightedCrossEntropy(tf.zeros([2, 3]) as tf.Tensor2D, tf.tensor1d([0], 'int32'), tf.tensor1d([1, 1]))).toThrow(/logits have 2 rows, labels 1/);
    expect(() => weightedCrossEntropy(tf.zeros([1, 3]) as tf.Tensor2D, tf.tensor1d([0], 'int32'), tf.tensor1d([1]), { smoothing: 1 })).toThrow(ConfigError);
  });
});

describe('schedules', () => {
  it('warm-up, cosine and step follow their formulas', () => {
    const s = { schedule: { kind: 'cosine' as const }, baseLr: 0.1, warmupEpochs: 1 };
    expect(learningRate(s, 0, 10, 110)).toBe(0);
    expect(learningRate(s, 5, 10, 110)).toBeCloseTo(0.05, 10);
    expect(learningRate(s, 10, 10, 110)).toBeCloseTo(0.1, 10);
    expect(learningRate(s, 60, 10, 110)).toBeCloseTo(0.05, 10);
    expect(learningRate(s, 110, 10, 110)).toBeCloseTo(0, 10);
    const st = { schedule: { kind: 'step' as const, milestones: [2, 4], gamma: 0.5 }, baseLr: 1 };
    expect([0, 19, 20, 39, 40, 99].map((k) => learningRate(st, k, 10, 100))).toEqual([1, 1, 0.5, 0.5, 0.25, 0.25]);
  });
});

describe('datasets', () => {
  it('fromArrays normalises uint8, flips by (seed, epoch, id), and concat keeps per-part weights', async () => {
    const img = new Uint8Array(2 * 2 * 3 * 2);
    for (let i = 0; i < img.length; i++) img[i] = i * 10;
    const a = fromArrays({ images: img, shape: [2, 2, 3], labels: [0, 1], mean: [0, 0, 0], std: [1, 1, 1], weights: [1, 2] });
    const x = await a.getBatch(Int32Array.from([1]));
    expect(Array.from(x.slice(0, 3)).map((v) => Math.round(v * 255))).toEqual([120, 130, 140]);
    // some epoch flips image 0: its first pixel becomes the original second pixel
    let flipped = false;
    for (let e = 0; e < 8 && !flipped; e++) {
      const y = await a.getBatch(Int32Array.from([0]), { seed: 1, epoch: e });
      if (Math.round(y[0]! * 255) === 30) flipped = true;
      const again = await a.getBatch(Int32Array.from([0]), { seed: 1, epoch: e });
      expect(Array.from(again)).toEqual(Array.from(y));
    }
    expect(flipped).toBe(true);
    const b = fromArrays({ images: new Float32Array(12), shape: [2, 2, 3], labels: [3], ids: ['z'] });
    const c = concatDatasets([{ dataset: a, idPrefix: 'base/' }, { dataset: b, weight: 0.5, idPrefix: 'add/' }]);
    expect(c.size).toBe(3);
    expect(Array.from(c.weights!)).toEqual([1, 2, 0.5]);
    expect(Array.from(c.labels)).toEqual([0, 1, 3]);
    expect(c.ids).toEqual(['base/0', 'base/1', 'add/z']);
    const cx = await c.getBatch(Int32Array.from([2, 1]));
    expect(Array.from(cx.slice(0, 12))).toEqual(Array(12).fill(0));
    expect(Math.round(cx[12]! * 255)).toBe(120);
    expect(() => fromArrays({ images: new Uint8Array(5), shape: [2, 2, 3], labels: [0] })).toThrow(/not a multiple/);
    expect(() => fromArrays({ images: new Uint8Array(12), shape: [2, 2, 3], labels: [0], weights: [-1] })).toThrow(/weights must be finite and ≥ 0/);
  });
});

describe('gradient accumulation', () => {
  it('micro-batches of 1 and 2 give the full-batch update (weights normalised by the whole batch)', async () => {
    const x = Float32Array.from({ length: 4 * 2 * 2 * 3 }, (_, i) => Math.cos(i * 0.9));
    const batch = { x, labels: Int32Array.from([0, 2, 1, 2]), weights: Float32Array.from([1, 0.5, 2, 0]), imageShape: [2, 2, 3] as const, lr: 0.3 };
    const run = async (micro: number) => {
      const m = linearModel(1);
      const opt = new Sgd({ momentum: 0.9, nesterov: true, weightDecay: 0.01 });
      const losses = [(await trainStep(m, opt, { ...batch, microBatch: micro })).loss, (await trainStep(m, opt, { ...batch, microBatch: micro })).loss];
      const w = [...m.params().values()].map((v) => Array.from(v.dataSync()));
      opt.dispose();
      m.dispose();
      return { losses, w };
    };
    const before = tf.memory().numTensors;
    const full = await run(4);
    for (const micro of [1, 2]) {
      const r = await run(micro);
      r.losses.forEach((l, i) => expect(l).toBeCloseTo(full.losses[i]!, 5));
      r.w.flat().forEach((v, i) => expect(v).toBeCloseTo(full.w.flat()[i]!, 5));
    }
    const fresh = linearModel(1);
    expect(full.w[0]).not.toEqual(Array.from(fresh.params().get('proj.weight')!.dataSync()));
    fresh.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

// On the test backend, and on native too where its addon is built (its fused training BatchNorm
// and gradient kernels are checked against PyTorch here).
// webgpu where Dawn finds an adapter (CI: SwiftShader, see test/webgpu-backend.test.ts); reads are asynchronous, as webgpu needs.
const STEP_BACKENDS = [
  ...new Set([
    process.env.DCD_TEST_BACKEND ?? 'wasm',
    ...(registerNativeBackend().ok ? ['native'] : []),
    ...((await loadWebgpuBackend({ allowSoftware: true })).ok ? ['webgpu'] : []),
  ]),
];
describe.each(STEP_BACKENDS)('one training step against PyTorch (%s)', (backend) => {
  beforeAll(async () => {
    await initBackend(backend, { quiet: true });
  });
  afterAll(async () => {
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });
  it('matches loss, gradients and the weights after two SGD (Nesterov, wd, smoothing, sample weights) steps', async () => {
    const fx = await readSafetensors(FIXTURE);
    const get = (k: string) => fx.tensors.get(k)!;
    const model = new ResNet('resnet_tiny', { block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64] }, { numClasses: 5, seed: 0 });
    const init = new Map([...fx.tensors].filter(([k]) => k.startsWith('init.')).map(([k, v]) => [k.slice(5), v]));
    assignWeights(model, init, FIXTURE);
    const x = get('x').data as Float32Array;
    const y = get('y').data as Int32Array;
    const w = get('w').data as Float32Array;
    const per = 32 * 32 * 3;
    const before = tf.memory().numTensors;

    // gradients of step 1, through the same loss the trainer uses
    const grads = tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const logits = model.forwardHead(model.forwardFeatures(tf.tensor4d(x.subarray(0, 4 * per), [4, 32, 32, 3]), true));
        return weightedCrossEntropy(logits, tf.tensor1d(y.subarray(0, 4), 'int32'), tf.tensor1d(w.subarray(0, 4)), { smoothing: 0.1 });
      }, [...model.params().values()]);
      return grads;
    });
    const names = new Map([...model.params()].map(([k, v]) => [v.name, k]));
    let checked = 0;
    for (const [vn, g] of Object.entries(grads)) {
      const ref = get(`grad.${names.get(vn)}`).data as Float32Array;
      const got = (await g.data()) as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(ref, Math.abs));
      let err = 0;
      for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
      expect(err / scale, names.get(vn)).toBeLessThan(2e-3);
      checked++;
    }
    expect(checked).toBe(model.params().size);
    tf.dispose(Object.values(grads));
    // that forward pass updated BN running stats: restore the initial state
    assignWeights(model, init, FIXTURE);

    // the trainer, fed so that its seeded order visits the fixture's samples in order
    const ds = fixtureInTrainerOrder(x, y, w);
    const out = mkdtempSync(path.join(tmpdir(), 'dcd-train-'));
    const r = await trainModel({
      model, train: ds, epochs: 1, batchSize: 4, lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4,
      schedule: { kind: 'constant' }, labelSmoothing: 0.1, seed: 7, augment: false, outDir: out,
    });
    expect(r.steps).toBe(2);
    const lines = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const losses = lines.filter((l) => l.type === 'step').map((l) => l.loss);
    const refLoss = get('loss').data as Float32Array;
    expect(losses[0]).toBeCloseTo(refLoss[0]!, 4);
    expect(losses[1]).toBeCloseTo(refLoss[1]!, 3);
    for (const [k, v] of [...model.params(), ...model.buffers()]) {
      const ref = get(`final.${k}`).data as Float32Array;
      const got = (await v.data()) as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(ref, Math.abs));
      let err = 0;
      for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
      expect(err / scale, k).toBeLessThan(2e-3);
    }
    // the final weights file is a loadable state dict of the model
    const saved = await readSafetensors(r.weightsFile);
    expect(saved.tensors.size).toBe(model.params().size + model.buffers().size);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});

describe('fine-tuning init', () => {
  it('loads every weight but a head of another class count; refuses another architecture', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-init-'));
    const src = createModel('resnet_tiny', { numClasses: 3, seed: 11 });
    const ck = path.join(dir, 'src.safetensors');
    await saveCheckpoint(src, ck, 'safetensors');
    const dst = createModel('resnet_tiny', { numClasses: 5, seed: 12 });
    const fcBefore = Array.from(dst.params().get('fc.weight')!.dataSync());
    expect(await initFromCheckpoint(dst, ck)).toEqual({ newHead: true });
    expect(Array.from(dst.params().get('layer2.0.conv1.weight')!.dataSync())).toEqual(Array.from(src.params().get('layer2.0.conv1.weight')!.dataSync()));
    expect(Array.from(dst.params().get('fc.weight')!.dataSync())).toEqual(fcBefore);
    const same = createModel('resnet_tiny', { numClasses: 3, seed: 13 });
    expect(await initFromCheckpoint(same, ck)).toEqual({ newHead: false });
    expect(Array.from(same.params().get('fc.weight')!.dataSync())).toEqual(Array.from(src.params().get('fc.weight')!.dataSync()));
    const other = createModel('resnet_bottleneck_tiny', { numClasses: 3 });
    await expect(initFromCheckpoint(other, ck)).rejects.toThrow(WeightsError);
    [src, dst, same, other].forEach((m) => m.dispose());
  });
});

describe('bad training input', () => {
  it('fails when no image of a batch can be decoded, instead of training on nothing', async () => {
    const rows = [0, 1, 2, 3].map((i) => ({ id: `m${i}`, path: `/nonexistent/m${i}.png`, label: i % 2, wnid: '', class_name: '', set: 'train' }));
    const ds = fromManifest(rows, { transform: { resize: 32, crop: 32, mean: [0, 0, 0], std: [1, 1, 1] } });
    const model = createModel('resnet_tiny', { numClasses: 2 });
    const out = mkdtempSync(path.join(tmpdir(), 'dcd-bad-'));
    await expect(trainModel({ model, train: ds, epochs: 1, batchSize: 2, lr: 0.1, outDir: out, augment: false })).rejects.toThrow(/no image of training batch 0 could be decoded \(e\.g\. m\d: missing file\)/);
    const labelled = fromArrays({ images: new Uint8Array(2 * 12), shape: [2, 2, 3], labels: [0, 5] });
    await expect(trainModel({ model, train: labelled, epochs: 1, batchSize: 2, lr: 0.1, outDir: out })).rejects.toThrow(/training sample 1 has label 5; labels must be in \[0, 2\)/);
    await expect(trainModel({ model, train: labelled, epochs: 1, batchSize: 2, lr: 0, outDir: out })).rejects.toThrow(ConfigError);
    model.dispose();
  });
});

describe('trimMetricsJsonl (resume keeps each step once)', () => {
  it('drops the step and epoch lines written after the checkpoint, and a torn last line', async () => {
    const { trimMetricsJsonl } = await import('../src/train/trainer.js');
    const { mkdtempSync, writeFileSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = (await import('node:path')).default;
    const f = path.join(mkdtempSync(path.join(tmpdir(), 'dcd-trim-')), 'metrics.jsonl');
    const lines = [
      { type: 'step', globalStep: 0 },
      { type: 'step', globalStep: 1 },
      { type: 'epoch', epoch: 0 },
      { type: 'step', globalStep: 2 },
      { type: 'step', globalStep: 3 },
    ].map((o) => JSON.stringify(o));
    writeFileSync(f, lines.join('\n') + '\n{"type":"step","glo');
    // checkpoint after 3 steps, in epoch 1 (0-based)
    expect(await trimMetricsJsonl(f, 1, 3)).toBe(2);
    const kept = readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(kept).toEqual([{ type: 'step', globalStep: 0 }, { type: 'step', globalStep: 1 }, { type: 'epoch', epoch: 0 }, { type: 'step', globalStep: 2 }]);
    // a fresh run (no checkpoint) keeps nothing of a killed first attempt
    expect(await trimMetricsJsonl(f, 0, 0)).toBe(4);
    expect(readFileSync(f, 'utf8')).toBe('');
  });
});
