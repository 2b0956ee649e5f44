import { describe, expect, it, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { WeightsError } from '../src/core/errors.js';
import { LpipsNet, lpipsDims, lpipsRankPool, lpipsTapShapes, type TorchWeights } from '../src/analysis/lpips.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/analysis/lpips-tiny.json');

interface Fixture {
  widths: number[];
  size: number;
  weights: Record<string, { shape: number[]; data: number[] }>;
  a: number[];
  b: number[];
  tap_shapes: number[][];
  taps0: number[][];
  distance: number[];
}

function weightsOf(fx: Fixture): TorchWeights {
  return new Map(Object.entries(fx.weights).map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }]));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

describe('LPIPS feature stack', () => {
  it('has the paper\'s 484,992 values at 224 px, in the five AlexNet tap shapes', () => {
    expect(lpipsTapShapes(224)).toEqual([
      [55, 55, 64],
      [27, 27, 192],
      [13, 13, 384],
      [13, 13, 256],
      [13, 13, 256],
    ]);
    expect(lpipsDims(224)).toBe(64 * 55 * 55 + 192 * 27 * 27 + (384 + 256 + 256) * 13 * 13);
    expect(lpipsDims(224)).toBe(484_992);
    expect(1 - 2048 / lpipsDims(224)).toBeCloseTo(0.9958, 4);
  });

  it('produces those shapes from a real forward pass at 224 px, without leaking tensors', () => {
    const before = tf.memory().numTensors;
    const net = new LpipsNet({ seed: 1 });
    const x = tf.randomUniform([1, 224, 224, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const taps = net.taps(x);
    expect(taps.map((t) => t.shape)).toEqual([
      [1, 55, 55, 64],
      [1, 27, 27, 192],
      [1, 13, 13, 384],
      [1, 13, 13, 256],
      [1, 13, 13, 256],
    ]);
    expect(taps.reduce((a, t) => a + t.size, 0)).toBe(484_992);
    // ReLU outputs: non-negative, and not all zero (the random init is live).
    for (const t of taps) {
      const [lo, hi] = tf.tidy(() => [tf.min(t).dataSync()[0]!, tf.max(t).dataSync()[0]!]);
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeGreaterThan(0);
    }
    tf.dispose([x, ...taps]);
    net.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('matches PyTorch taps and LPIPS distances (narrow stack, fixture from make_lpips_fixture.py)', () => {
    const fx = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture;
    expect(lpipsTapShapes(fx.size, fx.widths)).toEqual(fx.tap_shapes);
    const before = tf.memory().numTensors;
    const net = new LpipsNet({ widths: fx.widths, weights: weightsOf(fx) });
    const shape: [number, number, number, number] = [2, fx.size, fx.size, 3];
    const a = tf.tensor4d(fx.a, shape);
    const b = tf.tensor4d(fx.b, shape);
    const taps = net.taps(a);
    taps.forEach((t, i) => {
      const first = t.slice([0], [1]);
      const mine = first.dataSync();
      first.dispose();
      const ref = fx.taps0[i]!;
      const scale = Math.max(...ref.map(Math.abs));
      expect(maxAbsDiff(mine, ref) / scale).toBeLessThan(1e-4);
    });
    const d = net.distance(a, b);
    const got = Array.from(d.dataSync());
    got.forEach((v, i) => expect(Math.abs(v - fx.distance[i]!) / fx.distance[i]!).toBeLessThan(1e-4));
    // The same distance through the flat-stored pool ranking used by the benchmark.
    const a0 = a.slice([0], [1]);
    const fa = net.features(a0);
    const fb = net.features(b);
    const q = fa.map((t) => t.dataSync() as Float32Array);
    const pool = fb.map((t) => t.dataSync() as Float32Array);
    return lpipsRankPool(q, pool, 2, 1).then((ranked) => {
      expect(Math.abs(ranked[0]! - fx.distance[0]!) / fx.distance[0]!).toBeLessThan(1e-4);
      tf.dispose([a, a0, b, d, ...taps, ...fa, ...fb]);
      net.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  it('rejects weights that do not fit, naming the key', () => {
    const fx = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture;
    const w = new Map(weightsOf(fx));
    w.delete('features.6.bias');
    expect(() => new LpipsNet({ widths: fx.widths, weights: w })).toThrow(/missing features\.6\.bias/);
    expect(() => new LpipsNet({ weights: weightsOf(fx) })).toThrow(WeightsError);
    expect(() => lpipsTapShapes(16)).toThrow(/16px input is too small/);
    // Two stacks may live side by side (no global variable names to clash).
    const a = new LpipsNet({ widths: fx.widths, seed: 1 });
    const b = new LpipsNet({ widths: fx.widths, seed: 2 });
    a.dispose();
    b.dispose();
  });
});
