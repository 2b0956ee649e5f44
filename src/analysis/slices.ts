/**
 * Failure slices: the debug-seed failures grouped into coherent clusters in one backbone's
 * feature space, each described so that a person can name it ("class 3 on waves"), and every
 * heldout image assigned to its nearest slice so that accuracy can be read per slice.
 *
 * Method (docs/slices-and-cleaning.md restates it):
 * - features are L2-normalised (unless `normalize: false`), so squared L2 distance is
 *   2 − 2·cosine and the clusters do not depend on feature scale;
 * - k-means (Lloyd) from k-means++ seeding (Arthur & Vassilvitskii 2007), seeded through
 *   `mulberry32`, `restarts` times with independent streams, keeping the lowest inertia
 *   (sum of squared distances to the centroid); an empty cluster takes the point farthest
 *   from its centroid; ties go to the lower index everywhere, so a seed gives one answer;
 * - the number of slices is either given or chosen over a range as the one with the highest
 *   mean silhouette (Rousseeuw 1987, Euclidean distance), ties to the smaller number;
 * - slices are numbered by size (largest first), ties by their first member.
 *
 * All arithmetic is float64 in JS: the seed set is small (hundreds of images), and a float64
 * nearest-centroid step gives the same slices on every backend.
 */
import { ConfigError, DataError } from '../core/errors.js';
import { mulberry32, streamSeed } from '../core/rng.js';
import { exactSqDist, l2NormalizeRows } from '../retrieval/knn.js';

/** Result of {@link kmeans}. */
export interface KMeansResult {
  /** Cluster of each row, Int32 [n]. */
  assign: Int32Array;
  /** Centroids, row-major float32 [k, dim]. */
  centroids: Float32Array;
  /** Squared distance of each row to its own centroid, Float64 [n]. */
  distance: Float64Array;
  /** Σ of `distance`. */
  inertia: number;
  /** Lloyd iterations of the kept restart. */
  iterations: number;
}

/** Options of {@link kmeans}. */
export interface KMeansOptions {
  /** RNG seed of the k-means++ seeding (default 0). */
  seed?: number;
  /** Independent k-means++ starts; the lowest inertia is kept (default 5). */
  restarts?: number;
  /** Lloyd iterations at most per start (default 100). */
  maxIter?: number;
}

function checkMatrix(data: Float32Array, dim: number, what: string): number {
  if (!Number.isInteger(dim) || dim < 1) throw new DataError(`${what}: feature width must be an integer ≥ 1, received ${dim}`);
  if (data.length % dim !== 0) throw new DataError(`${what}: ${data.length} values is not a multiple of the feature width ${dim}`);
  for (let t = 0; t < data.length; t++)
    if (!Number.isFinite(data[t]!)) throw new DataError(`${what}: row ${Math.floor(t / dim)} holds a non-finite value (${data[t]}); re-embed the images`);
  return data.length / dim;
}

/**
 * Nearest centroid of each row by squared L2 in float64 (ties: lower centroid index).
 * @param data row-major [n, dim]; centroids row-major [k, dim]
 */
export function nearestCentroid(data: Float32Array, centroids: Float32Array, dim: number): { index: Int32Array; distance: Float64Array } {
  const n = data.length / dim;
  const k = centroids.length / dim;
  const index = new Int32Array(n);
  const distance = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bd = Infinity;
    for (let c = 0; c < k; c++) {
      const d = exactSqDist(data, i, centroids, c, dim);
      if (d < bd) (bd = d), (best = c);
    }
    index[i] = best;
    distance[i] = bd;
  }
  return { index, distance };
}

/** k-means++ seeding: the first centre uniform, each next one drawn with probability ∝ D(x)². */
function seedCentres(data: Float32Array, n: number, dim: number, k: number, rnd: () => number): number[] {
  const centres = [Math.min(n - 1, Math.floor(rnd() * n))];
  const d2 = new Float64Array(n).fill(Infinity);
  while (centres.length < k) {
    const last = centres[centres.length - 1]!;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const d = exactSqDist(data, i, data, last, dim);
      if (d < d2[i]!) d2[i] = d;
      total += d2[i]!;
    }
    let next = -1;
    if (total > 0) {
      const r = rnd() * total;
      let acc = 0;
      for (let i = 0; i < n; i++) {
        acc += d2[i]!;
        if (d2[i]! > 0 && acc > r) {
          next = i;
          break;
        }
      }
      // rounding can leave r ≥ acc at the end: the last point with mass
      if (next < 0) for (let i = n - 1; i >= 0 && next < 0; i--) if (d2[i]! > 0) next = i;
    }
    // every point sits on a centre (duplicates): the lowest index not yet a centre
    if (next < 0) next = [...Array(n).keys()].find((i) => !centres.includes(i))!;
    centres.push(next);
  }
  return centres;
}

function lloyd(data: Float32Array, n: number, dim: number, k: number, start: number[], maxIter: number): KMeansResult {
  const cen = new Float32Array(k * dim);
  start.forEach((i, c) => cen.set(data.subarray(i * dim, (i + 1) * dim), c * dim));
  let assign: Int32Array = new Int32Array(n).fill(-1);
  let iterations = 0;
  for (; iterations < maxIter; iterations++) {
    const { index, distance } = nearestCentroid(data, cen, dim);
    const count = new Int32Array(k);
    for (const c of index) count[c]! += 1;
    // an empty cluster takes the point farthest from its centroid (ties: lower index)
    for (let c = 0; c < k; c++) {
      if (count[c]! > 0) continue;
      let far = -1;
      for (let i = 0; i < n; i++) if (count[index[i]!]! > 1 && (far < 0 || distance[i]! > distance[far]!)) far = i;
      count[index[far]!]! -= 1;
      index[far] = c;
      distance[far] = 0;
      count[c] = 1;
    }
    if (index.every((c, i) => c === assign[i])) break;
    assign = index;
    const sum = new Float64Array(k * dim);
    for (let i = 0; i < n; i++) for (let t = 0; t < dim; t++) sum[assign[i]! * dim + t]! += data[i * dim + t]!;
    for (let c = 0; c < k; c++) for (let t = 0; t < dim; t++) cen[c * dim + t] = sum[c * dim + t]! / count[c]!;
  }
  const distance = Float64Array.from(assign, (c, i) => exactSqDist(data, i, cen, c, dim));
  return { assign, centroids: cen, distance, inertia: distance.reduce((s, d) => s + d, 0), iterations };
}

/**
 * Seeded k-means (k-means++ seeding, Lloyd iterations) on the rows of `data` as given (no
 * normalisation here; {@link failureSlices} normalises).
 * @param data row-major float32 [n, dim]
 * @param k clusters, 1 ≤ k ≤ n
 */
export function kmeans(data: Float32Array, dim: number, k: number, opts: KMeansOptions = {}): KMeansResult {
  const n = checkMatrix(data, dim, 'k-means');
  if (n === 0) throw new DataError('k-means: no rows to cluster');
  if (!Number.isInteger(k) || k < 1 || k > n) throw new ConfigError(`k-means: the number of clusters must be an integer in [1, ${n}] (there are ${n} rows), received ${k}`);
  const seed = opts.seed ?? 0;
  const restarts = opts.restarts ?? 5;
  const maxIter = opts.maxIter ?? 100;
  if (!Number.isInteger(restarts) || restarts < 1) throw new ConfigError(`k-means: restarts must be an integer ≥ 1, received ${restarts}`);
  let best: KMeansResult | null = null;
  for (let r = 0; r < restarts; r++) {
    const rnd = mulberry32(streamSeed(seed, `kmeans-restart-${r}`));
    const res = lloyd(data, n, dim, k, seedCentres(data, n, dim, k, rnd), maxIter);
    if (!best || res.inertia < best.inertia) best = res;
  }
  return best!;
}

/**
 * Mean silhouette of a clustering (Euclidean distance): per row s = (b − a) / max(a, b), a the
 * mean distance to the other rows of its cluster, b the lowest mean distance to another
 * cluster's rows; s = 0 for a row alone in its cluster. Needs 2 ≤ clusters ≤ n − 1.
 */
export function silhouette(data: Float32Array, dim: number, assign: Int32Array, k: number): number {
  const n = assign.length;
  if (k < 2 || k > n - 1) throw new ConfigError(`silhouette: needs 2 ≤ clusters ≤ n − 1 = ${n - 1}, received ${k}`);
  const count = new Int32Array(k);
  for (const c of assign) count[c]! += 1;
  let total = 0;
  const sums = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    sums.fill(0);
    for (let j = 0; j < n; j++) if (j !== i) sums[assign[j]!]! += Math.sqrt(exactSqDist(data, i, data, j, dim));
    const own = assign[i]!;
    if (count[own]! <= 1) continue;
    const a = sums[own]! / (count[own]! - 1);
    let b = Infinity;
    for (let c = 0; c < k; c++) if (c !== own && count[c]! > 0) b = Math.min(b, sums[c]! / count[c]!);
    const m = Math.max(a, b);
    total += m > 0 ? (b - a) / m : 0;
  }
  return total / n;
}

/** One share of a slice: a class or a context and how many of the slice's images have it. */
export interface Share<T> {
  value: T;
  count: number;
  /** count / the images it is counted over. */
  share: number;
}

/** One failure slice. */
export interface Slice {
  /** 0-based, by size (largest first). */
  index: number;
  /** Seed rows in the slice (indices into the input), ascending. */
  members: number[];
  /** Classes of the members, most frequent first (ties: lower label). */
  classMix: Share<number>[];
  /** Most frequent context among members that have one (ties: alphabetical); null when none has one. */
  context: Share<string> | null;
  /** Every member, nearest its centroid first (ties: lower index). */
  byCentre: number[];
  /** The first `central` of `byCentre`: the images that show the slice. */
  central: number[];
  /** Mean squared distance of the members to the centroid (in the normalised space). */
  spread: number;
}

/** How the number of slices was set. */
export interface SliceCriterion {
  kind: 'given' | 'silhouette';
  /** silhouette: the score of every k tried. */
  scores?: { k: number; silhouette: number }[];
}

/** Result of {@link failureSlices}. */
export interface FailureSlices {
  slices: Slice[];
  /** Slice of every seed row. */
  assign: Int32Array;
  /** Squared distance of every seed row to its slice's centroid (normalised space). */
  distance: Float64Array;
  /** Centroids [slices, dim] in the (normalised) space, in slice order. */
  centroids: Float32Array;
  dim: number;
  normalize: boolean;
  criterion: SliceCriterion;
  seed: number;
}

/** Options of {@link failureSlices}. */
export interface SliceOptions {
  /** Number of slices; or `auto` (default) to choose it by silhouette over `range`. */
  k?: number | 'auto';
  /** Range of k tried by `auto`, inclusive (default [2, 8]; capped at n − 1). */
  range?: [number, number];
  /** RNG seed (default 0). */
  seed?: number;
  /** Central images listed per slice (default 6). */
  central?: number;
  /** L2-normalise features first (default true). */
  normalize?: boolean;
  restarts?: number;
}

function shares<T>(values: readonly T[], cmp: (a: T, b: T) => number): Share<T>[] {
  const m = new Map<T, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m]
    .sort((a, b) => b[1] - a[1] || cmp(a[0], b[0]))
    .map(([value, count]) => ({ value, count, share: count / values.length }));
}

/**
 * Clusters the debug-seed failures into slices and describes each one.
 * @param seeds.data row-major float32 [n, dim] (not modified)
 * @param seeds.labels class of each seed image, Int32 [n]
 * @param seeds.contexts context of each seed image (null = none), or omitted
 */
export function failureSlices(seeds: { data: Float32Array; dim: number; labels: Int32Array; contexts?: readonly (string | null)[] }, opts: SliceOptions = {}): FailureSlices {
  const n = checkMatrix(seeds.data, seeds.dim, 'failure slices (seed features)');
  if (n === 0) throw new DataError('failure slices: the seed set is empty; there are no failures to slice');
  if (seeds.labels.length !== n) throw new DataError(`failure slices: ${seeds.labels.length} labels for ${n} seed images`);
  if (seeds.contexts && seeds.contexts.length !== n) throw new DataError(`failure slices: ${seeds.contexts.length} contexts for ${n} seed images`);
  const normalize = opts.normalize ?? true;
  const seed = opts.seed ?? 0;
  const dim = seeds.dim;
  const x = normalize ? l2NormalizeRows(Float32Array.from(seeds.data), dim) : seeds.data;
  const km = { seed, restarts: opts.restarts };
  let res: KMeansResult;
  let criterion: SliceCriterion;
  const want = opts.k ?? 'auto';
  if (want === 'auto') {
    const [lo, hi] = opts.range ?? [2, 8];
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 2 || hi < lo) throw new ConfigError(`slices.k_range (--k-range): expected integers 2 ≤ min ≤ max, received [${lo}, ${hi}]`);
    if (n < 3) throw new ConfigError(`slices.k (--k): auto needs at least 3 seed images (silhouette compares ≥ 2 slices of ≥ 2 images), the seed set has ${n}; set slices.k to 1 or ${n}`);
    const top = Math.min(hi, n - 1);
    if (lo > top) throw new ConfigError(`slices.k_range (--k-range): [${lo}, ${hi}] tries more slices than the ${n} seed images allow (at most ${n - 1}); lower the range`);
    const scores: { k: number; silhouette: number }[] = [];
    let bestScore = -Infinity;
    res = null as unknown as KMeansResult;
    for (let k = lo; k <= top; k++) {
      const r = kmeans(x, dim, k, km);
      const s = silhouette(x, dim, r.assign, k);
      scores.push({ k, silhouette: s });
      if (s > bestScore) (bestScore = s), (res = r);
    }
    criterion = { kind: 'silhouette', scores };
  } else {
    if (!Number.isInteger(want) || want < 1) throw new ConfigError(`slices.k (--k): expected an integer ≥ 1 or "auto", received ${want}`);
    if (want > n) throw new ConfigError(`slices.k (--k): ${want} slices for ${n} seed image(s); there cannot be more slices than seed images — lower slices.k or use "auto"`);
    res = kmeans(x, dim, want, km);
    criterion = { kind: 'given' };
  }
  const k = res.centroids.length / dim;
  const distance = res.distance;
  const groups = Array.from({ length: k }, () => [] as number[]);
  res.assign.forEach((c, i) => groups[c]!.push(i));
  const order = [...groups.keys()].sort((a, b) => groups[b]!.length - groups[a]!.length || groups[a]![0]! - groups[b]![0]!);
  const centralN = opts.central ?? 6;
  const slices: Slice[] = order.map((c, index) => {
    const members = groups[c]!;
    const ctx = seeds.contexts ? members.map((i) => seeds.contexts![i]).filter((v): v is string => v !== null && v !== undefined && v !== '') : [];
    const byCentre = [...members].sort((a, b) => distance[a]! - distance[b]! || a - b);
    return {
      index,
      members,
      byCentre,
      classMix: shares(members.map((i) => seeds.labels[i]!), (a, b) => a - b),
      context: ctx.length ? shares(ctx, (a, b) => (a < b ? -1 : a > b ? 1 : 0))[0]! : null,
      central: byCentre.slice(0, centralN),
      spread: members.reduce((s, i) => s + distance[i]!, 0) / members.length,
    };
  });
  const rank = new Int32Array(k);
  order.forEach((c, index) => (rank[c] = index));
  const centroids = new Float32Array(k * dim);
  order.forEach((c, index) => centroids.set(res.centroids.subarray(c * dim, (c + 1) * dim), index * dim));
  return { slices, assign: Int32Array.from(res.assign, (c) => rank[c]!), distance, centroids, dim, normalize, criterion, seed };
}

/**
 * Nearest slice of each image (e.g. the heldout set), in the space the slices were made in.
 * @param data row-major float32 [m, dim], raw features (normalised here when the slices were)
 * @returns slice index and squared distance to its centroid per row
 */
export function assignToSlices(s: Pick<FailureSlices, 'centroids' | 'dim' | 'normalize'>, data: Float32Array, dim: number): { slice: Int32Array; distance: Float64Array } {
  if (dim !== s.dim) throw new DataError(`assign to slices: features have width ${dim}, the slices were made on width ${s.dim}; use the same backbone's embeddings`);
  checkMatrix(data, dim, 'assign to slices');
  const x = s.normalize ? l2NormalizeRows(Float32Array.from(data), dim) : data;
  const r = nearestCentroid(x, s.centroids, dim);
  return { slice: r.index, distance: r.distance };
}

/** Accuracy of one set of predictions on one slice. */
export interface SliceAccuracy {
  slice: number;
  /** Images of the slice with a prediction. */
  n: number;
  correct: number;
  /** correct / n; null when n = 0. */
  accuracy: number | null;
}

/**
 * Per-slice accuracy.
 * @param slice slice of each image (from {@link assignToSlices}), Int32 [m]
 * @param correct per image: 1 right, 0 wrong, -1 no prediction (skipped)
 * @param k number of slices
 */
export function sliceAccuracy(slice: Int32Array, correct: ArrayLike<number>, k: number): SliceAccuracy[] {
  if (slice.length !== correct.length) throw new DataError(`slice accuracy: ${correct.length} predictions for ${slice.length} images`);
  const n = new Int32Array(k);
  const c = new Int32Array(k);
  for (let i = 0; i < slice.length; i++) {
    const s = slice[i]!;
    if (s < 0 || s >= k) throw new DataError(`slice accuracy: image ${i} is in slice ${s}, outside [0, ${k})`);
    if (correct[i]! < 0) continue;
    n[s]! += 1;
    if (correct[i]! > 0) c[s]! += 1;
  }
  return Array.from({ length: k }, (_, s) => ({ slice: s, n: n[s]!, correct: c[s]!, accuracy: n[s] ? c[s]! / n[s]! : null }));
}
