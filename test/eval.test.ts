import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend } from '../src/backends/chain.js';
import { accuracy, argmaxPredictions, evaluate, percent, readPredictions, writePredictions, type Predictions } from '../src/eval/evaluate.js';
import { failureSets } from '../src/eval/failures.js';
import { readManifest, writeManifest, type ManifestRow } from '../src/data/manifest.js';
import { createModel } from '../src/models/registry.js';
import { saveCheckpoint } from '../src/models/load.js';
import { fromArrays } from '../src/train/dataset.js';
import { main } from '../src/cli/main.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dcd-eval-'));

beforeAll(async () => {
  await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
});

/** Predictions with top-1 = `pred` (k = 2: second choice is (pred+1) mod C). */
function preds(ids: string[], labels: number[], pred: number[], C = 5): Predictions {
  const k = 2;
  const topk = new Int32Array(ids.length * k);
  pred.forEach((p, i) => {
    topk[i * k] = p;
    topk[i * k + 1] = (p + 1) % C;
  });
  return { ids, labels: Int32Array.from(labels), k, topk, scores: new Float32Array(ids.length * k).fill(0.5), skipped: [], meta: {} };
}

const row = (id: string, label: number, set: string): ManifestRow => ({ id, path: `/x/${id}`, label, wnid: `n${label}`, class_name: `c${label}`, set });

describe('accuracy and predictions files', () => {
  it('counts top-1, top-k, per class and subset; round-trips the Arrow file', async () => {
    const p = preds(['a', 'b', 'c', 'd', 'e'], [0, 1, 1, 2, -1], [0, 0, 1, 1, 3]);
    const a = accuracy(p);
    expect(a.n).toBe(4); // the unlabelled image is not counted
    expect(a.top1).toBeCloseTo(2 / 4);
    expect(a.top5).toBeCloseTo(4 / 4); // b: second choice 1; d: second choice 2
    expect(a.perClass.get(1)).toEqual({ n: 2, correct: 1, acc: 0.5 });
    const s = accuracy(p, [1, 2]);
    expect(s.n).toBe(3);
    expect(s.top1).toBeCloseTo(1 / 3);
    const f = path.join(dir, 'p.arrow');
    await writePredictions(f, { ...p, meta: { 'dcd.model': 'x' } });
    const back = await readPredictions(f);
    expect(back.ids).toEqual(p.ids);
    expect(Array.from(back.topk)).toEqual(Array.from(p.topk));
    expect(back.k).toBe(2);
    expect(back.meta['dcd.model']).toBe('x');
    await expect(readPredictions(path.join(dir, 'none.arrow'))).rejects.toThrow(/none\.arrow: no such Arrow file/);
  });
});

describe('failure sets', () => {
  const mfreq = [row('m1', 0, 'mfreq'), row('m2', 0, 'mfreq'), row('m3', 1, 'mfreq'), row('m4', 1, 'mfreq'), row('m5', 2, 'mfreq'), row('m6', 2, 'mfreq'), row('m7', 2, 'mfreq')];
  const compl = [row('c1', 0, 'complement'), row('c2', 1, 'complement'), row('c3', 2, 'complement'), row('c4', 2, 'complement')];
  const ids = (rs: ManifestRow[]) => rs.map((r) => r.id);
  // model A wrong on m1 m2 m3 m5 m6 m7; model B wrong on m1 m3 m5 m6 m7 (right on m2)
  const A = preds(ids(mfreq), [0, 0, 1, 1, 2, 2, 2], [1, 1, 0, 1, 0, 0, 1]);
  const B = preds(ids(mfreq), [0, 0, 1, 1, 2, 2, 2], [3, 0, 2, 1, 1, 4, 0]);
  const Ac = preds(ids(compl), [0, 1, 2, 2], [2, 1, 0, 2]);
  const Bc = preds(ids(compl), [0, 1, 2, 2], [1, 0, 1, 2]);

  it('single model: seed = MFreq subset images it gets wrong, heldout = same on Complement', () => {
    const f = failureSets({ mfreq, complement: compl, predsMfreq: [A], predsComplement: [Ac], classes: [0, 2] });
    expect(ids(f.seed)).toEqual(['m1', 'm2', 'm5', 'm6', 'm7']);
    expect(ids(f.heldout)).toEqual(['c1', 'c3']);
    expect(f.seed.every((r) => r.set === 'seed')).toBe(true);
    expect(f.perClass.find((c) => c.label === 2)).toEqual({ label: 2, wnid: 'n2', class_name: 'c2', mfreq: 3, seed: 3, complement: 2, heldout: 1 });
  });
  it('N models: only images every model gets wrong; discovery keeps classes with ≥ t such images', () => {
    const f = failureSets({ mfreq, complement: compl, predsMfreq: [A, B], predsComplement: [Ac, Bc], classes: [0, 1, 2] });
    expect(ids(f.seed)).toEqual(['m1', 'm3', 'm5', 'm6', 'm7']);
    expect(ids(f.heldout)).toEqual(['c1', 'c3']);
    const d = failureSets({ mfreq, complement: compl, predsMfreq: [A, B], predsComplement: [Ac, Bc], discoverThreshold: 2 });
    expect(d.classes).toEqual([2]); // class 0: 1 image (m1), class 1: 1 (m3), class 2: 3
    expect(ids(d.seed)).toEqual(['m5', 'm6', 'm7']);
    expect(ids(d.heldout)).toEqual(['c3']);
    expect(() => failureSets({ mfreq, complement: compl, predsMfreq: [A, B], predsComplement: [Ac] })).toThrow(/2 MFreq prediction files but 1 Complement/);
    expect(() => failureSets({ mfreq, complement: compl, predsMfreq: [A], predsComplement: [Ac] })).toThrow(/discovery threshold/);
  });
  it('positions of S and H in their sets; an image in both sets is refused, a shared id at two paths is not', () => {
    const f = failureSets({ mfreq, complement: compl, predsMfreq: [A], predsComplement: [Ac], classes: [0, 2] });
    expect(f.seedIndex).toEqual([0, 1, 4, 5, 6]);
    expect(f.heldoutIndex).toEqual([0, 2]);
    // Complement's c1 is MFreq's m1 (same id, same file): wrong in both sets
    const same = compl.map((r) => (r.id === 'c1' ? { ...r, id: 'm1', path: '/x/m1' } : r));
    const Ps = preds(ids(same), [0, 1, 2, 2], [2, 1, 0, 2]);
    expect(() => failureSets({ mfreq, complement: same, predsMfreq: [A], predsComplement: [Ps], classes: [0] })).toThrow(/image m1 \(\/x\/m1\) is in both MFreq and Complement/);
    // a folder dataset names images relative to their set's folder: the same id, another file
    const other = same.map((r) => (r.id === 'm1' ? { ...r, path: '/complement/m1' } : r));
    expect(ids(failureSets({ mfreq, complement: other, predsMfreq: [A], predsComplement: [Ps], classes: [0] }).heldout)).toEqual(['m1']);
  });
  it('arg-max predictions leave undecodable images (-1) out of accuracy and failure sets', () => {
    const p = argmaxPredictions(mfreq.slice(0, 3), Int32Array.from([1, -1, 1]));
    expect(p.ids).toEqual(['m1', 'm3']);
    expect(p.skipped).toEqual([{ id: 'm2', reason: 'not decodable' }]);
    const a = accuracy(p);
    expect([a.n, a.correct, percent(a)]).toEqual([2, 1, 50]);
    expect(percent(accuracy(p, [5]))).toBeNull();
    const f = failureSets({ mfreq: mfreq.slice(0, 3), complement: [], predsMfreq: [p], predsComplement: [argmaxPredictions([], new Int32Array(0))], classes: [0, 1] });
    expect(ids(f.seed)).toEqual(['m1']); // m2 has no prediction: not counted as wrong
    expect(f.missing).toEqual(['m2']);
    expect(() => argmaxPredictions(mfreq.slice(0, 2), new Int32Array(3))).toThrow(/3 classes for 2 images/);
  });
  it('dcd failures writes the manifests and the per-class summary', async () => {
    const mf = path.join(dir, 'mfreq.arrow');
    const co = path.join(dir, 'compl.arrow');
    await writeManifest(mf, mfreq);
    await writeManifest(co, compl);
    const files = ['pa', 'pb', 'pac', 'pbc'].map((n) => path.join(dir, `${n}.arrow`));
    await Promise.all([A, B, Ac, Bc].map((p, i) => writePredictions(files[i]!, p)));
    await import('node:fs/promises').then((fs) => fs.writeFile(path.join(dir, 'subset.txt'), '0\n1\n2\n'));
    const out = path.join(dir, 'failures');
    const code = await main(['failures', '--mfreq', mf, '--complement', co, '--pred-mfreq', files[0]!, files[1]!, '--pred-complement', files[2]!, files[3]!, '--classes', path.join(dir, 'subset.txt'), '--out', out]);
    expect(code).toBe(0);
    expect((await readManifest(path.join(out, 'seed.arrow'))).rows.map((r) => r.id)).toEqual(['m1', 'm3', 'm5', 'm6', 'm7']);
    expect((await readManifest(path.join(out, 'heldout.arrow'))).rows.map((r) => r.id)).toEqual(['c1', 'c3']);
    expect(readFileSync(path.join(out, 'failures-per-class.csv'), 'utf8')).toContain('2,n2,"c2",3,3,2,1');
  });
});

describe('evaluate', () => {
  it('top-k of the model in eval mode, no tensor leaked', async () => {
    const start = tf.memory().numTensors;
    const model = createModel('resnet_tiny', { numClasses: 4, seed: 1 });
    const n = 5;
    const img = new Float32Array(n * 32 * 32 * 3).map((_, i) => Math.sin(i * 0.37));
    const ds = fromArrays({ images: img, shape: [32, 32, 3], labels: [0, 1, 2, 3, 0] });
    await evaluate(model, ds, { batchSize: 2 }); // the first eval call may cache folded conv+BN weights in the model
    const before = tf.memory().numTensors;
    const p = await evaluate(model, ds, { batchSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(p.k).toBe(4);
    const want = tf.tidy(() => tf.softmax(model.forwardHead(model.forwardFeatures(tf.tensor4d(img, [n, 32, 32, 3]), false))).arraySync() as number[][]);
    want.forEach((probs, i) => {
      const order = probs.map((v, c) => [v, c] as const).sort((a, b) => b[0] - a[0]);
      expect(p.topk[i * 4]).toBe(order[0]![1]);
      expect(p.scores[i * 4]!).toBeCloseTo(order[0]![0], 5);
    });
    model.dispose();
    expect(tf.memory().numTensors, 'the model and its caches freed').toBe(start);
  });
  it('dcd eval: checkpoint on a manifest → predictions and metrics; bad checkpoint names the file', async () => {
    const model = createModel('resnet_tiny', { numClasses: 3, seed: 2 });
    const ck = path.join(dir, 'tiny.safetensors');
    await saveCheckpoint(model, ck, 'safetensors');
    model.dispose();
    const rows: ManifestRow[] = [];
    for (let i = 0; i < 4; i++) {
      const f = path.join(dir, `e${i}.png`);
      await sharp({ create: { width: 40, height: 36, channels: 3, background: { r: 60 * i, g: 100, b: 200 - 40 * i } } }).png().toFile(f);
      rows.push(row(`e${i}.png`, i % 3, 'test'));
      rows[i]!.path = f;
    }
    rows.push({ ...row('broken.png', 0, 'test'), path: path.join(dir, 'broken.png') });
    await import('node:fs/promises').then((fs) => fs.writeFile(path.join(dir, 'broken.png'), 'not an image'));
    const man = path.join(dir, 'test.arrow');
    await writeManifest(man, rows);
    const out = path.join(dir, 'preds', 'test.arrow');
    const code = await main(['eval', '--model', 'resnet_tiny', '--checkpoint', ck, '--data', man, '--out', out, '--batch-size', '3']);
    expect(code).toBe(0);
    const p = await readPredictions(out);
    expect(p.ids).toEqual(['e0.png', 'e1.png', 'e2.png', 'e3.png']);
    expect(p.k).toBe(3);
    const m = JSON.parse(readFileSync(out.replace(/\.arrow$/, '.json'), 'utf8'));
    expect(m.all.n).toBe(4);
    expect(m.skipped.map((s: { id: string }) => s.id)).toEqual(['broken.png']);
    const bad = path.join(dir, 'bad.safetensors');
    await import('node:fs/promises').then((fs) => fs.writeFile(bad, 'garbage'));
    expect(await main(['eval', '--model', 'resnet_tiny', '--checkpoint', bad, '--data', man, '--out', path.join(dir, 'x.arrow')])).not.toBe(0);
    expect(existsSync(path.join(dir, 'x.arrow'))).toBe(false);
  });
});
