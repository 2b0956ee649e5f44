import { describe, expect, it } from 'vitest';
import { ConfigError, DataError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/rng.js';
import { assignToSlices, failureSlices, kmeans, nearestCentroid, silhouette, sliceAccuracy } from '../src/analysis/slices.js';

const pts = (xs: number[][]) => Float32Array.from(xs.flat());

/** Two tight triangles far apart: {(0,0),(0,1),(1,0)} and {(10,10),(10,11),(11,10)}. */
const TWO = pts([
  [0, 0],
  [10, 10],
  [0, 1],
  [10, 11],
  [1, 0],
  [11, 10],
]);

describe('k-means', () => {
  it('finds the two triangles with their hand-computed centroids and inertia', () => {
    const r = kmeans(TWO, 2, 2, { seed: 3 });
    // rows 0, 2, 4 together; rows 1, 3, 5 together
    expect(r.assign[0]).toBe(r.assign[2]);
    expect(r.assign[0]).toBe(r.assign[4]);
    expect(r.assign[1]).toBe(r.assign[3]);
    expect(r.assign[1]).toBe(r.assign[5]);
    expect(r.assign[0]).not.toBe(r.assign[1]);
    const a = r.assign[0]!;
    const b = r.assign[1]!;
    expect(r.centroids[a * 2]).toBeCloseTo(1 / 3, 6);
    expect(r.centroids[a * 2 + 1]).toBeCloseTo(1 / 3, 6);
    expect(r.centroids[b * 2]).toBeCloseTo(31 / 3, 5);
    expect(r.centroids[b * 2 + 1]).toBeCloseTo(31 / 3, 5);
    // per triangle: 2/9 + 5/9 + 5/9 = 4/3
    expect(r.inertia).toBeCloseTo(8 / 3, 5);
  });

  it('is deterministic by seed, and k = n puts every row alone', () => {
    const rnd = mulberry32(7);
    const x = Float32Array.from({ length: 60 * 5 }, () => rnd());
    const a = kmeans(x, 5, 4, { seed: 11 });
    const b = kmeans(x, 5, 4, { seed: 11 });
    expect(Array.from(a.assign)).toEqual(Array.from(b.assign));
    expect(Array.from(a.centroids)).toEqual(Array.from(b.centroids));
    const all = kmeans(TWO, 2, 6, { seed: 0 });
    expect(new Set(all.assign).size).toBe(6);
    expect(all.inertia).toBe(0);
  });

  it('keeps k clusters on duplicate rows (an empty cluster takes the farthest point)', () => {
    const x = pts([
      [0, 0],
      [0, 0],
      [0, 0],
      [5, 5],
    ]);
    const r = kmeans(x, 2, 3, { seed: 1 });
    expect(new Set(r.assign).size).toBe(3);
  });

  it('nearest centroid breaks ties by the lower centroid', () => {
    const r = nearestCentroid(pts([[0, 0]]), pts([[1, 0], [-1, 0]]), 2);
    expect(r.index[0]).toBe(0);
    expect(r.distance[0]).toBe(1);
  });

  it('rejects bad input clearly', () => {
    expect(() => kmeans(TWO, 2, 7)).toThrow(ConfigError);
    expect(() => kmeans(TWO, 2, 7)).toThrow(/\[1, 6\].*received 7/);
    expect(() => kmeans(new Float32Array(0), 2, 1)).toThrow(/no rows/);
    expect(() => kmeans(Float32Array.from([1, 2, 3]), 2, 1)).toThrow(/not a multiple/);
    expect(() => kmeans(Float32Array.from([1, NaN]), 2, 1)).toThrow(/non-finite/);
  });
});

describe('silhouette', () => {
  it('matches the hand value on 0, 1, 10, 11', () => {
    const x = Float32Array.from([0, 1, 10, 11]);
    const s = silhouette(x, 1, Int32Array.from([0, 0, 1, 1]), 2);
    // row 0: a = 1, b = 10.5; row 1: a = 1, b = 9.5; rows 2, 3 mirror them
    expect(s).toBeCloseTo((9.5 / 10.5 + 8.5 / 9.5) / 2, 10);
    // a worse split scores lower
    expect(silhouette(x, 1, Int32Array.from([0, 1, 1, 1]), 2)).toBeLessThan(s);
  });
  it('refuses k outside [2, n − 1]', () => {
    expect(() => silhouette(Float32Array.from([0, 1, 2]), 1, Int32Array.from([0, 0, 0]), 1)).toThrow(ConfigError);
  });
});

describe('failure slices', () => {
  // three directions (normalised: scale does not matter), each a class with a context
  const dirs = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  const rows: number[][] = [];
  const labels: number[] = [];
  const contexts: (string | null)[] = [];
  for (let i = 0; i < 12; i++) {
    const d = dirs[i % 3]!;
    const scale = 1 + i; // far from each other unnormalised
    rows.push(d.map((v, c) => scale * (v + 0.01 * ((i * 7 + c * 3) % 5))));
    labels.push(i % 3 === 2 && i > 6 ? 5 : i % 3);
    contexts.push(i % 3 === 0 ? (i === 9 ? 'snow' : 'waves') : i % 3 === 1 ? null : 'dots');
  }
  const seeds = { data: pts(rows), dim: 3, labels: Int32Array.from(labels), contexts };

  it('chooses three slices by silhouette and describes them', () => {
    const s = failureSlices(seeds, { seed: 0, range: [2, 5], central: 2 });
    expect(s.criterion.kind).toBe('silhouette');
    expect(s.criterion.scores!.map((x) => x.k)).toEqual([2, 3, 4, 5]);
    expect(s.slices).toHaveLength(3);
    const best = s.criterion.scores!.reduce((a, b) => (b.silhouette > a.silhouette ? b : a));
    expect(best.k).toBe(3);
    // equal sizes: ordered by first member
    expect(s.slices.map((x) => x.members)).toEqual([
      [0, 3, 6, 9],
      [1, 4, 7, 10],
      [2, 5, 8, 11],
    ]);
    expect(s.slices[0]!.classMix).toEqual([{ value: 0, count: 4, share: 1 }]);
    expect(s.slices[0]!.context).toEqual({ value: 'waves', count: 3, share: 0.75 });
    expect(s.slices[1]!.context).toBeNull();
    // labels 2, 2, 5, 5 → tie broken by the lower label
    expect(s.slices[2]!.classMix).toEqual([
      { value: 2, count: 2, share: 0.5 },
      { value: 5, count: 2, share: 0.5 },
    ]);
    expect(s.slices[0]!.central).toHaveLength(2);
    expect(Array.from(s.assign)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
  });

  it('central images are the members nearest the centroid', () => {
    const s = failureSlices({ data: pts([[1, 0], [1, 0.1], [1, -0.1], [0, 1]]), dim: 2, labels: Int32Array.from([0, 0, 0, 1]) }, { k: 2, central: 3 });
    expect(s.slices[0]!.members).toEqual([0, 1, 2]);
    // row 0 lies on the centroid's direction; rows 1 and 2 are symmetric → lower index first
    expect(s.slices[0]!.central).toEqual([0, 1, 2]);
  });

  it('is deterministic by seed and leaves the input untouched', () => {
    const copy = Float32Array.from(seeds.data);
    const a = failureSlices(seeds, { seed: 4, k: 4 });
    const b = failureSlices(seeds, { seed: 4, k: 4 });
    expect(a).toEqual(b);
    expect(Array.from(seeds.data)).toEqual(Array.from(copy));
  });

  it('assigns heldout images to the nearest slice and reads accuracy per slice', () => {
    const s = failureSlices(seeds, { k: 3 });
    const held = pts([
      [0, 5, 0.1], // slice 1 (second direction)
      [9, 0, 0], // slice 0
      [0.1, 0, 3], // slice 2
      [0, 2, 0], // slice 1
    ]);
    const r = assignToSlices(s, held, 3);
    expect(Array.from(r.slice)).toEqual([1, 0, 2, 1]);
    const acc = sliceAccuracy(r.slice, [1, 0, 1, -1], 3);
    expect(acc).toEqual([
      { slice: 0, n: 1, correct: 0, accuracy: 0 },
      { slice: 1, n: 1, correct: 1, accuracy: 1 },
      { slice: 2, n: 1, correct: 1, accuracy: 1 },
    ]);
    expect(sliceAccuracy(Int32Array.from([0]), [1], 2)[1]).toEqual({ slice: 1, n: 0, correct: 0, accuracy: null });
  });

  it('rejects more slices than seeds, empty input and mismatched widths', () => {
    expect(() => failureSlices({ ...seeds, contexts: undefined }, { k: 13 })).toThrow(/13 slices for 12 seed image/);
    expect(() => failureSlices({ data: new Float32Array(0), dim: 3, labels: new Int32Array(0) })).toThrow(DataError);
    expect(() => failureSlices({ data: new Float32Array(0), dim: 3, labels: new Int32Array(0) })).toThrow(/seed set is empty/);
    expect(() => failureSlices({ ...seeds, labels: Int32Array.from([1]) })).toThrow(/1 labels for 12 seed images/);
    expect(() => failureSlices(seeds, { range: [1, 4] })).toThrow(/slices.k_range \(--k-range\)/);
    expect(() => failureSlices({ data: pts([[1, 0], [0, 1]]), dim: 2, labels: Int32Array.from([0, 1]) })).toThrow(/auto needs at least 3/);
    const s = failureSlices(seeds, { k: 3 });
    expect(() => assignToSlices(s, pts([[1, 2]]), 2)).toThrow(/width 2.*width 3/);
    expect(() => sliceAccuracy(Int32Array.from([0, 1]), [1], 2)).toThrow(/1 predictions for 2 images/);
    expect(() => sliceAccuracy(Int32Array.from([3]), [1], 2)).toThrow(/outside \[0, 2\)/);
  });
});
