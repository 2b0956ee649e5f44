/**
 * Algorithm 1 with one debug-train k per seed image (`select.per_slice`): hand-computed picks
 * where a large slice would otherwise take most of them (the argmin-per-step reference is in
 * retrieval.test.ts), identity with today's picks under a uniform k, an exact candidate search (the per-seed caps)
 * against a brute force, and bad budgets refused.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { mulberry32 } from '../src/core/rng.js';
import { algorithm1, greedySweep, seedBudgets, type Picks } from '../src/retrieval/algorithm1.js';
import { selectAlgorithm1, type SeedSet, type Selection, type SelectOptions } from '../src/retrieval/select.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { perSliceBudget } from '../src/analysis/slices-config.js';
import { failureSlices } from '../src/analysis/slices.js';

beforeAll(async () => {
  await initBackend('cpu', { quiet: true });
});

const pairs = (p: Picks) => Array.from(p.seed, (s, t) => [s, p.cand[t]!]);

/**
 * Four seeds, eight candidates. Seeds 0–2 form one slice (A), seed 3 another (B); 5 = far.
 *   seed 0: c0 0.1, c1 0.5, c2 0.9
 *   seed 1: c0 0.2, c1 0.3, c3 0.8
 *   seed 2: c2 0.4, c4 0.6
 *   seed 3: c5 0.15, c6 0.25, c7 0.35, c1 0.45
 */
function handMatrix(): Float64Array {
  const M = new Float64Array(4 * 8).fill(5);
  const set = (i: number, j: number, d: number) => (M[i * 8 + j] = d);
  set(0, 0, 0.1), set(0, 1, 0.5), set(0, 2, 0.9);
  set(1, 0, 0.2), set(1, 1, 0.3), set(1, 3, 0.8);
  set(2, 2, 0.4), set(2, 4, 0.6);
  set(3, 5, 0.15), set(3, 6, 0.25), set(3, 7, 0.35), set(3, 1, 0.45);
  return M;
}

describe('Algorithm 1 with a per-seed k', () => {
  it('hand case: with k_train 2 per seed, the three-seed slice takes 6 of 8 picks; per_slice 3 gives each slice 3', () => {
    const M = handMatrix();
    // uniform k = 2 (the paper): sorted entries 0.1 s0c0, 0.15 s3c5, 0.2 s1c0 (used), 0.25 s3c6 (s3 full),
    // 0.3 s1c1, 0.35 s3c7 (full), 0.4 s2c2, 0.45 (full), 0.5 s0c1 (used), 0.6 s2c4, 0.8 s1c3, 0.9 s0c2 (used),
    // then the 5s in (i, j) order: s0c3 c4 c5 c6 used, s0c7 free
    const uniform = algorithm1(M, 4, 8, 2);
    expect(pairs(uniform)).toEqual([[0, 0], [3, 5], [3, 6], [1, 1], [2, 2], [2, 4], [1, 3], [0, 7]]);
    const inA = (p: Picks) => Array.from(p.seed).filter((s) => s < 3).length;
    expect([inA(uniform), uniform.seed.length - inA(uniform)]).toEqual([6, 2]);
    // per_slice 3: slice A's 3 picks split 1/1/1, slice B's one seed takes all 3
    const k = perSliceBudget([{ members: [0, 1, 2], byCentre: [1, 0, 2] }, { members: [3], byCentre: [3] }], 4, 3);
    expect(Array.from(k)).toEqual([1, 1, 1, 3]);
    const per = algorithm1(M, 4, 8, k);
    // 0.1 s0c0 (s0 full), 0.15 s3c5, 0.2 (s0's c0 taken), 0.25 s3c6, 0.3 s1c1 (full), 0.35 s3c7 (full), 0.4 s2c2 (full)
    expect(pairs(per)).toEqual([[0, 0], [3, 5], [3, 6], [1, 1], [3, 7], [2, 2]]);
    expect(Array.from(per.perSeed)).toEqual([1, 1, 1, 3]);
    expect(Array.from(per.rank)).toEqual([1, 1, 2, 1, 3, 1]);
    expect([inA(per), per.seed.length - inA(per)]).toEqual([3, 3]);
    // an uneven split: 4 picks over slice A's 3 seeds, the extra one to the seed nearest its centre (seed 1)
    const k4 = perSliceBudget([{ members: [0, 1, 2], byCentre: [1, 0, 2] }, { members: [3], byCentre: [3] }], 4, 4);
    expect(Array.from(k4)).toEqual([1, 2, 1, 4]);
    // then 0.8 s1c3 (s1 full) and, among the 5s, s3c4 (c0–c3 taken)
    expect(pairs(algorithm1(M, 4, 8, k4))).toEqual([[0, 0], [3, 5], [3, 6], [1, 1], [3, 7], [2, 2], [1, 3], [3, 4]]);
  });

  it('a uniform per-seed k gives exactly the picks of one k', () => {
    const rnd = mulberry32(22);
    for (let trial = 0; trial < 40; trial++) {
      const n = 1 + Math.floor(rnd() * 6);
      const m = Math.floor(rnd() * 30);
      const k = Math.floor(rnd() * 5);
      const M = Float64Array.from({ length: n * m }, () => Math.floor(rnd() * 4));
      const a = algorithm1(M, n, m, k);
      const b = algorithm1(M, n, m, new Int32Array(n).fill(k));
      expect(b).toEqual(a);
    }
  });

  it('refuses a budget of the wrong length or a negative or fractional k, naming the seed', () => {
    expect(() => seedBudgets([1, 2], 3)).toThrow(/2 per-seed k for 3 seeds/);
    expect(() => seedBudgets([1, -1, 2], 3)).toThrow(/k of seed 1 must be an integer ≥ 0, received -1/);
    expect(() => greedySweep({ i: new Int32Array(0), j: new Int32Array(0), d: new Float64Array(0) }, 2, [1, 0.5])).toThrow(/k of seed 1/);
    expect(() => seedBudgets(-1, 3)).toThrow(/k must be an integer ≥ 0/);
  });
});

interface Pool {
  ids: string[];
  labels: Int32Array;
  data: Float32Array;
  dim: number;
}

/** Small integer features (many exact ties), classes by index. */
function ints(seed: number, nSeeds: number, nPool: number, classes: number, dim: number): { seeds: SeedSet; pool: Pool } {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  return {
    seeds: { ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`), labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes), data: Float32Array.from({ length: nSeeds * dim }, () => int(3)), dim },
    pool: { ids: Array.from({ length: nPool }, (_, j) => `p${j}`), labels: Int32Array.from({ length: nPool }, () => int(classes)), data: Float32Array.from({ length: nPool * dim }, () => int(3)), dim },
  };
}

/** Algorithm 1 by brute force over every (seed, candidate) pair of a class: de-val (kVal each), then debug-train (k_i each). */
function bruteForce(seeds: SeedSet, pool: Pool, kVal: number, k: Int32Array): { train: string[][]; deval: string[][] } {
  const out = { train: [] as string[][], deval: [] as string[][] };
  for (const y of [...new Set(seeds.labels)].sort((a, b) => a - b)) {
    const si = [...seeds.labels.keys()].filter((i) => seeds.labels[i] === y);
    const cj = [...pool.labels.keys()].filter((j) => pool.labels[j] === y);
    const M = new Float64Array(si.length * cj.length);
    si.forEach((s, a) =>
      cj.forEach((j, b) => {
        let d = 0;
        for (let c = 0; c < seeds.dim; c++) d += (seeds.data[s * seeds.dim + c]! - pool.data[j * pool.dim + c]!) ** 2;
        M[a * cj.length + b] = d;
      }),
    );
    const rows = (p: Picks, into: string[][]) => {
      const order = [...p.seed.keys()].sort((a, b) => p.seed[a]! - p.seed[b]! || p.rank[a]! - p.rank[b]!);
      for (const t of order) into.push([seeds.ids[si[p.seed[t]!]!]!, pool.ids[cj[p.cand[t]!]!]!]);
    };
    const v = algorithm1(M, si.length, cj.length, kVal);
    rows(v, out.deval);
    for (const b of v.cand) for (let a = 0; a < si.length; a++) M[a * cj.length + b] = Infinity;
    rows(algorithm1(M, si.length, cj.length, Int32Array.from(si, (s) => k[s]!)), out.train);
  }
  return out;
}

const asPairs = (s: Selection) => s.ids.map((id, t) => [s.seedIds[t]!, id]);
const store = (p: Pool) => EmbeddingStore.fromArrays('pool', p);

describe('selectAlgorithm1 with kPerSeed (the streamed search keeps enough candidates)', () => {
  it('equals a brute force over all pairs, with one seed taking far more than the others (caps from the class total)', async () => {
    for (const [seed, kVal] of [
      [1, 0],
      [2, 1],
      [3, 2],
    ] as const) {
      const s = ints(seed, 12, 300, 3, 6);
      const rnd = mulberry32(100 + seed);
      // seed 0 asks for 15, the others 0–2: its picks lie past its own 15 nearest, within the class total the caps keep
      const k = Int32Array.from({ length: 12 }, (_, i) => (i === 0 ? 15 : Math.floor(rnd() * 3)));
      const before = tf.memory().numTensors;
      const r = await selectAlgorithm1(s.seeds, store(s.pool), { k: 1, kVal, kPerSeed: k });
      expect(tf.memory().numTensors).toBe(before);
      const ref = bruteForce(s.seeds, s.pool, kVal, k);
      expect(asPairs(r.train)).toEqual(ref.train);
      expect(r.deval ? asPairs(r.deval) : []).toEqual(ref.deval);
      // every seed got its budget (the classes hold ≈ 100 rows each)
      const got = new Map<string, number>();
      for (const sid of r.train.seedIds) got.set(sid, (got.get(sid) ?? 0) + 1);
      s.seeds.ids.forEach((sid, i) => expect(got.get(sid) ?? 0).toBe(k[i]));
    }
  });

  it('kPerSeed filled with k gives exactly the selection of k (today’s picks)', async () => {
    const s = ints(4, 10, 200, 2, 5);
    const o: SelectOptions = { k: 3, kVal: 1 };
    const a = await selectAlgorithm1(s.seeds, store(s.pool), o);
    const b = await selectAlgorithm1(s.seeds, store(s.pool), { ...o, kPerSeed: new Int32Array(10).fill(3) });
    expect(b).toEqual(a);
  });

  it('repeats exactly on the same inputs and slices seed (budget from failureSlices, then the selection)', async () => {
    const s = ints(5, 24, 400, 3, 6);
    const once = async () => {
      const sl = failureSlices({ data: s.seeds.data, dim: s.seeds.dim, labels: s.seeds.labels }, { k: 3, seed: 7 });
      const k = perSliceBudget(sl.slices, 24, 10);
      // each slice's members share exactly 10 picks
      for (const x of sl.slices) expect(x.members.reduce((a, i) => a + k[i]!, 0)).toBe(10);
      return { k: Array.from(k), sel: asPairs((await selectAlgorithm1(s.seeds, store(s.pool), { k: 1, kVal: 1, kPerSeed: k })).train) };
    };
    const a = await once();
    expect(await once()).toEqual(a);
    expect(a.sel).toHaveLength(30);
  });

  it('refuses a kPerSeed that does not match the seed set, naming the key', async () => {
    const s = ints(6, 4, 40, 2, 3);
    await expect(selectAlgorithm1(s.seeds, store(s.pool), { k: 1, kPerSeed: [1, 2, 3] })).rejects.toThrow(/kPerSeed \(select\.per_slice\): 3 per-seed k for 4 seeds/);
  });
});
