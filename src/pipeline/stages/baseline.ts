/**
 * Baseline stages: DCD-Random and DCD-Complete.
 */
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { completeBaseline, labelCounts, randomBaseline } from '../../retrieval/baselines.js';
import type { StageSpec } from '../runner.js';
import { subsetImageSet, writeImageSet, type ImageSet } from '../imagesets.js';
import { readSet } from './common.js';

/** DCD-Random: |D_y| images per class drawn uniformly from W'_y. */
export function randomStage(cfg: Config, seed: number, data: StageSpec, filter: StageSpec, select: StageSpec): StageSpec {
  return {
    stage: 'baseline',
    label: `random-s${seed}`,
    version: 1,
    config: { method: 'random', seed },
    deps: { filter, select },
    async run(ctx) {
      const filtered = await readSet(ctx.inputs.filter!, 'pool_filtered');
      const chosen = await readSet(ctx.inputs.select!, 'debug_train');
      const counts = labelCounts(Int32Array.from(chosen.rows, (r) => r.label));
      const weak = Int32Array.from(filtered.rows, (r) => r.weak_label ?? -1);
      const { indices } = randomBaseline(weak, counts, seed);
      const set = subsetImageSet(filtered, Array.from(indices), 'random');
      set.rows = set.rows.map((r) => ({ ...r, label: r.weak_label ?? -1 }));
      const files = await writeImageSet(ctx.dir, set);
      return { files: { ...files, added: files.random! }, counts: { added: set.rows.length } };
    },
  };
}

/** DCD-Complete: all of W' with class re-weighting n_y / (n_y + m_y) (train images of those classes too). */
export function completeStage(cfg: Config, data: StageSpec, filter: StageSpec, suffix = ''): StageSpec {
  return {
    stage: 'baseline',
    label: 'complete' + suffix,
    version: 1,
    config: { method: 'complete' },
    deps: { data, filter },
    async run(ctx) {
      const filtered = await readSet(ctx.inputs.filter!, 'pool_filtered');
      const train = await readSet(ctx.inputs.data!, 'train');
      const trainCounts = labelCounts(Int32Array.from(train.rows, (r) => r.label));
      const weak = Int32Array.from(filtered.rows, (r) => r.weak_label ?? -1);
      const { weights, summary } = completeBaseline(weak, trainCounts, ctx.inputs.data!.file('train'));
      const set: ImageSet = { ...filtered, name: 'complete', rows: filtered.rows.map((r) => ({ ...r, label: r.weak_label ?? -1 })) };
      const files = await writeImageSet(ctx.dir, set);
      const classWeight: Record<number, number> = {};
      for (const s of summary) classWeight[s.label] = s.requested / (s.requested + s.candidates);
      await atomicWriteJson(path.join(ctx.dir, 'weights.json'), { added: Array.from(weights), train_class_weight: classWeight });
      return { files: { ...files, added: files.complete!, weights: 'weights.json' }, counts: { added: set.rows.length } };
    },
  };
}
