/**
 * Report stage: the run's results, their selection quality, retention and pretraining as data, into one report (src/eval/report.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../core/config.js';
import type { StageSpec } from '../runner.js';
import { COLUMNS, type RowMetrics, type RowResult } from '../../eval/table.js';
import { writeReport, type PretrainingRow, type RetentionSection, type RetrievalExamples } from '../../eval/report.js';
import type { SelectionQuality } from '../../eval/selection-quality.js';
import { drawsPerSeed } from './common.js';
import { int32Column, readArrowFile, stringColumn } from '../../core/arrow.js';
import { sliceAccuracy } from '../../analysis/slices.js';
import { sliceTable } from '../../eval/table.js';
import type { MapData } from '../../analysis/projection.js';
import type { SlicesState } from './slices.js';
import { readPicks } from '../../eval/gallery.js';
import type { StageContext } from '../runner.js';
import type { ReportInput } from '../../eval/report.js';

/** What the report's slices section reads: the slices and map stages, the world's select stages, the seeds of that world. */
export interface ReportSlices {
  stage: StageSpec;
  map: StageSpec;
  /** The select stage of each dcd row of the world (`dcd-<label>`): debug-train picks per slice. */
  selects: { method: string; stage: StageSpec }[];
  seeds: readonly number[];
  scope: string;
}

/**
 * Heldout accuracy per slice of every row whose world the slices are of (`seeds`), each
 * backbone's debug-train picks per slice, the gallery and the map: the report's slices section.
 */
async function sliceSection(ctx: StageContext, rows: readonly RowRef[], o: ReportSlices): Promise<NonNullable<ReportInput['slices']>> {
  const st = ctx.inputs.slices!;
  const state = JSON.parse(readFileSync(st.file('state'), 'utf8')) as SlicesState;
  const k = state.slices.length;
  const heldSlice = Int32Array.from(state.heldoutSlice);
  const results: RowResult[] = [];
  for (const [i, r] of rows.entries()) {
    if (!o.seeds.includes(r.seed)) continue;
    const file = ctx.inputs[`row${i}`]!.file('predictions');
    const t = await readArrowFile(file);
    const ids = stringColumn(t, 'id', file);
    const sets = stringColumn(t, 'set', file);
    const label = int32Column(t, 'label', file);
    const pred = int32Column(t, 'pred', file);
    const at = new Map<string, number>();
    ids.forEach((id, j) => sets[j] === 'heldout' && at.set(id, j));
    const correct = Int8Array.from(state.heldoutIds, (id) => {
      const j = at.get(id);
      return j === undefined ? -1 : pred[j] === label[j] ? 1 : 0;
    });
    const acc = sliceAccuracy(heldSlice, correct, k);
    results.push({ method: r.method, seed: r.seed, variant: r.variant, metrics: Object.fromEntries(acc.map((a) => [`slice_${a.slice + 1}`, a.accuracy === null ? null : 100 * a.accuracy])) });
  }
  const counts = new Array<number>(k).fill(0);
  for (const c of heldSlice) counts[c]! += 1;
  const table = sliceTable(results, counts, o.scope);
  // picks per slice: a pick belongs to its seed image's slice
  const sliceOf = new Map<string, number>();
  state.slices.forEach((x, c) => x.members.forEach((i) => sliceOf.set(state.seedIds[i]!, c)));
  table.picks = await Promise.all(
    o.selects.map(async (s, i) => {
      const picks = await readPicks(ctx.inputs[`select${i}`]!.file('debug_train_picks'));
      const n = new Array<number>(k).fill(0);
      for (const id of picks.seeds) n[sliceOf.get(id)!]! += 1;
      return { name: s.method, counts: n };
    }),
  );
  const images = Object.fromEntries(Object.entries(state.images).map(([i, p]) => [i, path.isAbsolute(p) ? p : path.join(st.dir, p)]));
  // the gallery's accuracy: the first seed's rows (one number per method and slice)
  const first = results.filter((r) => r.seed === results[0]?.seed);
  return {
    table,
    gallery: {
      slices: { slices: state.slices, criterion: state.criterion, normalize: state.normalize, seed: state.seed, assign: new Int32Array(0), distance: new Float64Array(0), centroids: new Float32Array(0), dim: 0 },
      seedIds: state.seedIds,
      seedLabels: state.seedLabels,
      classNames: state.classNames,
      heldoutCounts: counts,
      accuracy: first.map((r) => ({ method: r.method, rows: counts.map((n, s) => { const v = r.metrics[`slice_${s + 1}`]; return { slice: s, n, correct: v == null ? 0 : Math.round((v / 100) * n), accuracy: v == null ? null : v / 100 }; }) })),
      images,
    },
    map: JSON.parse(readFileSync(ctx.inputs.map!.file('map'), 'utf8')) as MapData,
    mapTitle: `backbone ${state.backbone}: PCA of debug-seed, debug-heldout, its picks and a pool sample`,
  };
}

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
export function reportStage(cfg: Config, rows: readonly RowRef[], opts: { label?: string; retention?: StageSpec; gallery?: StageSpec; pretraining?: StageSpec[]; slices?: ReportSlices } = {}): StageSpec {
  const deps: Record<string, StageSpec> = {};
  rows.forEach((r, i) => (deps[`row${i}`] = r.evaluate));
  (opts.pretraining ?? []).forEach((p, i) => (deps[`pretrain${i}`] = p));
  if (opts.retention) deps.retention = opts.retention;
  if (opts.gallery) deps.gallery = opts.gallery;
  if (opts.slices) {
    deps.slices = opts.slices.stage;
    deps.map = opts.slices.map;
    opts.slices.selects.forEach((s, i) => (deps[`select${i}`] = s.stage));
  }
  return {
    stage: 'report',
    label: opts.label ?? cfg.experiment.name,
    version: 8, // 8: one report.md (no html/report.md), written once
    config: { ...(opts.slices ? { slices: { seeds: opts.slices.seeds, scope: opts.slices.scope } } : {}), formats: cfg.report.formats, title: cfg.report.title ?? null, world_seed: cfg.world_seed ?? null, rows: rows.map((r) => ({ method: r.method, seed: r.seed, variant: r.variant })) },
    deps,
    async run(ctx) {
      const results: RowResult[] = rows.map((r, i) => ({
        method: r.method,
        seed: r.seed,
        variant: r.variant,
        metrics: ctx.inputs[`row${i}`]!.manifest.extra.metrics as RowMetrics,
        perClass: ctx.inputs[`row${i}`]!.manifest.extra.perClass as RowResult['perClass'],
      }));
      // report.md names files relative to the run folder (two levels up), where `dcd run` links it
      const runRel = (f: string) => path.relative(path.dirname(path.dirname(ctx.dir)), f);
      const g = ctx.inputs.gallery;
      const gallery = g ? (JSON.parse(readFileSync(g.file('gallery'), 'utf8')) as RetrievalExamples & { quality?: SelectionQuality[] }) : undefined;
      let retrieval: RetrievalExamples | undefined;
      if (g && gallery) {
        const abs = <T extends { path: string }>(x: T): T => ({ ...x, path: path.isAbsolute(x.path) ? x.path : path.join(g.dir, x.path) });
        retrieval = {
          seeds: gallery.seeds.map((s) => ({ image: abs(s.image), neighbours: Object.fromEntries(Object.entries(s.neighbours).map(([k, v]) => [k, v.map(abs)])) })),
          ...(gallery.wrong ? { wrong: gallery.wrong.map((w) => ({ ...w, images: w.images.map(abs) })) } : {}),
        };
      }
      const ret = ctx.inputs.retention;
      // a retention stage that found no context column wrote only why ({skipped}): no section
      const rj = ret ? (JSON.parse(readFileSync(ret.file('json'), 'utf8')) as Partial<Pick<RetentionSection, 'rule' | 'rows'>>) : undefined;
      const retention: RetentionSection | undefined =
        ret && rj?.rows ? { set: String(ret.manifest.extra.set ?? cfg.report.retention.set), ...(rj.rule ? { rule: rj.rule } : {}), rows: rj.rows, plot: ret.file('png'), plotRef: runRel(ret.file('png')) } : undefined;
      const pre = (opts.pretraining ?? []).map((_, i) => ctx.inputs[`pretrain${i}`]!);
      const seedNote = worldNote(cfg);
      const slices = opts.slices ? await sliceSection(ctx, rows, opts.slices) : undefined;
      const files = await writeReport(
        {
          title: cfg.report.title ?? `dcd: ${cfg.experiment.name}`,
          results,
          ...(seedNote ? { seedNote } : {}),
          ...(retrieval ? { retrieval } : {}),
          ...(retention ? { retention } : {}),
          ...(gallery?.quality ? { quality: { scope: cfg.world_seed !== undefined ? `world seed ${cfg.world_seed}` : `seed ${rows[0]?.seed ?? 0}`, rows: gallery.quality } } : {}),
          ...(slices ? { slices } : {}),
          ...(pre.length ? { pretraining: { rows: pre.map((p) => p.manifest.extra.pretraining as PretrainingRow), plots: pre.map((p) => runRel(p.file('loss_png'))) } } : {}),
        },
        ctx.dir,
        { formats: cfg.report.formats, htmlDir: path.join(ctx.dir, 'html') },
      );
      const out: Record<string, string> = { markdown: files.markdown, ...(files.csv ? { csv: files.csv } : {}), json: files.json, ...(files.html ? { html: files.html } : {}) };
      if (retention) out.retention = path.relative(ctx.dir, ret!.file('png'));
      return { files: out, counts: { rows: results.length, columns: COLUMNS.length } };
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
