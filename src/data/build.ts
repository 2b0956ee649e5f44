/**
 * One entry point over every adapter: `buildManifest(kind, path, opts)`, used by
 * `dcd data manifest`.
 */
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { writeManifest, summarizeManifest, type ManifestRow, type ManifestSummary } from './manifest.js';
import { hashRows, imageFolderClasses, ilsvrcTrain, ilsvrcVal, imageFolder, imagenetV2, imagenetV2Complement, readClassSubset, subsetRows, weakPool, V2_VARIANTS, type V2Variant } from './adapters.js';
import { focus } from './focus.js';
import { fashionMnist, FASHION_MNIST_CLASSES } from './idx.js';
import { FOCUS_CATEGORIES } from './focus.js';
import { loadSynsets } from './synsets.js';

/** Data-set kinds {@link buildManifest} understands. */
export const MANIFEST_KINDS = ['imagefolder', 'ilsvrc-train', 'ilsvrc-val', 'v2', 'v2-complement', 'weak-pool', 'focus', 'fashion-mnist'] as const;
export type ManifestKind = (typeof MANIFEST_KINDS)[number];

/** Options of {@link buildManifest}; each applies to the kinds named. */
export interface BuildOptions {
  /** Set name written in every row (default per kind: train, test, mfreq, complement, pool, focus). */
  set?: string;
  /** Keep only these classes: a class-subset file (wnids or indices). */
  classes?: string;
  /** ilsvrc-val: either label file (.csv = LOC_val_solution.csv, else the devkit ground truth). */
  labels?: string;
  /** ilsvrc-val: Kaggle LOC_val_solution.csv. */
  locSolution?: string;
  /** ilsvrc-val: the devkit (tarball or folder), or its ILSVRC2012_validation_ground_truth.txt (then idMap too). */
  groundTruth?: string;
  /** ilsvrc-val: ILSVRC2012_ID → wnid map (map_clsloc.txt or CSV). */
  idMap?: string;
  /** v2: matched-frequency, threshold0.7 or top-images. */
  variant?: string;
  /** v2-complement: the Threshold0.7 and TopImages folders (path = MatchedFrequency). */
  threshold?: string;
  topImages?: string;
  /** Fill the sha256 column (always on for v2-complement). */
  hash?: boolean;
}

/** Builds the manifest rows of a data set plus the metadata to store with them. */
export async function buildManifest(kind: string, root: string, opts: BuildOptions = {}): Promise<{ rows: ManifestRow[]; meta: Record<string, string> }> {
  let rows: ManifestRow[];
  let classes: readonly string[] | undefined;
  const imagenetNames = () => loadSynsets().map((s) => s.names[0]!);
  switch (kind as ManifestKind) {
    case 'imagefolder':
      rows = imageFolder(root, { set: opts.set });
      classes = imageFolderClasses(root);
      break;
    case 'ilsvrc-train':
      rows = ilsvrcTrain(root, { set: opts.set });
      classes = imagenetNames();
      break;
    case 'ilsvrc-val':
      rows = ilsvrcVal(root, { set: opts.set, labels: opts.labels, locSolution: opts.locSolution, groundTruth: opts.groundTruth, idMap: opts.idMap });
      classes = imagenetNames();
      break;
    case 'v2': {
      const v = opts.variant ?? 'matched-frequency';
      if (!(v in V2_VARIANTS)) throw new ConfigError(`--variant: expected one of ${Object.keys(V2_VARIANTS).join(', ')}; received "${v}"`);
      rows = imagenetV2(root, v as V2Variant, { set: opts.set });
      classes = imagenetNames();
      break;
    }
    case 'v2-complement':
      if (!opts.threshold || !opts.topImages)
        throw new ConfigError('v2-complement: pass the MatchedFrequency folder as the path, and --threshold <Threshold0.7 folder> --top-images <TopImages folder>');
      rows = await imagenetV2Complement({ matchedFrequency: root, threshold: opts.threshold, topImages: opts.topImages });
      if (opts.set) rows = rows.map((r) => ({ ...r, set: opts.set! }));
      classes = imagenetNames();
      break;
    case 'weak-pool':
      rows = await weakPool(root, { set: opts.set });
      classes = imagenetNames();
      break;
    case 'focus':
      rows = focus(root, { set: opts.set });
      classes = FOCUS_CATEGORIES;
      break;
    case 'fashion-mnist':
      rows = fashionMnist(root);
      if (opts.set) rows = rows.filter((r) => r.set === opts.set);
      classes = FASHION_MNIST_CLASSES;
      break;
    default:
      throw new ConfigError(`data set kind "${kind}": expected one of ${MANIFEST_KINDS.join(', ')}`);
  }
  if (opts.classes) rows = subsetRows(rows, readClassSubset(opts.classes));
  if (opts.hash && rows.some((r) => !r.sha256 && r.path && !r.path.startsWith('idx:'))) await hashRows(rows.filter((r) => !r.sha256 && r.path && !r.path.startsWith('idx:')));
  const meta: Record<string, string> = { 'dcd.source': kind, 'dcd.root': path.resolve(root) };
  if (classes) meta['dcd.classes'] = JSON.stringify(classes);
  if (opts.classes) meta['dcd.class_subset'] = path.resolve(opts.classes);
  return { rows, meta };
}

/** Builds a manifest and writes it to `out`; returns its summary. */
export async function buildManifestFile(kind: string, root: string, out: string, opts: BuildOptions = {}): Promise<ManifestSummary> {
  const { rows, meta } = await buildManifest(kind, root, opts);
  await writeManifest(out, rows, meta);
  return summarizeManifest(rows);
}

/** Result of {@link checkManifestImages}. */
export interface CheckResult {
  /** Rows whose image decoded. */
  good: ManifestRow[];
  /** Rows that did not, with the reason. */
  bad: { row: ManifestRow; reason: string }[];
}

/**
 * Decodes every image of `rows` (through the same pipeline as training and embedding,
 * at a small size) and splits the rows into those that decode and those that do not.
 * Rows without a path (not downloaded) count as bad.
 */
export async function checkManifestImages(rows: readonly ManifestRow[], opts: { concurrency?: number; limitInputPixels?: number; onProgress?: (n: number) => void } = {}): Promise<CheckResult> {
  const { imageBatches } = await import('./images.js');
  const { manifestItems } = await import('./idx.js');
  const withPath = rows.filter((r) => r.path);
  const bad: CheckResult['bad'] = rows.filter((r) => !r.path).map((row) => ({ row, reason: 'no path (not downloaded)' }));
  const byId = new Map(withPath.map((r) => [r.id, r]));
  const okIds = new Set<string>();
  const t = { resize: 16, crop: 16, mean: [0, 0, 0], std: [1, 1, 1] };
  for await (const b of imageBatches(manifestItems(withPath), t, 64, { concurrency: opts.concurrency ?? 2, limitInputPixels: opts.limitInputPixels })) {
    for (const id of b.ids) okIds.add(id);
    for (const s of b.skipped) bad.push({ row: byId.get(s.id)!, reason: s.reason });
    opts.onProgress?.(b.ids.length + b.skipped.length);
  }
  return { good: withPath.filter((r) => okIds.has(r.id)), bad };
}
