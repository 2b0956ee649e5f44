/**
 * Algorithm 1's candidate search on the native backend (src/retrieval/select-native.ts,
 * native/src/select.cc): the chunk's rows bucketed by class in the addon, screened in fp32 and
 * certified, must give exactly Algorithm 1 on float64 distances — the picks, their order and the
 * distances of a brute force over every (seed, candidate) pair with the float64 distance of
 * `exactSqDist` — on data built of near-ties (gaps far below the fp32 screening error), exact ties
 * (duplicate pool rows, duplicate seeds), several classes, an exhausted class, k_val > 0,
 * exclude/only, --any-label, a per-seed k (select.per_slice) and a pool streamed in several chunks. Where float32 is exact
 * (integer features), it equals the tfjs path (the float32 kernel of the other backends) too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { mulberry32 } from '../src/core/rng.js';
import { greedySweep } from '../src/retrieval/algorithm1.js';
import { exactSqDist } from '../src/retrieval/knn.js';
import { selectAlgorithm1, type SeedSet, type Selection, type SelectOptions } from '../src/retrieval/select.js';
import { alg1Kernels } from '../src/retrieval/select-native.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { nativeAddon, registerNativeBackend } from '../src/backends/native.js';

interface Pool {
  ids: string[];
  labels: Int32Array;
  data: Float32Array;
  dim: number;
}
type Row = { id: string; label: number; seed: string; dist: number; rank: number };

let backend = '';
beforeAll(async () => {
  await initBackend(NATIVE ? 'native' : undefined, { quiet: true });
  backend = tf.getBackend();
});
afterAll(async () => {
  await tf.setBackend(backend);
});
const NATIVE = registerNativeBackend().ok;

/** Algorithm 1 by brute force on float64 distances: every (seed, candidate) pair of a class, de-val then debug-train. */
function reference(seeds: SeedSet, pool: Pool, o: SelectOptions): { deval: Row[]; train: Row[] } {
  const dim = seeds.dim;
  const labels = [...new Set(seeds.labels)].sort((a, b) => a - b);
  const out = { deval: [] as Row[], train: [] as Row[] };
  for (const y of labels) {
    const si = [...seeds.labels.keys()].filter((i) => seeds.labels[i] === y);
    const cj = [...pool.labels.keys()].filter(
      (j) => (o.anyLabel || pool.labels[j] === y) && !o.exclude?.has(pool.ids[j]!) && (!o.only || o.only.has(pool.ids[j]!)),
    );
    const ii: number[] = [];
    const jj: number[] = [];
    const dd: number[] = [];
    si.forEach((s, i) => cj.forEach((j) => (ii.push(i), jj.push(j), dd.push(exactSqDist(seeds.data, s, pool.data, j, dim)))));
    let e = { i: Int32Array.from(ii), j: Int32Array.from(jj), d: Float64Array.from(dd) };
    const rows = (k: number | Int32Array, into: Row[]) => {
      const p = greedySweep(e, si.length, k);
      const order = [...p.seed.keys()].sort((a, b) => p.seed[a]! - p.seed[b]! || p.rank[a]! - p.rank[b]!);
      for (const t of order) into.push({ id: pool.ids[p.cand[t]!]!, label: y, seed: seeds.ids[si[p.seed[t]!]!]!, dist: Math.fround(p.dist[t]!), rank: p.rank[t]! });
      return new Set(p.cand);
    };
    if ((o.kVal ?? 0) > 0) {
      const taken = rows(o.kVal!, out.deval);
      const keep = [...e.j.keys()].filter((t) => !taken.has(e.j[t]!));
      e = { i: Int32Array.from(keep, (t) => e.i[t]!), j: Int32Array.from(keep, (t) => e.j[t]!), d: Float64Array.from(keep, (t) => e.d[t]!) };
    }
    rows(o.kPerSeed ? Int32Array.from(si, (s) => o.kPerSeed![s]!) : o.k, out.train);
  }
  return out;
}

const asRows = (s: Selection): Row[] => s.ids.map((id, t) => ({ id, label: s.labels[t]!, seed: s.seedIds[t]!, dist: s.distances[t]!, rank: s.ranks[t]! }));

/**
 * Seeds with a large common offset (norms ≈ 60, so the fp32 screening error is ≈ 1e-2) and pool
 * rows at distance ≈ 1 from a seed of their class whose distances differ by ≈ 1e-6: near-ties the
 * screening cannot order. Some pool rows are duplicated (exact ties) and two seeds are equal.
 */
function nearTies(seed: number, nSeeds: number, perSeed: number, classes: number, dim: number): { seeds: SeedSet; pool: Pool } {
  const rnd = mulberry32(seed);
  const sd = new Float32Array(nSeeds * dim);
  for (let t = 0; t < sd.length; t++) sd[t] = 10 + rnd() * 0.5;
  const seeds: SeedSet = { ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`), labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes), data: sd, dim };
  // seed `classes` has the class of seed 0: make it equal to seed 0 (a tie between two seeds of one class)
  if (nSeeds > classes) sd.copyWithin(classes * dim, 0, dim);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let q = 0; q < nSeeds; q++)
    for (let t = 0; t < perSeed; t++) {
      // a random unit direction, scaled so that the squared distance is 1 + ~1e-6 · noise
      const v = Array.from({ length: dim }, () => rnd() - 0.5);
      const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      const r = Math.sqrt(1 + 1e-6 * Math.floor(rnd() * 8));
      rows.push(v.map((x, c) => sd[q * dim + c]! + (x / n) * r));
      labels.push(seeds.labels[q]!);
      if (rnd() < 0.15) (rows.push([...rows.at(-1)!]), labels.push(seeds.labels[q]!)); // an exact duplicate: a tie the lower pool row wins
    }
  // shuffle, so that classes and duplicates interleave in pool order
  const order = rows.map((_, j) => j);
  for (let j = order.length - 1; j > 0; j--) {
    const t = Math.floor(rnd() * (j + 1));
    [order[j], order[t]] = [order[t]!, order[j]!];
  }
  const data = new Float32Array(rows.length * dim);
  order.forEach((j, at) => data.set(rows[j]!, at * dim));
  return { seeds, pool: { ids: order.map((_, at) => `p${at}`), labels: Int32Array.from(order, (j) => labels[j]!), data, dim } };
}

function ints(seed: number, nSeeds: number, nPool: number, classes: number, dim: number, range: number): { seeds: SeedSet; pool: Pool } {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  return {
    seeds: { ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`), labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes), data: Float32Array.from({ length: nSeeds * dim }, () => int(range)), dim },
    pool: { ids: Array.from({ length: nPool }, (_, j) => `p${j}`), labels: Int32Array.from({ length: nPool }, () => int(classes)), data: Float32Array.from({ length: nPool * dim }, () => int(range)), dim },
  };
}

const store = (p: Pool) => EmbeddingStore.fromArrays('pool', p);

describe.runIf(NATIVE)('Algorithm 1 candidate search on the native backend', () => {
  it('runs on the native kernels here', () => {
    expect(tf.getBackend()).toBe('native');
    expect(alg1Kernels()).not.toBeNull();
  });

  it('equals Algorithm 1 on float64 distances by brute force: near-ties, exact ties, k_val, exclude/only, any-label', async () => {
    let cases = 0;
    for (const [seed, nSeeds, perSeed, classes, dim, extra] of [
      [1, 9, 14, 3, 24, {}],
      [2, 12, 10, 4, 17, { kVal: 2 }],
      [3, 8, 12, 2, 33, { kVal: 1, anyLabel: true }],
      [4, 10, 9, 5, 16, { kVal: 1, exclude: 'first 20', only: 'all but last 15' }],
      // select.per_slice: one debug-train k per seed image (0 for some), de-val as given
      [5, 12, 10, 3, 20, { kVal: 1, kPerSeed: [9, 0, 1, 2, 1, 0, 3, 1, 1, 0, 2, 1] }],
    ] as const) {
      const s = nearTies(seed, nSeeds, perSeed, classes, dim);
      const o: SelectOptions = { k: 4, kVal: 'kVal' in extra ? extra.kVal : 0, anyLabel: 'anyLabel' in extra ? extra.anyLabel : false, ...('kPerSeed' in extra ? { kPerSeed: extra.kPerSeed } : {}) };
      if ('exclude' in extra) {
        o.exclude = new Set(s.pool.ids.slice(0, 20));
        o.only = new Set(s.pool.ids.slice(0, -15));
      }
      const before = tf.memory().numTensors;
      const r = await selectAlgorithm1(s.seeds, store(s.pool), o);
      expect(tf.memory().numTensors).toBe(before);
      const ref = reference(s.seeds, s.pool, o);
      expect(asRows(r.train)).toEqual(ref.train);
      expect(r.deval ? asRows(r.deval) : []).toEqual(ref.deval);
      cases++;
    }
    expect(cases).toBe(5);
  });

  it('the near-tie data is one the float32 kernel orders differently (so the test above can fail)', async () => {
    const s = nearTies(1, 9, 14, 3, 24);
    const o: SelectOptions = { k: 4 };
    const ref = reference(s.seeds, s.pool, o);
    await tf.setBackend('cpu');
    try {
      const r = await selectAlgorithm1(s.seeds, store(s.pool), o);
      expect(asRows(r.train).map((x) => x.id)).not.toEqual(ref.train.map((x) => x.id));
    } finally {
      await tf.setBackend(backend);
    }
  });

  it('an exhausted class, a pool streamed in several chunks, distances identical to the tfjs path where float32 is exact', async () => {
    const s = ints(7, 30, 6000, 6, 384, 5);
    // class 5 keeps 3 pool rows: exhausted for its 5 seeds × (1 + 2)
    let left = 3;
    s.pool.labels.forEach((y, j) => {
      if (y === 5 && left-- <= 0) s.pool.labels[j] = 0;
    });
    // 16 MiB at 384 dims: chunks of ≈ 2,600 rows, so 3 chunks
    const o: SelectOptions = { k: 2, kVal: 1, memoryBudgetMiB: 16, exclude: new Set(['p3', 'p4000']) };
    const r = await selectAlgorithm1(s.seeds, store(s.pool), o);
    const ref = reference(s.seeds, s.pool, o);
    expect(asRows(r.train)).toEqual(ref.train);
    expect(asRows(r.deval!)).toEqual(ref.deval);
    const c5 = r.train.summary.find((x) => x.label === 5)!;
    expect(c5.exhausted).toBe(true);
    const left5 = s.pool.ids.filter((id, j) => s.pool.labels[j] === 5 && !o.exclude!.has(id)).length;
    expect(left5).toBeGreaterThan(0);
    expect(r.deval!.summary.find((x) => x.label === 5)!.selected + c5.selected).toBe(left5);
    await tf.setBackend('cpu');
    try {
      const old = await selectAlgorithm1(s.seeds, store(s.pool), o);
      expect(asRows(old.train)).toEqual(asRows(r.train));
      expect(asRows(old.deval!)).toEqual(asRows(r.deval!));
      expect(old.train.summary).toEqual(r.train.summary);
    } finally {
      await tf.setBackend(backend);
    }
  });

  it('a per-seed k (select.per_slice): native, the tfjs path and the brute force agree, with a seed whose k passes its class pool', async () => {
    const s = ints(11, 16, 900, 4, 48, 4);
    // seed 0 asks for more than its class holds (≈ 225 rows): the class is exhausted, the rest get 0–3
    const kPerSeed = Int32Array.from({ length: 16 }, (_, i) => (i === 0 ? 400 : i % 4));
    const o: SelectOptions = { k: 1, kVal: 1, kPerSeed };
    const r = await selectAlgorithm1(s.seeds, store(s.pool), o);
    const ref = reference(s.seeds, s.pool, o);
    expect(asRows(r.train)).toEqual(ref.train);
    expect(asRows(r.deval!)).toEqual(ref.deval);
    expect(r.train.summary.find((x) => x.label === 0)!.exhausted).toBe(true);
    await tf.setBackend('cpu');
    try {
      const cpu = await selectAlgorithm1(s.seeds, store(s.pool), o);
      expect(asRows(cpu.train)).toEqual(asRows(r.train));
      expect(asRows(cpu.deval!)).toEqual(asRows(r.deval!));
    } finally {
      await tf.setBackend(backend);
    }
  });

  it('the kernel refuses rows out of order and mismatched shapes, naming the argument', () => {
    const a = nativeAddon();
    const seeds = new Float32Array(4);
    const base = Float64Array.of(0, 2);
    const call = (rowIds: Int32Array, rows = new Float32Array(8)) =>
      a.alg1Chunk(seeds, 4, Int32Array.of(0), Int32Array.of(0, 1), Int32Array.of(0), rows, Int32Array.of(0, 0), null, rowIds, base, new Float64Array(2), new Int32Array(2), new Int32Array(1), new Float64Array(1), new Uint8Array(2));
    expect(() => call(Int32Array.of(5, 5))).toThrow(/rowIds must increase/);
    expect(() => call(Int32Array.of(1, 2), new Float32Array(7))).toThrow(/not \[\*, dim\]/);
    expect(call(Int32Array.of(1, 2))).toBe(2);
  });
});
