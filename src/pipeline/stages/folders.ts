/**
 * `data.kind: folders` in the pipeline: the data stage's work for a user's own ImageFolder
 * sets (read, decode once at `data.image_size`, write the image sets), the demo backbone
 * trained on the pool or on a folder (`pretrain.data`). The config's checks are in
 * src/pipeline/config-check.ts.
 */
import path from 'node:path';
import { DataError } from '../../core/errors.js';
import { atomicWriteFile, atomicWriteJson } from '../../core/fsutil.js';
import type { Config, DemoBackboneConfig } from '../../core/config.js';
import { decodeFolderRows, FOLDER_ROLES, readFolderDataset, readSubsetNames, scanFolderSet, checkSubsetInPool } from '../../data/folders.js';
import type { ManifestRow } from '../../data/manifest.js';
import { subdirs } from '../../data/adapters.js';
import { getModelSpec } from '../../models/registry.js';
import { trainDemoBackboneOn, type DemoBackboneSpec, type DemoTrainingImages } from '../../train/demo-backbones.js';
import type { StageContext, StageOutputs, StageResult, StageSpec } from '../runner.js';
import { readImageSet, writeImageSet } from '../imagesets.js';
import { classesOf } from './common.js';
import { writeDemoBackbone } from './backbone.js';

/** Side length every image of a folder dataset is decoded to: data.image_size, else the train model's input size. */
export function folderImageSize(cfg: Config): number {
  return cfg.data.image_size ?? getModelSpec(cfg.train.model).preprocess.crop;
}

/** Files and folders the data stage reads (fingerprinted for caching). */
export function folderExternals(cfg: Config): string[] {
  const f = cfg.data.folders!; // checked before the run (src/pipeline/config-check.ts)
  return [f.train, f.test, f.mfreq, f.complement, f.pool, ...(f.classes ? [f.classes] : []), ...(f.contexts ? [f.contexts] : [])];
}

/** Where a demo backbone learns from under data.kind folders: 'pool' or an ImageFolder path. */
export function pretrainData(b: DemoBackboneConfig): string {
  return b.pretrain?.data ?? 'pool';
}

/** The data stage's work for kind folders: every set decoded once and written as an in-memory image set. */
export async function runFolderData(cfg: Config, ctx: StageContext): Promise<StageOutputs> {
  const spec = cfg.data.folders!;
  const size = folderImageSize(cfg);
  const ds = await readFolderDataset(spec);
  const files: Record<string, string> = {};
  const counts: Record<string, number> = {};
  const unreadable: { set: string; id: string; path: string; reason: string }[] = [];
  const total = FOLDER_ROLES.reduce((s, r) => s + ds.sets[r].length, 0) + ds.pool.length;
  ctx.log(`${ds.classes.length} classes; decoding ${total} images to ${size}×${size}`);
  const bar = ctx.progress(total, 'img');
  const meta = { 'dcd.source': 'folders', 'dcd.classes': JSON.stringify(ds.classes), 'dcd.image_size': String(size) };
  for (const name of [...FOLDER_ROLES, 'pool'] as const) {
    const rows = name === 'pool' ? ds.pool : ds.sets[name];
    const d = await decodeFolderRows(rows, size, { concurrency: cfg.compute.concurrency, onProgress: (n) => bar.tick(n) });
    for (const s of d.skipped) unreadable.push({ set: name, ...s });
    const key = name === 'pool' ? 'data.folders.pool' : `data.folders.${name}`;
    if (!d.rows.length) throw new DataError(`${key}: none of the ${rows.length} images of ${spec[name]} could be read (first: ${d.skipped[0]?.path} — ${d.skipped[0]?.reason}); check the files`);
    Object.assign(files, await writeImageSet(ctx.dir, { name, rows: d.rows, pixels: { data: d.pixels, shape: [size, size, 3] }, meta }));
    counts[name] = d.rows.length;
  }
  bar.stop();
  for (const name of [...FOLDER_ROLES, 'pool']) ctx.log(`${name}: ${counts[name]} images`);
  if (ds.stray.length) ctx.log(`ignored ${ds.stray.length} file(s) outside class folders, e.g. ${ds.stray[0]!.role}/${ds.stray[0]!.file}`);
  if (unreadable.length) {
    ctx.log(`skipped ${unreadable.length} unreadable image(s) (listed in unreadable.tsv), e.g. ${unreadable[0]!.path}: ${unreadable[0]!.reason}`);
    await atomicWriteFile(path.join(ctx.dir, 'unreadable.tsv'), ['set\tid\tpath\treason', ...unreadable.map((u) => `${u.set}\t${u.id}\t${u.path}\t${u.reason}`)].join('\n') + '\n');
    files.unreadable = 'unreadable.tsv';
  }
  counts.unreadable = unreadable.length;
  await atomicWriteJson(path.join(ctx.dir, 'classes.json'), { names: ds.classes, subset: null });
  files.classes = 'classes.json';
  return { files, counts };
}

/** Y_sub of a folders config given as a file of class names; checked against the pool. */
export function folderSubset(cfg: Config, names: readonly string[], pool: readonly ManifestRow[]): number[] | undefined {
  const sub = cfg.failures.subset;
  if (typeof sub !== 'string' || sub === 'pool' || sub === 'discover') return undefined;
  const subset = readSubsetNames(sub, names);
  checkSubsetInPool(subset, pool, names, sub);
  return subset;
}

/**
 * A demo backbone for a folder dataset: `random_cnn` (untrained, seeded) or `broad_cnn`
 * trained to predict the labels of `pretrain.data` — the pool's weak labels (default) or an
 * ImageFolder's classes — never a debug set (checked before the run by src/pipeline/config-check.ts).
 */
export function folderDemoBackbone(cfg: Config, b: DemoBackboneConfig, data: StageSpec): StageSpec {
  const p = b.pretrain ?? {};
  const kind = p.kind ?? 'broad_cnn';
  const source = pretrainData(b);
  const size = folderImageSize(cfg);
  const spec: DemoBackboneSpec = { kind, widths: p.widths ?? [16, 32, 64], seed: p.seed ?? 1000, steps: p.steps ?? 400, lr: p.lr ?? 2e-3 };
  const fromPool = kind === 'broad_cnn' && source === 'pool';
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 1,
    config: { name: b.name, ...spec, data: kind === 'broad_cnn' ? source : null, image_size: kind === 'broad_cnn' ? size : null },
    deps: fromPool ? { data } : {},
    externals: kind === 'broad_cnn' && source !== 'pool' ? [source] : [],
    async run(ctx): Promise<StageOutputs> {
      if (kind === 'self') return { files: {}, extra: { self: true } };
      let train: DemoTrainingImages = { images: new Uint8Array(0), size, n: 0, labels: new Int32Array(0), numClasses: 0 };
      if (kind === 'broad_cnn') {
        train = fromPool ? await poolImages(ctx.inputs.data!, size) : await folderImages(source, size, cfg.compute.concurrency);
        ctx.log(`training on ${train.n} images of ${fromPool ? 'the pool (weak labels)' : source} in ${train.numClasses} classes`);
      }
      const steps = kind === 'broad_cnn' ? spec.steps : undefined;
      return writeDemoBackbone(ctx, b.name, steps, (onStep) => trainDemoBackboneOn(spec, train, onStep));
    },
  };
}

async function poolImages(data: StageResult, size: number): Promise<DemoTrainingImages> {
  const pool = await readImageSet(data.file('pool'));
  return { images: pool.pixels!.data, size, n: pool.rows.length, labels: Int32Array.from(pool.rows, (r) => r.weak_label ?? -1), numClasses: classesOf(data).names.length };
}

async function folderImages(root: string, size: number, concurrency: number): Promise<DemoTrainingImages> {
  const classes = subdirs(root);
  const { rows } = scanFolderSet(root, 'train', classes, { key: 'backbones[].pretrain.data' });
  const d = await decodeFolderRows(rows, size, { concurrency });
  if (!d.rows.length) throw new DataError(`backbones[].pretrain.data: none of the images of ${root} could be read`);
  return { images: d.pixels, size, n: d.rows.length, labels: Int32Array.from(d.rows, (r) => r.label), numClasses: classes.length };
}
