/**
 * Data stage: materialises the image sets (synthetic, Fashion-MNIST, ImageNet manifests, or a folder dataset: ./folders.ts) and the class list.
 */
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { buildManifest } from '../../data/build.js';
import type { ManifestRow } from '../../data/manifest.js';
import { generateSynthetic, type SyntheticDraw } from '../../data/synthetic.js';
import { makeFashionShift } from '../../data/fashion-shift.js';
import type { StageSpec } from '../runner.js';
import { writeImageSet, type ImageSet } from '../imagesets.js';
import { IMAGE_SETS, fashionParts } from './common.js';
import { folderExternals, folderImageSize, runFolderData } from './folders.js';

/** One set of a synthetic or Fashion-MNIST draw as manifest rows plus pixels. */
function drawRows(draw: SyntheticDraw, name: (typeof IMAGE_SETS)[number]): ImageSet {
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
  // kind imagenet has its section (checked before the run: src/pipeline/config-check.ts)
  const inet = d.kind === 'imagenet' ? d.imagenet! : undefined;
  return {
    stage: 'data',
    label: d.kind + (seed !== undefined ? `-s${seed}` : ''),
    version: 1,
    config: {
      kind: d.kind,
      seed: seed ?? null,
      synthetic: d.kind === 'synthetic' ? (d.synthetic ?? {}) : null,
      fashion: d.kind === 'fashion-mnist' ? { dir: d.fashion_dir, ...(d.fashion ?? {}) } : null,
      imagenet: inet ?? null,
      ...(d.kind === 'folders' ? { folders: { ...d.folders!, image_size: folderImageSize(cfg) } } : {}),
    },
    deps: {},
    externals:
      inet
        ? [inet.train, inet.val, inet.val_labels, ...(inet.val_id_map ? [inet.val_id_map] : []), inet.v2_matched_frequency, inet.v2_threshold, inet.v2_top_images, inet.pool]
        : d.kind === 'folders'
          ? folderExternals(cfg)
          : [],
    async run(ctx) {
      if (d.kind === 'folders') return runFolderData(cfg, ctx);
      const files: Record<string, string> = {};
      const counts: Record<string, number> = {};
      let classes: { names: string[]; subset: number[] | null; contexts?: string[]; home?: number[] };
      if (inet) {
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
            ? generateSynthetic(d.synthetic ?? {}, seed ?? 0)
            : makeFashionShift(fashionParts(cfg).synthetic, seed ?? 0, {
                dir: d.fashion_dir,
                ...(fashionParts(cfg).classes ? { classes: fashionParts(cfg).classes! } : {}),
              });
        for (const name of IMAGE_SETS) {
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
