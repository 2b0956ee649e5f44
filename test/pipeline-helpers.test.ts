import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { featuresOf } from '../src/infer/features.js';
import { predictDataset } from '../src/infer/predict.js';
import { createModel, getModelSpec } from '../src/models/registry.js';
import { imageItems, readImageSet, subsetImageSet, toDataset, writeImageSet, type ImageSet } from '../src/pipeline/imagesets.js';
import { aggregate, markdownTable, pairedGaps, pairedTable, pairedTableMarkdown } from '../src/eval/table.js';

function tinySet(n: number, size = 8): ImageSet {
  const data = new Uint8Array(n * size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 5)) & 255;
  return {
    name: 'toy',
    rows: Array.from({ length: n }, (_, i) => ({ id: `toy/${i}`, path: `pixels:${i}`, label: i % 3, wnid: '', class_name: '', set: 'toy', weak_label: (i + 1) % 3 })),
    pixels: { data, shape: [size, size, 3] },
    meta: {},
  };
}

describe('pipeline image sets and model helpers', () => {
  it('round-trips an in-memory image set (pixels + manifest) and subsets it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-sets-'));
    const s = tinySet(5);
    const files = await writeImageSet(dir, s);
    expect(files).toEqual({ toy: 'toy.arrow', toy_pixels: 'toy.u8' });
    const back = await readImageSet(path.join(dir, 'toy.arrow'));
    expect(back.rows.map((r) => r.id)).toEqual(s.rows.map((r) => r.id));
    expect(back.rows[2]!.weak_label).toBe(0);
    expect(Buffer.from(back.pixels!.data).equals(Buffer.from(s.pixels!.data))).toBe(true);
    const sub = subsetImageSet(back, [4, 1], 'sub');
    expect(sub.rows.map((r) => [r.id, r.path])).toEqual([
      ['toy/4', 'pixels:0'],
      ['toy/1', 'pixels:1'],
    ]);
    expect(Array.from(sub.pixels!.data.subarray(0, 8 * 8 * 3))).toEqual(Array.from(s.pixels!.data.subarray(4 * 192, 5 * 192)));
  });

  it('features and predictions of a small CNN: batch-independent, and no tensor leaks', async () => {
    await initBackend('wasm', { quiet: true });
    const set = tinySet(7);
    const model = createModel('small_cnn:4-8', { numClasses: 3, seed: 1 });
    const pre = { ...getModelSpec('small_cnn').preprocess, resize: 8, crop: 8 };
    const before = tf.memory().numTensors;
    const a = await featuresOf(model, imageItems(set), pre, { batchSize: 3, concurrency: 2 });
    const b = await featuresOf(model, imageItems(set), pre, { batchSize: 7, concurrency: 2 });
    const p = await predictDataset(model, toDataset(set, pre), 4);
    expect(tf.memory().numTensors).toBe(before);
    expect(a.data.length).toBe(7 * model.numFeatures);
    for (let i = 0; i < a.data.length; i++) expect(a.data[i]).toBeCloseTo(b.data[i]!, 5);
    expect(p.every((y) => y >= 0 && y < 3)).toBe(true);
    // the prediction equals the arg-max of the head on the features
    const logits = tf.tidy(() => model.forwardHead(tf.tensor2d(a.data, [7, model.numFeatures])).argMax(1).arraySync() as number[]);
    expect(Array.from(p)).toEqual(logits);
    model.dispose();
  });

  it('aggregates seeds into mean ± sample std and orders rows original, complete, random, dcd-*', () => {
    const rows = aggregate([
      { method: 'dcd-b', seed: 0, variant: '', metrics: { heldout: 30 } },
      { method: 'original', seed: 0, variant: '', metrics: { heldout: 0, test_all: 90 } },
      { method: 'dcd-b', seed: 1, variant: '', metrics: { heldout: 40 } },
      { method: 'random', seed: 0, variant: '', metrics: { heldout: 10 } },
    ]);
    expect(rows.map((r) => r.name)).toEqual(['original', 'random', 'dcd-b']);
    const h = rows[2]!.cells.heldout!;
    expect(h.mean).toBe(35);
    expect(h.std).toBeCloseTo(Math.SQRT2 * 5, 10);
    expect(markdownTable(rows)).toMatch(/\| dcd-b \| – \| 35\.00 ± 7\.07 \|/);
    expect(markdownTable(rows)).toMatch(/all classes\.\n/);
    expect(markdownTable(rows, 't', 'One world for every seed.')).toMatch(/all classes\. One world for every seed\.\n/);
  });

  it('pairs rows per seed: each DCD row against Random and the DCD rows against each other, on shared seeds only', () => {
    const r = (method: string, seed: number, heldout: number, variant = '') => ({ method, seed, variant, metrics: { heldout, seed: heldout + 1 } });
    // a spread shared by every row of a seed (seed 2 is hard): unpaired stds large, paired small
    const results = [
      r('random', 0, 40), r('random', 1, 47), r('random', 2, 30),
      r('dcd-a', 0, 50), r('dcd-a', 1, 56), r('dcd-a', 2, 41),
      r('dcd-b', 0, 45), r('dcd-b', 1, 49), r('dcd-b', 2, 36), r('dcd-b', 3, 99),
      r('original', 0, 0), r('original', 1, 0), r('original', 2, 0),
    ];
    const g = pairedGaps(results);
    expect(g.map((x) => `${x.a}-${x.b}`)).toEqual(['dcd-a-random', 'dcd-b-random', 'dcd-a-dcd-b']);
    const ab = g[2]!;
    expect(ab.seeds).toEqual([0, 1, 2]); // seed 3 only dcd-b ran
    const d = [5, 7, 5];
    const mean = 17 / 3;
    const std = Math.sqrt(d.reduce((a, x) => a + (x - mean) ** 2, 0) / 2);
    expect(ab.cells.heldout!.mean).toBeCloseTo(mean, 12);
    expect(ab.cells.heldout!.std).toBeCloseTo(std, 12);
    expect(ab.cells.heldout!.t).toBeCloseTo(mean / (std / Math.sqrt(3)), 12);
    expect(ab.cells.heldout!.wins).toBe(3);
    expect(ab.cells.test_all).toBeNull(); // not evaluated
    expect(g[0]!.cells.heldout!.mean).toBeCloseTo(10, 12);
    expect(g[1]!.cells.heldout!.wins).toBe(3);
    const md = pairedTableMarkdown(pairedTable(g)!);
    expect(md).toContain('| dcd-a − dcd-b | +5.67 ± 1.15 (t 8.5; 3/3 > 0) | +5.67 ± 1.15 (t 8.5; 3/3 > 0) | – |');
    // one seed: nothing to pair
    expect(pairedGaps(results.filter((x) => x.seed === 0))).toEqual([]);
    expect(pairedTable([])).toBeUndefined();
    // a sweep pairs rows within a variant, never across
    const sweep = [r('random', 0, 1, 'k=2'), r('random', 1, 2, 'k=2'), r('dcd-a', 0, 3, 'k=2'), r('dcd-a', 1, 5, 'k=2'), r('random', 0, 9, 'k=4'), r('random', 1, 9, 'k=4'), r('dcd-a', 0, 4, 'k=4'), r('dcd-a', 1, 6, 'k=4')];
    const sg = pairedGaps(sweep);
    expect(sg.map((x) => `${x.a} − ${x.b}`)).toEqual(['dcd-a [k=2] − random [k=2]', 'dcd-a [k=4] − random [k=4]']);
    expect(sg[1]!.cells.heldout!.mean).toBeCloseTo(-4, 12);
  });
});
