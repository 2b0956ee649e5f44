/**
 * Selection sizing (src/pipeline/sizing.ts) and `dcd init`'s defaults (src/pipeline/init-config.ts):
 * k_train from a measured failure count, each warning with its numbers, and the ssl backbone,
 * pool_share and one world of three seeds in the config init writes.
 */
import { describe, expect, it } from 'vitest';
import { classCounts, DEFAULT_K_TRAIN, kTrainForShare, kTrainWarnings, PAPER_POOL_SHARE, seedWarnings, selectionWarnings, sizeSelection } from '../src/pipeline/sizing.js';
import { ConfigSchema } from '../src/core/config.js';
import { initConfigYaml, sizeFromData } from '../src/pipeline/init-config.js';
import type { FolderInspection, FolderLayout } from '../src/data/folder-layout.js';
import { validateConfig } from '../src/core/config.js';
import YAML from 'yaml';

describe('k_train from a measured failure count', () => {
  it('the paper: 1,031 seed images and 952,022 pool images at its own share give k_train 46', () => {
    expect(PAPER_POOL_SHARE).toBeCloseTo(0.0498, 4);
    expect(kTrainForShare(952022, 1031, PAPER_POOL_SHARE)).toBe(46);
  });
  it('floor(share · pool / seeds), at least 1', () => {
    // 25,600 pool images, 300 failures, 5%: 1,280 / 300 = 4.27 → 4
    expect(kTrainForShare(25600, 300, 0.05)).toBe(4);
    expect(kTrainForShare(25600, 3000, 0.05)).toBe(1);
    expect(kTrainForShare(1000, 0, 0.05)).toBe(1);
    expect(() => kTrainForShare(1000, 10, 0)).toThrow(/share must be in \(0, 1\]/);
  });
  it('sizeSelection uses pool_share over the subset classes and k_train without it', () => {
    const classes = classCounts([0, 1], [0, 0, 0, 0, 1, 1, 1, 1, 5, 5].flatMap((y) => Array<number>(100).fill(y)), [0, 0, 1]);
    expect(classes).toEqual([
      { label: 0, pool: 400, seeds: 2 },
      { label: 1, pool: 400, seeds: 1 },
    ]);
    const s = sizeSelection({ k_train: 46, k_val: 1, pool_share: 0.05 }, classes);
    // 5% of 800 = 40 picks over 3 seed images → k 13, 39 picks = 4.9%
    expect(s.kTrain).toBe(13);
    expect(s.poolShare).toBe(0.05);
    expect(s.share).toBeCloseTo(39 / 800, 10);
    expect(s.warnings).toEqual([]);
    expect(sizeSelection({ k_train: 7, k_val: 1 }, classes).kTrain).toBe(7);
  });
});

describe('warnings', () => {
  it('a selection above the share of a class\'s pool names the class, the numbers and the fix', () => {
    const w = selectionWarnings([{ label: 0, name: 'disc', pool: 5786, seeds: 800 }], 5, 1);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/^class disc: k_train 5 × 800 seed images \(with the measured failures\) would take 4000 of its 5786 pool images \(69\.1%\), above 25\.0%/);
    expect(w[0]).toMatch(/Set select\.pool_share: 0\.05 \(the paper's share\), or select\.k_train ≤ 1\./);
    // within the share: no warning
    expect(selectionWarnings([{ label: 0, pool: 5786, seeds: 800 }], 1, 1)).toEqual([]);
  });
  it('even k_train 1 too much: add pool images', () => {
    const w = selectionWarnings([{ label: 2, name: 'bat', pool: 2, seeds: 3 }], 1, 1, { estimate: true });
    expect(w[0]).toMatch(/class bat: k_train 1 × 3 seed images \(if every MFreq image of the class failed\) would take 2 of its 2 pool images \(100\.0%\)/);
    expect(w[0]).toMatch(/Even k_train 1 takes 150\.0%: add pool images of bat \(about 61 for the paper's 5\.0%\)/);
  });
  it('fewer pool images than seed images × (k_val + k_train)', () => {
    const w = selectionWarnings([{ label: 1, name: 'square', pool: 100, seeds: 10 }], 12, 1, { maxShare: 1 });
    expect(w).toEqual([
      'class square: 100 pool images for 10 seed images × (k_val 1 + k_train 12) = 130 (with the measured failures): Algorithm 1 runs out of candidates and the seed images served last get fewer picks. Lower select.k_train to 9 or less, or add pool images of square.',
    ]);
  });
  it('fewer than two seeds: the spread is unknown', () => {
    expect(seedWarnings([0, 1])).toEqual([]);
    const w = seedWarnings([3]);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/config\.seeds has 1 seed \(3\): the table shows no spread/);
    expect(w[0]).toMatch(/Set seeds: \[0, 1, 2\] \(with world_seed: 3/);
  });
});

/** A folder inspection of `perClass` counts (4 subset classes of 6), pool rows with weak labels. */
function inspection(trainPerClass: number, mfreqPerClass: number, poolPerSubsetClass: number, side = 32): FolderInspection {
  const classes = ['disc', 'square', 'triangle', 'plus', 'cross', 'ring'];
  const subset = [0, 1, 2, 3];
  const pool = subset.flatMap((y) => Array.from({ length: poolPerSubsetClass }, (_, i) => ({ id: `pool/${y}/${i}`, path: `/d/pool/${y}/${i}.png`, set: 'pool', label: y, weak_label: y })));
  const perClass = classes.map((name, y) => ({ name, train: trainPerClass, test: 10, mfreq: mfreqPerClass, complement: mfreqPerClass, pool: subset.includes(y) ? poolPerSubsetClass : 0 }));
  return {
    data: { classes, pool, sets: {}, stray: [] },
    counts: { train: 6 * trainPerClass, test: 60, mfreq: 6 * mfreqPerClass, complement: 6 * mfreqPerClass, pool: pool.length },
    perClass,
    unreadable: [],
    medianSide: side,
    subset,
  } as unknown as FolderInspection;
}

const layout = {
  dir: '/d',
  spec: { train: '/d/train', test: '/d/test', mfreq: '/d/mfreq', complement: '/d/complement', pool: '/d/pool.csv' },
  others: [],
} as unknown as FolderLayout;

describe('dcd init defaults', () => {
  it('writes an ssl backbone on the pool, pool_share 0.05 and three seeds in one world', () => {
    const ins = inspection(1400, 333, 6300);
    const s = sizeFromData(ins);
    expect(s.poolShare).toBe(0.05);
    expect(s.seeds).toEqual([0, 1, 2]);
    // 25,200 pool images: three passes would be 1,181 steps of 64; the 32 px budget is 800
    expect(s.sslSteps).toBe(800);
    expect(s.sslEpochs).toBe(3);
    expect(s.warnings).toEqual([]);
    const raw = YAML.parse(initConfigYaml(layout, ins, s, '/d/dcd.yaml', 'web'));
    const cfg = validateConfig(raw, 'init');
    expect(cfg.world_seed).toBe(0);
    expect(cfg.seeds).toEqual([0, 1, 2]);
    expect(cfg.select.pool_share).toBe(0.05);
    const ssl = cfg.backbones.find((b) => b.weights === 'ssl');
    expect(ssl).toBeDefined();
    expect(ssl!.pretrain).toMatchObject({ method: 'simclr', data: 'pool', maxSteps: 800, epochs: 3, batchSize: 64, crops: { globalSize: 32 } });
    expect(cfg.backbones.map((b) => b.name)).toEqual(['ssl_cnn', 'broad_cnn', 'random_cnn']);
  });
  it('a small pool: three passes over it, not the budget; 64 px images a quarter of the 32 px budget', () => {
    expect(sizeFromData(inspection(100, 40, 1000)).sslSteps).toBe(Math.round((3 * 4000) / 64));
    expect(sizeFromData(inspection(100, 40, 20000, 64)).sslSteps).toBe(200);
  });
  it('warns, from the counts alone, when even k_train 1 would take more than a quarter of a class\'s pool', () => {
    const s = sizeFromData(inspection(100, 40, 120));
    // 40 MFreq images per class over 120 pool images: 33% at k_train 1
    expect(s.warnings).toHaveLength(4);
    expect(s.warnings[0]).toMatch(/^class disc: k_train 1 × 40 seed images \(if every MFreq image of the class failed\) would take 40 of its 120 pool images \(33\.3%\)/);
  });
});

describe('a k_train that pool_share overrides', () => {
  it('is named in a warning with what to change; the default and a config without pool_share get none', () => {
    expect(kTrainWarnings({ k_train: 2, pool_share: 0.05 })).toEqual([
      'config.select.k_train 2 is ignored: select.pool_share 0.05 sizes k_train from the measured failures. Change pool_share instead, or set select.pool_share=null to give k_train yourself.',
    ]);
    expect(kTrainWarnings({ k_train: DEFAULT_K_TRAIN, pool_share: 0.05 })).toEqual([]);
    expect(kTrainWarnings({ k_train: 2 })).toEqual([]);
    // the constant is the schema's default
    const parsed = ConfigSchema.shape.select.parse({});
    expect(parsed.k_train).toBe(DEFAULT_K_TRAIN);
  });
});
