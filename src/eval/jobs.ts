/** The file-level jobs `dcd eval` and `dcd failures` run: read manifests, checkpoints or prediction files, evaluate, build the failure sets, write the results. */
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { atomicWriteJson } from '../core/fsutil.js';
import { log } from '../core/log.js';
import type { ImageModel } from '../core/types.js';
import { readManifest } from '../data/manifest.js';
import type { ImageTransform } from '../data/images.js';
import { materialize, readCheckpoint } from '../models/checkpoint.js';
import { mapCheckpointKeys } from '../models/keymap.js';
import { loadCheckpoint } from '../models/load.js';
import { createModel, getModelSpec } from '../models/registry.js';
import { fromManifest } from '../train/dataset.js';
import { accuracy, evaluate, readPredictions, writePredictions, type Accuracy, type Predictions } from './evaluate.js';
import { failureSets, writeFailureSets, type FailureSets } from './failures.js';
import { readClassSubset } from '../data/adapters.js';

/** Class count of a checkpoint's head (`fc.weight` rows), or undefined when it has none. */
export async function headClasses(modelName: string, file: string): Promise<number | undefined> {
  const ck = await readCheckpoint(file);
  const { tensors } = mapCheckpointKeys(ck.tree, getModelSpec(modelName).keyFamily, {}, file);
  const fc = tensors.get('fc.weight') ?? tensors.get('head.weight');
  return fc ? materialize(fc).shape[0] : undefined;
}

/** Builds `modelName` with the checkpoint's head size and loads it strictly. */
export async function modelFromCheckpoint(modelName: string, file: string, numClasses?: number): Promise<ImageModel> {
  const c = numClasses ?? (await headClasses(modelName, file));
  if (!c) throw new ConfigError(`${file}: the checkpoint has no classification head (fc.weight); evaluation needs a classifier`);
  const model = createModel(modelName, { numClasses: c });
  try {
    await loadCheckpoint(model, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** JSON-friendly form of an {@link Accuracy}. */
export function accuracyJson(a: Accuracy): { n: number; top1: number; top5: number; perClass: Record<string, { n: number; correct: number; acc: number }> } {
  return { n: a.n, top1: a.top1, top5: a.top5, perClass: Object.fromEntries([...a.perClass].sort((x, y) => x[0] - y[0]).map(([k, v]) => [String(k), v])) };
}

/** Options of {@link evalFromFiles}. */
export interface EvalFromFilesOptions {
  modelName: string;
  checkpoint: string;
  manifest: string;
  out: string;
  batchSize?: number;
  resize?: number;
  crop?: number;
  /** Class-subset file (wnids or indices) for the restricted accuracy. */
  classes?: string;
  numClasses?: number;
}

/**
 * Evaluates a checkpoint on a manifest: writes the predictions Arrow file `out` and
 * `out` with `.json` (accuracies: all, per class, subset).
 */
export async function evalFromFiles(o: EvalFromFilesOptions): Promise<{ all: Accuracy; subset?: Accuracy; predictions: Predictions; metricsFile: string }> {
  const spec = getModelSpec(o.modelName);
  const t: ImageTransform = { ...spec.preprocess, ...(o.resize ? { resize: o.resize } : {}), ...(o.crop ? { crop: o.crop } : {}) };
  const { rows } = await readManifest(o.manifest);
  const subset = o.classes ? readClassSubset(o.classes) : undefined;
  const model = await modelFromCheckpoint(o.modelName, o.checkpoint, o.numClasses);
  try {
    const ds = fromManifest(rows, { transform: t });
    const p = await evaluate(model, ds, { batchSize: o.batchSize, meta: { 'dcd.checkpoint': path.resolve(o.checkpoint), 'dcd.manifest': path.resolve(o.manifest) }, label: `eval ${path.basename(o.manifest)}` });
    await writePredictions(o.out, p);
    const all = accuracy(p);
    const sub = subset ? accuracy(p, subset) : undefined;
    const metricsFile = o.out.replace(/\.arrow$/, '') + '.json';
    await atomicWriteJson(metricsFile, { model: o.modelName, checkpoint: o.checkpoint, manifest: o.manifest, skipped: p.skipped, all: accuracyJson(all), ...(sub ? { subset: { classes: subset, ...accuracyJson(sub) } } : {}) });
    if (p.skipped.length) log.warn(`${p.skipped.length} image(s) could not be decoded and were left out (listed in ${metricsFile})`);
    return { all, ...(sub ? { subset: sub } : {}), predictions: p, metricsFile };
  } finally {
    model.dispose();
  }
}

/** Options of {@link failuresFromFiles}. */
export interface FailuresFromFilesOptions {
  mfreq: string;
  complement: string;
  /** Predictions Arrow files, one per model, on each set (same model order). */
  predMfreq?: string[];
  predComplement?: string[];
  /** Or checkpoints (evaluated here) with their registry model name. */
  checkpoints?: string[];
  modelName?: string;
  classes?: string;
  discover?: number;
  out: string;
  batchSize?: number;
}

/** Builds and writes the seed / heldout failure sets; see {@link failureSets}. */
export async function failuresFromFiles(o: FailuresFromFilesOptions): Promise<FailureSets> {
  const mf = await readManifest(o.mfreq);
  const co = await readManifest(o.complement);
  const pm: Predictions[] = [];
  const pc: Predictions[] = [];
  for (const f of o.predMfreq ?? []) pm.push(await readPredictions(f));
  for (const f of o.predComplement ?? []) pc.push(await readPredictions(f));
  if (o.checkpoints?.length) {
    if (!o.modelName) throw new ConfigError('dcd failures: --checkpoint needs --model (the registry name of the checkpoints)');
    const spec = getModelSpec(o.modelName);
    for (const ck of o.checkpoints) {
      const model = await modelFromCheckpoint(o.modelName, ck);
      try {
        pm.push(await evaluate(model, fromManifest(mf.rows, { transform: spec.preprocess }), { batchSize: o.batchSize, label: `MFreq ${path.basename(ck)}` }));
        pc.push(await evaluate(model, fromManifest(co.rows, { transform: spec.preprocess }), { batchSize: o.batchSize, label: `Compl ${path.basename(ck)}` }));
      } finally {
        model.dispose();
      }
    }
  }
  if (pm.length === 0) throw new ConfigError('dcd failures: give --pred-mfreq/--pred-complement files or --checkpoint files');
  const f = failureSets({
    mfreq: mf.rows,
    complement: co.rows,
    predsMfreq: pm,
    predsComplement: pc,
    ...(o.classes ? { classes: readClassSubset(o.classes) } : {}),
    ...(o.discover !== undefined ? { discoverThreshold: o.discover } : {}),
  });
  await writeFailureSets(o.out, f, { 'dcd.mfreq': path.resolve(o.mfreq), 'dcd.complement': path.resolve(o.complement) });
  if (f.missing.length) log.warn(`${f.missing.length} image(s) had no prediction from some model and were not counted`);
  return f;
}
