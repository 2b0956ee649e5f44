import * as tf from '@tensorflow/tfjs';
import { DcdError } from '../core/errors.js';
import { checkBufferFits, webgpuAdapter, type AdapterSummary } from '../backends/webgpu.js';

/**
 * Distance screening on the GPU (the `webgpu` backend), for k-NN, the leakage filter and
 * Algorithm 1's candidate search. One side of a join (the columns, {@link GpuCols}) sits on the
 * GPU as an augmented transpose, the other (the answer rows, {@link ScreenOperand}) is uploaded a
 * row block at a time; one matMul gives the block's negated squared distances in fp32, and a
 * top-k or threshold screen on the GPU picks, per answer row, every column whose screening
 * distance lies within a rigorous bound of what the caller asks for (the k-th smallest, or a
 * cap). Only those candidates are read back (`await t.data()`: webgpu reads asynchronously), and
 * the caller ranks them by the float64 distance (knn.ts's `exactSqDist`), exactly as the native
 * addon's certified kernels do (native/src/bf16.cc, select.cc): so the answer is the float64 one,
 * the same rows, order and ties (lower index) as on the native backend.
 *
 * Blocks are sized from the adapter's limits (see {@link screenBlock}): no buffer of a block, the
 * top-k's power-of-two scratch included, exceeds maxStorageBufferBindingSize or maxBufferSize.
 */

/** Largest buffer one screening block uses even where the adapter allows more (GPU memory is shared with the model). */
const BLOCK_BYTES = 128 * 2 ** 20;
/** Most columns of one block: tfjs's webgpu top-k sorts a power-of-two row of them (bitonic). */
const MAX_COLS = 8192;

type Limits = Pick<AdapterSummary, 'maxBufferSize' | 'maxStorageBufferBindingSize' | 'description'>;
let limitsOverride: Limits | null = null;

/** Screening as if the adapter had these limits (tests: many small blocks, or a block that cannot fit); null restores the adapter's. */
export function setScreenLimits(l: Limits | null): void {
  limitsOverride = l;
}

function limits(): Limits {
  const a = limitsOverride ?? webgpuAdapter();
  if (a == null) throw new DcdError('GPU screening: the webgpu backend is not set up (initBackend("webgpu") first)');
  return a;
}

/** What the GPU screen did since the last {@link resetScreenStats}: a debug hook for tests and logs. */
export interface ScreenStats {
  /** GPU blocks screened (one matMul each). */
  blocks: number;
  /** (row, column) pairs screened on the GPU. */
  pairs: number;
  /** Candidates read back for the float64 re-check. */
  candidates: number;
  /** Backends the blocks' tensors were made on (`webgpu` when the screen ran on the GPU). */
  backends: Set<string>;
}

const stats: ScreenStats = { blocks: 0, pairs: 0, candidates: 0, backends: new Set() };

export function screenStats(): Readonly<ScreenStats> {
  return { ...stats, backends: new Set(stats.backends) };
}

export function resetScreenStats(): void {
  stats.blocks = stats.pairs = stats.candidates = 0;
  stats.backends.clear();
}

const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** The byte budget of one block's largest buffer: the adapter's limit, at most {@link BLOCK_BYTES}. */
function blockBytes(): number {
  const a = limits();
  return Math.min(a.maxStorageBufferBindingSize, a.maxBufferSize, BLOCK_BYTES);
}

/** Throws the adapter-limit error (webgpu.ts's wording) for a block that cannot be made smaller. */
function tooLarge(bytes: number, what: string): never {
  checkBufferFits(bytes, true, limits(), what, 'the embedding width is too large to screen on this adapter: run retrieval on --backend native');
  throw new DcdError(`GPU screening: ${what} needs ${bytes} bytes, over the ${BLOCK_BYTES}-byte block budget: run retrieval on --backend native`);
}

/** Columns of one GPU block for rows of width `dim`: the [dim + 2, n] operand and one row's power-of-two top-k scratch fit the budget. */
export function screenCols(dim: number): number {
  const budget = blockBytes();
  let n = Math.min(MAX_COLS, Math.floor(budget / (4 * (dim + 2))));
  while (n > 1 && 4 * pow2(n) > budget) n = Math.floor(n / 2);
  if (n < 1) tooLarge(4 * (dim + 2), `a retrieval screening block (one row of width ${dim})`);
  return n;
}

/** Answer rows per GPU block against `n` columns: the [rows, pow2(n)] top-k scratch and the [rows, dim + 2] operand fit the budget. */
function screenRows(n: number, dim: number): number {
  const budget = blockBytes();
  const rows = Math.floor(budget / (4 * Math.max(pow2(n), dim + 2)));
  if (rows < 1) tooLarge(4 * Math.max(pow2(n), dim + 2), `a retrieval screening block (1 × ${n} distances)`);
  return rows;
}

/**
 * |s − d| for a pair whose fp32 GPU screening value is s and float64 distance (exactSqDist) d, with
 * nx, ny the float64 norms of the two rows centred on the same μ. The scheme of ScreenBound in
 * native/src/bf16.cc, for a screen computed as one fp32 matMul of K = dim + 2 terms whose absolute
 * values add up to (nx + ny)² (2·x̂·ŷ, ‖x̂‖², ‖ŷ‖²):
 *  - fp32 accumulation in any order, with or without fused multiply-add (WGSL allows either; each
 *    operation at least as accurate as a correctly rounded one): ≤ γ(K + 1)·(nx + ny)²;
 *  - the norms rounded to fp32 on the host: ≤ 2⁻²⁴·(nx² + ny²);
 *  - centring (x̂ = fl32(x − μ)): ≤ 2.01·2⁻²⁴·(nx + ny)²;
 *  - float64 norms and exactSqDist's own rounding: ≤ (K + 8)·2⁻⁵²·(nx + ny)²;
 *  - subnormals flushed to zero (WGSL allows it): ≤ K·2⁻¹²⁰ per operation, twice, times (1 + nx + ny).
 * The sum, doubled (a driver's fp32 is trusted to the spec, not to the last ulp), times 1 + 1e-6
 * for the rounding of this formula itself.
 */
let marginScale = 1;

/** Multiplies {@link screenBound} by `f` (tests: 0 shows what an uncertified fp32 screen would get wrong); 1 restores it. */
export function scaleScreenMargin(f: number): void {
  marginScale = f;
}

export function screenBound(dim: number): (nx: number, ny: number) => number {
  const u = 2 ** -24;
  const K = dim + 2;
  const m = K + 1;
  const sq = (m * u) / (1 - m * u) + u + 2.01 * u + (K + 8) * 2 ** -52;
  const abs = 2 * K * 2 ** -120;
  const scale = 2 * marginScale;
  return (nx, ny) => scale * (sq * (nx + ny) * (nx + ny) + abs * (1 + nx + ny)) * (1 + 1e-6);
}

/** The mean of rows `which` of `data` ([*, dim]; every row without `which`), rounded to fp32 (the centre of a screen). */
export function rowMean(data: Float32Array, dim: number, which?: ArrayLike<number>): Float32Array {
  const n = which ? which.length : data.length / dim;
  const s = new Float64Array(dim);
  for (let a = 0; a < n; a++) {
    const o = (which ? which[a]! : a) * dim;
    for (let c = 0; c < dim; c++) s[c]! += data[o + c]!;
  }
  return Float32Array.from(s, (v) => (n > 0 ? v / n : 0));
}

/** Answer rows of a screen, on the host: [m, dim + 2] rows [x − μ, 1, −‖x − μ‖²] and the float64 norms ‖x − μ‖. */
export interface ScreenOperand {
  readonly m: number;
  readonly dim: number;
  readonly aug: Float32Array;
  readonly norm: Float64Array;
}

/**
 * Centres rows `which` of `data` ([*, dim]; every row without `which`) on `mu` (fp32, as the GPU
 * sees them) and writes `m` rows of `width` = dim + 2 values through `put(row, c, value)`; returns the float64 norms.
 */
function centre(data: Float32Array, dim: number, mu: Float32Array, which: ArrayLike<number> | undefined, put: (i: number, c: number, v: number) => void): Float64Array {
  const m = which ? which.length : data.length / dim;
  const norm = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    const o = (which ? which[i]! : i) * dim;
    let s = 0;
    for (let c = 0; c < dim; c++) {
      const v = Math.fround(data[o + c]! - mu[c]!);
      put(i, c, v);
      s += v * v;
    }
    norm[i] = Math.sqrt(s);
  }
  return norm;
}

/** Rows `which` of `data` ([*, dim]) as the answer side of a screen, centred on `mu`. */
export function screenOperand(data: Float32Array, dim: number, mu: Float32Array, which?: ArrayLike<number>): ScreenOperand {
  const m = which ? which.length : data.length / dim;
  const K = dim + 2;
  const aug = new Float32Array(m * K);
  const norm = centre(data, dim, mu, which, (i, c, v) => (aug[i * K + c] = v));
  for (let i = 0; i < m; i++) {
    aug[i * K + dim] = 1;
    aug[i * K + dim + 1] = -(norm[i]! * norm[i]!);
  }
  return { m, dim, aug, norm };
}

/**
 * Rows of one side on the GPU as the right operand of a screen: blocks of ≤ {@link screenCols}
 * columns, each [dim + 2, n] with rows 2(y − μ)ᵀ, −‖y − μ‖², 1, so that an operand row
 * [x − μ, 1, −‖x − μ‖²] times it is −‖x − y‖² (fp32) in one matMul. The caller disposes it.
 */
export class GpuCols {
  readonly blocks: { start: number; n: number; t: tf.Tensor2D; maxNorm: number }[] = [];
  readonly n: number;

  /** Rows `which` of `data` ([*, dim]; every row without `which`), centred on `mu`. */
  constructor(data: Float32Array, readonly dim: number, readonly mu: Float32Array, which?: ArrayLike<number>) {
    this.n = which ? which.length : data.length / dim;
    const per = screenCols(dim);
    try {
      for (let s = 0; s < this.n; s += per) {
        const n = Math.min(per, this.n - s);
        const aug = new Float32Array((dim + 2) * n);
        const rows = which ? Array.prototype.slice.call(which, s, s + n) : Array.from({ length: n }, (_, j) => s + j);
        const norm = centre(data, dim, mu, rows, (j, c, v) => (aug[c * n + j] = 2 * v));
        let maxNorm = 0;
        for (let j = 0; j < n; j++) {
          aug[dim * n + j] = -(norm[j]! * norm[j]!);
          aug[(dim + 1) * n + j] = 1;
          maxNorm = Math.max(maxNorm, norm[j]!);
        }
        this.blocks.push({ start: s, n, t: tf.tensor2d(aug, [dim + 2, n]), maxNorm });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Largest centred norm of its rows (for the screening bound). */
  get maxNorm(): number {
    return this.blocks.reduce((m, b) => Math.max(m, b.maxNorm), 0);
  }

  dispose(): void {
    for (const b of this.blocks) b.t.dispose();
    this.blocks.length = 0;
  }
}

/** Per answer row, its candidate columns and their fp32 screening distances (CSR: row i owns [start[i], start[i + 1])). */
export interface Candidates {
  start: Int32Array;
  col: Int32Array;
  s: Float64Array;
}

/**
 * What a screen keeps of answer row i: every column whose screening distance s satisfies
 * s ≤ min(kth_i + 2·e[i], cap[i]), kth_i being the k-th smallest s of the row within a column
 * block (+∞ when k = 0 or the block has fewer than k columns). With e[i] ≥ |s − d| for every pair of
 * the row (see {@link screenBound}) this keeps every column that can be among the row's k nearest by
 * d (k-NN, nearest row), or that can be at or below a float64 cap (Algorithm 1: cap = the seed's
 * cap-th distance so far + e).
 */
export interface ScreenRule {
  k: number;
  e: Float64Array;
  cap?: Float64Array;
}

const f32 = new Float32Array(1);
const u32 = new Int32Array(f32.buffer);
/** The smallest fp32 value ≥ x. */
function up32(x: number): number {
  const f = Math.fround(x);
  if (f >= x || Number.isNaN(f)) return f;
  f32[0] = f;
  if (f > 0) u32[0]! += 1;
  else if (f < 0) u32[0]! -= 1;
  else return 2 ** -149;
  return f32[0]!;
}

/** The screen of `rows` against every column of `cols` under `rule` (see {@link ScreenRule}); the candidates of row i, in column order. */
export async function screen(rows: ScreenOperand, cols: GpuCols, rule: ScreenRule): Promise<Candidates> {
  const m = rows.m;
  const K = rows.dim + 2;
  const perRow: number[][] = Array.from({ length: m }, () => []);
  const perRowS: number[][] = Array.from({ length: m }, () => []);
  for (const blk of cols.blocks) {
    const n = blk.n;
    const step = screenRows(n, rows.dim);
    for (let r0 = 0; r0 < m; r0 += step) {
      const mb = Math.min(step, m - r0);
      const neg = tf.tidy(() => tf.matMul(tf.tensor2d(rows.aug.subarray(r0 * K, (r0 + mb) * K), [mb, K]), blk.t)); // −s, [mb, n]
      stats.blocks++;
      stats.pairs += mb * n;
      stats.backends.add(tf.engine().backendName);
      try {
        const thr = new Float64Array(mb);
        for (let i = 0; i < mb; i++) thr[i] = rule.cap ? rule.cap[r0 + i]! : Infinity;
        if (rule.k > 0 && n >= rule.k) {
          const kth = rule.k === 1 ? [tf.max(neg, 1)] : Object.values(tf.topk(neg, rule.k));
          let v: Float32Array;
          try {
            v = (await kth[0]!.data()) as Float32Array;
          } finally {
            tf.dispose(kth);
          }
          for (let i = 0; i < mb; i++) thr[i] = Math.min(thr[i]!, -v[i * rule.k + rule.k - 1]! + 2 * rule.e[r0 + i]!);
        }
        // How many columns each row keeps (the GPU compares in fp32: thresholds rounded up, a superset).
        let kk = n;
        if (thr.some((t) => t !== Infinity)) {
          const negThr = tf.tensor2d(Float32Array.from(thr, (t) => -up32(t)), [mb, 1]);
          const count = tf.tidy(() => tf.sum(tf.cast(tf.greaterEqual(neg, negThr), 'int32'), 1));
          negThr.dispose();
          let c: Int32Array;
          try {
            c = (await count.data()) as Int32Array;
          } finally {
            count.dispose();
          }
          kk = c.reduce((a, b) => Math.max(a, b), 0);
        }
        if (kk === 0) continue;
        // Few candidates: the top-kk of each row on the GPU; many: the whole block.
        let idx: Int32Array | null = null;
        let vals: Float32Array;
        if (2 * kk < n) {
          const t = tf.topk(neg, kk);
          try {
            [vals, idx] = (await Promise.all([t.values.data(), t.indices.data()])) as [Float32Array, Int32Array];
          } finally {
            tf.dispose([t.values, t.indices]);
          }
        } else {
          vals = (await neg.data()) as Float32Array;
          kk = n;
        }
        for (let i = 0; i < mb; i++) {
          const t = thr[i]!;
          const ci = perRow[r0 + i]!;
          const si = perRowS[r0 + i]!;
          for (let a = i * kk, e = a + kk; a < e; a++) {
            const s = -vals[a]!;
            if (s <= t) {
              ci.push(blk.start + (idx ? idx[a]! : a - i * kk));
              si.push(s);
            }
          }
        }
      } finally {
        neg.dispose();
      }
    }
  }
  const start = new Int32Array(m + 1);
  for (let i = 0; i < m; i++) start[i + 1] = start[i]! + perRow[i]!.length;
  const col = new Int32Array(start[m]!);
  const s = new Float64Array(start[m]!);
  for (let i = 0; i < m; i++) {
    // top-k returns a row's candidates by distance: back to column order (ties between equal distances then go to the lower column)
    const order = perRow[i]!.map((_, t) => t).sort((a, b) => perRow[i]![a]! - perRow[i]![b]!);
    order.forEach((t, o) => {
      col[start[i]! + o] = perRow[i]![t]!;
      s[start[i]! + o] = perRowS[i]![t]!;
    });
  }
  stats.candidates += start[m]!;
  return { start, col, s };
}
