/**
 * Report stage: the result table.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { atomicWriteFile } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import type { StageResult, StageSpec } from '../runner.js';
import { COLUMNS, writeTables, type RowMetrics, type RowResult } from '../table.js';
import type { RetentionSection, RetrievalExamples } from '../../eval/report.js';
import { selectionQualityMarkdown, type SelectionQuality } from '../../eval/selection-quality.js';
import { drawsPerSeed } from './common.js';

/** One row of the result table: a method's evaluation for one seed. */
export interface RowRef {
  /** Row name: original, complete, random, dcd-<backbone label>. */
  method: string;
  seed: number;
  /** Sweep variant name (empty for a plain run). */
  variant: string;
  evaluate: StageSpec;
}

/** The result table: rows × the paper's columns, mean ± std over seeds; plus the retention table when there is one. */
export function reportStage(cfg: Config, rows: readonly RowRef[], opts: { label?: string; retention?: StageSpec; gallery?: StageSpec; pretraining?: StageSpec[] } = {}): StageSpec {
  const deps: Record<string, StageSpec> = {};
  rows.forEach((r, i) => (deps[`row${i}`] = r.evaluate));
  (opts.pretraining ?? []).forEach((p, i) => (deps[`pretrain${i}`] = p));
  if (opts.retention) deps.retention = opts.retention;
  if (opts.gallery) deps.gallery = opts.gallery;
  return {
    stage: 'report',
    label: opts.label ?? cfg.experiment.name,
    version: 7,
    config: { formats: cfg.report.formats, title: cfg.report.title ?? null, world_seed: cfg.world_seed ?? null, rows: rows.map((r) => ({ method: r.method, seed: r.seed, variant: r.variant })) },
    deps,
    async run(ctx) {
      const results = rows.map((r, i) => ({
        method: r.method,
        seed: r.seed,
        variant: r.variant,
        metrics: ctx.inputs[`row${i}`]!.manifest.extra.metrics as RowMetrics,
        perClass: ctx.inputs[`row${i}`]!.manifest.extra.perClass as RowResult['perClass'],
      }));
      let retrieval: RetrievalExamples | undefined;
      const g = ctx.inputs.gallery;
      if (g) {
        const j = JSON.parse(readFileSync(g.file('gallery'), 'utf8')) as RetrievalExamples;
        const abs = <T extends { path: string }>(x: T): T => ({ ...x, path: path.isAbsolute(x.path) ? x.path : path.join(g.dir, x.path) });
        retrieval = {
          seeds: j.seeds.map((s) => ({ image: abs(s.image), neighbours: Object.fromEntries(Object.entries(s.neighbours).map(([k, v]) => [k, v.map(abs)])) })),
          ...(j.wrong ? { wrong: j.wrong.map((w) => ({ ...w, images: w.images.map(abs) })) } : {}),
        };
      }
      const ret = ctx.inputs.retention;
      const md = ret ? String(ret.manifest.extra.markdown ?? '') : '';
      const set = String(ret?.manifest.extra.set ?? cfg.report.retention.set);
      // the HTML report shows the same retention table and plot
      const rj = ret && md ? (JSON.parse(readFileSync(ret.file('json'), 'utf8')) as Pick<RetentionSection, 'rule' | 'rows'>) : undefined;
      const retention: RetentionSection | undefined = rj && { set, rule: rj.rule, rows: rj.rows, plot: ret!.file('png') };
      const seedNote = worldNote(cfg);
      const files = await writeTables(ctx.dir, results, { title: cfg.report.title ?? `dcd: ${cfg.experiment.name}`, formats: cfg.report.formats, ...(seedNote ? { seedNote } : {}), ...(retrieval ? { retrieval } : {}), ...(retention ? { retention } : {}) });
      const quality = g ? (JSON.parse(readFileSync(g.file('gallery'), 'utf8')) as { quality?: SelectionQuality[] }).quality : undefined;
      if (quality && existsSync(path.join(ctx.dir, 'report.md')))
        await atomicWriteFile(
          path.join(ctx.dir, 'report.md'),
          `${readFileSync(path.join(ctx.dir, 'report.md'), 'utf8').trimEnd()}\n\n### Selections: noise rate and context of the debug-train picks (${cfg.world_seed !== undefined ? `world seed ${cfg.world_seed}` : `seed ${rows[0]?.seed ?? 0}`}; from the pool's true_label and context)\n\n${selectionQualityMarkdown(quality)}\n`,
        );
      if (ret && md) {
        const table = readFileSync(path.join(ctx.dir, 'report.md'), 'utf8');
        // report.md is copied to the run folder (two levels up): paths relative to it
        const rel = path.relative(path.dirname(path.dirname(ctx.dir)), ret.file('png'));
        await atomicWriteFile(
          path.join(ctx.dir, 'report.md'),
          `${table.trimEnd()}\n\n### Backbones: class and context retention of k nearest neighbours (${set} set, paper Fig. 7)\n\n${md}\nPlot: \`${rel}\` (in the run folder).\n`,
        );
        files.retention = path.relative(ctx.dir, ret.file('png'));
      }
      await appendPretraining(ctx.dir, (opts.pretraining ?? []).map((_, i) => ctx.inputs[`pretrain${i}`]!));
      return { files, counts: { rows: results.length, columns: COLUMNS.length } };
    },
  };
}

/**
 * The caption's sentence on what the seeds vary under `world_seed`. None without it (each seed
 * redraws everything), and none where it changes nothing (data no seed draws, a given original).
 */
export function worldNote(cfg: Config): string | undefined {
  const w = cfg.world_seed;
  if (w === undefined) return undefined;
  const vary = "the seeds vary only the Random draw and the methods' training.";
  if (drawsPerSeed(cfg))
    return `One world for every seed (world_seed ${w}): the data draw, the original model, the failure sets, the backbones and the selections are seed ${w}'s; ${vary}`;
  if (cfg.original.checkpoint) return undefined;
  return `One original model for every seed (world_seed ${w}): the original model is trained once with seed ${w}, and its failure sets and the selections are shared; ${vary}`;
}

/** Appends the ssl backbones' pretraining table (one row per run) and their loss-curve paths to report.md. */
async function appendPretraining(dir: string, pre: StageResult[]): Promise<void> {
  if (!pre.length) return;
  const lines = pre.map((p) => String(p.manifest.extra.markdown ?? '').trimEnd().split('\n'));
  const table = [...lines[0]!.slice(0, 2), ...lines.flatMap((l) => l.slice(2))].join('\n');
  // report.md is copied to the run folder (two levels up): paths relative to it
  const plots = pre.map((p) => `\`${path.relative(path.dirname(path.dirname(dir)), p.file('loss_png'))}\``).join(', ');
  const md = readFileSync(path.join(dir, 'report.md'), 'utf8');
  await atomicWriteFile(
    path.join(dir, 'report.md'),
    `${md.trimEnd()}\n\n### Self-supervised pretraining of the ssl backbones (loss per step: loss.jsonl beside each plot)\n\n${table}\n\nLoss curves: ${plots} (in the run folder).\n`,
  );
}
