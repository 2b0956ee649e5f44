/**
 * An experiment config turned into the stage graph of DESIGN.md:
 *
 *     data → original → failures → embed (per backbone, per set) → filter → select
 *          → random / complete baselines → train (per method × seed) → evaluate → report
 *
 * Each stage's config slice holds exactly what changes its output, so equal stages of
 * different seeds or sweep variants have equal keys and run once. With `world_seed` set, every
 * seed shares that seed's world (data draw, original, failures, backbones, filter, selections)
 * and the seeds vary only the Random draw and the methods' training.
 */
import { isDemoBackbone, isSslBackbone, type BackboneConfig, type Config, type Method } from '../core/config.js';
import type { StageSpec } from './runner.js';
import * as S from './stages/index.js';
import { drawsPerSeed, IMAGE_SETS } from './stages/common.js';
import type { ReportSlices, RowRef } from './stages/report.js';
import { folderDemoBackbone } from './stages/folders.js';

/** The graph of one config. */
export interface ExperimentGraph {
  rows: RowRef[];
  report: StageSpec;
  /** Every stage the report needs (the report's dependencies, transitively). */
  roots: StageSpec[];
}

/** Row label of a backbone. */
export function backboneLabel(b: BackboneConfig): string {
  return b.label ?? b.name;
}

/** Seed-dependence of each random part. */
function dataSeed(cfg: Config, seed: number): number | undefined {
  return drawsPerSeed(cfg) ? seed : undefined;
}

/** Builds the stage graph of `cfg`; `variant` tags the rows (sweeps). */
export function buildGraph(cfg: Config, variant = ''): ExperimentGraph {
  const rows: RowRef[] = [];
  // Labels carry the seed where the stage depends on it (a seeded data draw, or an original trained per seed).
  const dataTag = (seed: number) => (dataSeed(cfg, seed) !== undefined ? `-s${seed}` : '');
  const tag = (seed: number) => (dataSeed(cfg, seed) !== undefined || !cfg.original.checkpoint ? `-s${seed}` : '');
  const world = (seed: number) => cfg.world_seed ?? seed;
  const original = (seed: number) => (cfg.original.checkpoint ? S.originalCheckpoint(cfg) : S.trainOriginal(cfg, data(seed), seed));
  const memo = new Map<string, StageSpec>();
  const once = (k: string, f: () => StageSpec) => memo.get(k) ?? (memo.set(k, f()), memo.get(k)!);
  const data = (seed: number) => once(`data:${dataSeed(cfg, seed)}`, () => S.dataStage(cfg, dataSeed(cfg, seed)));
  const backboneStage = (b: BackboneConfig, seed: number) =>
    isDemoBackbone(b)
      ? once(`bb:${b.name}:${seed}`, () => (cfg.data.kind === 'folders' ? folderDemoBackbone(cfg, b, data(seed)) : S.demoBackbone(cfg, b, data(seed))))
      : isSslBackbone(b)
        ? once(`bb:${b.name}:${seed}`, () => S.sslBackboneStage(cfg, b, cfg.backbones.indexOf(b), data(seed)))
        : undefined;
  const isSelf = (b: BackboneConfig) => isDemoBackbone(b) && b.pretrain?.kind === 'self';
  const embed = (b: BackboneConfig, set: string, seed: number) =>
    once(`embed:${b.name}:${String(b.weights)}:${set}:${isSelf(b) ? `self${seed}` : dataSeed(cfg, seed)}`, () =>
      S.embedStage(cfg, b, set, data(seed), isSelf(b) ? undefined : backboneStage(b, seed), isSelf(b) ? once(`orig:${seed}`, () => original(seed)) : undefined, isSelf(b) ? `-s${seed}` : dataTag(seed)),
    );

  let gallery: StageSpec | undefined;
  // the first seed's world: what the report's slices section reads
  let first: { slices?: StageSpec; selects: StageSpec[] } | undefined;
  // Failure slices of a world, in one backbone's space (slices.enabled): the first world's for the
  // report; under select.per_slice every world's, which its select stages read for their budget.
  // The heldout images come from the complement set, embedded only for this.
  const slicesOf = (w: number, failures: StageSpec) => {
    const b = S.slicesBackbone(cfg);
    return once(`slices:${w}`, () => S.slicesStage(cfg, b, data(w), failures, embed(b, 'mfreq', w), embed(b, 'complement', w), tag(w)));
  };
  for (const seed of cfg.seeds) {
    // `w` draws the world (data, original model, failure sets, backbones, filter, selections); `seed`
    // only what each method draws and trains (the Random draw, the fine-tunes). They differ under world_seed.
    const w = world(seed);
    const orig = once(`orig:${w}`, () => original(w));
    const failures = once(`fail:${w}`, () => S.failuresStage(cfg, data(w), orig, tag(w)));
    const filterEmbeds = cfg.filter.enabled ? Object.fromEntries(IMAGE_SETS.map((s) => [s, embed(cfg.filter.backbone, s, w)])) : {};
    const filter = once(`filter:${w}`, () => S.filterStage(cfg, data(w), filterEmbeds, dataTag(w)));
    const budget = cfg.slices.enabled && cfg.select.per_slice !== undefined ? slicesOf(w, failures) : undefined;
    const selects = cfg.backbones.map((b) =>
      once(`select:${backboneLabel(b)}:${w}`, () => S.selectStage(cfg, b, failures, embed(b, 'mfreq', w), embed(b, 'pool', w), filter, tag(w), budget)),
    );
    const addRow = (method: string, model: StageSpec, added?: StageSpec) =>
      rows.push({ method, seed, variant, evaluate: S.evaluateStage(cfg, method, model, data(w), failures, added) });
    for (const m of cfg.methods as Method[]) {
      if (m === 'original') addRow('original', orig);
      else if (m === 'complete') {
        const added = once(`complete:${w}`, () => S.completeStage(cfg, data(w), filter, dataTag(w)));
        addRow('complete', S.trainStage(cfg, 'complete', seed, data(w), added, orig), added);
      } else if (m === 'random') {
        const added = S.randomStage(cfg, seed, data(w), filter, selects[0]!);
        addRow('random', S.trainStage(cfg, 'random', seed, data(w), added, orig), added);
      } else
        cfg.backbones.forEach((b, i) => {
          const name = `dcd-${backboneLabel(b)}`;
          addRow(name, S.trainStage(cfg, name, seed, data(w), selects[i]!, orig), selects[i]!);
        });
    }
    first ??= { selects, ...(cfg.slices.enabled ? { slices: slicesOf(w, failures) } : {}) };
    if (seed === cfg.seeds[0] && cfg.methods.includes('dcd') && cfg.backbones.length)
      gallery = S.galleryStage(cfg, data(w), failures, filter, cfg.backbones.map((b, i) => ({ label: backboneLabel(b), select: selects[i]! })), tag(w));
  }
  // Retention (paper Fig. 7) of the backbones on the first seed's draw, from the embeddings the run computes.
  const s0 = world(cfg.seeds[0]!);
  const retention =
    cfg.report.retention.enabled && cfg.backbones.length && cfg.data.kind !== 'imagenet' && cfg.methods.includes('dcd')
      ? S.retentionStage(cfg, data(s0), cfg.backbones.map((b) => ({ backbone: b, embed: embed(b, cfg.report.retention.set, s0) })), dataTag(s0))
      : undefined;
  // Pretraining runs of ssl backbones (one per seed where they read the seed's pool): loss table and curves in the report.
  const pretraining = cfg.methods.includes('dcd')
    ? cfg.backbones.flatMap((b, i) => (!isSslBackbone(b) ? [] : (S.sslPretrain(b, i).data === 'pool' ? [...new Set(cfg.seeds.map(world))] : [s0]).map((seed) => backboneStage(b, seed)!)))
    : [];
  // The report's slices section: the first world's slices, the map of the slices backbone's picks,
  // and every backbone's picks per slice
  let slices: ReportSlices | undefined;
  if (first?.slices) {
    const b = S.slicesBackbone(cfg);
    const select = first.selects[cfg.backbones.indexOf(b)]!;
    slices = {
      stage: first.slices,
      map: S.mapStage(cfg, b, first.slices, embed(b, 'pool', s0), select, tag(s0)),
      selects: cfg.methods.includes('dcd') ? cfg.backbones.map((x, i) => ({ method: `dcd-${backboneLabel(x)}`, stage: first!.selects[i]! })) : [],
      seeds: cfg.seeds.filter((x) => world(x) === s0),
      scope: cfg.world_seed !== undefined ? `world seed ${cfg.world_seed}, backbone ${backboneLabel(b)}` : `seed ${s0}'s world, backbone ${backboneLabel(b)}`,
    };
  }
  const report = S.reportStage(cfg, rows, { retention, gallery, pretraining, ...(slices ? { slices } : {}) });
  return { rows, report, roots: [report] };
}
