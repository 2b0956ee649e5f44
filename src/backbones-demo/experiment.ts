/**
 * The whole demo experiment through library calls, in memory: draw the benchmark, train
 * the original model, find its failures (seed on mfreq, heldout on complement), embed with
 * each backbone, select (Algorithm 1; Random; Complete), fine-tune one model per method,
 * evaluate, repeat per seed, and tabulate mean ± std. `dcd run` stages the same steps with
 * artifacts; this entry point measures the effect and runtime directly.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { ImageModel } from '../core/types.js';
import { generateSynthetic, type DeepPartial, type ObjectSource, type SyntheticDraw, type SyntheticOptions, type SyntheticSet, subsetOf } from '../data/synthetic.js';
import { createSmallCnn } from '../models/small-cnn.js';
import { embedImages, fitClassifier, predictLabels } from '../train/in-memory.js';
import { trainDemoBackbone, type DemoBackboneSpec } from '../train/demo-backbones.js';
import { randomSelect, selectAlgorithm1Local } from './select.js';

/** Everything the demo experiment needs. */
export interface DemoExperimentConfig {
  synthetic: DeepPartial<SyntheticOptions>;
  seeds: number[];
  /** The debugged model: a small CNN trained from scratch on train. */
  model: { widths: number[]; steps: number; lr: number; batchSize: number };
  /** Every method fine-tunes the original model for the same number of steps on Train ∪ added. */
  finetune: { steps: number; lr: number; batchSize: number };
  selection: { kVal: number; kTrain: number };
  backbones: (DemoBackboneSpec & { name: string })[];
  /** Object source (Fashion-MNIST garments); shapes when absent. */
  objects?: ObjectSource;
}

/** Accuracy columns of the table (percent). */
export const COLUMNS = ['seed', 'heldout', 'mfreq_sub', 'compl_sub', 'test_sub', 'mfreq_all', 'compl_all', 'test_all'] as const;
export type Column = (typeof COLUMNS)[number];

/** One method on one seed. */
export interface MethodResult {
  method: string;
  seed: number;
  added: number;
  acc: Record<Column, number>;
  /** Of the added pool images: fraction whose object class equals the label they get, and whose context is not the class's home. */
  addedClean?: number;
  addedRare?: number;
}

/** Output of {@link runDemoExperiment}. */
export interface DemoExperimentResult {
  results: MethodResult[];
  methods: string[];
  /** Seeds S and heldout H sizes per seed. */
  failures: { seed: number; seedSize: number; heldoutSize: number }[];
  timings: Record<string, number>;
}

function accuracy(pred: Int32Array, labels: Int32Array, rows: number[]): number {
  if (!rows.length) return NaN;
  let ok = 0;
  for (const i of rows) if (pred[i] === labels[i]) ok++;
  return (100 * ok) / rows.length;
}

function rowsWhere(set: SyntheticSet, pred: (i: number) => boolean): number[] {
  const r: number[] = [];
  for (let i = 0; i < set.n; i++) if (pred(i)) r.push(i);
  return r;
}

/** Concatenates train with selected pool rows (labelled by their weak label) and weights. */
function mixture(draw: SyntheticDraw, poolRows: number[], weights?: (y: number) => number): { images: Uint8Array; size: number; n: number; labels: Int32Array; weights?: Float32Array } {
  const tr = draw.sets.train;
  const added = subsetOf(draw.sets.pool, poolRows);
  const n = tr.n + added.n;
  const images = new Uint8Array(n * tr.size * tr.size * 3);
  images.set(tr.images, 0);
  images.set(added.images, tr.images.length);
  const labels = new Int32Array(n);
  labels.set(tr.labels, 0);
  labels.set(added.weakLabels, tr.n);
  let w: Float32Array | undefined;
  if (weights) {
    w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = weights(labels[i]!);
  }
  return { images, size: tr.size, n, labels, weights: w };
}

/**
 * Runs the demo experiment. Rows: `original`, `random`, `complete`, `dcd-<backbone>`.
 * @param onProgress receives one line per finished step
 */
export async function runDemoExperiment(cfg: DemoExperimentConfig, onProgress: (msg: string) => void = (m) => log.info(m)): Promise<DemoExperimentResult> {
  const timings: Record<string, number> = {};
  const time = async <T>(key: string, f: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const r = await f();
    timings[key] = (timings[key] ?? 0) + (performance.now() - t0) / 1000;
    return r;
  };
  // backbones are pre-trained once, like public checkpoints, on their own broad draw
  const backbones = new Map<string, ImageModel | 'self'>();
  for (const b of cfg.backbones) {
    if (b.kind === 'self') backbones.set(b.name, 'self');
    else backbones.set(b.name, await time(`backbone:${b.name}`, () => trainDemoBackbone(b, cfg.synthetic, cfg.objects)));
    onProgress(`backbone ${b.name} ready (${(timings[`backbone:${b.name}`] ?? 0).toFixed(1)} s)`);
  }
  const methods = ['original', 'random', 'complete', ...cfg.backbones.map((b) => `dcd-${b.name}`)];
  const results: MethodResult[] = [];
  const failures: DemoExperimentResult['failures'] = [];
  for (const seed of cfg.seeds) {
    const draw = await time('data', () => generateSynthetic(cfg.synthetic, seed, cfg.objects));
    const sub = new Set(draw.subset);
    const { train, test, mfreq, complement, pool } = draw.sets;
    const make = () => createSmallCnn({ widths: cfg.model.widths, numClasses: draw.options.numClasses, seed, name: 'debugged' });
    const original = make();
    await time('train:original', () =>
      fitClassifier(original, train, { steps: cfg.model.steps, lr: cfg.model.lr, batchSize: cfg.model.batchSize, seed, flip: true }),
    );
    const predOrig = {
      mfreq: predictLabels(original, mfreq.images, mfreq.size, mfreq.n),
      complement: predictLabels(original, complement.images, complement.size, complement.n),
    };
    // failure sets: S from mfreq, H from complement, labels in Y_sub, wrongly classified
    const S = rowsWhere(mfreq, (i) => sub.has(mfreq.labels[i]!) && predOrig.mfreq[i] !== mfreq.labels[i]);
    const H = rowsWhere(complement, (i) => sub.has(complement.labels[i]!) && predOrig.complement[i] !== complement.labels[i]);
    failures.push({ seed, seedSize: S.length, heldoutSize: H.length });
    const seedSet = subsetOf(mfreq, S, 'mfreq');
    const evaluate = (m: ImageModel): Record<Column, number> => {
      const p = {
        test: predictLabels(m, test.images, test.size, test.n),
        mfreq: predictLabels(m, mfreq.images, mfreq.size, mfreq.n),
        complement: predictLabels(m, complement.images, complement.size, complement.n),
      };
      const all = (s: SyntheticSet) => rowsWhere(s, () => true);
      const inSub = (s: SyntheticSet) => rowsWhere(s, (i) => sub.has(s.labels[i]!));
      return {
        seed: accuracy(p.mfreq, mfreq.labels, S),
        heldout: accuracy(p.complement, complement.labels, H),
        mfreq_sub: accuracy(p.mfreq, mfreq.labels, inSub(mfreq)),
        compl_sub: accuracy(p.complement, complement.labels, inSub(complement)),
        test_sub: accuracy(p.test, test.labels, inSub(test)),
        mfreq_all: accuracy(p.mfreq, mfreq.labels, all(mfreq)),
        compl_all: accuracy(p.complement, complement.labels, all(complement)),
        test_all: accuracy(p.test, test.labels, all(test)),
      };
    };
    results.push({ method: 'original', seed, added: 0, acc: await time('eval', () => evaluate(original)) });
    onProgress(`seed ${seed}: original trained; |S| = ${S.length}, |H| = ${H.length}`);
    const describeAdded = (rows: number[]) => {
      let clean = 0;
      let rare = 0;
      for (const j of rows) {
        if (pool.labels[j] === pool.weakLabels[j]) clean++;
        if (pool.contexts[j] !== draw.home[pool.weakLabels[j]!]) rare++;
      }
      return { addedClean: rows.length ? clean / rows.length : NaN, addedRare: rows.length ? rare / rows.length : NaN };
    };
    const finetune = async (method: string, rows: number[], weights?: (y: number) => number) => {
      const m = cloneModel(original, make);
      await time(`train:${method.startsWith('dcd-') ? 'dcd' : method}`, () =>
        fitClassifier(m, mixture(draw, rows, weights), { steps: cfg.finetune.steps, lr: cfg.finetune.lr, batchSize: cfg.finetune.batchSize, seed: seed * 7919 + methods.indexOf(method), flip: true }),
      );
      results.push({ method, seed, added: rows.length, acc: await time('eval', () => evaluate(m)), ...describeAdded(rows) });
      m.dispose();
      const r = results[results.length - 1]!;
      onProgress(`seed ${seed}: ${method} (+${rows.length}, clean ${(100 * (r.addedClean ?? 0)).toFixed(0)}%, rare-context ${(100 * (r.addedRare ?? 0)).toFixed(0)}%) heldout ${r.acc.heldout.toFixed(1)}, test ${r.acc.test_all.toFixed(1)}`);
    };
    // DCD with each backbone: de-val V with k_val, then D from W' \ V with k_train
    let dcdCounts: Map<number, number> | undefined;
    const dcdRows = new Map<string, number[]>();
    for (const b of cfg.backbones) {
      const bb = backbones.get(b.name)!;
      const model = bb === 'self' ? original : bb;
      const { seedFeat, poolFeat } = await time(`embed:${b.name}`, () => ({
        seedFeat: embedImages(model, seedSet.images, seedSet.size, seedSet.n),
        poolFeat: embedImages(model, pool.images, pool.size, pool.n),
      }));
      const base = { seedFeat, seedLabels: seedSet.labels, poolFeat, poolWeak: pool.weakLabels, dim: model.numFeatures, classes: draw.subset };
      const D = await time('select', () => {
        const V = selectAlgorithm1Local({ ...base, k: cfg.selection.kVal });
        return selectAlgorithm1Local({ ...base, k: cfg.selection.kTrain, exclude: new Set(V) });
      });
      dcdRows.set(b.name, D);
      if (!dcdCounts) {
        dcdCounts = new Map();
        for (const j of D) dcdCounts.set(pool.weakLabels[j]!, (dcdCounts.get(pool.weakLabels[j]!) ?? 0) + 1);
      }
    }
    // Random: as many per class as DCD (the first backbone's D), uniformly from W'_y
    await finetune('random', randomSelect(pool.weakLabels, dcdCounts ?? new Map(), seed));
    // Complete: Train ∪ W', class y in Y_sub weighted n_y / (n_y + m_y)
    const n = new Map<number, number>();
    const mcount = new Map<number, number>();
    for (let i = 0; i < train.n; i++) n.set(train.labels[i]!, (n.get(train.labels[i]!) ?? 0) + 1);
    for (let j = 0; j < pool.n; j++) mcount.set(pool.weakLabels[j]!, (mcount.get(pool.weakLabels[j]!) ?? 0) + 1);
    await finetune(
      'complete',
      Array.from({ length: pool.n }, (_, j) => j),
      (y) => (sub.has(y) ? (n.get(y) ?? 0) / ((n.get(y) ?? 0) + (mcount.get(y) ?? 0)) : 1),
    );
    for (const b of cfg.backbones) await finetune(`dcd-${b.name}`, dcdRows.get(b.name)!);
    original.dispose();
  }
  for (const b of backbones.values()) if (b !== 'self') b.dispose();
  return { results, methods, failures, timings };
}

/** Mean and (sample) standard deviation over seeds of one column of one method. */
export function meanStd(results: MethodResult[], method: string, col: Column): { mean: number; std: number; n: number } {
  const v = results.filter((r) => r.method === method).map((r) => r.acc[col]);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const std = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
  return { mean, std, n: v.length };
}

/** A Markdown table: one row per method, mean ± std over seeds for every column. */
export function formatTable(res: DemoExperimentResult): string {
  const head = ['method', 'added', ...COLUMNS];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const m of res.methods) {
    const rs = res.results.filter((r) => r.method === m);
    const added = rs.reduce((a, r) => a + r.added, 0) / Math.max(rs.length, 1);
    const cells = COLUMNS.map((c) => {
      const s = meanStd(res.results, m, c);
      return `${s.mean.toFixed(1)} ± ${s.std.toFixed(1)}`;
    });
    lines.push(`| ${m} | ${added.toFixed(0)} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * The issue's success criterion on a result: for each DCD row, heldout mean of DCD minus
 * Random exceeds both rows' seed std, Random minus original likewise, and test_all within
 * 1 point of original.
 */
export function checkCriterion(res: DemoExperimentResult): { method: string; ok: boolean; why: string }[] {
  const orig = meanStd(res.results, 'original', 'heldout');
  const rnd = meanStd(res.results, 'random', 'heldout');
  const origTest = meanStd(res.results, 'original', 'test_all');
  return res.methods
    .filter((m) => m.startsWith('dcd-'))
    .map((m) => {
      const d = meanStd(res.results, m, 'heldout');
      const t = meanStd(res.results, m, 'test_all');
      const spread = Math.max(orig.std, rnd.std, d.std);
      const a = d.mean - rnd.mean > spread;
      const b = rnd.mean - orig.mean > spread;
      const c = Math.abs(t.mean - origTest.mean) <= 1 || t.mean > origTest.mean;
      return {
        method: m,
        ok: a && b && c,
        why: `heldout ${m} ${d.mean.toFixed(1)} vs random ${rnd.mean.toFixed(1)} vs original ${orig.mean.toFixed(1)} (largest std ${spread.toFixed(1)}); test ${t.mean.toFixed(1)} vs original ${origTest.mean.toFixed(1)}`,
      };
    });
}

/** Tensors currently alive (for leak checks in tests). */
export function liveTensors(): number {
  return tf.memory().numTensors;
}

/** Copies every parameter of `from` into a new model made by `make` (same architecture). */
export function cloneModel(from: ImageModel, make: () => ImageModel): ImageModel {
  const m = make();
  const src = from.params();
  for (const [k, v] of m.params()) {
    const s = src.get(k);
    if (!s) throw new ConfigError(`cloneModel: parameter ${k} missing in ${from.name}`);
    v.assign(s);
  }
  return m;
}
