/**
 * Train stage: one method's model on Train ∪ added.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../../core/config.js';
import type { StageSpec } from '../runner.js';
import { readImageSet, type ImageSet } from '../imagesets.js';
import { classesOf, readSet, weightsOf } from './common.js';
import { runTraining, trainSettings } from './common-training.js';

/** Trains one method's model on Train ∪ added (from scratch, or fine-tuning the original). */
export function trainStage(cfg: Config, method: string, seed: number, data: StageSpec, added: StageSpec, original: StageSpec): StageSpec {
  const settings = trainSettings(cfg, cfg.train.init);
  const deps: Record<string, StageSpec> = { data, added };
  if (cfg.train.init === 'finetune') deps.original = original;
  return {
    stage: 'train',
    label: `${method}-s${seed}`,
    version: 1,
    config: { train: settings, seed, reweight: method === 'complete' },
    deps,
    async run(ctx) {
      const d = ctx.inputs.data!;
      const train = await readSet(d, 'train');
      const add = await readImageSet(ctx.inputs.added!.file('added'));
      const parts: { set: ImageSet; labels?: Int32Array; weights?: Float32Array; prefix: string }[] = [];
      if (method === 'complete') {
        const w = JSON.parse(readFileSync(ctx.inputs.added!.file('weights'), 'utf8')) as { added: number[]; train_class_weight: Record<string, number> };
        parts.push({ set: train, weights: Float32Array.from(train.rows, (r) => w.train_class_weight[r.label] ?? 1), prefix: 'train/' });
        parts.push({ set: add, weights: Float32Array.from(w.added), prefix: 'added/' });
      } else {
        parts.push({ set: train, prefix: 'train/' }, { set: add, prefix: 'added/' });
      }
      const init = cfg.train.init === 'finetune' ? weightsOf(ctx.inputs.original!) : undefined;
      const r = await runTraining(ctx, settings, seed, cfg.data.classes ?? classesOf(d).names.length, parts, init, cfg.train.checkpoint_every_steps);
      return { files: { weights: r.weights }, counts: { train: train.rows.length, added: add.rows.length, steps: r.steps }, extra: { model: settings.model } };
    },
  };
}
