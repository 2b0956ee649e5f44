/**
 * Certified retrieval (src/retrieval/certified.ts, native/src/bf16.cc): k-NN and the leakage
 * filter screened in bf16 give exactly the float64 answer, the same as fp32 screening and as the
 * tfjs float32 path, on data built with near-ties (gaps far below bf16's error, far above
 * fp32's) and exact ties (duplicate rows), while bf16 distances alone would rank it differently.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { bf16Support } from '../src/backends/precision.js';
import { knn, exactSqDist } from '../src/retrieval/knn.js';
import { classThresholds, leakageFilter, type Threshold } from '../src/retrieval/filter.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { mulberry32 } from '../src/core/rng.js';

const NATIVE = registerNativeBackend().ok;
const BF16 = NATIVE && bf16Support('native').ok;
const DIM = 64;

/** Gaussian via Box-Muller from a seeded uniform source. */
function gauss(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
}
/** A random unit vector of length DIM. */
function unit(rnd: () => number): Float64Array {
  const v = Float64Array.from({ length: DIM }, () => gauss(rnd));
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}
/** x rounded to bf16 (nearest, ties to even), as the screening kernels round their inputs. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

/**
 * nq query centres c_q (random, norm ≈ 3) and, around each, `shell` pool rows at squared distance
 * 1 + 2e-4·t (t a shuffled rank: distinct gaps of 2e-4, far inside bf16's ≈ 1e-2 error at this
 * scale), plus exact duplicates of some of them (ties broken by the lower index), interleaved.
 */
function nearTies(seed: number, nq: number, shell: number) {
  const rnd = mulberry32(seed);
  const queries = new Float32Array(nq * DIM);
  const rows: Float32Array[] = [];
  for (let q = 0; q < nq; q++) {
    const c = unit(rnd).map((x) => 3 * x);
    queries.set(c, q * DIM);
    const ranks = Array.from({ length: shell }, (_, t) => t).sort(() => rnd() - 0.5);
    for (const t of ranks) {
      const u = unit(rnd);
      const r = Math.sqrt(1 + 2e-4 * t);
      rows.push(Float32Array.from(c, (x, i) => x + r * u[i]!));
      if (t % 7 === 3) rows.push(rows[rows.length - 1]!.slice()); // an exact duplicate right after
    }
  }
  // interleave the shells so that index order is not distance order
  const order = rows.map((_, i) => i).sort(() => rnd() - 0.5);
  const pool = new Float32Array(rows.length * DIM);
  order.forEach((from, to) => pool.set(rows[from]!, to * DIM));
  return { queries, pool, np: rows.length };
}

/** The float64 answer: for each query, the k rows by (exact distance, index). */
function referenceKnn(queries: Float32Array, pool: Float32Array, k: number, dist = exactSqDist): Int32Array {
  const nq = queries.length / DIM;
  const np = pool.length / DIM;
  const out = new Int32Array(nq * k);
  for (let q = 0; q < nq; q++) {
    const d = Array.from({ length: np }, (_, j) => [dist(queries, q, pool, j, DIM), j] as const);
    d.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let t = 0; t < k; t++) out[q * k + t] = d[t]![1];
  }
  return out;
}

describe.runIf(NATIVE)('certified k-NN on the native backend', () => {
  beforeAll(async () => {
    await initBackend('native', { quiet: true });
  });
  const { queries, pool, np } = nearTies(5, 4, 700);
  const k = 50;
  const want = referenceKnn(queries, pool, k);

  it('fp32 screening returns the float64 answer (ids, order, ties to the lower index, distances)', () => {
    const r = knn(queries, DIM, pool, k, { precision: 'fp32' });
    expect(Array.from(r.indices)).toEqual(Array.from(want));
    for (let t = 0; t < want.length; t++) expect(r.distances[t]).toBe(Math.fround(exactSqDist(queries, Math.floor(t / k), pool, want[t]!, DIM)));
  });

  it.runIf(BF16)('bf16 screening returns the same ids in the same order, though bf16 distances alone rank them differently', () => {
    const r = knn(queries, DIM, pool, k, { precision: 'bf16' });
    expect(Array.from(r.indices)).toEqual(Array.from(want));
    // the test can fail: ranking by bf16-rounded inputs picks other rows or another order here
    const qb = queries.map(bf16);
    const pb = pool.map(bf16);
    const naive = referenceKnn(queries, pool, k, (a, i, b, j, dim) => {
      let s = 0;
      for (let c = 0; c < dim; c++) s += a[i * dim + c]! ** 2 + b[j * dim + c]! ** 2 - 2 * qb[i * dim + c]! * pb[j * dim + c]!;
      return s;
    });
    expect(Array.from(naive)).not.toEqual(Array.from(want));
    // and it matches the tfjs float32 path, which resolves gaps of 2e-4 at this scale
    expect(np).toBeGreaterThan(2 * 700);
  });

  it.runIf(BF16)('agrees with the tfjs float32 kernel (cpu backend) on the same data', async () => {
    const b = knn(queries, DIM, pool, k, { precision: 'bf16' });
    await initBackend('cpu', { quiet: true });
    try {
      const c = knn(queries, DIM, pool, k);
      expect(Array.from(c.indices)).toEqual(Array.from(b.indices));
    } finally {
      await initBackend('native', { quiet: true });
    }
  });

  it.runIf(BF16)('k larger than the pool pads with -1 / Infinity; queries far from a large-norm pool stay exact', () => {
    const small = pool.subarray(0, 30 * DIM);
    const r = knn(queries, DIM, small, 40, { precision: 'bf16' });
    expect(Array.from(r.indices.subarray(0, 30)).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(Array.from(r.indices.subarray(30, 40))).toEqual(new Array(10).fill(-1));
    expect(r.distances[39]).toBe(Infinity);
    // a shifted copy (norms ≈ 1000: the bound scales with the centred norms, so it still re-ranks correctly)
    const shift = (x: Float32Array) => x.map((v, i) => v + (i % DIM === 0 ? 1000 : 0));
    const q2 = shift(queries);
    const p2 = shift(pool);
    expect(Array.from(knn(q2, DIM, p2, 10, { precision: 'bf16' }).indices)).toEqual(Array.from(referenceKnn(q2, p2, 10)));
  });
});

describe.runIf(NATIVE)('certified leakage filter on the native backend', () => {
  beforeAll(async () => {
    await initBackend('native', { quiet: true });
  });
  // Pool images at random points (norm 4, far apart); around each, one or two test images at
  // squared distance τ·(1 + δ), δ ∈ ±{1e-4, 3e-4, 1e-3} or 0 (exactly at τ: kept); with two, both
  // just outside τ, one each side, or both inside (bf16 alone cannot tell which is nearer), in
  // random index order; every other test image is far. Plus a pool image that duplicates a test image.
  const rnd = mulberry32(9);
  const tauV = 0.25;
  const deltas = [-1e-3, -3e-4, -1e-4, 0, 1e-4, 3e-4, 1e-3];
  const np = 300;
  const pool = { ids: Array.from({ length: np }, (_, i) => `p${i}`), labels: Int32Array.from({ length: np }, (_, i) => i % 3), data: new Float32Array(np * DIM), dim: DIM };
  const testRows: Float32Array[] = [];
  for (let j = 0; j < np; j++) {
    const w = unit(rnd).map((x) => 4 * x);
    pool.data.set(w, j * DIM);
    const pairs = [[1e-4, 3e-4], [-1e-4, 1e-4], [-3e-4, -1e-4]]; // both outside τ, one each side, both inside
    const near = j % 2 === 0 ? [deltas[j % deltas.length]!] : pairs[(j >> 1) % 3]!.slice().sort(() => rnd() - 0.5);
    for (const d of near) {
      const u = unit(rnd);
      const r = Math.sqrt(tauV * (1 + d));
      testRows.push(Float32Array.from(w, (x, i) => x + r * u[i]!));
    }
  }
  testRows.sort(() => rnd() - 0.5);
  const nt = testRows.length;
  const test = { ids: Array.from({ length: nt }, (_, i) => `t${i}`), labels: Int32Array.from({ length: nt }, (_, i) => i % 3), data: new Float32Array(nt * DIM), dim: DIM };
  testRows.forEach((r, i) => test.data.set(r, i * DIM));
  pool.data.set(test.data.subarray(5 * DIM, 6 * DIM), 11 * DIM); // an exact duplicate of t5
  const tau = new Map<number, Threshold>([0, 1, 2].map((y) => [y, { label: y, tau: tauV, trainId: 'x', testId: 'y' }]));

  function direct(): string[] {
    const kept: string[] = [];
    for (let j = 0; j < np; j++) {
      let m = Infinity;
      for (let i = 0; i < nt; i++) m = Math.min(m, exactSqDist(pool.data, j, test.data, i, DIM));
      if (m !== 0 && m >= tauV) kept.push(pool.ids[j]!);
    }
    return kept;
  }
  async function run(opts: { precision?: 'fp32' | 'bf16'; hold?: 'test' | 'pool'; heldRows?: number }) {
    const kept: string[] = [];
    const r = await leakageFilter(EmbeddingStore.fromArrays('pool', pool), [EmbeddingStore.fromArrays('test', test)], tau, {
      ...opts,
      onChunk: (ch, keep) => keep.forEach((f, a) => f && kept.push(ch.ids[a]!)),
    });
    return { kept, removed: r.removed.map((x) => `${x.id}:${x.nearestTestId}:${x.distance}`) };
  }

  it.runIf(BF16)('keep/drop decisions, nearest test ids and distances are identical in bf16 and fp32, either side held, and equal the direct float64 ones', async () => {
    const want = direct();
    expect(want.length).toBeGreaterThan(50);
    expect(want.length).toBeLessThan(np - 50);
    const before = tf.memory().numTensors;
    const f32 = await run({ precision: 'fp32' });
    expect(f32.kept).toEqual(want);
    for (const plan of [{}, { hold: 'test' as const, heldRows: 17 }, { hold: 'pool' as const, heldRows: 50 }]) {
      const b = await run({ precision: 'bf16', ...plan });
      expect(b.kept).toEqual(want);
      expect(b.removed).toEqual(f32.removed);
    }
    expect(tf.memory().numTensors).toBe(before);
    // the tfjs float32 path (cpu backend) decides the same on this data
    await initBackend('cpu', { quiet: true });
    try {
      expect((await run({})).kept).toEqual(want);
    } finally {
      await initBackend('native', { quiet: true });
    }
  });

  it.runIf(BF16)('τ_y from bf16 screening equals the float64 minimum over train × test of the class', async () => {
    const train = { ...pool, ids: pool.ids.map((s) => `tr-${s}`) };
    const a = await classThresholds(EmbeddingStore.fromArrays('train', train), EmbeddingStore.fromArrays('test', test), { precision: 'bf16' });
    const b = await classThresholds(EmbeddingStore.fromArrays('train', train), EmbeddingStore.fromArrays('test', test), { precision: 'fp32', hold: 'train', heldRows: 33 });
    for (const y of [0, 1, 2]) {
      let m = Infinity;
      for (let j = 0; j < np; j++) for (let i = 0; i < nt; i++) if (train.labels[j] === y && test.labels[i] === y) m = Math.min(m, exactSqDist(train.data, j, test.data, i, DIM));
      expect(a.get(y)!.tau).toBe(m);
      expect(a.get(y)).toEqual(b.get(y));
    }
  });
});
