/**
 * Training from files (what `dcd train` calls): manifests → datasets, registry model
 * (fresh or fine-tuned), then {@link trainModel}.
 */
import { float32Column, readArrowFile } from '../core/arrow.js';
import { ConfigError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { ImageModel } from '../core/types.js';
import { readManifest, type ManifestRow } from '../data/manifest.js';
import { createModel, getModelSpec } from '../models/registry.js';
import type { ImageTransform } from '../data/images.js';
import { concatDatasets, fromManifest, type Dataset, type MixturePart } from './dataset.js';
import { classWeightsHook, balancedClassWeights } from './hooks.js';
import { initFromCheckpoint } from './init.js';
import { trainModel, type TrainOptions, type TrainResult } from './trainer.js';

/** One manifest of the training mixture. */
export interface ManifestPart {
  file: string;
  /** Multiplies the per-row weights (column `weight` when the file has one, else 1). */
  weight?: number;
}

/** Reads a manifest plus its optional `weight` column. */
export async function readWeightedManifest(file: string): Promise<{ rows: ManifestRow[]; weights?: Float32Array; meta: Record<string, string> }> {
  const m = await readManifest(file);
  const t = await readArrowFile(file);
  const has = t.schema.fields.some((f) => f.name === 'weight');
  return { rows: m.rows, meta: m.meta, ...(has ? { weights: float32Column(t, 'weight', file) } : {}) };
}

/** Number of classes: `dcd.classes` metadata when present, else 1 + the largest label. */
export function classCount(parts: { rows: ManifestRow[]; meta: Record<string, string> }[]): number {
  for (const p of parts) {
    const c = p.meta['dcd.classes'];
    if (c) {
      try {
        const arr = JSON.parse(c);
        if (Array.isArray(arr) && arr.length > 0) return arr.length;
      } catch {
        /* fall through to labels */
      }
    }
  }
  let mx = -1;
  for (const p of parts) for (const r of p.rows) mx = Math.max(mx, r.label);
  return mx + 1;
}

/** Options of {@link trainFromFiles}. */
export interface TrainFromFilesOptions extends Omit<TrainOptions, 'model' | 'train' | 'hooks'> {
  modelName: string;
  /** Base train set, then added sets (each with its own weight). */
  parts: ManifestPart[];
  numClasses?: number;
  /** Fine-tune from this checkpoint (new head when the class count differs). */
  init?: string;
  /** Override the model's eval resize / crop. */
  resize?: number;
  crop?: number;
  /** Re-weight classes so that each class has the same total weight (a hook). */
  classBalance?: boolean;
  modelSeed?: number;
}

/** Builds the model and the mixture from manifests and trains. The model is disposed at the end. */
export async function trainFromFiles(o: TrainFromFilesOptions): Promise<TrainResult & { numClasses: number; images: number }> {
  if (o.parts.length === 0) throw new ConfigError('dcd train: give --train MANIFEST');
  const spec = getModelSpec(o.modelName);
  const t: ImageTransform = { ...spec.preprocess, ...(o.resize ? { resize: o.resize } : {}), ...(o.crop ? { crop: o.crop } : {}) };
  const read = await Promise.all(o.parts.map((p) => readWeightedManifest(p.file)));
  const numClasses = o.numClasses ?? classCount(read);
  if (!(numClasses >= 1)) throw new ConfigError(`${o.parts[0]!.file}: no labelled rows; cannot infer the class count (give --num-classes)`);
  const mix: MixturePart[] = read.map((r, i) => ({
    dataset: fromManifest(r.rows, { transform: t, ...(r.weights ? { weights: r.weights } : {}) }),
    weight: o.parts[i]!.weight ?? 1,
    idPrefix: o.parts.length > 1 ? `${i}:` : '',
  }));
  const train: Dataset = mix.length === 1 && (o.parts[0]!.weight ?? 1) === 1 ? mix[0]!.dataset : concatDatasets(mix);
  let model: ImageModel | undefined;
  try {
    model = createModel(o.modelName, { numClasses, seed: o.modelSeed ?? o.seed ?? 0 });
    if (o.init) {
      const r = await initFromCheckpoint(model, o.init);
      log.info(`initialised from ${o.init}${r.newHead ? ` with a new ${numClasses}-class head` : ''}`);
    }
    const hooks = o.classBalance ? [classWeightsHook(balancedClassWeights(train.labels, train.weights, numClasses))] : [];
    log.info(`training ${o.modelName} (${numClasses} classes) on ${train.size} images (${t.crop}×${t.crop}) into ${o.outDir}`);
    const r = await trainModel({ ...o, model, train, hooks });
    return { ...r, numClasses, images: train.size };
  } finally {
    model?.dispose();
  }
}
