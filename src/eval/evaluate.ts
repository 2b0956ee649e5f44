/**
 * Evaluation of a classifier on a dataset: top-k predictions, written as an Arrow file,
 * and accuracies (top-1, top-5, per class, restricted to a class subset).
 */
import { Field, FixedSizeList, Int32, makeData, makeVector, Table, type Data } from 'apache-arrow';
import { buildTable, copyFixedListValues, embeddingMatrix, int32Column, metadataOf, readArrowFile, requireColumns, stringColumn, withMetadata, writeArrowFile } from '../core/arrow.js';
import { ArtifactError, ConfigError } from '../core/errors.js';
import { progress } from '../core/log.js';
import type { ImageModel } from '../core/types.js';
import type { Dataset } from '../train/dataset.js';
import { topkDataset } from '../infer/predict.js';

/** Predictions of one model on one image set. */
export interface Predictions {
  ids: string[];
  /** True class per image (-1 = none). */
  labels: Int32Array;
  /** k per image. */
  k: number;
  /** Top-k classes, row-major [n, k], best first. */
  topk: Int32Array;
  /** Softmax probabilities of `topk`, [n, k]. */
  scores: Float32Array;
  /** Images that could not be decoded (not in ids). */
  skipped: { id: string; reason: string }[];
  /** Metadata carried into the Arrow file (model, checkpoint, set). */
  meta: Record<string, string>;
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  batchSize?: number;
  /** Classes kept per image (default 5, at most the class count). */
  topK?: number;
  meta?: Record<string, string>;
  /** Progress-bar label. */
  label?: string;
}

/**
 * Runs `model` (BN in eval mode) over every sample of `dataset`.
 * Samples that fail to decode are left out of the predictions and listed in `skipped`.
 */
export async function evaluate(model: ImageModel, dataset: Dataset, opts: EvaluateOptions = {}): Promise<Predictions> {
  if (model.numClasses < 1) throw new ConfigError(`evaluate: model ${model.name} has no classification head`);
  const bs = opts.batchSize ?? 32;
  if (!(Number.isInteger(bs) && bs > 0)) throw new ConfigError(`evaluate: batchSize must be a positive integer, received ${bs}`);
  const k = Math.min(opts.topK ?? 5, model.numClasses);
  const n = dataset.size;
  const bar = progress(opts.label ?? 'eval', n);
  const { topk, scores } = await topkDataset(model, dataset, bs, k, (m) => bar.tick(m));
  bar.stop();
  const keep: number[] = [];
  for (let j = 0; j < n; j++) if (!dataset.skipped.has(j)) keep.push(j);
  const pick = <T extends Int32Array | Float32Array>(a: T, Ctor: new (n: number) => T): T => {
    const out = new Ctor(keep.length * k);
    keep.forEach((j, r) => out.set(a.subarray(j * k, (j + 1) * k), r * k));
    return out;
  };
  return {
    ids: keep.map((j) => dataset.ids[j]!),
    labels: Int32Array.from(keep, (j) => dataset.labels[j]!),
    k,
    topk: pick(topk, Int32Array),
    scores: pick(scores, Float32Array),
    skipped: [...dataset.skipped].map(([j, reason]) => ({ id: dataset.ids[j]!, reason })),
    meta: { ...(opts.meta ?? {}), 'dcd.model': model.name, 'dcd.num_classes': String(model.numClasses) },
  };
}

/**
 * Predictions of arg-max classes (k = 1, no scores), one per row of an image set; rows
 * whose class is -1 (the image could not be decoded) are left out, as {@link evaluate} does.
 * @param pred Int32Array [rows.length]: the arg-max class per row, -1 = not decodable
 */
export function argmaxPredictions(rows: readonly { id: string; label: number }[], pred: Int32Array): Predictions {
  if (pred.length !== rows.length) throw new ArtifactError(`predictions: ${pred.length} classes for ${rows.length} images`);
  const keep = rows.flatMap((_, i) => (pred[i] === -1 ? [] : [i]));
  return {
    ids: keep.map((i) => rows[i]!.id),
    labels: Int32Array.from(keep, (i) => rows[i]!.label),
    k: 1,
    topk: Int32Array.from(keep, (i) => pred[i]!),
    scores: new Float32Array(keep.length).fill(NaN),
    skipped: rows.flatMap((r, i) => (pred[i] === -1 ? [{ id: r.id, reason: 'not decodable' }] : [])),
    meta: {},
  };
}

/** Top-1 class per image. */
export function top1(p: Predictions): Int32Array {
  return Int32Array.from({ length: p.ids.length }, (_, i) => p.topk[i * p.k]!);
}

/** Accuracy summary of a prediction set (fractions; {@link percent} for the result table). */
export interface Accuracy {
  /** Labelled images counted. */
  n: number;
  /** Of those, images whose top-1 class is the label. */
  correct: number;
  top1: number;
  top5: number;
  /** Per class (label → images, top-1 correct). */
  perClass: Map<number, { n: number; correct: number; acc: number }>;
}

/**
 * Top-1 / top-5 accuracy over labelled images, optionally restricted to images whose
 * label is in `classes`. Top-5 uses min(5, k) classes.
 */
export function accuracy(p: Predictions, classes?: Iterable<number>): Accuracy {
  const subset = classes ? new Set(classes) : undefined;
  let n = 0;
  let c1 = 0;
  let c5 = 0;
  const perClass = new Map<number, { n: number; correct: number; acc: number }>();
  const k5 = Math.min(5, p.k);
  for (let i = 0; i < p.ids.length; i++) {
    const y = p.labels[i]!;
    if (y < 0 || (subset && !subset.has(y))) continue;
    n++;
    const hit1 = p.topk[i * p.k] === y;
    let hit5 = false;
    for (let j = 0; j < k5; j++) if (p.topk[i * p.k + j] === y) hit5 = true;
    if (hit1) c1++;
    if (hit5) c5++;
    const e = perClass.get(y) ?? { n: 0, correct: 0, acc: 0 };
    e.n++;
    if (hit1) e.correct++;
    perClass.set(y, e);
  }
  for (const e of perClass.values()) e.acc = e.correct / e.n;
  return { n, correct: c1, top1: n ? c1 / n : NaN, top5: n ? c5 / n : NaN, perClass };
}

/** Top-1 accuracy in percent, as the result table shows it; null where no image was counted. */
export function percent(a: Accuracy): number | null {
  return a.n ? (100 * a.correct) / a.n : null;
}

function int32ListColumn(values: Int32Array, k: number) {
  const child = makeData({ type: new Int32(), length: values.length, data: values });
  const type = new FixedSizeList(k, new Field('item', new Int32(), false));
  return makeVector(makeData({ type, length: values.length / k, nullCount: 0, child }) as Data<FixedSizeList<Int32>>);
}

/**
 * Writes predictions as Arrow: `id` (Utf8), `label` (Int32), `top5` (FixedSizeList<Int32>,
 * k classes best first; named top5 whatever k is), `top5_scores` (FixedSizeList<Float32>).
 * Metadata `dcd.kind` = `predictions`, `dcd.k`, plus `p.meta`.
 */
export async function writePredictions(file: string, p: Predictions): Promise<void> {
  const base = buildTable(
    { id: { kind: 'utf8', values: p.ids }, label: { kind: 'int32', values: p.labels }, top5_scores: { kind: 'embedding', values: p.scores, dim: p.k } },
    { ...p.meta, 'dcd.kind': 'predictions', 'dcd.k': String(p.k) },
  );
  const cols: Record<string, ReturnType<typeof makeVector>> = {
    id: base.getChild('id')!,
    label: base.getChild('label')!,
    top5: int32ListColumn(p.topk, p.k),
    top5_scores: base.getChild('top5_scores')!,
  };
  const t = withMetadata(new Table(cols), base.schema.metadata);
  await writeArrowFile(file, t);
}

/** Reads a file written by {@link writePredictions}; errors name the file. */
export async function readPredictions(file: string): Promise<Predictions> {
  const t = await readArrowFile(file);
  requireColumns(t, ['id', 'label', 'top5', 'top5_scores'], file);
  const meta = metadataOf(t);
  if (meta['dcd.kind'] !== 'predictions') throw new ArtifactError(`${file}: not a predictions file (dcd.kind is ${meta['dcd.kind'] ?? 'missing'}); write it with dcd eval`);
  const sc = embeddingMatrix(t, 'top5_scores', file);
  const k = sc.dim;
  const topk = new Int32Array(t.numRows * k);
  let off = 0;
  for (const b of t.batches) off = copyFixedListValues(b.getChild('top5')!, k, topk, off);
  return { ids: stringColumn(t, 'id', file), labels: int32Column(t, 'label', file), k, topk, scores: sc.data, skipped: [], meta };
}
