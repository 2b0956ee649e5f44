import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { ConfigError } from '../src/core/errors.js';
import { classThresholdsFromVotes, cleanSelect, KnnLabelCheck, neighbourLabels, noiseRate, scoreLabels } from '../src/retrieval/clean.js';
import { EmbeddingStore } from '../src/retrieval/store.js';

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

const I = (xs: number[]) => Int32Array.from(xs);

describe('label scores from a hand-made neighbour graph (k = 4)', () => {
  const nb = I([0, 0, 1, 1, /**/ 1, 1, 1, 0, /**/ 1, 1, 1, 1, /**/ 0, 0, 2, 2]);
  const labels = I([0, 0, 1, 2]);

  it('agreement: the share of neighbours with the pick\'s label, flagged below the bar', () => {
    const s = scoreLabels(nb, labels, 4, 'agreement', { minAgreement: 0.3 });
    expect(Array.from(s.agreement)).toEqual([0.5, 0.25, 1, 0.5]);
    expect(Array.from(s.flagged)).toEqual([0, 1, 0, 0]);
    expect(Array.from(scoreLabels(nb, labels, 4, 'agreement', { minAgreement: 0.5 }).flagged)).toEqual([0, 1, 0, 0]);
    expect(Array.from(scoreLabels(nb, labels, 4, 'agreement', { minAgreement: 0.6 }).flagged)).toEqual([1, 1, 0, 1]);
  });

  it('confident: the most probable class passing its threshold t_j decides', () => {
    const t = new Map([
      [0, 0.6],
      [1, 0.7],
      [2, 0.4],
    ]);
    const s = scoreLabels(nb, labels, 4, 'confident', { thresholds: t });
    // pick 0: p(0) = .5 < .6, p(1) = .5 < .7 → no class passes → kept
    // pick 1: p(1) = .75 ≥ .7 → class 1 ≠ label 0 → flagged
    // pick 2: p(1) = 1 → its own label; pick 3: p(2) = .5 ≥ .4, p(0) = .5 < .6 → its own label
    expect(Array.from(s.suggested!)).toEqual([-1, 1, 1, 2]);
    expect(Array.from(s.flagged)).toEqual([0, 1, 0, 0]);
    // a tie between the label and another passing class keeps the label
    const tie = scoreLabels(nb, labels, 4, 'confident', { thresholds: new Map([...t, [0, 0.5]]) });
    expect(tie.suggested![3]).toBe(2);
    expect(tie.flagged[3]).toBe(0);
    // ...but pick 0 now passes class 0 and is kept under it
    expect(tie.suggested![0]).toBe(0);
  });

  it('thresholds are the mean self-vote per class', () => {
    const t = classThresholdsFromVotes(I([0, 1, 0, 0, 0, 1]), I([0, 0, 1]), 2);
    expect(t.get(0)).toBeCloseTo(0.75, 12);
    expect(t.get(1)).toBeCloseTo(0.5, 12);
  });

  it('rejects bad options', () => {
    expect(() => scoreLabels(nb, labels, 4, 'agreement', { minAgreement: 1.5 })).toThrow(/clean_min_agreement/);
    expect(() => scoreLabels(nb, labels, 3, 'agreement')).toThrow(/16 neighbour labels for 4 picks × k=3/);
    expect(() => scoreLabels(nb, labels, 4, 'confident')).toThrow(/thresholds/);
    expect(() => scoreLabels(nb, labels, 4, 'bogus' as never)).toThrow(/clean_rule/);
  });
});

describe('neighbour labels through the k-NN search', () => {
  // points on a line: x = 0, 1, 2, 10, 11 with weak labels 0, 0, 0, 1, 1
  const pool = Float32Array.from([0, 0, 1, 0, 2, 0, 10, 0, 11, 0]);
  const lab = I([0, 0, 0, 1, 1]);
  it('excludes the image itself, breaks ties by the lower row, and does not leak tensors', async () => {
    const before = tf.memory().numTensors;
    const q = Float32Array.from([1, 0, 10, 0, 10.4, 0]);
    const nb = await neighbourLabels(q, 2, pool, lab, 2, I([1, 3, -1]));
    // row 1: rows 0 and 2 (both at distance 1); row 3: row 4, then row 2; outside point: rows 3, 4
    expect(Array.from(nb)).toEqual([0, 0, 1, 0, 1, 1]);
    expect(tf.memory().numTensors).toBe(before);
  });
  it('gives the same answer for more queries than one search chunk (1,024)', async () => {
    const n = 1100;
    const rows = Int32Array.from({ length: n }, (_, i) => i % 5);
    const q = Float32Array.from(Array.from(rows).flatMap((r) => [pool[r * 2]!, 0]));
    const nb = await neighbourLabels(q, 2, pool, lab, 2, rows);
    const one = await neighbourLabels(pool, 2, pool, lab, 2, I([0, 1, 2, 3, 4]));
    for (let i = 0; i < n; i++) expect([nb[i * 2], nb[i * 2 + 1]]).toEqual([one[rows[i]! * 2], one[rows[i]! * 2 + 1]]);
  });
  it('drops the farthest when duplicates push the image itself out', async () => {
    const dup = Float32Array.from([0, 0, 0, 0, 0, 0]);
    expect(Array.from(await neighbourLabels(Float32Array.from([0, 0]), 2, dup, I([0, 1, 2]), 1, I([2])))).toEqual([0]);
  });
  it('refuses k larger than the pool allows', async () => {
    await expect(neighbourLabels(Float32Array.from([0, 0]), 2, pool, lab, 5)).rejects.toThrow(ConfigError);
    await expect(neighbourLabels(Float32Array.from([0, 0]), 2, pool, lab, 5)).rejects.toThrow(/5 neighbours asked, but the pool has 5/);
    expect(() => new KnnLabelCheck({ ids: ['a', 'b'], labels: I([0, 0]), data: new Float32Array(4), dim: 2 }, { k: 2 })).toThrow(/clean_k.*\[1, 1\]/);
  });
});

describe('cleanSelect: drop and refill', () => {
  // seed of class 0 at (0.6, 0); class-0 cluster A near the origin, class-1 cluster B near (1, 0),
  // and x = (0.9, 0) weakly labelled 0 inside B (truly class 1)
  const ids = ['a1', 'a2', 'a3', 'a4', 'a5', 'b1', 'b2', 'b3', 'b4', 'x'];
  const pts = [0.2, 0, 0, 0.2, -0.2, 0, 0, -0.2, 0.3, 0.3, 1, 0.05, 1.05, 0, 1, -0.05, 0.95, 0, 0.9, 0];
  const labels = I([0, 0, 0, 0, 0, 1, 1, 1, 1, 0]);
  const truth = new Map(ids.map((id, i) => [id, id === 'x' ? 1 : labels[i]!]));
  const data = Float32Array.from(pts);
  const seeds = { ids: ['s0'], labels: I([0]), data: Float32Array.from([0.6, 0]), dim: 2 };
  const store = () => EmbeddingStore.fromArrays('pool', { ids, labels, data, dim: 2 });

  it('drops the mislabelled pick and refills from the next candidate, keeping the budget', async () => {
    const r = await cleanSelect(seeds, store(), { ids, labels, data, dim: 2 }, { k: 2 }, { k: 3, minAgreement: 0.5 });
    // Algorithm 1 alone: x (d = .09), then a1 (d = .16)
    expect(r.before.train.ids).toEqual(['x', 'a1']);
    expect(r.dropped).toEqual([{ id: 'x', label: 0, seedId: 's0', set: 'train', agreement: 0, round: 0 }]);
    // refilled with a5 (d = .18): still 2 picks for the seed
    expect(r.train.ids).toEqual(['a1', 'a5']);
    expect(r.rounds).toBe(2);
    expect(r.stillFlagged).toBe(0);
    const t = (id: string) => truth.get(id);
    expect(noiseRate(r.before.train.ids, r.before.train.labels, t)).toEqual({ known: 2, wrong: 1, rate: 0.5 });
    expect(noiseRate(r.train.ids, r.train.labels, t)).toEqual({ known: 2, wrong: 0, rate: 0 });
  });

  it('cleans de-val picks too, and the confident rule agrees here', async () => {
    const r = await cleanSelect(seeds, store(), { ids, labels, data, dim: 2 }, { k: 1, kVal: 1 }, { k: 3, rule: 'confident' });
    expect(r.before.deval!.ids).toEqual(['x']);
    expect(r.dropped.map((d) => [d.id, d.set])).toEqual([['x', 'deval']]);
    expect(r.deval!.ids).toEqual(['a1']);
    expect(r.train.ids).toEqual(['a5']);
  });

  it('keeps flagged picks (and says so) when the rounds run out', async () => {
    const r = await cleanSelect(seeds, store(), { ids, labels, data, dim: 2 }, { k: 2 }, { k: 3, minAgreement: 0.5, maxRounds: 1 });
    expect(r.train.ids).toEqual(['x', 'a1']);
    expect(r.dropped).toEqual([]);
    expect(r.stillFlagged).toBe(1);
  });

  it('is deterministic: the same inputs give the same picks', async () => {
    const a = await cleanSelect(seeds, store(), { ids, labels, data, dim: 2 }, { k: 3 }, { k: 3, rule: 'confident', seed: 5 });
    const b = await cleanSelect(seeds, store(), { ids, labels, data, dim: 2 }, { k: 3 }, { k: 3, rule: 'confident', seed: 5 });
    expect(a.train.ids).toEqual(b.train.ids);
    expect(a.dropped).toEqual(b.dropped);
  });

  it('refuses a pick that is not in the pool given', async () => {
    const c = new KnnLabelCheck({ ids, labels, data, dim: 2 }, { k: 3 });
    await expect(c.score(['zz'], [0])).rejects.toThrow(/pick zz is not in the pool/);
  });
});
