/**
 * Algorithm 1's candidate search split over pool shards: searching disjoint shards (with
 * their rows' global positions), merging the candidate sets and sweeping gives exactly
 * the selection of one search over the whole pool, de-val and debug-train, ties
 * included (integer features make many equal distances), for interleaved and
 * contiguous shards, with and without --any-label, --exclude and --only, and with a per-seed k.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backends/chain.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { mergeCandidates, searchCandidates, selectAlgorithm1, sweepCandidates, type SeedSet, type SelectOptions } from '../src/retrieval/select.js';
import { mulberry32 } from '../src/core/rng.js';

function synth(seed: number, nSeeds: number, nPool: number, classes: number, dim: number, range: number) {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const seeds: SeedSet = {
    ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`),
    labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes),
    data: Float32Array.from({ length: nSeeds * dim }, () => int(range)),
    dim,
  };
  const pool = {
    ids: Array.from({ length: nPool }, (_, i) => `p${i}`),
    labels: Int32Array.from({ length: nPool }, () => int(classes)),
    data: Float32Array.from({ length: nPool * dim }, () => int(range)),
    dim,
  };
  return { seeds, pool };
}

/** The store of pool rows `rows` (in that order) and their global positions. */
function shardOf(pool: ReturnType<typeof synth>['pool'], rows: number[]) {
  const dim = pool.dim;
  const data = new Float32Array(rows.length * dim);
  rows.forEach((j, r) => data.set(pool.data.subarray(j * dim, (j + 1) * dim), r * dim));
  const store = EmbeddingStore.fromArrays('pool shard', { ids: rows.map((j) => pool.ids[j]!), labels: Int32Array.from(rows, (j) => pool.labels[j]!), data, dim });
  return { store, rowOf: (r: number) => rows[r]! };
}

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

describe('sharded candidate search of Algorithm 1', () => {
  it('merges to the unsharded selection', async () => {
    let compared = 0;
    for (const [seed, nShards, layout, extra] of [
      [1, 2, 'interleaved', {}],
      [2, 3, 'contiguous', {}],
      [3, 4, 'interleaved', { anyLabel: true }],
      [4, 3, 'interleaved', { exclude: new Set(['p1', 'p5', 'p8', 'p13']), only: new Set(Array.from({ length: 500 }, (_, i) => `p${i * 2}`)) }],
      // select.per_slice: one debug-train k per seed image
      [5, 3, 'contiguous', { kPerSeed: [9, 0, 1, 3, 2, 0, 1, 1, 4, 0, 2, 1] }],
    ] as const) {
      const s = synth(seed, 12, 900, 3, 3, 3);
      const opts: SelectOptions = { k: 4, kVal: 2, memoryBudgetMiB: 16, ...extra };
      const whole = await selectAlgorithm1(s.seeds, EmbeddingStore.fromArrays('pool', s.pool), opts);
      const per = Math.ceil(900 / nShards);
      const parts = [];
      for (let i = 0; i < nShards; i++) {
        const rows = Array.from({ length: 900 }, (_, j) => j).filter((j) => (layout === 'interleaved' ? j % nShards === i : Math.floor(j / per) === i));
        const { store, rowOf } = shardOf(s.pool, rows);
        parts.push(await searchCandidates(s.seeds, store, opts, rowOf));
      }
      const sharded = sweepCandidates(s.seeds, mergeCandidates(s.seeds, parts, opts), opts);
      expect(whole.train.ids.length).toBeGreaterThan(0);
      expect(sharded.train).toEqual(whole.train);
      expect(sharded.deval).toEqual(whole.deval);
      compared++;
    }
    expect(compared).toBe(5);
  });

  it('a search of one shard alone is not the whole answer (the merge matters)', async () => {
    const s = synth(7, 12, 900, 3, 3, 3);
    const opts: SelectOptions = { k: 4, kVal: 2 };
    const whole = await selectAlgorithm1(s.seeds, EmbeddingStore.fromArrays('pool', s.pool), opts);
    const { store, rowOf } = shardOf(s.pool, Array.from({ length: 450 }, (_, j) => 2 * j));
    const half = sweepCandidates(s.seeds, await searchCandidates(s.seeds, store, opts, rowOf), opts);
    expect(half.train).not.toEqual(whole.train);
  });
});
