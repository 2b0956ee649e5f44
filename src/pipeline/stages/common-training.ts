/**
 * The training settings of a stage and the call into the trainer (original and train stages).
 */
import path from 'node:path';
import type { Config } from '../../core/config.js';
import { createModel } from '../../models/registry.js';
import { loadAnyCheckpoint } from '../../models/load.js';
import { trainModel } from '../../train/trainer.js';
import { requirePrecision } from '../../backends/precision.js';
import { concatDatasets } from '../../train/dataset.js';
import type { Schedule } from '../../train/schedule.js';
import type { StageContext } from '../runner.js';
import { toDataset, type ImageSet } from '../imagesets.js';
import { preFor } from './common.js';

/** The training settings of `cfg` for training from scratch or fine-tuning (the stage's config slice). */
export function trainSettings(cfg: Config, init: 'scratch' | 'finetune', over: { epochs?: number; max_steps?: number; lr?: number } = {}) {
  const t = cfg.train;
  const ft = init === 'finetune' ? t.finetune : undefined;
  return {
    model: t.model,
    epochs: over.epochs ?? ft?.epochs ?? t.epochs,
    max_steps: over.max_steps ?? (ft ? ft.max_steps : t.max_steps) ?? null,
    batch_size: t.batch_size,
    grad_accum: t.grad_accum,
    lr: over.lr ?? ft?.lr ?? t.lr,
    schedule: ft?.schedule ?? t.schedule,
    step_epochs: t.step_epochs,
    gamma: t.gamma,
    warmup_epochs: ft?.warmup_epochs ?? t.warmup_epochs,
    momentum: t.momentum,
    nesterov: t.nesterov,
    weight_decay: t.weight_decay,
    decay_bn_bias: t.decay_bn_bias,
    label_smoothing: t.label_smoothing,
    augment: t.augment,
    init,
    // as it computes (src/pipeline/run.ts plannedConfig); only when bf16: fp32 stages keep their keys
    ...(t.precision === 'bf16' ? { precision: 'bf16' as const } : {}),
  };
}
export type TrainSettings = ReturnType<typeof trainSettings>;

/** Trains a model on the concatenated `parts` (optionally from `init` weights), resumably in the stage folder. */
export async function runTraining(
  ctx: StageContext,
  s: TrainSettings,
  seed: number,
  numClasses: number,
  parts: { set: ImageSet; labels?: Int32Array; weights?: Float32Array; prefix: string }[],
  init?: string,
  checkpointEvery = 0,
): Promise<{ weights: string; steps: number; resumedFrom: number }> {
  // a stage keyed bf16 never trains in fp32 (a Slurm job on a node without bf16 fails here)
  if ('precision' in s && s.precision) requirePrecision(s.precision, `${path.basename(path.dirname(ctx.dir))}/${path.basename(ctx.dir)} (train.precision)`);
  const model = createModel(s.model, { numClasses, seed });
  try {
    if (init) await loadAnyCheckpoint(model, init);
    const pre = preFor(s.model, parts[0]!.set);
    const ds = concatDatasets(
      parts.map((p) => ({ dataset: toDataset(p.set, pre, { ...(p.labels ? { labels: p.labels } : {}), ...(p.weights ? { weights: p.weights } : {}) }), idPrefix: p.prefix })),
    );
    const schedule: Schedule = s.schedule === 'step' ? { kind: 'step', milestones: s.step_epochs, gamma: s.gamma } : { kind: s.schedule };
    const r = await trainModel({
      model,
      train: ds,
      epochs: s.epochs,
      batchSize: s.batch_size,
      microBatch: s.batch_size / s.grad_accum,
      lr: s.lr,
      momentum: s.momentum,
      nesterov: s.nesterov,
      weightDecay: s.weight_decay,
      decayNormAndBias: s.decay_bn_bias,
      schedule,
      warmupEpochs: s.warmup_epochs,
      labelSmoothing: s.label_smoothing,
      seed,
      augment: s.augment !== 'none',
      precision: 'precision' in s ? s.precision : 'fp32',
      outDir: path.join(ctx.dir, 'train'),
      resume: true,
      ...(s.max_steps ? { maxSteps: s.max_steps } : {}),
      // How often to checkpoint does not change the result, so it is not in the stage's key.
      ...(checkpointEvery ? { checkpointEvery } : {}),
    });
    if (r.resumedFrom > 0) ctx.log(`resumed from step ${r.resumedFrom}`);
    return { weights: path.relative(ctx.dir, r.weightsFile), steps: r.steps, resumedFrom: r.resumedFrom };
  } finally {
    model.dispose();
  }
}
