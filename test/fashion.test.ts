import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { ConfigError } from '../src/core/errors.js';
import { DEFAULT_FASHION_CLASSES, fashionObjects, makeFashionShift } from '../src/data/fashion-shift.js';
import { summarizeSet } from './synthetic-summary.js';
import { mulberry32 as rng } from '../src/core/rng.js';

const DIR = '/usr/share/datasets/fashion-mnist';
const SMALL = {
  imageSize: 20,
  train: { size: 300, homeRate: 0.75 },
  test: { size: 120 },
  shifted: { size: 120, rareRate: 0.8 },
  pool: { size: 300, homeRate: 0.4, wrongLabelRate: 0.1, objectlessRate: 0.1 },
};

describe.skipIf(!existsSync(DIR))('Fashion-MNIST shift (Debian dataset-fashion-mnist)', () => {
  it('composites real garments over context backgrounds, deterministically by seed', () => {
    const a = makeFashionShift(SMALL, 0);
    const b = makeFashionShift(SMALL, 0);
    expect(a.classNames).toEqual(['T-shirt/top', 'Trouser', 'Dress', 'Sneaker', 'Bag', 'Ankle boot']);
    expect(a.options.numClasses).toBe(DEFAULT_FASHION_CLASSES.length);
    expect(Buffer.from(a.sets.train.images).equals(Buffer.from(b.sets.train.images))).toBe(true);
    expect(a.sets.train.images.length).toBe(300 * 20 * 20 * 3);
    const s = summarizeSet(a.sets.train, 6, 6);
    let home = 0;
    s.pairs.forEach((row, y) => (home += row[a.home[y]!]!));
    expect(home / 300).toBeGreaterThan(0.68);
    const p = summarizeSet(a.sets.pool, 6, 6);
    expect(p.objectless).toBe(30);
    expect(p.wrongLabel).toBe(30);
  });

  it('draws train and test garments from disjoint Fashion-MNIST splits', () => {
    const src = fashionObjects({ dir: DIR, classes: [1, 8] });
    const mask = new Float32Array(28 * 28);
    const seen = (set: 'train' | 'test' | 'pool' | 'broad') => {
      const out = new Set<string>();
      for (let i = 0; i < 200; i++) {
        src.draw(0, mask, 28, rng(i), 1, set);
        out.add(Buffer.from(Float32Array.from(mask).buffer).toString('base64'));
      }
      return out;
    };
    const tr = seen('train');
    const te = seen('test');
    const po = seen('pool');
    expect(tr.size).toBeGreaterThan(100);
    for (const k of te) expect(tr.has(k)).toBe(false);
    for (const k of po) expect(tr.has(k)).toBe(false);
  });

  it('rejects bad class lists with the key and the value', () => {
    expect(() => fashionObjects({ classes: [1, 1] })).toThrow(ConfigError);
    expect(() => fashionObjects({ classes: [12, 3] })).toThrow(/data\.fashion\.classes: expected ≥ 2 distinct Fashion-MNIST labels in 0\.\.9; received \[12,3\]/);
  });
});
