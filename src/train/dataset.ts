/**
 * The data contract of training and evaluation: a random-access, labelled image set
 * that returns normalised NHWC batches for any list of indices.
 *
 * Three constructors: {@link fromArrays} (pixels in memory: the synthetic benchmark,
 * Fashion-MNIST), {@link fromManifest} (image files or IDX entries listed in a dcd
 * manifest, decoded with src/data/images.ts), and {@link concatDatasets} (the base
 * train set plus added sets, each with its own per-sample weights).
 */
import { ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { hashSeed } from '../core/rng.js';
import { imageBatches, type ImageItem, type ImageTransform } from '../data/images.js';
import type { ManifestRow } from '../data/manifest.js';
import { manifestItems } from '../data/idx.js';

/** Train-time augmentation request: the crop/flip of an image depends on (seed, epoch, id) only. */
export interface AugmentRequest {
  seed: number;
  epoch: number;
}

/** A random-access labelled image set. */
export interface Dataset {
  /** Number of samples. */
  readonly size: number;
  /** Class index per sample (-1 = none). */
  readonly labels: Int32Array;
  /** Per-sample loss weights (default: all 1). */
  readonly weights?: Float32Array;
  /** Unique id per sample. */
  readonly ids: string[];
  /** [H, W, 3] of every sample after the transform. */
  readonly imageShape: [number, number, 3];
  /**
   * Samples that could not be decoded so far (index → reason). The trainer gives them
   * weight 0 in the batch they appear in; evaluation drops them and lists them.
   */
  readonly skipped: Map<number, string>;
  /**
   * Pixels of the samples at `indices`, in that order.
   * @param aug when given, the train transform (seeded random-resized crop + flip);
   *   otherwise the eval transform
   * @returns NHWC float32, [indices.length, H, W, 3], normalised. A sample that cannot
   *   be decoded is all zeros and is recorded in {@link Dataset.skipped}.
   */
  getBatch(indices: Int32Array, aug?: AugmentRequest): Promise<Float32Array>;
}

/** Seed of the augmentation stream of one epoch. */
export function epochSeed(aug: AugmentRequest): number {
  return hashSeed(aug.seed, `epoch:${aug.epoch}`);
}

function checkLabels(labels: ArrayLike<number>, n: number, what: string): Int32Array {
  if (labels.length !== n) throw new ConfigError(`${what}: ${labels.length} labels for ${n} images; give one label per image`);
  return Int32Array.from(labels);
}

function checkWeights(weights: ArrayLike<number> | undefined, n: number, what: string): Float32Array | undefined {
  if (weights === undefined) return undefined;
  if (weights.length !== n) throw new ConfigError(`${what}: ${weights.length} weights for ${n} images; give one weight per image`);
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (!Number.isFinite(w) || w < 0) throw new ConfigError(`${what}: weight ${i} is ${w}; weights must be finite and ≥ 0`);
  }
  return Float32Array.from(weights);
}

function checkIndices(indices: Int32Array, size: number, what: string): void {
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i]!;
    if (!(k >= 0 && k < size)) throw new ConfigError(`${what}: index ${k} out of range [0, ${size})`);
  }
}

/** Options of {@link fromArrays}. */
export interface ArraysOptions {
  /** Pixels, NHWC: uint8 [0, 255] (normalised here) or float32 (already normalised, used as is). */
  images: Uint8Array | Float32Array;
  /** [H, W, C] of one image; C is 1 (grey, replicated to RGB) or 3. */
  shape: [number, number, 1 | 3];
  labels: ArrayLike<number>;
  ids?: string[];
  weights?: ArrayLike<number>;
  /** Normalisation of uint8 pixels: (p/255 − mean) / std. Default identity. */
  mean?: readonly number[];
  std?: readonly number[];
  /**
   * Train augmentation for in-memory images: random horizontal flip and a random
   * translation by up to `pad` pixels (zero padding), the CIFAR recipe. Default
   * `{ flip: true, pad: 0 }`.
   */
  augment?: { flip?: boolean; pad?: number };
}

/**
 * A dataset of images held in memory (no resize: every image has `shape`).
 * Train augmentation is a seeded flip (+ optional translation), drawn per (seed, epoch, id).
 */
export function fromArrays(o: ArraysOptions): Dataset {
  const [H, W, C] = o.shape;
  if (C !== 1 && C !== 3) throw new ConfigError(`fromArrays: shape[2] (channels) must be 1 or 3, received ${C}`);
  const per = H * W * C;
  if (per <= 0 || o.images.length % per !== 0)
    throw new ConfigError(`fromArrays: ${o.images.length} pixel values is not a multiple of H·W·C = ${per}`);
  const n = o.images.length / per;
  const labels = checkLabels(o.labels, n, 'fromArrays');
  const weights = checkWeights(o.weights, n, 'fromArrays');
  const ids = o.ids ?? Array.from({ length: n }, (_, i) => String(i));
  if (ids.length !== n) throw new ConfigError(`fromArrays: ${ids.length} ids for ${n} images`);
  const mean = o.mean ?? [0, 0, 0];
  const std = o.std ?? [1, 1, 1];
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s > 0)))
    throw new ConfigError(`fromArrays: mean and std need 3 values each, std > 0; received mean ${JSON.stringify(mean)}, std ${JSON.stringify(std)}`);
  const isU8 = o.images instanceof Uint8Array;
  // per-channel lookup table for uint8 pixels
  const lut = new Float32Array(256 * 3);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - mean[c]!) / std[c]!;
  const flipOn = o.augment?.flip ?? true;
  const padPx = o.augment?.pad ?? 0;
  return {
    size: n,
    labels,
    weights,
    ids,
    imageShape: [H, W, 3],
    skipped: new Map(),
    async getBatch(indices, aug) {
      checkIndices(indices, n, 'Dataset.getBatch');
      const out = new Float32Array(indices.length * H * W * 3);
      const eSeed = aug ? epochSeed(aug) : 0;
      for (let b = 0; b < indices.length; b++) {
        const k = indices[b]!;
        let flip = false;
        let dx = 0;
        let dy = 0;
        if (aug) {
          const r = hashSeed(eSeed, ids[k]!);
          flip = flipOn && (r & 1) === 1;
          if (padPx > 0) {
            dx = ((r >>> 1) % (2 * padPx + 1)) - padPx;
            dy = ((r >>> 9) % (2 * padPx + 1)) - padPx;
          }
        }
        const src = k * per;
        const dst = b * H * W * 3;
        for (let y = 0; y < H; y++) {
          const sy = y + dy;
          for (let x = 0; x < W; x++) {
            const o3 = dst + (y * W + x) * 3;
            let sx = x + dx;
            if (flip) sx = W - 1 - sx;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W) {
              continue; // translated-in border stays 0 (the mean, in normalised space)
            }
            const s = src + (sy * W + sx) * C;
            for (let c = 0; c < 3; c++) {
              const v = o.images[s + (C === 1 ? 0 : c)]!;
              out[o3 + c] = isU8 ? lut[c * 256 + v]! : v;
            }
          }
        }
      }
      return out;
    },
  };
}

/** Options of {@link fromManifest}. */
export interface ManifestOptions {
  /** Eval transform and normalisation (the model's Preprocess). */
  transform: ImageTransform;
  /** Per-row loss weights (default 1). */
  weights?: ArrayLike<number>;
  /** Decoding concurrency (default 2). */
  concurrency?: number;
  /** Train augmentation: RandomResizedCrop scale range (default torchvision's [0.08, 1]). */
  scale?: readonly [number, number];
}

/**
 * A dataset over manifest rows (files or `idx:` entries), decoded on demand with the
 * data area's {@link imageBatches}. Rows with label -1 are kept (evaluation of
 * unlabelled sets); the trainer refuses them.
 */
export function fromManifest(rows: readonly ManifestRow[], o: ManifestOptions): Dataset {
  const n = rows.length;
  const labels = Int32Array.from(rows.map((r) => r.label));
  const weights = checkWeights(o.weights, n, 'fromManifest');
  const ids = rows.map((r) => r.id);
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) throw new DataError(`manifest: id "${id}" appears twice; ids must be unique (re-create the manifest)`);
    seen.add(id);
  }
  const { crop } = o.transform;
  const per = crop * crop * 3;
  const skipped = new Map<number, string>();
  const indexOf = new Map(ids.map((id, i) => [id, i]));
  // `idx:` rows (Fashion-MNIST) become in-memory pixels; built once, on first use
  let allItems: ImageItem[] | undefined;
  let warned = 0;
  return {
    size: n,
    labels,
    weights,
    ids,
    imageShape: [crop, crop, 3],
    skipped,
    async getBatch(indices, aug) {
      checkIndices(indices, n, 'Dataset.getBatch');
      allItems ??= manifestItems(rows);
      const items: ImageItem[] = Array.from(indices, (k) => allItems![k]!);
      const out = new Float32Array(indices.length * per);
      const pos = new Map<string, number[]>();
      indices.forEach((k, b) => {
        const id = rows[k]!.id;
        const l = pos.get(id);
        if (l) l.push(b);
        else pos.set(id, [b]);
      });
      const train = aug ? { seed: epochSeed(aug), ...(o.scale ? { scale: o.scale } : {}) } : undefined;
      // duplicates in `indices` (weighted sampling) are decoded once per occurrence
      for await (const batch of imageBatches(items, o.transform, Math.max(1, indices.length), {
        concurrency: o.concurrency ?? 2,
        prefetch: 0,
        ...(train ? { train } : {}),
      })) {
        const used = new Map<string, number>();
        batch.ids.forEach((id, j) => {
          const slots = pos.get(id)!;
          const u = used.get(id) ?? 0;
          used.set(id, u + 1);
          out.set(batch.data.subarray(j * per, (j + 1) * per), slots[u]! * per);
        });
        for (const s of batch.skipped) {
          const k = indexOf.get(s.id)!;
          if (!skipped.has(k)) {
            if (warned < 10) log.warn(`skipping ${s.path}: ${s.reason}`);
            else if (warned === 10) log.warn('more images could not be decoded; the rest are not listed here (see the skipped list of the result)');
            warned++;
          }
          skipped.set(k, s.reason);
        }
      }
      return out;
    },
  };
}

/** One part of a {@link concatDatasets} mixture. */
export interface MixturePart {
  dataset: Dataset;
  /** Multiplies the part's own per-sample weights (default 1). */
  weight?: number;
  /** Prefix of the part's ids in the mixture (default: none; ids must then be unique across parts). */
  idPrefix?: string;
}

/**
 * The concatenation of several datasets (e.g. the base train set and the images
 * added by a selection), each sample keeping its own weight times its part's weight.
 * All parts must share the image shape.
 */
export function concatDatasets(parts: readonly MixturePart[]): Dataset {
  if (parts.length === 0) throw new ConfigError('concatDatasets: give at least one dataset');
  const shape = parts[0]!.dataset.imageShape;
  for (const [i, p] of parts.entries()) {
    const s = p.dataset.imageShape;
    if (s[0] !== shape[0] || s[1] !== shape[1])
      throw new ConfigError(`concatDatasets: part ${i} has images ${s.join('×')}, part 0 has ${shape.join('×')}; use one transform for all parts`);
    if (p.weight !== undefined && !(Number.isFinite(p.weight) && p.weight >= 0))
      throw new ConfigError(`concatDatasets: part ${i} weight must be finite and ≥ 0, received ${p.weight}`);
  }
  const offsets: number[] = [];
  let n = 0;
  for (const p of parts) {
    offsets.push(n);
    n += p.dataset.size;
  }
  const labels = new Int32Array(n);
  const weights = new Float32Array(n);
  const ids: string[] = [];
  parts.forEach((p, i) => {
    labels.set(p.dataset.labels, offsets[i]!);
    const w = p.weight ?? 1;
    for (let j = 0; j < p.dataset.size; j++) weights[offsets[i]! + j] = (p.dataset.weights?.[j] ?? 1) * w;
    for (const id of p.dataset.ids) ids.push((p.idPrefix ?? '') + id);
  });
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) throw new ConfigError(`concatDatasets: id "${id}" appears in more than one part; give each part an idPrefix`);
    seen.add(id);
  }
  const skipped = new Map<number, string>();
  const partOf = (k: number): number => {
    let lo = 0;
    let hi = offsets.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offsets[mid]! <= k) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const per = shape[0] * shape[1] * 3;
  return {
    size: n,
    labels,
    weights,
    ids,
    imageShape: shape,
    skipped,
    async getBatch(indices, aug) {
      checkIndices(indices, n, 'Dataset.getBatch');
      const out = new Float32Array(indices.length * per);
      const byPart = new Map<number, number[]>();
      indices.forEach((k, b) => {
        const p = partOf(k);
        const l = byPart.get(p);
        if (l) l.push(b);
        else byPart.set(p, [b]);
      });
      for (const [p, slots] of byPart) {
        const ds = parts[p]!.dataset;
        const local = Int32Array.from(slots, (b) => indices[b]! - offsets[p]!);
        const data = await ds.getBatch(local, aug);
        slots.forEach((b, j) => out.set(data.subarray(j * per, (j + 1) * per), b * per));
        for (const [k, why] of ds.skipped) skipped.set(k + offsets[p]!, why);
      }
      return out;
    },
  };
}
