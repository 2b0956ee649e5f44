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
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import type { BackboneConfig, Config, Method } from '../core/config.js';
import type { StageSpec } from './runner.js';
import { getModelSpec } from '../models/registry.js';
import { isDevkitPath } from '../data/devkit.js';
import * as S from './stages/index.js';
import { drawsPerSeed, IMAGE_SETS } from './stages/common.js';
import type { RowRef } from './stages/report.js';
import { checkFoldersConfig, folderDemoBackbone } from './stages/folders.js';
import { checkSlicesConfig, planFacts } from '../analysis/slices-config.js';

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

/** Checks that a model name is in the registry, with the config key in the error. */
function checkModelName(name: string, key: string): void {
  try {
    getModelSpec(name);
  } catch (e) {
    throw new ConfigError(`${key}: ${(e as Error).message}`);
  }
}

/** Checks what the graph needs before anything runs: files exist, names are valid. */
export function checkConfig(cfg: Config): void {
  const where = (k: string) => `config.${k}`;
  const requireFile = (p: string | undefined, key: string) => {
    if (p !== undefined && !existsSync(p))
      throw new ConfigError(`${where(key)}: ${p} does not exist; fix the path (relative paths are relative to the config file) or override it with --set ${key}=PATH (or --set vars.NAME=PATH for the \${NAME} it uses)`);
  };
  if (cfg.data.kind === 'imagenet') {
    const inet = cfg.data.imagenet;
    if (!inet) throw new ConfigError(`${where('data.imagenet')}: data.kind is imagenet but the imagenet section is missing; add data.imagenet with train, val, val_labels, v2_*, pool`);
    for (const k of ['train', 'val', 'val_labels', 'val_id_map', 'v2_matched_frequency', 'v2_threshold', 'v2_top_images', 'pool'] as const) requireFile(inet[k], `data.imagenet.${k}`);
    // Structure, cheaply (one directory listing each), so a dry run catches a wrong root.
    const entries = (p: string) => (statSync(p).isDirectory() ? readdirSync(p) : null);
    const train = entries(inet.train);
    if (!train || !train.some((e) => /^n\d{8}$/.test(e)))
      throw new ConfigError(`${where('data.imagenet.train')}: ${inet.train} has no wnid sub-folders (n01440764, ...); point it at ILSVRC2012's train folder`);
    if (!entries(inet.val)) throw new ConfigError(`${where('data.imagenet.val')}: ${inet.val} is not a folder; point it at ILSVRC2012's val folder`);
    for (const k of ['v2_matched_frequency', 'v2_threshold', 'v2_top_images'] as const) {
      const e = entries(inet[k]);
      if (!e || !e.some((x) => /^\d+$/.test(x)))
        throw new ConfigError(`${where(`data.imagenet.${k}`)}: ${inet[k]} has no class sub-folders 0..999; point it at the extracted ImageNet-V2 folder`);
    }
    if (!inet.val_labels.endsWith('.csv') && !isDevkitPath(inet.val_labels) && !inet.val_id_map)
      throw new ConfigError(`${where('data.imagenet.val_id_map')}: val_labels ${path.basename(inet.val_labels)} is the devkit ground truth, which needs the ILSVRC2012_ID → wnid map; set val_id_map (the devkit or its data/meta.mat), point val_labels at ILSVRC2012_devkit_t12.tar.gz itself, or use LOC_val_solution.csv`);
  }
  if (cfg.data.kind === 'fashion-mnist') requireFile(cfg.data.fashion_dir, 'data.fashion_dir');
  if (cfg.data.kind === 'folders') checkFoldersConfig(cfg);
  else if (cfg.data.folders) throw new ConfigError(`${where('data.folders')}: only used when data.kind is folders (data.kind is ${cfg.data.kind}); remove it or set data.kind: folders`);
  if (cfg.data.kind === 'synthetic' && cfg.data.imagenet) throw new ConfigError(`${where('data.imagenet')}: not used when data.kind is synthetic; remove it`);
  requireFile(cfg.original.checkpoint, 'original.checkpoint');
  checkModelName(cfg.original.model ?? cfg.train.model, cfg.original.model ? 'config.original.model' : 'config.train.model');
  cfg.backbones.forEach((b, i) => {
    // A demo or ssl backbone's name is only its label; its architecture is pretrain.widths.
    if (b.weights !== 'demo' && b.weights !== 'ssl') checkModelName(b.name, `config.backbones[${i}].name`);
    if (b.weights !== 'official' && b.weights !== 'random' && b.weights !== 'demo' && b.weights !== 'ssl') requireFile(b.weights, `backbones[${i}].weights`);
    if (b.weights === 'ssl') {
      const { data } = S.sslPretrain(b, i);
      if (data === 'pool' && cfg.data.kind === 'imagenet')
        throw new ConfigError(`config.backbones[${i}].pretrain.data: "pool" is read into memory for pretraining, which needs synthetic or fashion-mnist data; give a folder of images`);
      if (data !== 'pool' && data !== 'broad') requireFile(data, `backbones[${i}].pretrain.data`);
    }
    if (b.weights === 'official' && cfg.data.kind !== 'imagenet' && !b.name.startsWith('small_cnn'))
      throw new ConfigError(
        `config.backbones[${i}].weights: "official" ImageNet weights need a checkpoint file here (this machine downloads nothing); give a path, or use demo / random`,
      );
  });
  const labels = cfg.backbones.map(backboneLabel);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup) throw new ConfigError(`config.backbones: two backbones have the row label "${dup}"; give one of them a label:`);
  if (cfg.filter.enabled) {
    checkModelName(cfg.filter.backbone.name, 'config.filter.backbone.name');
    const w = cfg.filter.backbone.weights;
    if (w !== 'official' && w !== 'random' && w !== 'demo') requireFile(w, 'filter.backbone.weights');
  }
  if (cfg.failures.mode === 'multi' && cfg.failures.models.length === 0)
    throw new ConfigError(`config.failures.models: failures.mode is multi but no models are listed; list the models (name + checkpoint) whose common failures define the seed set`);
  cfg.failures.models.forEach((m, i) => {
    checkModelName(m.name, `config.failures.models[${i}].name`);
    if (m.checkpoint !== 'official' && m.checkpoint !== 'random' && m.checkpoint !== 'demo') requireFile(m.checkpoint, `failures.models[${i}].checkpoint`);
  });
  if (typeof cfg.failures.subset === 'string' && !['pool', 'discover'].includes(cfg.failures.subset)) requireFile(cfg.failures.subset, 'failures.subset');
  // slices and select.clean*: the rules across keys, and what the config's own data sizes allow
  checkSlicesConfig(cfg, [...new Set([...labels, ...cfg.backbones.map((b) => b.name)])], planFacts(cfg.data), 'config');
  if (cfg.select.per_slice !== undefined)
    throw new ConfigError(
      `config.select.per_slice: a budget per failure slice is not available in the pipeline yet (Algorithm 1's sweep takes one k per class, not one per seed image; see docs/slices-and-cleaning.md); remove select.per_slice — slices.enabled still reports heldout accuracy per slice`,
    );
  if (cfg.slices.enabled && !cfg.eval.sets.includes('heldout'))
    throw new ConfigError(`config.slices.enabled: per-slice accuracy is read on the debug-heldout set, but eval.sets (${cfg.eval.sets.join(', ')}) leaves it out; add heldout to eval.sets or set slices.enabled: false`);
}

/** Seed-dependence of each random part. */
function dataSeed(cfg: Config, seed: number): number | undefined {
  return drawsPerSeed(cfg) ? seed : undefined;
}

/** Builds the stage graph of `cfg`; `variant` tags the rows (sweeps). */
export function buildGraph(cfg: Config, variant = ''): ExperimentGraph {
  checkConfig(cfg);
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
    b.weights === 'demo'
      ? once(`bb:${b.name}:${seed}`, () => (cfg.data.kind === 'folders' ? folderDemoBackbone(cfg, b, data(seed)) : S.demoBackbone(cfg, b, data(seed))))
      : b.weights === 'ssl'
        ? once(`bb:${b.name}:${seed}`, () => S.sslBackboneStage(cfg, b, cfg.backbones.indexOf(b), data(seed)))
        : undefined;
  const isSelf = (b: BackboneConfig) => b.weights === 'demo' && (b.pretrain as { kind?: string } | undefined)?.kind === 'self';
  const embed = (b: BackboneConfig, set: string, seed: number) =>
    once(`embed:${b.name}:${String(b.weights)}:${set}:${isSelf(b) ? `self${seed}` : dataSeed(cfg, seed)}`, () =>
      S.embedStage(cfg, b, set, data(seed), isSelf(b) ? undefined : backboneStage(b, seed), isSelf(b) ? once(`orig:${seed}`, () => original(seed)) : undefined, isSelf(b) ? `-s${seed}` : dataTag(seed)),
    );

  let gallery: StageSpec | undefined;
  // the first seed's world: what the slices stage reads
  let first: { failures: StageSpec; selects: StageSpec[] } | undefined;
  for (const seed of cfg.seeds) {
    // `w` draws the world (data, original model, failure sets, backbones, filter, selections); `seed`
    // only what each method draws and trains (the Random draw, the fine-tunes). They differ under world_seed.
    const w = world(seed);
    const orig = once(`orig:${w}`, () => original(w));
    const failures = once(`fail:${w}`, () => S.failuresStage(cfg, data(w), orig, tag(w)));
    const filterEmbeds = cfg.filter.enabled ? Object.fromEntries(IMAGE_SETS.map((s) => [s, embed(cfg.filter.backbone, s, w)])) : {};
    const filter = once(`filter:${w}`, () => S.filterStage(cfg, data(w), filterEmbeds, dataTag(w)));
    const selects = cfg.backbones.map((b) =>
      once(`select:${backboneLabel(b)}:${w}`, () => S.selectStage(cfg, b, failures, embed(b, 'mfreq', w), embed(b, 'pool', w), filter, tag(w))),
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
    first ??= { failures, selects };
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
    ? cfg.backbones.flatMap((b, i) => (b.weights !== 'ssl' ? [] : (S.sslPretrain(b, i).data === 'pool' ? [...new Set(cfg.seeds.map(world))] : [s0]).map((seed) => backboneStage(b, seed)!)))
    : [];
  // Failure slices of the first seed's world, in one backbone's space (slices.enabled); the heldout
  // images come from the complement set, embedded only for this
  let slices: { stage: StageSpec; seeds: number[]; scope: string } | undefined;
  if (cfg.slices.enabled) {
    const b = S.slicesBackbone(cfg);
    const stage = S.slicesStage(cfg, b, data(s0), first!.failures, embed(b, 'mfreq', s0), embed(b, 'complement', s0), embed(b, 'pool', s0), first!.selects[cfg.backbones.indexOf(b)]!, tag(s0));
    slices = { stage, seeds: cfg.seeds.filter((x) => world(x) === s0), scope: cfg.world_seed !== undefined ? `world seed ${cfg.world_seed}, backbone ${backboneLabel(b)}` : `seed ${s0}'s world, backbone ${backboneLabel(b)}` };
  }
  const report = S.reportStage(cfg, rows, { retention, gallery, pretraining, ...(slices ? { slices } : {}) });
  return { rows, report, roots: [report] };
}
