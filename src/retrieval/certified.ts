import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import { certifiedRetrievalBackend } from '../backends/host.js';
import { bf16Addon, type Bf16Addon, type Precision } from '../backends/precision.js';

/**
 * Certified retrieval on the native backend (native/src/bf16.cc): distances are screened in a
 * low precision (bf16 inputs with fp32 accumulation, or fp32), and every pair whose screening
 * distance lies within a rigorous error bound of the k-th distance (k-NN) or of the minimum
 * (nearest row) is re-ranked by its float64 distance, the one {@link exactSqDist} computes. So
 * the rows chosen, their order (ties: lower index) and the distances reported are the float64
 * answer whatever the screening precision: bf16 changes the speed, never the result.
 *
 * The bound (ScreenBound in bf16.cc) covers bf16 rounding of both sides (2⁻⁸ each), fp32
 * accumulation in any order, denormal flushing, centring both sides on a common mean (which
 * shrinks the norms the bound scales with) and the float64 norms.
 */

/** The addon's certified kernels when the active tfjs backend is `native` (or webgpu, see backends/host.ts) and they are built. */
export function certifiedKernels(): Bf16Addon | null {
  return certifiedRetrievalBackend() ? bf16Addon() : null;
}

const code = (p: Precision): 0 | 1 => (p === 'bf16' ? 1 : 0);

/**
 * Exact k nearest pool rows of each query (float64 squared L2, ties to the lower index), screened in `precision`.
 * @param queries row-major float32 [nq, dim]
 * @param pool row-major float32 [np, dim]
 * @returns indices Int32 [nq, k] and distances Float32 [nq, k] (the float64 distances, rounded),
 *   each row ascending; padded with -1 / Infinity when np < k; `checked`: float64 distances computed
 */
export function knnCertified(a: Bf16Addon, queries: Float32Array, dim: number, pool: Float32Array, k: number, precision: Precision): { indices: Int32Array; distances: Float32Array; checked: number } {
  if (queries.length % dim !== 0) throw new ConfigError(`knn: queries have ${queries.length} values, not a multiple of dim ${dim}`);
  const nq = queries.length / dim;
  const indices = new Int32Array(nq * k);
  const d64 = new Float64Array(nq * k);
  const checked = a.knnRows(queries, pool, dim, k, code(precision), indices, d64);
  return { indices, distances: Float32Array.from(d64), checked };
}

/**
 * Held rows in screening form (centred on their mean, converted to `precision`, with norms), for
 * {@link nearestHeld}. The rows are kept by reference.
 */
export interface ScreenRows {
  readonly data: Float32Array;
  readonly n: number;
  readonly dim: number;
  readonly precision: Precision;
  readonly screen: Uint16Array | Float32Array;
  readonly n2: Float64Array;
  readonly mu: Float32Array;
}

/** Prepares `data` ([n, dim] row-major float32) as {@link ScreenRows}. */
export function screenRows(a: Bf16Addon, data: Float32Array, dim: number, precision: Precision): ScreenRows {
  if (dim <= 0 || data.length % dim !== 0) throw new ConfigError(`screenRows: ${data.length} values is not a multiple of dim ${dim}`);
  const n = data.length / dim;
  const screen = precision === 'bf16' ? new Uint16Array(n * dim) : new Float32Array(n * dim);
  const n2 = new Float64Array(n);
  const mu = new Float32Array(dim);
  a.prepareRows(data, dim, code(precision), mu, true, screen, n2);
  return { data, n, dim, precision, screen, n2, mu };
}

/**
 * Nearest rows by float64 distance (ties: lower index) between held rows and rows `which` of
 * `rows` ([*, dim]). `perHeld` false: for each of the `which.length` rows, the nearest held row
 * (index in [0, held.n)); true: for each held row, the nearest of those rows (position in
 * `which`). Index -1 and distance Infinity where the other side is empty.
 */
export function nearestHeld(a: Bf16Addon, held: ScreenRows, rows: Float32Array, which: Int32Array, perHeld: boolean): { index: Int32Array; distance: Float64Array; checked: number } {
  const n = perHeld ? held.n : which.length;
  const index = new Int32Array(n);
  const distance = new Float64Array(n);
  const checked = a.nearestRows(held.data, held.screen, held.n2, held.mu, rows, which, which.length, held.dim, code(held.precision), perHeld, index, distance);
  return { index, distance, checked };
}
