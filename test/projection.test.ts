import { describe, expect, it } from 'vitest';
import { pca2, projectSets } from '../src/analysis/projection.js';
import { mapFragment, sliceGalleryFragment } from '../src/analysis/slices-html.js';
import { failureSlices, sliceAccuracy } from '../src/analysis/slices.js';

describe('pca2', () => {
  it('matches the hand-computed axes, variances and coordinates', () => {
    // (±2, 0) and (0, ±1) around (5, 5): var x = 8/3, var y = 2/3 (n − 1 = 3)
    const p = pca2(Float32Array.from([7, 5, 3, 5, 5, 4, 5, 6]), 2);
    expect(Array.from(p.mean)).toEqual([5, 5]);
    expect(p.components[0]).toBeCloseTo(1, 9);
    expect(p.components[1]).toBeCloseTo(0, 9);
    expect(p.components[2]).toBeCloseTo(0, 9);
    expect(p.components[3]).toBeCloseTo(1, 9);
    expect(p.variance[0]).toBeCloseTo(8 / 3, 9);
    expect(p.variance[1]).toBeCloseTo(2 / 3, 9);
    expect(p.explained[0]).toBeCloseTo(0.8, 9);
    expect(Array.from(p.coords).map((v) => Math.round(v * 1e6) / 1e6 + 0)).toEqual([2, 0, -2, 0, 0, -1, 0, 1]);
  });

  it('finds a direction that is not an axis, with a fixed sign', () => {
    // points along (1, 1, 0), a little spread along (0, 0, 1)
    const rows = [-3, -1, 0, 2, 4].flatMap((t, i) => [t, t, i % 2 ? 0.1 : -0.1]);
    const p = pca2(Float32Array.from(rows), 3);
    expect(p.components[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(p.components[1]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(Math.abs(p.components[5]!)).toBeCloseTo(1, 6);
    expect(p.explained[0]).toBeGreaterThan(0.99);
  });

  it('rejects too few rows and ragged input', () => {
    expect(() => pca2(Float32Array.from([1, 2]), 2)).toThrow(/at least 2 images/);
    expect(() => pca2(Float32Array.from([1, 2, 3]), 2)).toThrow(/whole number of rows/);
  });
});

describe('projectSets and the map fragment', () => {
  const dim = 2;
  const grid = (n: number, off: number) => Float32Array.from({ length: n * dim }, (_, t) => off + ((t * 37) % 11));
  const sets = [
    { set: 'pool' as const, ids: Array.from({ length: 50 }, (_, i) => `p${i}`), data: grid(50, 0) },
    { set: 'seed' as const, ids: ['s<0>', 's1'], data: Float32Array.from([0, 0, 10, 10]), labels: [0, 1] },
    { set: 'pick' as const, ids: ['k0', 'k1', 'k2'], data: Float32Array.from([1, 0, 9, 10, 5, 5]), seedIds: ['s<0>', 's1', 'gone'] },
  ];

  it('samples the pool (seeded) and keeps seeds and picks whole', () => {
    const m = projectSets(sets, dim, { sample: 10, seed: 1 });
    expect(m.counts).toEqual({ pool: { shown: 10, total: 50 }, seed: { shown: 2, total: 2 }, pick: { shown: 3, total: 3 } });
    expect(m.points).toHaveLength(15);
    expect(projectSets(sets, dim, { sample: 10, seed: 1 })).toEqual(m);
    expect(projectSets(sets, dim, { sample: 10, seed: 2 }).points.map((p) => p.id)).not.toEqual(m.points.map((p) => p.id));
    expect(() => projectSets([{ set: 'seed', ids: ['a'], data: Float32Array.from([1, 2, 3]) }], dim)).toThrow(/one backbone's embeddings/);
  });

  it('draws every point, links picks to their seeds, and escapes ids', () => {
    const html = mapFragment(projectSets(sets, dim, { sample: 10 }), { title: 'toy', classNames: ['cat', 'dog'] });
    expect(html.match(/<circle cx=/g)).toHaveLength(15);
    // k0 and k1 link to their seeds (one line in the pick's group, one in the seed's); k2's seed is absent
    expect(html.match(/<line class="link"/g)).toHaveLength(4);
    expect(html).toContain('debug-seed: s&lt;0&gt; · cat');
    expect(html).not.toContain('s<0>');
    expect(html).toContain('picks: k2 → seed gone');
    expect(html).toContain('pool (sample) (10 of 50)');
    expect(html).toMatch(/^<figure class="dcd-map"><style>/);
  });
});

describe('slice gallery fragment', () => {
  it('lists each slice with its mix, context, accuracy and central thumbnails', async () => {
    const data = Float32Array.from([1, 0, 1, 0.1, 0, 1, 0.1, 1, 0, 1.1]);
    const s = failureSlices({ data, dim: 2, labels: Int32Array.from([0, 0, 1, 1, 1]), contexts: ['snow', 'snow', 'dots', null, 'dots'] }, { k: 2, central: 2 });
    const acc = sliceAccuracy(Int32Array.from([0, 1, 1]), [1, 0, 1], 2);
    const html = await sliceGalleryFragment({
      slices: s,
      seedIds: ['a', 'b', 'c', 'd', 'e'],
      seedLabels: [0, 0, 1, 1, 1],
      classNames: ['cat', 'dog'],
      accuracy: [{ method: 'dcd-ssl', rows: acc }],
      heldoutCounts: [1, 2],
      thumb: async (i) => (i === 2 ? '' : `images/s${i}.png`),
    });
    expect(html).toContain('Slice 1: 3 seed image(s)');
    expect(html).toContain('dog 3; context dots (100%); 1 heldout image(s)');
    expect(html).toContain('Slice 2: 2 seed image(s)');
    expect(html).toContain('cat 2; context snow (100%); 2 heldout image(s)');
    expect(html).toContain('<td>dcd-ssl</td><td>100.0%</td><td>1</td>');
    expect(html).toContain('<td>dcd-ssl</td><td>50.0%</td><td>2</td>');
    expect(html.match(/<img /g)!.length).toBe(3);
    expect(html).toContain('unreadable');
    expect(html).toContain('the number of slices (2) was set in the config');
  });
});
