import { ConfigError } from '../core/errors.js';

/** Finite entries (i, j, d) of a seed × candidate distance matrix, in any order. */
export interface Entries {
  /** Seed (row) index, 0 ≤ i < nSeeds. */
  i: Int32Array;
  /** Candidate (column) index; any non-negative integers (e.g. global pool rows). */
  j: Int32Array;
  /** Distance d(x_i, c_j). */
  d: Float32Array | Float64Array;
}

/** Picks of one Algorithm 1 run, in pick order. */
export interface Picks {
  /** Seed index of each pick. */
  seed: Int32Array;
  /** Candidate index of each pick. */
  cand: Int32Array;
  /** Distance of each pick. */
  dist: Float64Array;
  /** 1-based rank within its seed (1 = that seed's closest pick). */
  rank: Int32Array;
  /** Picks per seed [nSeeds]. */
  perSeed: Int32Array;
}

/**
 * Algorithm 1 of the paper (Appendix E) on a sparse set of entries: repeatedly take the
 * global minimum (i*, j*), give c_j* to seed i*, retire column j*, and retire row i*
 * once it holds k_i* picks. Ties break by lower i, then lower j.
 *
 * Implemented as one sort of the entries by (d, i, j) and a sweep that skips used
 * columns and full rows: the same picks as the argmin loop, in O(E log E).
 * Missing entries count as ∞ (never picked). Stops when every seed has its k picks or the
 * entries run out (pool exhausted: some seeds get fewer than k).
 * @param k picks per seed: one k for every seed (the paper), or one per seed [nSeeds]
 *   (`select.per_slice`); a seed with k_i = 0 is full from the start
 */
export function greedySweep(e: Entries, nSeeds: number, k: number | ArrayLike<number>): Picks {
  const kOf = seedBudgets(k, nSeeds);
  const n = e.d.length;
  if (e.i.length !== n || e.j.length !== n) throw new ConfigError('Algorithm 1: entries i, j, d differ in length');
  const order = new Uint32Array(n);
  let m = 0;
  for (let t = 0; t < n; t++) if (e.d[t]! < Infinity) order[m++] = t;
  const finite = Array.from(order.subarray(0, m));
  finite.sort((a, b) => e.d[a]! - e.d[b]! || e.i[a]! - e.i[b]! || e.j[a]! - e.j[b]!);
  const perSeed = new Int32Array(nSeeds);
  const used = new Set<number>();
  const seed: number[] = [];
  const cand: number[] = [];
  const dist: number[] = [];
  const rank: number[] = [];
  let full = kOf.reduce((c, ki) => c + (ki === 0 ? 1 : 0), 0);
  for (const t of finite) {
    if (full === nSeeds) break;
    const i = e.i[t]!;
    const j = e.j[t]!;
    if (perSeed[i]! >= kOf[i]! || used.has(j)) continue;
    used.add(j);
    perSeed[i]! += 1;
    if (perSeed[i] === kOf[i]) full++;
    seed.push(i);
    cand.push(j);
    dist.push(e.d[t]!);
    rank.push(perSeed[i]!);
  }
  return { seed: Int32Array.from(seed), cand: Int32Array.from(cand), dist: Float64Array.from(dist), rank: Int32Array.from(rank), perSeed };
}

/** Picks per seed [nSeeds] from one k for all or one per seed, each an integer ≥ 0. */
export function seedBudgets(k: number | ArrayLike<number>, nSeeds: number): Int32Array {
  if (typeof k === 'number') {
    if (!Number.isInteger(k) || k < 0) throw new ConfigError(`Algorithm 1: k must be an integer ≥ 0, received ${k}`);
    return new Int32Array(nSeeds).fill(k);
  }
  if (k.length !== nSeeds) throw new ConfigError(`Algorithm 1: ${k.length} per-seed k for ${nSeeds} seeds; give one k per seed`);
  const out = new Int32Array(nSeeds);
  for (let i = 0; i < nSeeds; i++) {
    const ki = k[i]!;
    if (!Number.isInteger(ki) || ki < 0 || ki > 0x7fffffff) throw new ConfigError(`Algorithm 1: k of seed ${i} must be an integer ≥ 0, received ${ki}`);
    out[i] = ki;
  }
  return out;
}

/**
 * Algorithm 1 on a dense distance matrix.
 * @param M row-major [nSeeds, nCand]; Infinity entries are never picked
 * @param k picks per seed: one for all, or one per seed (see {@link greedySweep})
 */
export function algorithm1(M: Float32Array | Float64Array, nSeeds: number, nCand: number, k: number | ArrayLike<number>): Picks {
  if (M.length !== nSeeds * nCand) throw new ConfigError(`Algorithm 1: matrix has ${M.length} entries, expected ${nSeeds}×${nCand}`);
  const i = new Int32Array(M.length);
  const j = new Int32Array(M.length);
  for (let a = 0; a < nSeeds; a++)
    for (let b = 0; b < nCand; b++) {
      i[a * nCand + b] = a;
      j[a * nCand + b] = b;
    }
  return greedySweep({ i, j, d: M }, nSeeds, k);
}

/**
 * How many nearest candidates per seed suffice for an exact Algorithm 1 with `k` per
 * seed and `nSeeds` seeds: a seed's j-th nearest entry can only be skipped because its
 * column went to another pick (at most k·nSeeds − 1 of them) or its row is full, so its
 * picks lie among its k·nSeeds nearest (ordered by distance, then index).
 *
 * With one k_i per seed the same argument bounds seed i's picks by its (Σ_j k_j)
 * nearest: the other seeds' picks take at most Σ_j k_j − k_i columns. So the bound is
 * always the run's total picks; pass that total with `nSeeds` = 1.
 */
export function candidatesPerSeed(k: number, nSeeds: number): number {
  return k * nSeeds;
}
