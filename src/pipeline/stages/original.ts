/**
 * Original-model stages: trained by the run, or given as a checkpoint.
 */
import path from 'node:path';
import { atomicWriteJson, sha256File } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { createModel } from '../../models/registry.js';
import { loadAnyCheckpoint } from '../../models/load.js';
import type { StageSpec } from '../runner.js';
import { classesOf, readSet } from './common.js';
import { runTraining, trainSettings } from './common-training.js';

/** The original model trained by the run on Train. */
export function trainOriginal(cfg: Config, data: StageSpec, seed: number): StageSpec {
  const settings = { ...trainSettings(cfg, 'scratch', { epochs: cfg.original.epochs, max_steps: cfg.original.max_steps, lr: cfg.original.lr }), model: cfg.original.model ?? cfg.train.model };
  return {
    stage: 'original',
    label: `train-s${seed}`,
    version: 1,
    config: { train: settings, seed },
    deps: { data },
    async run(ctx) {
      const d = ctx.inputs.data!;
      const train = await readSet(d, 'train');
      const r = await runTraining(ctx, settings, seed, cfg.data.classes ?? classesOf(d).names.length, [{ set: train, prefix: '' }], undefined, cfg.train.checkpoint_every_steps);
      return { files: { weights: r.weights }, counts: { steps: r.steps, train: train.rows.length }, extra: { model: settings.model } };
    },
  };
}

/** The original model given as a checkpoint: checked to load, and recorded. */
export function originalCheckpoint(cfg: Config): StageSpec {
  const file = cfg.original.checkpoint!;
  const model = cfg.original.model ?? cfg.train.model;
  return {
    stage: 'original',
    label: 'checkpoint',
    version: 1,
    config: { checkpoint: file, model },
    deps: {},
    externals: [file],
    async run(ctx) {
      const m = createModel(model, { numClasses: cfg.data.classes ?? 1000, seed: 0 });
      try {
        await loadAnyCheckpoint(m, file);
      } finally {
        m.dispose();
      }
      await atomicWriteJson(path.join(ctx.dir, 'original.json'), { checkpoint: file, model, sha256: await sha256File(file) });
      return { files: { record: 'original.json' }, extra: { weights: file, model } };
    },
  };
}
