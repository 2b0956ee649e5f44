/**
 * A 2-D map of a backbone's feature space: principal component analysis of the seed,
 * heldout and picked images plus a seeded sample of the pool and the train set, fitted on
 * their union, so a person can see where the failures sit and what was taken.
 *
 * PCA here is the top two eigenvectors of the sample covariance, found by orthogonal
 * (subspace) iteration on the centred data — v ← Xᵀ(X v), then Gram–Schmidt — which never
 * forms the dim × dim covariance (O(n·dim) per step). A fixed start and a sign convention
 * (each component's largest-magnitude weight positive) make the map the same on every run.
 */
import { DataError } from '../core/errors.js';
import { mulberry32, streamSeed } from '../core/rng.js';

/** Result of {@link pca2}. */
export interface Pca2 {
  /** Row-major float32 [n, 2]: the rows' coordinates on the two components. */
  coords: Float32Array;
  /** Column means [dim]. */
  mean: Float64Array;
  /** Row-major [2, dim], unit length, orthogonal. */
  components: Float64Array;
  /** Variance along each component, and the share of the total variance. */
  variance: [number, number];
  explained: [number, number];
}

function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, n: number): number {
  let s = 0;
  for (let t = 0; t < n; t++) s += a[ao + t]! * b[bo + t]!;
  return s;
}

/**
 * The first two principal components of `data` and the rows' coordinates on them.
 * @param data row-major float32 [n, dim], n ≥ 2
 */
export function pca2(data: Float32Array, dim: number, opts: { maxIter?: number; tol?: number } = {}): Pca2 {
  if (!Number.isInteger(dim) || dim < 1 || data.length % dim !== 0) throw new DataError(`map (PCA): ${data.length} values is not a whole number of rows of width ${dim}`);
  const n = data.length / dim;
  if (n < 2) throw new DataError(`map (PCA): needs at least 2 images, received ${n}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let c = 0; c < dim; c++) mean[c]! += data[i * dim + c]!;
  for (let c = 0; c < dim; c++) mean[c]! /= n;
  const x = new Float64Array(n * dim);
  let total = 0;
  for (let i = 0; i < n; i++)
    for (let c = 0; c < dim; c++) {
      const v = data[i * dim + c]! - mean[c]!;
      if (!Number.isFinite(v)) throw new DataError(`map (PCA): row ${i} holds a non-finite value; re-embed the images`);
      x[i * dim + c] = v;
      total += v * v;
    }
  const m = Math.min(2, dim);
  const V = new Float64Array(2 * dim);
  const rnd = mulberry32(streamSeed(0, 'pca2-start'));
  for (let t = 0; t < m * dim; t++) V[t] = rnd() - 0.5;
  const orthonormalise = () => {
    for (let a = 0; a < m; a++) {
      for (let b = 0; b < a; b++) {
        const p = dot(V, a * dim, V, b * dim, dim);
        for (let c = 0; c < dim; c++) V[a * dim + c]! -= p * V[b * dim + c]!;
      }
      const norm = Math.sqrt(dot(V, a * dim, V, a * dim, dim));
      // a rank-deficient direction: keep a zero vector (its variance is 0)
      for (let c = 0; c < dim; c++) V[a * dim + c] = norm > 0 ? V[a * dim + c]! / norm : 0;
    }
  };
  orthonormalise();
  const xv = new Float64Array(n);
  const W = new Float64Array(2 * dim);
  const maxIter = opts.maxIter ?? 1000;
  const tol = opts.tol ?? 1e-10;
  for (let it = 0; it < maxIter; it++) {
    W.fill(0);
    for (let a = 0; a < m; a++) {
      for (let i = 0; i < n; i++) xv[i] = dot(x, i * dim, V, a * dim, dim);
      for (let i = 0; i < n; i++) for (let c = 0; c < dim; c++) W[a * dim + c]! += x[i * dim + c]! * xv[i]!;
    }
    const prev = Float64Array.from(V);
    V.set(W);
    orthonormalise();
    let change = 0;
    // largest change of any weight, the sign flip of a component aside
    for (let a = 0; a < m; a++) {
      const sg = dot(V, a * dim, prev, a * dim, dim) < 0 ? -1 : 1;
      for (let c = 0; c < dim; c++) change = Math.max(change, Math.abs(V[a * dim + c]! - sg * prev[a * dim + c]!));
    }
    if (change < tol) break;
  }
  for (let a = 0; a < m; a++) {
    let big = 0;
    for (let c = 0; c < dim; c++) if (Math.abs(V[a * dim + c]!) > Math.abs(V[a * dim + big]!)) big = c;
    if (V[a * dim + big]! < 0) for (let c = 0; c < dim; c++) V[a * dim + c] = -V[a * dim + c]!;
  }
  const coords = new Float32Array(n * 2);
  const variance: [number, number] = [0, 0];
  for (let i = 0; i < n; i++)
    for (let a = 0; a < m; a++) {
      const p = dot(x, i * dim, V, a * dim, dim);
      coords[i * 2 + a] = p;
      variance[a] += (p * p) / (n - 1);
    }
  const tv = total / (n - 1);
  return { coords, mean, components: V, variance, explained: [tv > 0 ? variance[0] / tv : 0, tv > 0 ? variance[1] / tv : 0] };
}

/** The sets a map shows, in drawing order (later on top). */
export const MAP_SETS = ['train', 'pool', 'heldout', 'pick', 'seed'] as const;
export type MapSet = (typeof MAP_SETS)[number];

/** Rows of one set given to {@link projectSets}. */
export interface MapInput {
  set: MapSet;
  ids: readonly string[];
  data: Float32Array;
  /** Class of each row (shown on hover), optional. */
  labels?: ArrayLike<number>;
  /** `pick`: the seed image each pick went to (drawn as a link on hover). */
  seedIds?: readonly string[];
}

/** One point of the map. */
export interface MapPoint {
  set: MapSet;
  id: string;
  x: number;
  y: number;
  label?: number;
  seedId?: string;
}

/** Result of {@link projectSets}. */
export interface MapData {
  points: MapPoint[];
  explained: [number, number];
  /** Rows drawn of each set, and rows it had. */
  counts: Record<string, { shown: number; total: number }>;
}

/**
 * Projects several sets of one feature space onto its first two principal components.
 * `pool` and `train` are sampled down to `sample` rows each (seeded, without replacement);
 * seed, heldout and picks are drawn whole.
 */
export function projectSets(sets: readonly MapInput[], dim: number, opts: { sample?: number; seed?: number } = {}): MapData {
  const sample = opts.sample ?? 2000;
  const rows: { s: MapInput; r: number }[] = [];
  const counts: MapData['counts'] = {};
  for (const s of sets) {
    const n = s.ids.length;
    if (s.data.length !== n * dim) throw new DataError(`map: set ${s.set} has ${s.data.length} values for ${n} ids of width ${dim}; use one backbone's embeddings for every set`);
    if (s.seedIds && s.seedIds.length !== n) throw new DataError(`map: set ${s.set} has ${s.seedIds.length} seed ids for ${n} rows`);
    let take = [...Array(n).keys()];
    if ((s.set === 'pool' || s.set === 'train') && n > sample) {
      const rnd = mulberry32(streamSeed(opts.seed ?? 0, `map-sample-${s.set}`));
      for (let t = 0; t < sample; t++) {
        const j = t + Math.floor(rnd() * (n - t));
        [take[t], take[j]] = [take[j]!, take[t]!];
      }
      take = take.slice(0, sample).sort((a, b) => a - b);
    }
    const c = (counts[s.set] ??= { shown: 0, total: 0 });
    c.shown += take.length;
    c.total += n;
    for (const r of take) rows.push({ s, r });
  }
  const all = new Float32Array(rows.length * dim);
  rows.forEach(({ s, r }, i) => all.set(s.data.subarray(r * dim, (r + 1) * dim), i * dim));
  const p = pca2(all, dim);
  const points = rows.map(({ s, r }, i) => ({
    set: s.set,
    id: s.ids[r]!,
    x: p.coords[i * 2]!,
    y: p.coords[i * 2 + 1]!,
    ...(s.labels ? { label: s.labels[r]! } : {}),
    ...(s.seedIds ? { seedId: s.seedIds[r]! } : {}),
  }));
  return { points, explained: p.explained, counts };
}
