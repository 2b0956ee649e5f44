/**
 * Failures stage: the debug-seed and heldout sets (images every model gets wrong).
 */
import path from 'node:path';
import { DataError } from '../../core/errors.js';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { readClassSubset } from '../../data/adapters.js';
import type { StageResult, StageSpec } from '../runner.js';
import { subsetImageSet, writeImageSet, type ImageSet } from '../imagesets.js';
import { classesOf, modelNameOf, predictSet, readSet, weightsOf } from './common.js';
import { folderSubset } from './folders.js';
import { argmaxPredictions, type Predictions } from '../../eval/evaluate.js';
import { failureSets } from '../../eval/failures.js';

/** Y_sub of the config. */
function subsetClasses(cfg: Config, data: StageResult, pool: ImageSet): number[] | 'discover' {
  const sub = cfg.failures.subset;
  if (Array.isArray(sub)) return sub;
  if (sub === 'discover') return 'discover';
  if (sub === 'pool') {
    const fromData = classesOf(data).subset;
    if (fromData) return fromData;
    return [...new Set(pool.rows.map((r) => r.weak_label ?? -1).filter((y) => y >= 0))].sort((a, b) => a - b);
  }
  if (cfg.data.kind === 'folders') return folderSubset(cfg, classesOf(data).names, pool.rows)!;
  return readClassSubset(sub);
}

/** Debug-seed S (wrong on MFreq) and heldout H (wrong on Complement), classes of Y_sub. */
export function failuresStage(cfg: Config, data: StageSpec, original: StageSpec, suffix = ''): StageSpec {
  return {
    stage: 'failures',
    label: cfg.failures.mode + suffix,
    version: 1,
    config: { mode: cfg.failures.mode, models: cfg.failures.mode === 'multi' ? cfg.failures.models : [], subset: cfg.failures.subset, min_failures: cfg.failures.min_failures },
    deps: { data, original },
    externals: cfg.failures.mode === 'multi' ? cfg.failures.models.map((m) => String(m.checkpoint)).filter((c) => c.includes('/')) : [],
    async run(ctx) {
      const d = ctx.inputs.data!;
      const K = cfg.data.classes ?? classesOf(d).names.length;
      const [mfreq, compl, pool] = await Promise.all([readSet(d, 'mfreq'), readSet(d, 'complement'), readSet(d, 'pool')]);
      const models =
        cfg.failures.mode === 'multi'
          ? cfg.failures.models.map((m) => ({ name: m.name, weights: m.checkpoint })) // checkpoint files (src/pipeline/config-check.ts)
          : [{ name: modelNameOf(ctx.inputs.original!, cfg.train.model), weights: weightsOf(ctx.inputs.original!) }];
      const predict = async (set: ImageSet) => {
        const out: Predictions[] = [];
        for (const m of models) out.push(argmaxPredictions(set.rows, await predictSet(m.name, m.weights, K, set, cfg.eval.batch_size, ctx)));
        return out;
      };
      const predsMfreq = await predict(mfreq);
      const predsComplement = await predict(compl);
      const classes = subsetClasses(cfg, d, pool);
      const f = failureSets({
        mfreq: mfreq.rows,
        complement: compl.rows,
        predsMfreq,
        predsComplement,
        ...(classes === 'discover' ? { discoverThreshold: cfg.failures.min_failures } : { classes }),
      });
      const subset = f.classes;
      if (classes === 'discover') ctx.log(`discovered ${subset.length} classes with ≥ ${cfg.failures.min_failures} failures`);
      const seedSet = subsetImageSet(mfreq, f.seedIndex, 'seed');
      const heldout = subsetImageSet(compl, f.heldoutIndex, 'heldout');
      if (seedSet.rows.length === 0) throw new DataError(`failures: the original model gets every MFreq image of the subset classes right; there is nothing to debug (check failures.subset)`);
      const files = { ...(await writeImageSet(ctx.dir, seedSet)), ...(await writeImageSet(ctx.dir, heldout)) };
      await atomicWriteJson(path.join(ctx.dir, 'subset.json'), subset);
      ctx.log(`seed ${seedSet.rows.length}, heldout ${heldout.rows.length} images over ${subset.length} classes`);
      return { files: { ...files, subset: 'subset.json' }, counts: { seed: seedSet.rows.length, heldout: heldout.rows.length, classes: subset.length } };
    },
  };
}
