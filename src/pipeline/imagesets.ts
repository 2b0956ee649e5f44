/**
 * Image sets as the pipeline's stages pass them on: a dcd manifest (Arrow) per set,
 * and, for sets whose pixels live in memory (the synthetic benchmark, Fashion-MNIST
 * with its induced shift), a raw uint8 NHWC sidecar file `<set>.u8` whose shape is in
 * the manifest's metadata (`dcd.pixels`). Rows of such sets have `path` = `pixels:<i>`.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';
import { atomicWriteFile } from '../core/fsutil.js';
import type { Preprocess } from '../core/types.js';
import { readManifest, writeManifest, type ManifestRow } from '../data/manifest.js';
import type { ImageItem } from '../data/images.js';
import { manifestItems } from '../data/idx.js';
import { fromArrays, fromManifest, type Dataset } from '../train/dataset.js';

/** An image set in memory. */
export interface ImageSet {
  name: string;
  rows: ManifestRow[];
  /** Pixels of in-memory sets: HWC uint8, [n, H, W, C]. */
  pixels?: { data: Uint8Array; shape: [number, number, 1 | 3] };
  /** Schema metadata of the manifest. */
  meta: Record<string, string>;
}

/** Writes `<dir>/<name>.arrow` (+ `<name>.u8`); returns the file names relative to `dir`. */
export async function writeImageSet(dir: string, set: ImageSet): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  const meta: Record<string, string> = { ...set.meta, 'dcd.set': set.name };
  if (set.pixels) {
    const rel = `${set.name}.u8`;
    const [h, w, c] = set.pixels.shape;
    if (set.pixels.data.length !== set.rows.length * h * w * c)
      throw new ArtifactError(`image set ${set.name}: ${set.pixels.data.length} pixel bytes for ${set.rows.length} images of ${h}×${w}×${c}`);
    await atomicWriteFile(path.join(dir, rel), set.pixels.data);
    meta['dcd.pixels'] = JSON.stringify({ file: rel, shape: set.pixels.shape });
    files[`${set.name}_pixels`] = rel;
  }
  const rel = `${set.name}.arrow`;
  await writeManifest(path.join(dir, rel), set.rows, meta);
  files[set.name] = rel;
  return files;
}

/** Reads a set written by {@link writeImageSet} from its `.arrow` file. */
export async function readImageSet(file: string): Promise<ImageSet> {
  const m = await readManifest(file);
  const set: ImageSet = { name: m.meta['dcd.set'] ?? path.basename(file, '.arrow'), rows: m.rows, meta: m.meta };
  const px = m.meta['dcd.pixels'];
  if (px) {
    const { file: rel, shape } = JSON.parse(px) as { file: string; shape: [number, number, 1 | 3] };
    const f = path.join(path.dirname(file), rel);
    if (!existsSync(f)) throw new ArtifactError(`${file}: its pixel file ${f} is missing; rerun the data stage (delete its manifest.json)`);
    const buf = readFileSync(f);
    const data = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    const [h, w, c] = shape;
    if (data.length !== m.rows.length * h * w * c) throw new ArtifactError(`${f}: ${data.length} bytes, expected ${m.rows.length}×${h}×${w}×${c}`);
    set.pixels = { data, shape };
  }
  return set;
}

/** The rows of `set` at `indices`, pixels included. */
export function subsetImageSet(set: ImageSet, indices: readonly number[], name = set.name): ImageSet {
  const out: ImageSet = { name, rows: indices.map((i) => set.rows[i]!), meta: set.meta };
  if (set.pixels) {
    const [h, w, c] = set.pixels.shape;
    const per = h * w * c;
    const data = new Uint8Array(indices.length * per);
    indices.forEach((i, j) => data.set(set.pixels!.data.subarray(i * per, (i + 1) * per), j * per));
    out.pixels = { data, shape: set.pixels.shape };
    out.rows = out.rows.map((r, j) => ({ ...r, path: `pixels:${j}` }));
  }
  return out;
}

/** Items for the data area's `imageBatches`: raw pixels for in-memory sets, files (or IDX entries) otherwise. */
export function imageItems(set: ImageSet): ImageItem[] {
  if (!set.pixels) return manifestItems(set.rows);
  const [h, w, c] = set.pixels.shape;
  const per = h * w * c;
  return set.rows.map((r, i) => ({ id: r.id, raw: { data: set.pixels!.data.subarray(i * per, (i + 1) * per), width: w, height: h, channels: c } }));
}

/**
 * A training/evaluation {@link Dataset} over `set` with the model's preprocessing.
 * In-memory sets are normalised with the preprocess mean/std at their stored size.
 * @param labels override of the labels (e.g. the seed's class for selected pool images)
 */
export function toDataset(set: ImageSet, pre: Preprocess, opts: { labels?: ArrayLike<number>; weights?: ArrayLike<number>; concurrency?: number; augmentPad?: number } = {}): Dataset {
  const labels = opts.labels ?? Int32Array.from(set.rows, (r) => r.label);
  if (set.pixels) {
    return fromArrays({
      images: set.pixels.data,
      shape: set.pixels.shape,
      labels,
      ids: set.rows.map((r) => r.id),
      ...(opts.weights ? { weights: opts.weights } : {}),
      mean: pre.mean,
      std: pre.std,
      augment: { flip: true, pad: opts.augmentPad ?? 0 },
    });
  }
  const rows = opts.labels ? set.rows.map((r, i) => ({ ...r, label: labels[i]! })) : set.rows;
  return fromManifest(rows, {
    transform: { resize: pre.resize, crop: pre.crop, mean: pre.mean, std: pre.std },
    ...(opts.weights ? { weights: opts.weights } : {}),
    concurrency: opts.concurrency ?? 4,
  });
}
