import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import { recycleReadout } from '../backends/buffer-pool.js';
import { bf16Support, type Precision } from '../backends/precision.js';
import { gpuRetrieval, HostMatrix, hostRetrieval } from '../backends/host.js';
import { certifiedKernels, knnCertified } from './certified.js';
import { GpuCols, rowMean, screen, screenBound, screenOperand } from './gpu-screen.js';

/**
 * Distance kernels on tfjs tensors.
 *
 * Squared L2 is ‖a‖² − 2a·b + ‖b‖², clamped at 0. The "held" side (seed images, test
 * images) is kept on the device pre-transposed and augmented, [D + 2, n] (see
 * {@link HeldRows}), and each streamed chunk of rows, augmented to [r, D + 2], is the
 * left operand of one plain 2-D matMul. On `wasm`, `matMul(a, bT)` with `bT` already
 * transposed is ~14× faster than `matMul(a, b, false, true)` (measured here:
 * 1000×20000×384 in 0.75 s against 10.2 s), and folding the norms into the matMul
 * avoids three element-wise passes over the [r, n] block.
 * Top-k runs in JS over the downloaded block: `tf.topk` on wasm took 2.0 s for a
 * 1000×20000 block where download plus a JS scan take 0.4 s, and the JS heap gives the
 * deterministic tie-break (lower index first) that Algorithm 1 needs.
 */

/** Rows held on the device, pre-transposed and augmented, for repeated distance blocks. */
export interface HeldRows {
  /** Number of rows n. */
  readonly n: number;
  /** Feature width D. */
  readonly dim: number;
  /** Row-major copy [n, D], kept for exact (float64) re-checks. */
  readonly data: Float32Array;
  /**
   * [D + 2, n] float32: rows 0..D−1 are −2·bᵀ, row D is ‖b‖², row D+1 is ones, so that
   * [a, 1, ‖a‖²] · t = ‖a‖² − 2a·b + ‖b‖² in one matMul, with no element-wise passes
   * over the [r, n] block on the device (those cost more than the matMul on wasm).
   */
  readonly t: tf.Tensor2D | null;
  /** The same matrix on the host, where the active backend reads only asynchronously (webgpu; see backends/host.ts). */
  readonly host: HostMatrix | null;
  /** Frees the device tensors. */
  dispose(): void;
}

/**
 * Puts `data` ([n, dim] row-major float32) on the device as {@link HeldRows}.
 * The caller disposes the result.
 */
export function holdRows(data: Float32Array, dim: number): HeldRows {
  if (dim <= 0 || data.length % dim !== 0) throw new ConfigError(`holdRows: ${data.length} values is not a multiple of dim ${dim}`);
  const n = data.length / dim;
  // Build the augmented transpose in JS: one pass, no device temporaries.
  const aug = new Float32Array((dim + 2) * n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    const o = j * dim;
    for (let c = 0; c < dim; c++) {
      const v = data[o + c]!;
      aug[c * n + j] = -2 * v;
      s += v * v;
    }
    aug[dim * n + j] = s;
    aug[(dim + 1) * n + j] = 1;
  }
  const host = hostRetrieval() ? new HostMatrix(aug, dim + 2, n) : null;
  const t = host ? null : tf.tensor2d(aug, [dim + 2, n]);
  return {
    n,
    dim,
    data,
    t,
    host,
    dispose() {
      t?.dispose();
      host?.dispose();
    },
  };
}

/**
 * Squared L2 distances between `rows` and every held row.
 * @param rows row-major float32 [r, D], or [*, D] when `which` is given
 * @param r number of rows of the block
 * @param held the other side, from {@link holdRows} (D must match)
 * @param which optional row indices into `rows` (length r): block row i is `rows[which[i]]`
 *   (gathered straight into the matMul operand, saving a copy of the rows)
 * @returns row-major float32 [r, held.n]; entry (a, b) = max(0, ‖rows_a‖² − 2 rows_a·held_b + ‖held_b‖²)
 */
export function distanceBlock(rows: Float32Array, r: number, held: HeldRows, which?: ArrayLike<number>): Float32Array {
  const dim = held.dim;
  if (which ? which.length !== r || rows.length % dim !== 0 : rows.length !== r * dim)
    throw new ConfigError(`distanceBlock: rows has ${rows.length} values${which ? ` and ${which.length} indices` : ''}, expected ${r}×${dim}`);
  if (r === 0 || held.n === 0) return new Float32Array(r * held.n);
  const a = new Float32Array(r * (dim + 2));
  for (let i = 0; i < r; i++) {
    const o = (which ? which[i]! : i) * dim;
    a.set(rows.subarray(o, o + dim), i * (dim + 2));
    let s = 0;
    for (let c = o; c < o + dim; c++) s += rows[c]! * rows[c]!;
    a[i * (dim + 2) + dim] = 1;
    a[i * (dim + 2) + dim + 1] = s;
  }
  // Download outside tidy: tidy walks its return value looking for tensors, and for a
  // typed array that is a for-in over every entry (4M Set insertions for a 4096 × 1000
  // block, seconds per call: this alone made k-NN ~40× slower).
  let out: Float32Array;
  if (held.host) {
    out = held.host.leftMul(a, r);
    for (let t = 0; t < out.length; t++) if (out[t]! < 0) out[t] = 0;
    return out;
  }
  const y = tf.tidy(() => tf.matMul(tf.tensor2d(a, [r, dim + 2]), held.t!));
  try {
    out = y.dataSync() as Float32Array;
  } finally {
    y.dispose();
  }
  for (let t = 0; t < out.length; t++) if (out[t]! < 0) out[t] = 0;
  return out;
}

/**
 * Gives a block from {@link distanceBlock} back once the caller is done with it (and keeps no
 * reference): on the native backend the next block reuses its memory.
 */
export function releaseBlock(block: Float32Array): void {
  recycleReadout(block);
}

/** Exact squared L2 distance between row `i` of `a` and row `j` of `b` (both [*, dim]), in float64. */
export function exactSqDist(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  const ai = i * dim;
  const bj = j * dim;
  for (let c = 0; c < dim; c++) {
    const d = a[ai + c]! - b[bj + c]!;
    s += d * d;
  }
  return s;
}

/**
 * A running top-k per query: the `cap[q]` smallest distances seen for query q, ties
 * broken by the lower candidate index. Feed candidates in increasing index order
 * (streaming order): then a later candidate with an equal distance never displaces
 * an earlier one, which is what makes the tie rule hold.
 */
export class RunningTopK {
  readonly nq: number;
  private readonly cap: Int32Array;
  private readonly base: Int32Array;
  private readonly size: Int32Array;
  private readonly dist: Float32Array;
  private readonly idx: Int32Array;
  /** Per query: distance a new candidate must beat (Infinity until full). */
  private readonly thr: Float32Array;

  /** @param caps capacity per query (a number for all, or one per query) */
  constructor(nq: number, caps: number | ArrayLike<number>) {
    this.nq = nq;
    this.cap = new Int32Array(nq);
    this.base = new Int32Array(nq + 1);
    for (let q = 0; q < nq; q++) {
      const c = typeof caps === 'number' ? caps : caps[q]!;
      this.cap[q] = Math.max(0, c);
      this.base[q + 1] = this.base[q]! + this.cap[q]!;
    }
    this.size = new Int32Array(nq);
    this.dist = new Float32Array(this.base[nq]!);
    this.idx = new Int32Array(this.base[nq]!);
    this.thr = new Float32Array(nq).fill(Infinity);
    for (let q = 0; q < nq; q++) if (this.cap[q] === 0) this.thr[q] = -Infinity;
  }

  /** Offers candidate `j` at distance `d` to query `q`; returns true if kept (for now). */
  push(q: number, d: number, j: number): boolean {
    if (!(d < this.thr[q]!)) return false;
    const b = this.base[q]!;
    const c = this.cap[q]!;
    const dist = this.dist;
    const idx = this.idx;
    let s = this.size[q]!;
    if (s < c) {
      // sift up in a max-heap ordered by (d, j)
      let p = s++;
      while (p > 0) {
        const par = (p - 1) >> 1;
        const pd = dist[b + par]!;
        if (pd > d || (pd === d && idx[b + par]! > j)) break;
        dist[b + p] = pd;
        idx[b + p] = idx[b + par]!;
        p = par;
      }
      dist[b + p] = d;
      idx[b + p] = j;
      this.size[q] = s;
      if (s === c) this.thr[q] = dist[b]!;
      return true;
    }
    // replace the worst (root) and sift down
    let p = 0;
    for (;;) {
      const l = 2 * p + 1;
      if (l >= c) break;
      let m = l;
      const r = l + 1;
      if (r < c && (dist[b + r]! > dist[b + l]! || (dist[b + r] === dist[b + l] && idx[b + r]! > idx[b + l]!))) m = r;
      const md = dist[b + m]!;
      if (md < d || (md === d && idx[b + m]! < j)) break;
      dist[b + p] = md;
      idx[b + p] = idx[b + m]!;
      p = m;
    }
    dist[b + p] = d;
    idx[b + p] = j;
    this.thr[q] = dist[b]!;
    return true;
  }

  /**
   * Offers a whole block: `block` is row-major [r, nCols] (from {@link distanceBlock}),
   * row a is candidate `candIdx[a]`, column c is query `queryIdx[c]`.
   * @returns for each row, whether any query kept it
   */
  pushBlock(block: Float32Array, r: number, candIdx: ArrayLike<number>, queryIdx: ArrayLike<number>): Uint8Array {
    const nCols = queryIdx.length;
    const kept = new Uint8Array(r);
    const thr = this.thr;
    for (let a = 0; a < r; a++) {
      const off = a * nCols;
      for (let c = 0; c < nCols; c++) {
        const q = queryIdx[c]!;
        const d = block[off + c]!;
        if (d < thr[q]! && this.push(q, d, candIdx[a]!)) kept[a] = 1;
      }
    }
    return kept;
  }

  /** Entries of query q, sorted by (distance, index). */
  sorted(q: number): { indices: Int32Array; distances: Float32Array } {
    const b = this.base[q]!;
    const s = this.size[q]!;
    const order = Array.from({ length: s }, (_, t) => t).sort((x, y) => this.dist[b + x]! - this.dist[b + y]! || this.idx[b + x]! - this.idx[b + y]!);
    return {
      indices: Int32Array.from(order, (t) => this.idx[b + t]!),
      distances: Float32Array.from(order, (t) => this.dist[b + t]!),
    };
  }
}

/** Options of {@link knn}. */
export interface KnnOptions {
  /** Pool rows per distance block (default: 4096; tfjs path only). */
  chunkRows?: number;
  /**
   * Screening precision on the native backend (default fp32): the answer is the float64 one
   * either way (see ./certified.ts); bf16 where the CPU lacks bf16 units runs fp32.
   */
  precision?: Precision;
}

/** The screening precision {@link knn} will use for `want` on the native backend. */
export function screeningPrecision(want: Precision | undefined): Precision {
  return want === 'bf16' && bf16Support().ok ? 'bf16' : 'fp32';
}

/**
 * Exact k nearest pool rows of each query by squared L2. On the native backend: screened in
 * `opts.precision` and re-ranked in float64 (./certified.ts), so the rows, their order and the
 * distances are the float64 answer; elsewhere by the backend's float32 matMul, chunked over the pool.
 * @param queries row-major float32 [nq, qDim]
 * @param qDim feature width D
 * @param pool row-major float32 [np, D]
 * @param k neighbours per query
 * @returns `indices` Int32 [nq, k] and `distances` Float32 [nq, k], row-major, each row
 *   ascending by (distance, index); rows are padded with -1 / Infinity when np < k.
 */
export function knn(queries: Float32Array, qDim: number, pool: Float32Array, k: number, opts: KnnOptions = {}): { indices: Int32Array; distances: Float32Array } {
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`knn: k must be an integer ≥ 1, received ${k}`);
  if (pool.length % qDim !== 0) throw new ConfigError(`knn: pool has ${pool.length} values, not a multiple of qDim ${qDim}`);
  const kern = certifiedKernels();
  if (kern) {
    const r = knnCertified(kern, queries, qDim, pool, k, screeningPrecision(opts.precision));
    return { indices: r.indices, distances: r.distances };
  }
  const nq = queries.length / qDim;
  const np = pool.length / qDim;
  const chunk = Math.max(1, opts.chunkRows ?? 4096);
  const top = new RunningTopK(nq, k);
  const held = holdRows(queries, qDim);
  const qIdx = Int32Array.from({ length: nq }, (_, i) => i);
  try {
    for (let s = 0; s < np; s += chunk) {
      const r = Math.min(chunk, np - s);
      const block = distanceBlock(pool.subarray(s * qDim, (s + r) * qDim), r, held);
      top.pushBlock(block, r, Int32Array.from({ length: r }, (_, a) => s + a), qIdx);
      releaseBlock(block);
    }
  } finally {
    held.dispose();
  }
  const indices = new Int32Array(nq * k).fill(-1);
  const distances = new Float32Array(nq * k).fill(Infinity);
  for (let q = 0; q < nq; q++) {
    const e = top.sorted(q);
    indices.set(e.indices, q * k);
    distances.set(e.distances, q * k);
  }
  return { indices, distances };
}

/** Pool rows per GPU-resident block of {@link knnAsync} (uploaded once, screened against every query). */
const GPU_POOL_ROWS = 65536;

/**
 * {@link knn} with asynchronous reads: on the webgpu backend the distances are screened on the
 * GPU (./gpu-screen.ts: fp32 matMul and top-k in blocks sized to the adapter's limits) and every
 * pair that can be among a query's k nearest is re-ranked in float64 on the host, as the native
 * backend's certified kernels do; so the rows, their order (ties: lower index) and the distances
 * are the native backend's. Elsewhere it is {@link knn}.
 */
export async function knnAsync(queries: Float32Array, qDim: number, pool: Float32Array, k: number, opts: KnnOptions = {}): Promise<{ indices: Int32Array; distances: Float32Array }> {
  if (!gpuRetrieval()) return knn(queries, qDim, pool, k, opts);
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`knn: k must be an integer ≥ 1, received ${k}`);
  if (pool.length % qDim !== 0 || queries.length % qDim !== 0) throw new ConfigError(`knn: queries (${queries.length} values) or pool (${pool.length}) is not a multiple of qDim ${qDim}`);
  const dim = qDim;
  const nq = queries.length / dim;
  const np = pool.length / dim;
  const indices = new Int32Array(nq * k).fill(-1);
  const distances = new Float32Array(nq * k).fill(Infinity);
  if (nq === 0 || np === 0) return { indices, distances };
  // Centred on the pool's mean (as the native kernel): distances do not change, the norms and the bound shrink.
  const mu = rowMean(pool, dim);
  const q = screenOperand(queries, dim, mu);
  const E = screenBound(dim);
  // One margin per query, valid for every pool block: the largest centred pool norm.
  let pmax = 0;
  for (let o = 0; o < pool.length; o += dim) {
    let s = 0;
    for (let c = 0; c < dim; c++) s += Math.fround(pool[o + c]! - mu[c]!) ** 2;
    pmax = Math.max(pmax, s);
  }
  const e = Float64Array.from(q.norm, (n) => E(n, Math.sqrt(pmax)));
  // Per query: candidates (screening distance, row) that can still be among its k nearest, and the k-th smallest screening distance so far.
  const cs: number[][] = Array.from({ length: nq }, () => []);
  const cj: number[][] = Array.from({ length: nq }, () => []);
  const kth = new Float64Array(nq).fill(Infinity);
  for (let s0 = 0; s0 < np; s0 += GPU_POOL_ROWS) {
    const cols = new GpuCols(pool.subarray(s0 * dim, Math.min(np, s0 + GPU_POOL_ROWS) * dim), dim, mu);
    try {
      const c = await screen(q, cols, { k, e, cap: Float64Array.from(kth, (v, i) => v + 2 * e[i]!) });
      for (let i = 0; i < nq; i++) {
        for (let t = c.start[i]!; t < c.start[i + 1]!; t++) {
          cs[i]!.push(c.s[t]!);
          cj[i]!.push(s0 + c.col[t]!);
        }
        if (cs[i]!.length >= k) {
          kth[i] = Float64Array.from(cs[i]!).sort()[k - 1]!;
          const thr = kth[i]! + 2 * e[i]!;
          const keep = cs[i]!.map((_, t) => t).filter((t) => cs[i]![t]! <= thr);
          cs[i] = keep.map((t) => cs[i]![t]!);
          cj[i] = keep.map((t) => cj[i]![t]!);
        }
      }
    } finally {
      cols.dispose();
    }
  }
  for (let i = 0; i < nq; i++) {
    const exact = cj[i]!.map((j) => ({ d: exactSqDist(queries, i, pool, j, dim), j }));
    exact.sort((a, b) => a.d - b.d || a.j - b.j);
    for (let t = 0; t < Math.min(k, exact.length); t++) {
      indices[i * k + t] = exact[t]!.j;
      distances[i * k + t] = exact[t]!.d;
    }
  }
  return { indices, distances };
}

/**
 * Exact nearest held row of each query, over everything or within the query's class.
 * @param queries row-major float32 [nq, dim]
 * @param held row-major float32 [nh, dim]
 * @param opts.queryLabels / heldLabels Int32 [nq] / [nh]: when given, each query only
 *   looks at held rows of its own label
 * @returns `index` Int32 [nq] (-1 when nothing to compare) and `distance` Float64 [nq]
 *   (exact float64 distance to that row; Infinity when none)
 */
export function nearest(
  queries: Float32Array,
  held: Float32Array,
  dim: number,
  opts: { queryLabels?: Int32Array; heldLabels?: Int32Array; chunkRows?: number; precision?: Precision } = {},
): { index: Int32Array; distance: Float64Array } {
  const nq = queries.length / dim;
  const index = new Int32Array(nq).fill(-1);
  const distance = new Float64Array(nq).fill(Infinity);
  const groups = new Map<number, { q: number[]; h: number[] }>();
  const key = (labels: Int32Array | undefined, i: number) => (labels ? labels[i]! : 0);
  const byClass = opts.queryLabels !== undefined && opts.heldLabels !== undefined;
  for (let i = 0; i < nq; i++) {
    const y = byClass ? key(opts.queryLabels, i) : 0;
    if (!groups.has(y)) groups.set(y, { q: [], h: [] });
    groups.get(y)!.q.push(i);
  }
  const nh = held.length / dim;
  for (let j = 0; j < nh; j++) groups.get(byClass ? key(opts.heldLabels, j) : 0)?.h.push(j);
  for (const g of groups.values()) {
    if (g.h.length === 0) continue;
    const hs = gatherRows(held, g.h, dim);
    const qs = gatherRows(queries, g.q, dim);
    const r = knn(qs, dim, hs, 1, { chunkRows: opts.chunkRows, precision: opts.precision });
    g.q.forEach((qi, a) => {
      const j = g.h[r.indices[a]!]!;
      index[qi] = j;
      distance[qi] = exactSqDist(queries, qi, held, j, dim);
    });
  }
  return { index, distance };
}

/** Copies rows `which` of `data` ([*, dim]) into a new contiguous [which.length, dim] array. */
export function gatherRows(data: Float32Array, which: ArrayLike<number>, dim: number): Float32Array {
  const out = new Float32Array(which.length * dim);
  for (let a = 0; a < which.length; a++) out.set(data.subarray(which[a]! * dim, (which[a]! + 1) * dim), a * dim);
  return out;
}

/** L2-normalises each row of `data` ([n, dim]) in place; zero rows stay zero. */
export function l2NormalizeRows(data: Float32Array, dim: number): Float32Array {
  for (let o = 0; o < data.length; o += dim) {
    let s = 0;
    for (let c = 0; c < dim; c++) s += data[o + c]! * data[o + c]!;
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let c = 0; c < dim; c++) data[o + c]! *= inv;
    }
  }
  return data;
}
