/**
 * The stages of a DCD experiment, each a {@link StageSpec}: its config slice (what
 * changes its output), its inputs, and `run`, which calls the other areas' libraries
 * and writes its artifacts into its own folder.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, atomicWriteJson, sha256File } from '../core/fsutil.js';
import { buildTable, float32Column, int32Column, readArrowFile, stringColumn, writeArrowFile } from '../core/arrow.js';
import type { BackboneConfig, Config } from '../core/config.js';
import type { Preprocess } from '../core/types.js';
import { buildManifest } from '../data/build.js';
import type { ManifestRow } from '../data/manifest.js';
import { readClassSubset } from '../data/adapters.js';
import { generateSynthetic, type SyntheticDraw } from '../data/synthetic.js';
import { DEFAULT_FASHION_CLASSES, fashionObjects, makeFashionShift } from '../data/fashion-shift.js';
import { trainDemoBackbone, type DemoBackboneSpec } from '../backbones-demo/backbones.js';
import { EmbeddingStore } from '../retrieval/store.js';
import { openArrowSink, type ArrowSink } from '../retrieval/output.js';
import { classThresholds, leakageFilter } from '../retrieval/filter.js';
import { selectAlgorithm1, type Selection } from '../retrieval/select.js';
import { completeBaseline, labelCounts, randomBaseline } from '../retrieval/baselines.js';
import { trainModel } from '../train/trainer.js';
import { concatDatasets } from '../train/dataset.js';
import type { Schedule } from '../train/schedule.js';
import type { StageContext, StageOutputs, StageResult, StageSpec } from './runner.js';
import { imageItems, readImageSet, subsetImageSet, toDataset, writeImageSet, type ImageSet } from './imagesets.js';
import { defaultClasses, streamFeatures, loadAnyCheckpoint, makeModel, predictDataset, preprocessOf, saveWeights } from './libs.js';
import type { RowRef } from './experiment.js';
import { COLUMNS, writeTables, type RowMetrics, type RowResult } from './table.js';
import type { RetrievalExamples } from '../eval/report.js';
import { readRetentionItems, retentionTable, retentionMarkdown, writeRetentionOutputs } from '../analysis/retention.js';

/** Rows per Arrow record batch of an embed stage's output (the store streams batches). */
const EMBED_BATCH_ROWS = 16384;

const SETS = ['train', 'test', 'mfreq', 'complement', 'pool'] as const;

/** Number of classes recorded by the data stage. */
function classesOf(data: StageResult): { names: string[]; subset: number[] | null } {
  return JSON.parse(readFileSync(data.file('classes'), 'utf8')) as { names: string[]; subset: number[] | null };
}

async function readSet(r: StageResult, name: string): Promise<ImageSet> {
  return readImageSet(r.file(name));
}

/** The preprocessing for `model` on `set`: in-memory sets keep their own size. */
function preFor(modelName: string, set: ImageSet): Preprocess {
  const p = preprocessOf(modelName);
  if (set.pixels) return { ...p, resize: set.pixels.shape[0], crop: set.pixels.shape[0] };
  return p;
}

// ---------------------------------------------------------------------------------
// data

/** `data.fashion` splits into the synthetic options and the garment classes (`classes`). */
function fashionParts(cfg: Config): { synthetic: Record<string, unknown>; classes?: number[] } {
  const { classes, ...synthetic } = (cfg.data.fashion ?? {}) as Record<string, unknown>;
  if (classes !== undefined && !(Array.isArray(classes) && classes.every((c) => Number.isInteger(c) && c >= 0 && c <= 9)))
    throw new ConfigError(`config.data.fashion.classes: expected a list of Fashion-MNIST labels 0-9, received ${JSON.stringify(classes)}`);
  return { synthetic, ...(classes ? { classes: classes as number[] } : {}) };
}

function drawRows(draw: SyntheticDraw, name: (typeof SETS)[number]): ImageSet {
  const s = draw.sets[name];
  const rows: ManifestRow[] = Array.from({ length: s.n }, (_, i) => {
    const truth = s.labels[i]!;
    const ctx = JSON.stringify({ context: draw.contextNames[s.contexts[i]!], home: truth >= 0 ? draw.home[truth] === s.contexts[i] : null, ...(name === 'pool' ? { true_label: truth } : {}) });
    // The pool's true labels are unknown to the method: label -1, weak label kept.
    const label = name === 'pool' ? -1 : truth;
    return { id: s.ids[i]!, path: `pixels:${i}`, label, wnid: '', class_name: label >= 0 ? draw.classNames[label]! : '', set: name, weak_label: s.weakLabels[i]!, context: ctx };
  });
  return { name, rows, pixels: { data: s.images, shape: [s.size, s.size, 3] }, meta: { 'dcd.source': 'synthetic', 'dcd.seed': String(draw.seed) } };
}

/** Materialises the image sets (train, test, mfreq, complement, pool) and the class list. */
export function dataStage(cfg: Config, seed: number | undefined): StageSpec {
  const d = cfg.data;
  const inet = d.imagenet;
  return {
    stage: 'data',
    label: d.kind + (seed !== undefined ? `-s${seed}` : ''),
    version: 1,
    config: { kind: d.kind, seed: seed ?? null, synthetic: d.kind === 'synthetic' ? (d.synthetic ?? {}) : null, fashion: d.kind === 'fashion-mnist' ? { dir: d.fashion_dir, ...(d.fashion ?? {}) } : null, imagenet: d.kind === 'imagenet' ? inet : null },
    deps: {},
    externals: d.kind === 'imagenet' && inet ? [inet.train, inet.val, inet.val_labels, ...(inet.val_id_map ? [inet.val_id_map] : []), inet.v2_matched_frequency, inet.v2_threshold, inet.v2_top_images, inet.pool] : [],
    async run(ctx) {
      const files: Record<string, string> = {};
      const counts: Record<string, number> = {};
      let classes: { names: string[]; subset: number[] | null; contexts?: string[]; home?: number[] };
      if (d.kind === 'imagenet') {
        if (!inet) throw new ConfigError('config.data.imagenet: missing');
        const labelsOpt = inet.val_labels.endsWith('.csv') ? { locSolution: inet.val_labels } : { groundTruth: inet.val_labels, idMap: inet.val_id_map };
        const parts: [string, Promise<{ rows: ManifestRow[]; meta: Record<string, string> }>][] = [
          ['train', buildManifest('ilsvrc-train', inet.train, { set: 'train' })],
          ['test', buildManifest('ilsvrc-val', inet.val, { set: 'test', ...labelsOpt })],
          ['mfreq', buildManifest('v2', inet.v2_matched_frequency, { set: 'mfreq', variant: 'matched-frequency', hash: true })],
          ['complement', buildManifest('v2-complement', inet.v2_matched_frequency, { set: 'complement', threshold: inet.v2_threshold, topImages: inet.v2_top_images })],
          ['pool', buildManifest('weak-pool', inet.pool, { set: 'pool' })],
        ];
        let names: string[] = [];
        for (const [name, p] of parts) {
          const { rows, meta } = await p;
          if (meta['dcd.classes']) names = JSON.parse(meta['dcd.classes']) as string[];
          Object.assign(files, await writeImageSet(ctx.dir, { name, rows, meta }));
          counts[name] = rows.length;
          ctx.log(`${name}: ${rows.length} images`);
        }
        classes = { names, subset: null };
      } else {
        const draw =
          d.kind === 'synthetic'
            ? generateSynthetic((d.synthetic ?? {}) as Parameters<typeof generateSynthetic>[0], seed ?? 0)
            : makeFashionShift(fashionParts(cfg).synthetic as Parameters<typeof makeFashionShift>[0], seed ?? 0, {
                dir: d.fashion_dir,
                ...(fashionParts(cfg).classes ? { classes: fashionParts(cfg).classes! } : {}),
              });
        for (const name of SETS) {
          const set = drawRows(draw, name);
          Object.assign(files, await writeImageSet(ctx.dir, set));
          counts[name] = set.rows.length;
        }
        classes = { names: draw.classNames, subset: draw.subset, contexts: draw.contextNames, home: draw.home };
      }
      await atomicWriteJson(path.join(ctx.dir, 'classes.json'), classes);
      files.classes = 'classes.json';
      return { files, counts };
    },
  };
}

// ---------------------------------------------------------------------------------
// original model

function trainSettings(cfg: Config, init: 'scratch' | 'finetune', over: { epochs?: number; max_steps?: number; lr?: number } = {}) {
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
  };
}
type TrainSettings = ReturnType<typeof trainSettings>;

async function runTraining(
  ctx: StageContext,
  s: TrainSettings,
  seed: number,
  numClasses: number,
  parts: { set: ImageSet; labels?: Int32Array; weights?: Float32Array; prefix: string }[],
  init?: string,
  checkpointEvery = 0,
): Promise<{ weights: string; steps: number; resumedFrom: number }> {
  const model = makeModel(s.model, { numClasses, seed });
  try {
    if (init) await loadAnyCheckpoint(model, init);
    const pre = preFor(s.model, parts[0]!.set);
    const ds = concatDatasets(
      parts.map((p) => ({ dataset: toDataset(p.set, pre, { ...(p.labels ? { labels: p.labels } : {}), ...(p.weights ? { weights: p.weights } : {}) }), idPrefix: p.prefix })),
    );
    const schedule: Schedule =
      s.schedule === 'step' ? { kind: 'step', milestones: s.step_epochs, gamma: s.gamma } : s.schedule === 'cosine' ? { kind: 'cosine' } : { kind: 'constant' };
    if (s.batch_size % s.grad_accum !== 0) throw new ConfigError(`config.train.grad_accum: ${s.grad_accum} does not divide train.batch_size ${s.batch_size}`);
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
      const m = makeModel(model, { numClasses: cfg.data.classes ?? 1000, seed: 0 });
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

/** Absolute weights file of a model stage (trained or given). */
export function weightsOf(r: StageResult): string {
  return typeof r.manifest.extra.weights === 'string' ? r.manifest.extra.weights : r.file('weights');
}

function modelNameOf(r: StageResult, fallback: string): string {
  return typeof r.manifest.extra.model === 'string' ? r.manifest.extra.model : fallback;
}

// ---------------------------------------------------------------------------------
// failures

async function predictSet(modelName: string, weights: string, numClasses: number, set: ImageSet, batchSize: number, ctx: StageContext): Promise<Int32Array> {
  const model = makeModel(modelName, { numClasses, seed: 0 });
  try {
    await loadAnyCheckpoint(model, weights);
    const bar = ctx.progress(set.rows.length, 'img');
    const pred = await predictDataset(model, toDataset(set, preFor(modelName, set)), batchSize, (n) => bar.tick(n));
    bar.stop();
    return pred;
  } finally {
    model.dispose();
  }
}

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
          ? cfg.failures.models.map((m) => {
              if (m.checkpoint === 'official' || m.checkpoint === 'random' || m.checkpoint === 'demo')
                throw new ConfigError(`config.failures.models: ${m.name} needs a checkpoint file (found "${m.checkpoint}")`);
              return { name: m.name, weights: m.checkpoint };
            })
          : [{ name: modelNameOf(ctx.inputs.original!, cfg.train.model), weights: weightsOf(ctx.inputs.original!) }];
      const wrongEverywhere = async (set: ImageSet) => {
        const wrong = new Uint8Array(set.rows.length).fill(1);
        for (const m of models) {
          const pred = await predictSet(m.name, m.weights, K, set, cfg.eval.batch_size, ctx);
          set.rows.forEach((r, i) => {
            if (pred[i] === r.label || pred[i] === -1) wrong[i] = 0;
          });
        }
        return wrong;
      };
      const wrongM = await wrongEverywhere(mfreq);
      const wrongC = await wrongEverywhere(compl);
      let subset = subsetClasses(cfg, d, pool);
      if (subset === 'discover') {
        const perClass = new Map<number, number>();
        mfreq.rows.forEach((r, i) => wrongM[i] && perClass.set(r.label, (perClass.get(r.label) ?? 0) + 1));
        subset = [...perClass].filter(([, n]) => n >= cfg.failures.min_failures).map(([y]) => y).sort((a, b) => a - b);
        ctx.log(`discovered ${subset.length} classes with ≥ ${cfg.failures.min_failures} failures`);
      }
      const inSub = new Set(subset);
      const pick = (set: ImageSet, wrong: Uint8Array) => set.rows.flatMap((r, i) => (wrong[i] && inSub.has(r.label) ? [i] : []));
      const seedSet = subsetImageSet(mfreq, pick(mfreq, wrongM), 'seed');
      const heldout = subsetImageSet(compl, pick(compl, wrongC), 'heldout');
      if (seedSet.rows.length === 0) throw new DataError(`failures: the original model gets every MFreq image of the subset classes right; there is nothing to debug (check failures.subset)`);
      const files = { ...(await writeImageSet(ctx.dir, seedSet)), ...(await writeImageSet(ctx.dir, heldout)) };
      await atomicWriteJson(path.join(ctx.dir, 'subset.json'), subset);
      ctx.log(`seed ${seedSet.rows.length}, heldout ${heldout.rows.length} images over ${subset.length} classes`);
      return { files: { ...files, subset: 'subset.json' }, counts: { seed: seedSet.rows.length, heldout: heldout.rows.length, classes: subset.length } };
    },
  };
}

// ---------------------------------------------------------------------------------
// backbones and embeddings

/** A demo backbone trained on a broad draw (never the debug sets); see src/backbones-demo. */
export function demoBackbone(cfg: Config, b: BackboneConfig, _data: StageSpec): StageSpec {
  const spec = { kind: 'broad_cnn', ...(b.pretrain ?? {}) } as DemoBackboneSpec;
  const fp = cfg.data.kind === 'fashion-mnist' ? fashionParts(cfg) : undefined;
  const synthetic = fp ? { ...fp.synthetic, numClasses: (fp.classes ?? DEFAULT_FASHION_CLASSES).length } : (cfg.data.synthetic ?? {});
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 1,
    config: { name: b.name, pretrain: spec, synthetic, kind: cfg.data.kind, fashion_dir: cfg.data.kind === 'fashion-mnist' ? cfg.data.fashion_dir : null },
    deps: {},
    async run(ctx): Promise<StageOutputs> {
      if (spec.kind === 'self') return { files: {}, extra: { self: true } };
      let objects;
      if (fp) objects = fashionObjects({ dir: cfg.data.fashion_dir, ...(fp.classes ? { classes: fp.classes } : {}) });
      const bar = ctx.progress(spec.steps ?? 400, 'step');
      const m = trainDemoBackbone(spec, synthetic as Parameters<typeof trainDemoBackbone>[1], objects, () => bar.tick(1));
      bar.stop();
      try {
        await saveWeights(m, path.join(ctx.dir, 'backbone.safetensors'), { 'dcd.backbone': b.name });
        return { files: { weights: 'backbone.safetensors' }, extra: { model: m.name, numClasses: m.numClasses } };
      } finally {
        m.dispose();
      }
    },
  };
}

/** Features of one image set under one backbone: `<set>.arrow` with id, embedding, label. */
export function embedStage(cfg: Config, b: BackboneConfig, set: string, data: StageSpec, backbone: StageSpec | undefined, original?: StageSpec, suffix = ''): StageSpec {
  const isSelf = b.weights === 'demo' && (b.pretrain as { kind?: string } | undefined)?.kind === 'self';
  const deps: Record<string, StageSpec> = { data };
  if (backbone) deps.backbone = backbone;
  if (isSelf && original) deps.original = original;
  return {
    stage: 'embed',
    label: `${b.label ?? b.name}-${set}${suffix}`,
    version: 2,
    config: { name: b.name, weights: b.weights, pretrain: b.pretrain ?? null, set },
    deps,
    externals: b.weights !== 'official' && b.weights !== 'random' && b.weights !== 'demo' && b.weights !== 'ssl' ? [b.weights] : [],
    async run(ctx) {
      const d = ctx.inputs.data!;
      const images = await readSet(d, set);
      let modelName = b.name;
      let numClasses = 0;
      let weights: string | undefined;
      if (isSelf) {
        const o = ctx.inputs.original;
        if (!o) throw new ConfigError(`backbone ${b.name}: kind self needs the original model`);
        modelName = modelNameOf(o, cfg.train.model);
        numClasses = cfg.data.classes ?? classesOf(d).names.length;
        weights = weightsOf(o);
      } else if (b.weights === 'demo' || b.weights === 'ssl') {
        const r = ctx.inputs.backbone!;
        weights = r.file('weights');
        numClasses = Number(r.manifest.extra.numClasses ?? 0);
        const widths = (b.pretrain as { widths?: number[] } | undefined)?.widths ?? [16, 32, 64];
        modelName = typeof r.manifest.extra.model === 'string' && r.manifest.extra.model.startsWith('small_cnn:') ? r.manifest.extra.model : `small_cnn:${widths.join('-')}`;
      } else if (b.weights === 'official') {
        throw new ConfigError(`config.backbones: ${b.name} weights "official": give the checkpoint file's path (fetch it with \`dcd weights fetch ${b.name}\`)`);
      } else {
        numClasses = defaultClasses(modelName);
        if (b.weights !== 'random') weights = b.weights;
      }
      const model = makeModel(modelName, { numClasses, seed: 0 });
      try {
        if (weights) await loadAnyCheckpoint(model, weights);
        const pre = preFor(modelName, images);
        const bar = ctx.progress(images.rows.length, 'img');
        // Streamed to disk in record batches of ≤ EMBED_BATCH_ROWS rows: memory stays one
        // batch whatever the set's size (the ImageNet train set is 10.5 GB of 2048-d features).
        const dim = model.numFeatures;
        const rowOf = new Map(images.rows.map((r, i) => [r.id, i]));
        const meta = { 'dcd.backbone': b.name, 'dcd.weights_sha256': weights ? await sha256File(weights) : 'random:seed=0', 'dcd.preprocess': JSON.stringify(pre), 'dcd.set': set };
        const file = path.join(ctx.dir, `${set}.arrow`);
        let sink: ArrowSink | undefined;
        let pend: { ids: string[]; feats: Float32Array[]; n: number } = { ids: [], feats: [], n: 0 };
        let rows = 0;
        const flush = async () => {
          if (!pend.n && sink) return;
          const e = new Float32Array(pend.n * dim);
          let o = 0;
          for (const f of pend.feats) (e.set(f, o), (o += f.length));
          const label = Int32Array.from(pend.ids, (id) => {
            const r = images.rows[rowOf.get(id)!]!;
            return set === 'pool' ? (r.weak_label ?? -1) : r.label;
          });
          const t = buildTable({ id: { kind: 'utf8', values: pend.ids }, embedding: { kind: 'embedding', values: e, dim }, label: { kind: 'int32', values: label } }, meta);
          sink ??= await openArrowSink(file, t.schema, meta);
          for (const batch of t.batches) sink.write(batch);
          rows += pend.n;
          pend = { ids: [], feats: [], n: 0 };
        };
        let skipped: { id: string; reason: string }[];
        try {
          ({ skipped } = await streamFeatures(model, imageItems(images), pre, { batchSize: cfg.compute.embed_batch_size, concurrency: cfg.compute.concurrency, onBatch: (n) => bar.tick(n) }, async (ids, f) => {
            pend.ids.push(...ids);
            pend.feats.push(f);
            pend.n += ids.length;
            if (pend.n >= EMBED_BATCH_ROWS) await flush();
          }));
          await flush();
          await sink!.close();
        } catch (e) {
          await sink?.abort();
          throw e;
        }
        bar.stop();
        if (skipped.length) await atomicWriteFile(path.join(ctx.dir, 'skipped.tsv'), ['id\treason', ...skipped.map((s) => `${s.id}\t${s.reason}`)].join('\n') + '\n');
        return { files: { embeddings: `${set}.arrow` }, counts: { rows, skipped: skipped.length } };
      } finally {
        model.dispose();
      }
    },
  };
}

// ---------------------------------------------------------------------------------
// filter, select, baselines

/** The test-leakage filter: W' = pool images at least τ_y from every test image. */
export function filterStage(cfg: Config, data: StageSpec, embeds: Record<string, StageSpec>, suffix = ''): StageSpec {
  const f = cfg.filter;
  return {
    stage: 'filter',
    label: (f.enabled ? 'leakage' : 'disabled') + suffix,
    version: 1,
    config: f.enabled ? { enabled: true, scope: f.scope, normalize: f.normalize, backbone: f.backbone } : { enabled: false },
    deps: { data, ...Object.fromEntries(Object.entries(embeds).map(([k, v]) => [`embed_${k}`, v])) },
    async run(ctx) {
      const pool = await readSet(ctx.inputs.data!, 'pool');
      let keptIds: Set<string>;
      let summary: unknown = null;
      if (!f.enabled) keptIds = new Set(pool.rows.map((r) => r.id));
      else {
        const open = (set: string, requireLabel = true) => EmbeddingStore.open([ctx.inputs[`embed_${set}`]!.file('embeddings')], { role: set, requireLabel, normalize: f.normalize });
        const tau = await classThresholds(await open('train'), await open('test'));
        keptIds = new Set();
        const r = await leakageFilter(await open('pool'), [await open('test'), await open('mfreq'), await open('complement')], tau, {
          scope: f.scope,
          onChunk: (ch, keep) => ch.ids.forEach((id, i) => keep[i] && keptIds.add(id)),
        });
        summary = { kept: r.kept, removed: r.removed.length, per_class: r.summary };
        await atomicWriteJson(path.join(ctx.dir, 'removed.json'), r.removed);
        ctx.log(`kept ${r.kept} of ${pool.rows.length} pool images`);
      }
      const idx = pool.rows.flatMap((r, i) => (keptIds.has(r.id) ? [i] : []));
      const files = await writeImageSet(ctx.dir, subsetImageSet(pool, idx, 'pool_filtered'));
      await atomicWriteJson(path.join(ctx.dir, 'summary.json'), summary);
      return { files: { ...files, summary: 'summary.json' }, counts: { pool: pool.rows.length, kept: idx.length } };
    },
  };
}

async function writeSelection(ctx: StageContext, pool: ImageSet, sel: Selection, name: string): Promise<Record<string, string>> {
  const at = new Map(pool.rows.map((r, i) => [r.id, i]));
  const idx = sel.ids.map((id) => {
    const i = at.get(id);
    if (i === undefined) throw new DataError(`selection ${name}: pool id ${id} is not in the filtered pool`);
    return i;
  });
  const set = subsetImageSet(pool, idx, name);
  set.rows = set.rows.map((r, j) => ({ ...r, label: sel.labels[j]! }));
  const files = await writeImageSet(ctx.dir, set);
  await writeArrowFile(
    path.join(ctx.dir, `${name}-picks.arrow`),
    buildTable({
      id: { kind: 'utf8', values: sel.ids },
      label: { kind: 'int32', values: sel.labels },
      seed_id: { kind: 'utf8', values: sel.seedIds },
      distance: { kind: 'float32', values: sel.distances },
      rank: { kind: 'int32', values: sel.ranks },
    }),
  );
  return { ...files, [`${name}_picks`]: `${name}-picks.arrow` };
}

/** Algorithm 1 with one backbone: de-val V, then debug-train D from W' \ V. */
export function selectStage(cfg: Config, b: BackboneConfig, failures: StageSpec, embMfreq: StageSpec, embPool: StageSpec, filter: StageSpec, suffix = ''): StageSpec {
  const s = cfg.select;
  return {
    stage: 'select',
    label: (b.label ?? b.name) + suffix,
    version: 1,
    config: { k_val: s.k_val, k_train: s.k_train, candidates: s.candidates, normalize: s.normalize },
    deps: { failures, embMfreq, embPool, filter },
    async run(ctx) {
      const seedRows = await readSet(ctx.inputs.failures!, 'seed');
      const subset = JSON.parse(readFileSync(ctx.inputs.failures!.file('subset'), 'utf8')) as number[];
      const mf = await EmbeddingStore.open([ctx.inputs.embMfreq!.file('embeddings')], { role: 'mfreq', requireLabel: true, normalize: s.normalize });
      const all = await mf.readAll();
      const pos = new Map(all.ids.map((id, i) => [id, i]));
      const keep = seedRows.rows.filter((r) => pos.has(r.id));
      const data = new Float32Array(keep.length * all.dim);
      keep.forEach((r, j) => data.set(all.data.subarray(pos.get(r.id)! * all.dim, (pos.get(r.id)! + 1) * all.dim), j * all.dim));
      const pool = await EmbeddingStore.open([ctx.inputs.embPool!.file('embeddings')], { role: 'pool', requireLabel: s.candidates === 'weak_label', normalize: s.normalize });
      const filtered = await readSet(ctx.inputs.filter!, 'pool_filtered');
      const r = await selectAlgorithm1(
        { ids: keep.map((x) => x.id), labels: Int32Array.from(keep, (x) => x.label), data, dim: all.dim, file: ctx.inputs.embMfreq!.file('embeddings') },
        pool,
        { k: s.k_train, kVal: s.k_val, anyLabel: s.candidates === 'any_label', only: new Set(filtered.rows.map((x) => x.id)), classes: subset },
      );
      const files = await writeSelection(ctx, filtered, r.train, 'debug_train');
      if (r.deval) Object.assign(files, await writeSelection(ctx, filtered, r.deval, 'deval'));
      await atomicWriteJson(path.join(ctx.dir, 'summary.json'), { train: r.train.summary, deval: r.deval?.summary ?? null });
      return { files: { ...files, added: files.debug_train!, summary: 'summary.json' }, counts: { debug_train: r.train.ids.length, deval: r.deval?.ids.length ?? 0 } };
    },
  };
}

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

// ---------------------------------------------------------------------------------
// train, evaluate, report

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
      let heldoutPred: { rows: ManifestRow[]; pred: Int32Array } | undefined;
      const acc = (rows: ManifestRow[], pred: Int32Array, keep: (r: ManifestRow) => boolean) => {
        let n = 0;
        let ok = 0;
        rows.forEach((r, i) => {
          if (!keep(r) || pred[i] === -1) return;
          n++;
          if (pred[i] === r.label) ok++;
        });
        return n ? (100 * ok) / n : null;
      };
      for (const s of cfg.eval.sets) {
        if (s === 'deval') continue;
        const set = s === 'seed' || s === 'heldout' ? await readSet(f, s) : await readSet(d, s);
        const pred = await predictSet(name, weights, K, set, cfg.eval.batch_size, ctx);
        set.rows.forEach((r, i) => (ids.push(r.id), sets.push(s), labels.push(r.label), preds.push(pred[i]!)));
        if (s === 'heldout') heldoutPred = { rows: set.rows, pred };
        if (s === 'seed' || s === 'heldout') metrics[s] = acc(set.rows, pred, () => true);
        else {
          const col = s === 'complement' ? 'compl' : s;
          metrics[`${col}_sub`] = acc(set.rows, pred, (r) => subset.has(r.label));
          metrics[`${col}_all`] = acc(set.rows, pred, () => true);
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
      const perClass = [...subset].sort((a, b) => a - b).flatMap((label) => {
        const a = heldoutPred ? acc(heldoutPred.rows, heldoutPred.pred, (r) => r.label === label) : null;
        return a === null ? [] : [{ label, name: names[label] ?? String(label), acc: a / 100, selected: selected.get(label) ?? 0 }];
      });
      return { files: { predictions: 'predictions.arrow', metrics: 'metrics.json' }, counts: { images: ids.length }, extra: { metrics, perClass } };
    },
  };
}

/** Seed images shown in the report's retrieval grid, and neighbours per backbone. */
const GALLERY_SEEDS = 8;
const GALLERY_NEIGHBOURS = 6;
const GALLERY_WRONG = 24;

/**
 * The report's retrieval grid: for a few seed images (spread over the subset classes), the
 * pool images each backbone's Algorithm 1 picked for them, nearest first, with distances;
 * and the picks whose weak label is wrong (known where the pool has a true label, as the
 * synthetic and Fashion-MNIST pools do). In-memory images are written as PNGs here.
 */
export function galleryStage(cfg: Config, data: StageSpec, failures: StageSpec, filter: StageSpec, selects: { label: string; select: StageSpec }[], suffix = ''): StageSpec {
  const deps: Record<string, StageSpec> = { data, failures, filter };
  selects.forEach((x, i) => (deps[`sel${i}`] = x.select));
  return {
    stage: 'gallery',
    label: `retrievals${suffix}`,
    version: 2,
    config: { seeds: GALLERY_SEEDS, neighbours: GALLERY_NEIGHBOURS, backbones: selects.map((x) => x.label) },
    deps,
    async run(ctx): Promise<StageOutputs> {
      const seedSet = await readSet(ctx.inputs.failures!, 'seed');
      const pool = await readSet(ctx.inputs.filter!, 'pool_filtered');
      const names = classesOf(ctx.inputs.data!).names;
      const cls = (y: number) => (y >= 0 ? (names[y] ?? String(y)) : 'none');
      await mkdir(path.join(ctx.dir, 'img'), { recursive: true });
      const imageOf = async (set: ImageSet, i: number, tag: string): Promise<string> => {
        const r = set.rows[i]!;
        if (!set.pixels) return r.path;
        const [h, w, c] = set.pixels.shape;
        const px = set.pixels.data.subarray(i * h * w * c, (i + 1) * h * w * c);
        const rel = `img/${tag}-${i}.png`;
        await atomicWriteFile(path.join(ctx.dir, rel), await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: c } }).png().toBuffer());
        return rel;
      };
      // seed images: round-robin over classes, in manifest order within a class
      const byClass = new Map<number, number[]>();
      seedSet.rows.forEach((r, i) => byClass.set(r.label, [...(byClass.get(r.label) ?? []), i]));
      const chosen: number[] = [];
      for (let round = 0; chosen.length < GALLERY_SEEDS && round < seedSet.rows.length; round++) {
        let any = false;
        for (const idx of [...byClass.keys()].sort((a, b) => a - b).map((k) => byClass.get(k)!))
          if (round < idx.length && chosen.length < GALLERY_SEEDS) (chosen.push(idx[round]!), (any = true));
        if (!any) break;
      }
      const poolAt = new Map(pool.rows.map((r, i) => [r.id, i]));
      const picks = await Promise.all(
        selects.map(async (_, b) => {
          const t = await readArrowFile(ctx.inputs[`sel${b}`]!.file('debug_train_picks'));
          const f = ctx.inputs[`sel${b}`]!.file('debug_train_picks');
          return { ids: stringColumn(t, 'id', f), labels: int32Column(t, 'label', f), seeds: stringColumn(t, 'seed_id', f), dist: float32Column(t, 'distance', f), rank: int32Column(t, 'rank', f) };
        }),
      );
      const poolImage = async (id: string) => imageOf(pool, poolAt.get(id)!, 'pool');
      // The true class of a pool image, where the pool knows it (synthetic and Fashion-MNIST
      // pools record it as context.true_label; -1 = no object); undefined for a web pool.
      const truthOf = (r: ManifestRow): number | undefined => {
        if (!r.context) return undefined;
        try {
          const t = (JSON.parse(r.context) as { true_label?: unknown }).true_label;
          return typeof t === 'number' ? t : undefined;
        } catch {
          return undefined;
        }
      };
      const seeds = [];
      for (const si of chosen) {
        const r = seedSet.rows[si]!;
        const neighbours: Record<string, { id: string; path: string; distance: number; label: string }[]> = {};
        for (const [b, x] of selects.entries()) {
          const p = picks[b]!;
          const mine = p.ids.map((_, j) => j).filter((j) => p.seeds[j] === r.id).sort((a, c) => p.rank[a]! - p.rank[c]!).slice(0, GALLERY_NEIGHBOURS);
          neighbours[x.label] = [];
          for (const j of mine) {
            const pr = pool.rows[poolAt.get(p.ids[j]!)!]!;
            const truth = truthOf(pr);
            neighbours[x.label]!.push({ id: p.ids[j]!, path: await poolImage(p.ids[j]!), distance: p.dist[j]!, label: truth !== undefined && truth !== p.labels[j] ? `${cls(p.labels[j]!)}, shows ${cls(truth)}` : cls(p.labels[j]!) });
          }
        }
        seeds.push({ image: { id: r.id, path: await imageOf(seedSet, si, 'seed'), label: cls(r.label) }, neighbours });
      }
      // wrongly labelled picks of the first backbone, where the pool knows the truth
      const p0 = picks[0]!;
      const wrong = [];
      for (let j = 0; j < p0.ids.length && wrong.length < GALLERY_WRONG; j++) {
        const truth = truthOf(pool.rows[poolAt.get(p0.ids[j]!)!]!);
        if (truth !== undefined && truth !== p0.labels[j]) wrong.push({ id: p0.ids[j]!, path: await poolImage(p0.ids[j]!), distance: p0.dist[j]!, label: `${cls(p0.labels[j]!)} → ${cls(truth)}` });
      }
      const wrongTitle =
        cfg.select.candidates === 'any_label'
          ? `Complete-pool variant (${selects[0]!.label}): picks whose true class differs from the seed's`
          : `Wrongly labelled picks of dcd-${selects[0]!.label} (weak label → true class; none = no object)`;
      await atomicWriteJson(path.join(ctx.dir, 'gallery.json'), { backbones: selects.map((x) => x.label), seeds, completeWrong: wrong, wrongTitle });
      return { files: { gallery: 'gallery.json' }, counts: { seeds: seeds.length, wrong: wrong.length } };
    },
  };
}

/**
 * Class and context retention of each backbone's k nearest neighbours (paper Fig. 7) on one
 * image set of the run, from the run's cached embeddings. A set without a context column
 * gives an empty result with the reason, not an error.
 */
export function retentionStage(cfg: Config, data: StageSpec, embeds: { backbone: BackboneConfig; embed: StageSpec }[], suffix = ''): StageSpec {
  const r = cfg.report.retention;
  const deps: Record<string, StageSpec> = { data };
  embeds.forEach((e, i) => (deps[`emb${i}`] = e.embed));
  return {
    stage: 'retention',
    label: `${r.set}${suffix}`,
    version: 1,
    config: { set: r.set, ks: r.ks, rule: r.rule, backbones: embeds.map((e) => e.backbone.label ?? e.backbone.name) },
    deps,
    async run(ctx): Promise<StageOutputs> {
      const manifest = ctx.inputs.data!.file(r.set);
      const items = await readRetentionItems(manifest).catch((e: Error) => e);
      if (items instanceof Error) {
        ctx.log(`retention skipped: ${items.message}`);
        await atomicWriteJson(path.join(ctx.dir, 'retention.json'), { skipped: items.message });
        return { files: { json: 'retention.json' }, counts: { rows: 0 }, extra: { markdown: '' } };
      }
      const names = embeds.map((e) => e.backbone.name);
      const files = Object.fromEntries(embeds.map((e, i) => [e.backbone.name, [ctx.inputs[`emb${i}`]!.file('embeddings')]]));
      const points = await retentionTable({ manifest, backbones: names, embeddings: files, ks: r.ks }, { rule: r.rule });
      const label = new Map(embeds.map((e) => [e.backbone.name, e.backbone.label ?? e.backbone.name]));
      const rows = points.map((p) => ({ ...p, backbone: label.get(p.backbone) ?? p.backbone }));
      await writeRetentionOutputs(rows, ctx.dir, { manifest, rule: r.rule, normalize: false, ks: r.ks });
      return {
        files: { markdown: 'retention.md', csv: 'retention.csv', json: 'retention.json', svg: 'retention.svg', png: 'retention.png' },
        counts: { rows: rows.length, images: items.length },
        extra: { markdown: retentionMarkdown(rows, r.rule), set: r.set },
      };
    },
  };
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
    version: 3,
    config: { formats: cfg.report.formats, title: cfg.report.title ?? null, rows: rows.map((r) => ({ method: r.method, seed: r.seed, variant: r.variant })) },
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
          ...(j.completeWrong ? { completeWrong: j.completeWrong.map(abs) } : {}),
          ...(j.wrongTitle ? { wrongTitle: j.wrongTitle } : {}),
        };
      }
      const files = await writeTables(ctx.dir, results, { title: cfg.report.title ?? `dcd: ${cfg.experiment.name}`, formats: cfg.report.formats, ...(retrieval ? { retrieval } : {}) });
      const ret = ctx.inputs.retention;
      const md = ret ? String(ret.manifest.extra.markdown ?? '') : '';
      if (ret && md) {
        const table = readFileSync(path.join(ctx.dir, 'report.md'), 'utf8');
        const set = String(ret.manifest.extra.set ?? cfg.report.retention.set);
        // report.md is copied to the run folder (two levels up): paths relative to it
        const rel = path.relative(path.dirname(path.dirname(ctx.dir)), ret.file('png'));
        await atomicWriteFile(
          path.join(ctx.dir, 'report.md'),
          `${table.trimEnd()}\n\n### Backbones: class and context retention of k nearest neighbours (${set} set, paper Fig. 7)\n\n${md}\nPlot: \`${rel}\` (in the run folder).\n`,
        );
        files.retention = path.relative(ctx.dir, ret.file('png'));
      }
      const pre = (opts.pretraining ?? []).map((_, i) => ctx.inputs[`pretrain${i}`]!);
      if (pre.length) {
        // one table row per pretraining run (per seed where it reads the seed's pool), and its loss curve
        const lines = pre.map((p) => String(p.manifest.extra.markdown ?? '').trimEnd().split('\n'));
        const head = lines[0]!.slice(0, 2);
        const body = lines.flatMap((l) => l.slice(2));
        const plots = pre.map((p) => `\`${path.relative(path.dirname(path.dirname(ctx.dir)), p.file('loss_png'))}\``).join(', ');
        const table = readFileSync(path.join(ctx.dir, 'report.md'), 'utf8');
        await atomicWriteFile(
          path.join(ctx.dir, 'report.md'),
          `${table.trimEnd()}\n\n### Self-supervised pretraining of the ssl backbones (loss per step: loss.jsonl beside each plot)\n\n${[...head, ...body].join('\n')}\n\nLoss curves: ${plots} (in the run folder).\n`,
        );
      }
      return { files, counts: { rows: results.length, columns: COLUMNS.length } };
    },
  };
}
