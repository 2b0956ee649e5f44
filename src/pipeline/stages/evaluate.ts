/**
 * Evaluate stage: accuracy of one model on every evaluation set.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import { buildTable, writeArrowFile } from '../../core/arrow.js';
import type { Config } from '../../core/config.js';
import { accuracy, argmaxPredictions, percent, type Predictions } from '../../eval/evaluate.js';
import type { StageSpec } from '../runner.js';
import { readImageSet } from '../imagesets.js';
import { type RowMetrics } from '../../eval/table.js';
import { classesOf, modelNameOf, predictSet, readSet, weightsOf } from './common.js';

/** Accuracy of one model on every evaluation set: Seed, Heldout, then MFreq/Compl./INet on Y_sub and on all classes. */
export function evaluateStage(cfg: Config, method: string, model: StageSpec, data: StageSpec, failures: StageSpec, added?: StageSpec): StageSpec {
  return {
    stage: 'evaluate',
    label: model.stage === 'original' ? `original-${model.label}` : model.label,
    version: 2,
    config: { sets: cfg.eval.sets },
    deps: { model, data, failures, ...(added ? { added } : {}) },
    async run(ctx) {
      const d = ctx.inputs.data!;
      const f = ctx.inputs.failures!;
      const K = cfg.data.classes ?? classesOf(d).names.length;
      const subset = new Set(JSON.parse(readFileSync(f.file('subset'), 'utf8')) as number[]);
      const name = modelNameOf(ctx.inputs.model!, cfg.original.model ?? cfg.train.model);
      const weights = weightsOf(ctx.inputs.model!);
      const metrics: RowMetrics = {};
      const ids: string[] = [];
      const sets: string[] = [];
      const labels: number[] = [];
      const preds: number[] = [];
      let heldoutPred: Predictions | undefined;
      for (const s of cfg.eval.sets) {
        if (s === 'deval') continue;
        const set = s === 'seed' || s === 'heldout' ? await readSet(f, s) : await readSet(d, s);
        const pred = await predictSet(name, weights, K, set, cfg.eval.batch_size, ctx);
        set.rows.forEach((r, i) => (ids.push(r.id), sets.push(s), labels.push(r.label), preds.push(pred[i]!)));
        const p = argmaxPredictions(set.rows, pred);
        if (s === 'heldout') heldoutPred = p;
        if (s === 'seed' || s === 'heldout') metrics[s] = percent(accuracy(p));
        else {
          const col = s === 'complement' ? 'compl' : s;
          metrics[`${col}_sub`] = percent(accuracy(p, subset));
          metrics[`${col}_all`] = percent(accuracy(p));
        }
      }
      await writeArrowFile(
        path.join(ctx.dir, 'predictions.arrow'),
        buildTable({ id: { kind: 'utf8', values: ids }, set: { kind: 'utf8', values: sets }, label: { kind: 'int32', values: labels }, pred: { kind: 'int32', values: preds } }),
      );
      await atomicWriteJson(path.join(ctx.dir, 'metrics.json'), metrics);
      // Figure 10: per subset class, heldout accuracy and the number of images the method added to it
      const selected = new Map<number, number>();
      if (ctx.inputs.added) for (const r of (await readImageSet(ctx.inputs.added.file('added'))).rows) selected.set(r.label, (selected.get(r.label) ?? 0) + 1);
      const names = classesOf(d).names;
      const heldoutPerClass = heldoutPred ? accuracy(heldoutPred, subset).perClass : new Map<number, { acc: number }>();
      const perClass = [...subset].sort((a, b) => a - b).flatMap((label) => {
        const a = heldoutPerClass.get(label);
        return a ? [{ label, name: names[label] ?? String(label), acc: a.acc, selected: selected.get(label) ?? 0 }] : [];
      });
      return { files: { predictions: 'predictions.arrow', metrics: 'metrics.json' }, counts: { images: ids.length }, extra: { metrics, perClass } };
    },
  };
}
