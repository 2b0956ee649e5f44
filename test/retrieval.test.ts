import { beforeAll, describe, expect, it } from 'vitest';
import { auditPicks, takeAcrossClasses } from '../src/retrieval/audit.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { buildTable, writeArrowFile, type ColumnInput } from '../src/core/arrow.js';
import {
  algorithm1,
  classThresholds,
  completeBaseline,
  EmbeddingStore,
  knn,
  leakageFilter,
  mulberry32,
  nearest,
  randomBaseline,
  selectAlgorithm1,
  type Picks,
} from '../src/retrieval/index.js';
import { completeBaselineFiles, filterFiles, selectFiles } from '../src/retrieval/files.js';
import { takeRows } from '../src/retrieval/output.js';
import { distanceBlock, gatherRows, holdRows } from '../src/retrieval/knn.js';

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

/** The paper's loop, literally: full argmin each step; ties by lower i, then lower j; k per seed, or one for all. */
function algorithm1Reference(M0: ArrayLike<number>, n: number, m: number, k0: number | ArrayLike<number>): { seed: number; cand: number; dist: number; rank: number }[] {
  const M = Float64Array.from(M0);
  const count = new Array<number>(n).fill(0);
  const out: { seed: number; cand: number; dist: number; rank: number }[] = [];
  const k = typeof k0 === 'number' ? new Array<number>(n).fill(k0) : Array.from(k0);
  for (let i = 0; i < n; i++) if (k[i] === 0) for (let j = 0; j < m; j++) M[i * m + j] = Infinity;
  for (;;) {
    let bi = -1;
    let bj = -1;
    let bd = Infinity;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++)
        if (M[i * m + j]! < bd) {
          bd = M[i * m + j]!;
          bi = i;
          bj = j;
        }
    if (bi < 0) return out;
    count[bi]! += 1;
    out.push({ seed: bi, cand: bj, dist: bd, rank: count[bi]! });
    for (let i = 0; i < n; i++) M[i * m + bj] = Infinity;
    if (count[bi] === k[bi]) for (let j = 0; j < m; j++) M[bi * m + j] = Infinity;
  }
}

function picksAsRows(p: Picks) {
  return Array.from(p.seed, (s, t) => ({ seed: s, cand: p.cand[t]!, dist: p.dist[t]!, rank: p.rank[t]! }));
}

function randInt(rnd: () => number, n: number): number {
  return Math.floor(rnd() * n);
}

function sqd(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let c = 0; c < dim; c++) s += (a[i * dim + c]! - b[j * dim + c]!) ** 2;
  return s;
}

describe('Algorithm 1 (sort-and-sweep) against the argmin-per-step reference', () => {
  it('gives identical picks, order and ranks on random matrices with many integer ties and ∞ entries', () => {
    const rnd = mulberry32(7);
    for (let trial = 0; trial < 60; trial++) {
      const n = 1 + randInt(rnd, 6);
      const m = randInt(rnd, 25);
      const k = randInt(rnd, 5);
      const M = Float64Array.from({ length: n * m }, () => (rnd() < 0.1 ? Infinity : trial % 2 ? randInt(rnd, 4) : rnd()));
      expect(picksAsRows(algorithm1(M, n, m, k))).toEqual(algorithm1Reference(M, n, m, k));
    }
  });
  it('with one k per seed (select.per_slice), k_i = 0 included, gives the picks of the reference loop', () => {
    const rnd = mulberry32(21);
    for (let trial = 0; trial < 80; trial++) {
      const n = 1 + randInt(rnd, 6);
      const m = randInt(rnd, 25);
      const k = Int32Array.from({ length: n }, () => randInt(rnd, 5));
      const M = Float64Array.from({ length: n * m }, () => (rnd() < 0.1 ? Infinity : trial % 2 ? randInt(rnd, 4) : rnd()));
      expect(picksAsRows(algorithm1(M, n, m, k))).toEqual(algorithm1Reference(M, n, m, k));
    }
  });
  it('breaks ties by lower seed index, then lower candidate index', () => {
    // All distances equal: seed 0 takes columns 0,1; seed 1 takes 2,3.
    const p = algorithm1(new Float64Array(2 * 5).fill(1), 2, 5, 2);
    expect(picksAsRows(p).map((r) => [r.seed, r.cand])).toEqual([
      [0, 0],
      [0, 1],
      [1, 2],
      [1, 3],
    ]);
  });
});

describe('knn kernel', () => {
  it('matches a direct computation, ties by lower index, padding when the pool is short, no leaked tensors', () => {
    const rnd = mulberry32(3);
    const dim = 5;
    const q = Float32Array.from({ length: 7 * dim }, () => randInt(rnd, 3));
    const p = Float32Array.from({ length: 40 * dim }, () => randInt(rnd, 3));
    const before = tf.memory().numTensors;
    const r = knn(q, dim, p, 6, { chunkRows: 9 });
    expect(tf.memory().numTensors).toBe(before);
    for (let i = 0; i < 7; i++) {
      const ref = Array.from({ length: 40 }, (_, j) => [sqd(q, i, p, j, dim), j] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      expect(Array.from(r.indices.subarray(i * 6, i * 6 + 6))).toEqual(ref.slice(0, 6).map((x) => x[1]));
      expect(Array.from(r.distances.subarray(i * 6, i * 6 + 6))).toEqual(ref.slice(0, 6).map((x) => x[0]));
    }
    const short = knn(q.subarray(0, dim), dim, p.subarray(0, 2 * dim), 3);
    expect(Array.from(short.indices)).toEqual([...Array.from(short.indices.subarray(0, 2)), -1]);
    expect(short.distances[2]).toBe(Infinity);
  });
  it('distanceBlock: gathered rows (which) equal the block of the gathered copy; bad shapes are refused', () => {
    const rnd = mulberry32(4);
    const dim = 6;
    const rows = Float32Array.from({ length: 10 * dim }, () => randInt(rnd, 4));
    const h = Float32Array.from({ length: 5 * dim }, () => randInt(rnd, 4));
    const held = holdRows(h, dim);
    try {
      const which = [7, 0, 3, 3];
      const direct = distanceBlock(gatherRows(rows, which, dim), 4, held);
      expect(Array.from(distanceBlock(rows, 4, held, which))).toEqual(Array.from(direct));
      which.forEach((w, a) => {
        for (let c = 0; c < 5; c++) expect(direct[a * 5 + c]).toBe(sqd(rows, w, h, c, dim));
      });
      expect(() => distanceBlock(rows, 3, held, which)).toThrow(/4 indices, expected 3×6/);
      expect(() => distanceBlock(rows, 3, held)).toThrow(/rows has 60 values, expected 3×6/);
    } finally {
      held.dispose();
    }
  });
  it('nearest: per class or over everything, exact float64 distances', () => {
    const rnd = mulberry32(11);
    const dim = 8;
    const q = Float32Array.from({ length: 30 * dim }, () => rnd() * 4 - 2);
    const h = Float32Array.from({ length: 50 * dim }, () => rnd() * 4 - 2);
    const ql = Int32Array.from({ length: 30 }, () => randInt(rnd, 3));
    const hl = Int32Array.from({ length: 50 }, () => randInt(rnd, 3));
    const all = nearest(q, h, dim);
    const byc = nearest(q, h, dim, { queryLabels: ql, heldLabels: hl });
    for (let i = 0; i < 30; i++) {
      const dAll = Math.min(...Array.from({ length: 50 }, (_, j) => sqd(q, i, h, j, dim)));
      const dCls = Math.min(...Array.from({ length: 50 }, (_, j) => (hl[j] === ql[i] ? sqd(q, i, h, j, dim) : Infinity)));
      expect(all.distance[i]).toBeCloseTo(dAll, 4);
      expect(byc.distance[i]).toBeCloseTo(dCls, 4);
      expect(hl[byc.index[i]!]).toBe(ql[i]);
    }
  });
});

/** Synthetic integer-valued embeddings (exact float32 distances, many ties). */
function synth(seed: number, nSeeds: number, nPool: number, classes: number, dim = 4, range = 4) {
  const rnd = mulberry32(seed);
  const seeds = {
    ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`),
    labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes),
    data: Float32Array.from({ length: nSeeds * dim }, () => randInt(rnd, range)),
    dim,
  };
  const pool = {
    ids: Array.from({ length: nPool }, (_, i) => `p${i}`),
    labels: Int32Array.from({ length: nPool }, () => randInt(rnd, classes)),
    data: Float32Array.from({ length: nPool * dim }, () => randInt(rnd, range)),
    dim,
  };
  return { seeds, pool };
}

/** Reference selection: per class, dense matrix and the argmin loop; de-val then debug-train. */
function selectReference(s: ReturnType<typeof synth>, k: number, kVal: number, anyLabel = false) {
  const { seeds, pool } = s;
  const dim = seeds.dim;
  const rows = (runK: number, excluded: Set<number>) => {
    const res: { id: string; label: number; seed: string; dist: number; rank: number }[] = [];
    for (const y of [...new Set(seeds.labels)].sort((a, b) => a - b)) {
      const si = [...seeds.labels.keys()].filter((i) => seeds.labels[i] === y);
      const cj = [...pool.labels.keys()].filter((j) => (anyLabel || pool.labels[j] === y) && !excluded.has(j));
      const M = si.flatMap((i) => cj.map((j) => sqd(seeds.data, i, pool.data, j, dim)));
      for (const r of algorithm1Reference(M, si.length, cj.length, runK))
        res.push({ id: pool.ids[cj[r.cand]!]!, label: y, seed: seeds.ids[si[r.seed]!]!, dist: r.dist, rank: r.rank });
    }
    return res;
  };
  const deval = rows(kVal, new Set());
  const taken = new Set(deval.map((r) => Number(r.id.slice(1))));
  return { deval, train: rows(k, taken) };
}

function selAsRows(sel: { ids: string[]; labels: Int32Array; seedIds: string[]; distances: Float32Array; ranks: Int32Array }) {
  return sel.ids.map((id, t) => ({ id, label: sel.labels[t]!, seed: sel.seedIds[t]!, dist: sel.distances[t]!, rank: sel.ranks[t]! }));
}
const key = (r: { id: string; label: number; seed: string; rank: number }) => `${r.label}|${r.seed}|${r.rank}|${r.id}`;

describe('selectAlgorithm1 over a streamed pool', () => {
  it('equals the dense reference (de-val then debug-train), with ties, chunking and candidate truncation', async () => {
    for (const [seed, anyLabel, nSeeds, dim, range] of [
      [1, false, 9, 4, 4],
      [2, false, 16, 3, 3],
      [3, false, 12, 2, 4],
      [5, true, 9, 3, 3],
    ] as const) {
      const s = synth(seed, nSeeds, 700, 3, dim, range);
      const before = tf.memory().numTensors;
      const r = await selectAlgorithm1(s.seeds, EmbeddingStore.fromArrays('pool', s.pool), { k: 4, kVal: 2, anyLabel, memoryBudgetMiB: 16 });
      expect(tf.memory().numTensors).toBe(before);
      const ref = selectReference(s, 4, 2, anyLabel);
      expect(selAsRows(r.deval!).map(key).sort()).toEqual(ref.deval.map(key).sort());
      expect(selAsRows(r.train).map(key).sort()).toEqual(ref.train.map(key).sort());
      for (const x of selAsRows(r.train)) expect(x.dist).toBe(ref.train.find((y) => key(y) === key(x))!.dist);
    }
  });
  it('properties: no image twice, ≤ k per seed, de-val ∩ debug-train = ∅, seed class, per-class pools; exhaustion warns', async () => {
    const s = synth(9, 12, 90, 4);
    // Class 3 gets only 2 pool images: exhausted.
    s.pool.labels.forEach((y, j) => {
      if (y === 3 && j > 20) s.pool.labels[j] = 0;
    });
    const r = await selectAlgorithm1(s.seeds, EmbeddingStore.fromArrays('pool', s.pool), { k: 3, kVal: 1 });
    const all = [...r.deval!.ids, ...r.train.ids];
    expect(new Set(all).size).toBe(all.length);
    const seedLabel = new Map(s.seeds.ids.map((id, i) => [id, s.seeds.labels[i]!]));
    const poolLabel = new Map(s.pool.ids.map((id, j) => [id, s.pool.labels[j]!]));
    for (const sel of [r.deval!, r.train]) {
      const per = new Map<string, number>();
      sel.seedIds.forEach((sid, t) => {
        per.set(sid, (per.get(sid) ?? 0) + 1);
        expect(sel.labels[t]).toBe(seedLabel.get(sid));
        expect(poolLabel.get(sel.ids[t]!)).toBe(sel.labels[t]);
      });
      for (const c of per.values()) expect(c).toBeLessThanOrEqual(sel.k);
      const ranks = new Map<string, number[]>();
      sel.seedIds.forEach((sid, t) => ranks.set(sid, [...(ranks.get(sid) ?? []), sel.ranks[t]!]));
      for (const rk of ranks.values()) expect(rk).toEqual(rk.map((_, i) => i + 1));
    }
    const c3 = r.train.summary.find((x) => x.label === 3)!;
    expect(c3.exhausted).toBe(true);
    expect(r.train.summary.find((x) => x.label === 0)!.exhausted).toBe(false);
    expect(c3.selected).toBeLessThan(c3.seeds * 3);
  });
  it('honours exclude and only', async () => {
    const s = synth(4, 4, 60, 2);
    const only = new Set(s.pool.ids.slice(0, 40));
    const exclude = new Set(s.pool.ids.slice(0, 10));
    const r = await selectAlgorithm1(s.seeds, EmbeddingStore.fromArrays('pool', s.pool), { k: 3, exclude, only });
    for (const id of r.train.ids) {
      expect(only.has(id)).toBe(true);
      expect(exclude.has(id)).toBe(false);
    }
  });
});

describe('leakage filter against a direct computation', () => {
  // Small integer features: the float32 kernel is exact, so the nearest test image must be
  // the lowest-index one at the minimum, whichever side is held and however it is split.
  const plans = [
    { hold: 'auto' as const },
    { hold: 'test' as const },
    { hold: 'pool' as const },
    { hold: 'test' as const, heldRows: 4 }, // 7 test blocks: the pool is streamed 7 times
    { hold: 'pool' as const, heldRows: 7 }, // 18 pool blocks, the tests streamed past each
  ];
  it.each(plans)('τ_y, min over the test union (scope all and class), duplicates removed even at τ = 0 (hold $hold, heldRows $heldRows)', async (plan) => {
    const rnd = mulberry32(21);
    const dim = 3;
    const mk = (n: number, classes: number, pre: string) => ({
      ids: Array.from({ length: n }, (_, i) => `${pre}${i}`),
      labels: Int32Array.from({ length: n }, (_, i) => i % classes),
      data: Float32Array.from({ length: n * dim }, () => randInt(rnd, 6)),
      dim,
    });
    const train = mk(40, 3, 't');
    const val = mk(12, 3, 'v');
    // Class 2: a train image equal to a val image → τ_2 = 0.
    train.data.set(val.data.subarray(2 * dim, 3 * dim), 2 * dim);
    const tests = [mk(15, 3, 'a'), mk(10, 3, 'b')];
    const pool = mk(120, 3, 'p');
    pool.data.set(tests[1]!.data.subarray(4 * dim, 5 * dim), 5 * dim); // pool p5 duplicates test b4
    pool.data.set(tests[0]!.data.subarray(2 * dim, 3 * dim), 8 * dim); // p8 (class 2) duplicates a2
    const before = tf.memory().numTensors;
    const tHold = plan.hold === 'pool' ? 'train' : plan.hold;
    const tau = await classThresholds(EmbeddingStore.fromArrays('train', train), EmbeddingStore.fromArrays('val', val), { hold: tHold, heldRows: plan.heldRows });
    for (const y of [0, 1, 2]) {
      let m = Infinity;
      for (let i = 0; i < 40; i++) for (let j = 0; j < 12; j++) if (train.labels[i] === y && val.labels[j] === y) m = Math.min(m, sqd(train.data, i, val.data, j, dim));
      expect(tau.get(y)!.tau).toBe(m);
      const ti = train.ids.indexOf(tau.get(y)!.trainId);
      const vj = val.ids.indexOf(tau.get(y)!.testId);
      expect(sqd(train.data, ti, val.data, vj, dim)).toBe(m);
    }
    expect(tau.get(2)!.tau).toBe(0);
    const T = { data: new Float32Array([...tests[0]!.data, ...tests[1]!.data]), labels: new Int32Array([...tests[0]!.labels, ...tests[1]!.labels]), ids: [...tests[0]!.ids, ...tests[1]!.ids] };
    for (const scope of ['all', 'class'] as const) {
      const kept: string[] = [];
      const r = await leakageFilter(EmbeddingStore.fromArrays('pool', pool), tests.map((t) => EmbeddingStore.fromArrays('test', t)), tau, {
        scope,
        memoryBudgetMiB: 16,
        ...plan,
        onChunk: (ch, keep) => keep.forEach((f, a) => f && kept.push(ch.ids[a]!)),
      });
      const expectKept: string[] = [];
      const expectRemoved: string[] = [];
      for (let j = 0; j < 120; j++) {
        // Lowest-index argmin within the scope; an exact duplicate of any test image wins.
        let m = Infinity;
        let at = -1;
        for (let t = 0; t < 25; t++) {
          const d = sqd(pool.data, j, T.data, t, dim);
          if ((scope === 'all' || T.labels[t] === pool.labels[j]) && d < m) [m, at] = [d, t];
        }
        const dupAt = Array.from({ length: 25 }, (_, t) => t).find((t) => sqd(pool.data, j, T.data, t, dim) === 0);
        if (dupAt !== undefined) [m, at] = [0, dupAt];
        if (m > 0 && m >= tau.get(pool.labels[j]!)!.tau) expectKept.push(pool.ids[j]!);
        else {
          expectRemoved.push(pool.ids[j]!);
          const rem = r.removed.find((x) => x.id === pool.ids[j])!;
          expect(rem.distance).toBe(m);
          expect(rem.nearestTestId).toBe(T.ids[at]);
          expect(rem.nearestTestFile).toBe('<memory>');
          expect(rem.reason).toBe(m === 0 ? 'duplicate' : 'leak');
        }
      }
      expect(kept).toEqual(expectKept);
      expect(r.removed.map((x) => x.id)).toEqual(expectRemoved); // in pool order
      expect(r.kept).toBe(expectKept.length);
      expect(r.removed.find((x) => x.id === 'p5')?.reason).toBe('duplicate');
      expect(r.removed.find((x) => x.id === 'p8')?.reason).toBe('duplicate');
      expect(r.removed.length + r.kept).toBe(120);
      for (const c of r.summary) expect(c.pool).toBe(pool.labels.filter((y) => y === c.label).length);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('streams the pool from a file in record batches; the output does not depend on the held side', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-filter-stream-'));
    const rnd = mulberry32(5);
    const dim = 16;
    const n = 300;
    const data = Float32Array.from({ length: n * dim }, () => rnd());
    const file = path.join(dir, 'pool.arrow');
    await writeArrowFile(
      file,
      buildTable({ id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `q${i}`) }, embedding: { kind: 'embedding', values: data, dim }, label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % 4) } }),
    );
    const test = { ids: Array.from({ length: 40 }, (_, i) => `s${i}`), labels: Int32Array.from({ length: 40 }, (_, i) => i % 4), data: Float32Array.from({ length: 40 * dim }, () => rnd()), dim };
    const tau = new Map([0, 1, 2, 3].map((y) => [y, { label: y, tau: 0.9, trainId: '', testId: '' }]));
    const runs = [];
    for (const plan of [{ hold: 'test' as const }, { hold: 'pool' as const }, { hold: 'pool' as const, heldRows: 64 }, { hold: 'test' as const, heldRows: 9 }]) {
      const pool = await EmbeddingStore.open([file], { role: 'pool', requireLabel: true });
      const r = await leakageFilter(pool, [EmbeddingStore.fromArrays('test', test)], tau, { ...plan, memoryBudgetMiB: 16 });
      runs.push(r);
    }
    // Random floats: the kernel's summation order differs between the sides, but the exact
    // (float64) distance to each pool row's nearest test image must agree to float32 rounding.
    let expectRemoved = 0;
    for (let j = 0; j < n; j++) {
      let m = Infinity;
      for (let t = 0; t < 40; t++) m = Math.min(m, sqd(data, j, test.data, t, dim));
      if (m < 0.9) expectRemoved++;
    }
    expect(expectRemoved).toBeGreaterThan(10);
    expect(expectRemoved).toBeLessThan(n - 10);
    for (const r of runs) {
      expect(r.removed.length).toBe(expectRemoved);
      expect(r.removed.map((x) => x.id)).toEqual(runs[0]!.removed.map((x) => x.id));
      r.removed.forEach((x, i) => expect(x.distance).toBeCloseTo(runs[0]!.removed[i]!.distance, 5));
    }
  });
});

describe('embedding store streaming', () => {
  it('chunks smaller than a record batch (slices) carry their own rows; takeRows on a slice too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-store-slice-'));
    const n = 300;
    const dim = 4;
    const data = Float32Array.from({ length: n * dim }, (_, i) => i);
    const file = path.join(dir, 'one-batch.arrow');
    await writeArrowFile(file, buildTable({ id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `q${i}`) }, embedding: { kind: 'embedding', values: data, dim }, label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % 7) } }));
    const store = await EmbeddingStore.open([file], { role: 'pool', requireLabel: true });
    let rows = 0;
    for await (const ch of store.chunks(64)) {
      expect(ch.batch!.numRows).toBe(ch.rows);
      for (let a = 0; a < ch.rows; a++) {
        const i = ch.start + a;
        expect(ch.ids[a]).toBe(`q${i}`);
        expect(ch.labels![a]).toBe(i % 7);
        expect(Array.from(ch.data.subarray(a * dim, (a + 1) * dim))).toEqual([0, 1, 2, 3].map((c) => i * dim + c));
      }
      const t = takeRows(ch.batch!, [1, 3]);
      const e = t.getChild('embedding')!;
      expect(Array.from(e.get(1)!.toArray() as Float32Array)).toEqual([0, 1, 2, 3].map((c) => (ch.start + 3) * dim + c));
      expect(t.getChild('id')!.get(0)).toBe(`q${ch.start + 1}`);
      rows += ch.rows;
    }
    expect(rows).toBe(n);
    expect(store.estimatedRows()).toBeGreaterThanOrEqual(n);
  });
});

describe('baselines', () => {
  it('random: per-class counts, without replacement, seeded, from the class only', () => {
    const labels = Int32Array.from({ length: 100 }, (_, i) => i % 4);
    const counts = new Map([
      [0, 5],
      [1, 30],
      [3, 2],
    ]);
    const a = randomBaseline(labels, counts, 1);
    const b = randomBaseline(labels, counts, 1);
    const c = randomBaseline(labels, counts, 2);
    expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
    expect(Array.from(a.indices)).not.toEqual(Array.from(c.indices));
    expect(new Set(a.indices).size).toBe(a.indices.length);
    const per = new Map<number, number>();
    for (const i of a.indices) per.set(labels[i]!, (per.get(labels[i]!) ?? 0) + 1);
    expect([...per.entries()].sort()).toEqual([
      [0, 5],
      [1, 25],
      [3, 2],
    ]);
    expect(a.summary.find((s) => s.label === 1)!.exhausted).toBe(true);
  });
  it('complete: weight n_y / (n_y + m_y)', () => {
    const r = completeBaseline(Int32Array.from([0, 0, 1, 0]), new Map([
      [0, 7],
      [1, 1],
    ]));
    expect(Array.from(r.weights)).toEqual([0.7, 0.7, 0.5, 0.7].map(Math.fround));
  });
});

// ---- bad input through the file wrappers -------------------------------------------

function emb(n: number, dim: number, labels?: number[], meta: Record<string, string> = {}, drop: string[] = []) {
  const cols: Record<string, ColumnInput> = {
    id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `x${i}`) },
    embedding: { kind: 'embedding', values: Float32Array.from({ length: n * dim }, (_, i) => (i * 7) % 5), dim },
    label: { kind: 'int32', values: labels ?? Array.from({ length: n }, (_, i) => i % 2) },
  };
  for (const d of drop) delete cols[d];
  return buildTable(cols, { 'dcd.backbone': 'toy', ...meta });
}

describe('bad input names the file and the column', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retrieval-bad-'));
  const f = (n: string) => path.join(dir, n);
  beforeAll(async () => {
    await writeArrowFile(f('seed.arrow'), emb(4, 8));
    await writeArrowFile(f('pool.arrow'), emb(20, 8));
    await writeArrowFile(f('pool-wide.arrow'), emb(20, 16));
    await writeArrowFile(f('pool-other.arrow'), emb(20, 8, undefined, { 'dcd.backbone': 'dino_vits16' }));
    await writeArrowFile(f('pool-nolabel.arrow'), emb(20, 8, undefined, {}, ['label']));
    await writeArrowFile(f('seed-badlabel.arrow'), emb(4, 8, [0, 1, 7, 0]));
    await writeArrowFile(f('val-noclass1.arrow'), emb(6, 8, [0, 0, 0, 0, 0, 0]));
    await writeArrowFile(f('train.arrow'), emb(10, 8));
  });
  const sel = (pool: string, seed = 'seed.arrow', extra = {}) => selectFiles({ seed: [f(seed)], pool: [f(pool)], k: 2, out: f('o.arrow'), ...extra });
  it('mismatched embedding widths', async () => {
    await expect(sel('pool-wide.arrow')).rejects.toThrow(/pool-wide\.arrow \(pool\): column embedding has width 16, but .*seed\.arrow \(seed\) has 8/);
  });
  it('backbone metadata that differs', async () => {
    await expect(sel('pool-other.arrow')).rejects.toThrow(/pool-other\.arrow: schema metadata dcd\.backbone is "dino_vits16" but .*seed\.arrow has "toy"/);
  });
  it('missing columns', async () => {
    await expect(sel('pool-nolabel.arrow')).rejects.toThrow(/pool-nolabel\.arrow \(pool\): missing column\(s\) label/);
  });
  it('labels outside the class list', async () => {
    await expect(sel('pool.arrow', 'seed-badlabel.arrow', { classes: [0, 1] })).rejects.toThrow(/seed-badlabel\.arrow \(seed\): column label has 7 for id x2, outside the class list/);
  });
  it('an empty class (τ_y source without the class; complete baseline without train images)', async () => {
    await expect(filterFiles({ pool: [f('pool.arrow')], test: [f('seed.arrow')], train: [f('train.arrow')], val: [f('val-noclass1.arrow')], out: f('flt.arrow') })).rejects.toThrow(
      /val-noclass1\.arrow \(val\): column label has no row of class 1/,
    );
    await expect(completeBaselineFiles({ pool: [f('pool.arrow')], train: [f('val-noclass1.arrow')], out: f('c.arrow') })).rejects.toThrow(
      /val-noclass1\.arrow: column label has no train image of class 1/,
    );
  });
});

describe('auditing picks against the true classes a pool records', () => {
  it('counts the checked picks and lists the wrong ones; a sample takes classes in turn', () => {
    // weak labels of 6 picks; the truth is unknown for pick 2; -1 = no object
    const weak = [0, 0, 1, 1, 2, 0];
    const truth = [0, 3, undefined, -1, 2, 1];
    const a = auditPicks(weak, (i) => truth[i]);
    expect(a).toEqual({ checked: 5, wrong: [{ index: 1, truth: 3 }, { index: 3, truth: -1 }, { index: 5, truth: 1 }] });
    // round-robin over the weak class: 0, 1, 0 (not the first three of class 0)
    expect(takeAcrossClasses(a.wrong, (w) => weak[w.index]!, 2).map((w) => w.index)).toEqual([1, 3]);
    expect(takeAcrossClasses([5, 1, 7, 3, 9, 2], (x) => x % 2, 5)).toEqual([2, 5, 1, 7, 3]);
    expect(takeAcrossClasses([], (x: number) => x, 3)).toEqual([]);
  });
});
