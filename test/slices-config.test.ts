import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError } from '../src/core/errors.js';
import { checkSlicesConfig, perSliceBudget, planFacts } from '../src/analysis/slices-config.js';
import { failureSlices } from '../src/analysis/slices.js';

const BB = ['ssl', 'random-weights', 'supervised'];

describe('slices and select.clean config keys', () => {
  it('defaults: everything off', () => {
    const c = checkSlicesConfig({}, BB);
    expect(c.select).toEqual({ clean: 'none', clean_k: 10, clean_rule: 'agreement', clean_min_agreement: 0.3, clean_max_rounds: 10 });
    expect(c.slices).toEqual({ enabled: false, k: 'auto', k_range: [2, 8], seed: 0, central: 6, normalize: true, restarts: 5, map_sample: 2000 });
  });

  it('ignores the select keys of the main schema and accepts a full fragment', () => {
    const c = checkSlicesConfig(
      { select: { k_train: 4, k_val: 1, per_slice: 40, clean: 'knn', clean_k: 5, clean_rule: 'confident' }, slices: { enabled: true, backbone: 'ssl', k: 4 } },
      BB,
      { seedImagesAtMost: 800, poolImages: 8000 },
    );
    expect(c.select.per_slice).toBe(40);
    expect(c.slices.k).toBe(4);
  });

  it('rejects more slices than seed images, and a k_range the seeds cannot hold, before the run', () => {
    expect(() => checkSlicesConfig({ slices: { enabled: true, k: 12 } }, BB, { seedImagesAtMost: 8 }, 'cfg.yaml')).toThrow(
      /cfg\.yaml: invalid config \(1 problem\):\n {2}config\.slices\.k: 12 slices, but there are at most 8 debug-seed images/,
    );
    expect(() => checkSlicesConfig({ slices: { enabled: true, k_range: [9, 12] } }, BB, { seedImagesAtMost: 8 })).toThrow(/slices\.k_range: tries at least 9 slices/);
    // off: nothing to check
    expect(() => checkSlicesConfig({ slices: { enabled: false, k: 12 } }, BB, { seedImagesAtMost: 8 })).not.toThrow();
  });

  it('rejects clean_k larger than the pool', () => {
    expect(() => checkSlicesConfig({ select: { clean: 'knn', clean_k: 100 } }, BB, { poolImages: 100 })).toThrow(/select\.clean_k: 100 neighbours per pick, but the pool has 100 image\(s\) \(at most 99/);
    expect(() => checkSlicesConfig({ select: { clean: 'knn', clean_k: 99 } }, BB, { poolImages: 100 })).not.toThrow();
  });

  it('rejects a per_slice budget the pool cannot hold over the fewest slices tried', () => {
    // k: 4 → 4 × 30 = 120 > 100; auto with k_range [3, 8] → at least 3 × 40 = 120 > 100
    expect(() => checkSlicesConfig({ select: { per_slice: 30 }, slices: { enabled: true, k: 4 } }, BB, { poolImages: 100 })).toThrow(
      /config\.select\.per_slice: 30 debug-train picks × at least 4 slice\(s\) = 120, but the pool has 100 image\(s\); lower select\.per_slice to 25 or less/,
    );
    expect(() => checkSlicesConfig({ select: { per_slice: 40 }, slices: { enabled: true, k_range: [3, 8] } }, BB, { poolImages: 100 })).toThrow(/× at least 3 slice\(s\) = 120/);
    expect(() => checkSlicesConfig({ select: { per_slice: 25 }, slices: { enabled: true, k: 4 } }, BB, { poolImages: 100 })).not.toThrow();
    // the pool size unknown before the run (folders, imagenet): the select stage warns of a short slice
    expect(() => checkSlicesConfig({ select: { per_slice: 10_000 }, slices: { enabled: true, k: 4 } }, BB, {})).not.toThrow();
  });

  it('rejects cross-key mistakes and typos with the key, the expectation and a fix', () => {
    let msg = '';
    try {
      checkSlicesConfig({ select: { per_slice: 10 }, slices: { backbone: 'ss1', k_range: [6, 3] } }, BB);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      msg = (e as Error).message;
    }
    expect(msg).toContain('(3 problems)');
    expect(msg).toContain('config.select.per_slice: budgets picks per failure slice, but slices.enabled is false');
    expect(msg).toContain('config.slices.backbone: expected one of "ssl", "random-weights", "supervised", received "ss1"; did you mean "ssl"?');
    expect(msg).toContain('config.slices.k_range: expected [min, max] with min ≤ max, received [6, 3]');
    expect(() => checkSlicesConfig({ select: { clean: 'knm' } }, BB)).toThrow(/config\.select\.clean: expected one of "none", "knn", received "knm"; did you mean "knn"\?/);
    expect(() => checkSlicesConfig({ slices: { k: 0 } }, BB)).toThrow(/config\.slices\.k/);
    expect(() => checkSlicesConfig({ slices: { kk: 3 } }, BB)).toThrow(/config\.slices\.kk: unknown key; did you mean "k"\?/);
    expect(() => checkSlicesConfig({ select: { clean_min_agreement: 1.5 } }, BB)).toThrow(/clean_min_agreement: expected a number <= 1/);
  });

  it('reads the plan facts the demo config states', () => {
    const demo = parse(readFileSync('configs/demo.yaml', 'utf8'));
    expect(planFacts(demo.data)).toEqual({ seedImagesAtMost: 800, poolImages: 25600 });
    expect(planFacts({ kind: 'folders' })).toEqual({});
  });
});

describe('perSliceBudget', () => {
  it('shares a slice\'s picks evenly, the remainder to the seeds nearest its centre', () => {
    const k = perSliceBudget(
      [
        { members: [0, 2, 4], byCentre: [4, 0, 2] },
        { members: [1, 3], byCentre: [3, 1] },
      ],
      5,
      8,
    );
    // slice 0: 8 = 2·3 + 2 → seeds 4 and 0 get 3; slice 1: 4 each
    expect(Array.from(k)).toEqual([3, 4, 2, 4, 3]);
  });
  it('works on failureSlices output and refuses uncovered seeds', () => {
    const s = failureSlices({ data: Float32Array.from([1, 0, 1, 0.1, 0, 1]), dim: 2, labels: Int32Array.from([0, 0, 1]) }, { k: 2 });
    expect(Array.from(perSliceBudget(s.slices, 3, 5))).toEqual([3, 2, 5]);
    expect(() => perSliceBudget(s.slices, 4, 5)).toThrow(/seed image 3 is in no slice/);
    expect(() => perSliceBudget(s.slices, 3, 0)).toThrow(/per_slice/);
  });
});
