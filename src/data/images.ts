/**
 * Image decoding, transforms and batching (sharp).
 *
 * Every image, whatever its format (JPEG, PNG, WebP, GIF, TIFF, or raw pixels held in
 * memory), goes through the same steps: EXIF orientation, conversion to 8-bit sRGB
 * with three channels (CMYK, greyscale and alpha handled), then either the eval
 * transform (shorter side to `resize`, centre crop `crop`: torchvision's
 * `Resize` + `CenterCrop`) or the train transform (torchvision's `RandomResizedCrop`
 * + `RandomHorizontalFlip`, drawn from a seeded RNG), then normalisation to float32.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import pLimit from 'p-limit';
import { ConfigError, DataError, describeError } from '../core/errors.js';
import { hashSeed, mulberry32 } from '../core/rng.js';
import { resizeBilinearU8 } from './resample.js';

/** Eval transform and normalisation (the shape of `Preprocess` in src/core/types.ts). */
export interface ImageTransform {
  /** Shorter side is resized to this many pixels (eval only). */
  resize: number;
  /** Output is crop × crop. */
  crop: number;
  /** Per-channel RGB mean and std applied to [0,1] pixels. */
  mean: readonly number[];
  std: readonly number[];
}

/** Decoded 8-bit pixels held in memory, row-major, channels interleaved. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 (grey), 3 (RGB) or 4 (RGBA; alpha is dropped). */
  channels: 1 | 3 | 4;
}

/** One input of {@link imageBatches}: a file on disk, or pixels in memory. */
export type ImageItem = { id: string; path: string } | { id: string; raw: RawImage; path?: string };

/** An item that could not be used, and why. */
export interface SkippedImage {
  id: string;
  path: string;
  reason: string;
}

/** One batch from {@link imageBatches}. */
export interface ImageBatch {
  /** Ids of the images in `data`, in order. */
  ids: string[];
  /** NHWC float32, [ids.length, crop, crop, 3], normalised. */
  data: Float32Array;
  /** Items dropped since the previous batch, with the reason. */
  skipped: SkippedImage[];
}

/** Options of the train transform. */
export interface TrainTransform {
  /** Seed of the augmentation RNG; the crop and flip of an image depend only on (seed, id). */
  seed: number;
  /** RandomResizedCrop area range (fraction of the image); torchvision default [0.08, 1]. */
  scale?: readonly [number, number];
  /** RandomResizedCrop aspect-ratio range; torchvision default [3/4, 4/3]. */
  ratio?: readonly [number, number];
  /** Probability of a horizontal flip; default 0.5. */
  flip?: number;
}

/** Options of {@link loadImage} and {@link imageBatches}. */
export interface LoadOptions {
  /** Apply the train transform instead of the eval transform. */
  train?: TrainTransform;
  /** Images with more pixels (width × height, read from the header) are refused. Default {@link DEFAULT_PIXEL_LIMIT}. */
  limitInputPixels?: number;
}

/** Default pixel limit: 100 megapixels, far above any real photo, far below a decompression bomb. */
export const DEFAULT_PIXEL_LIMIT = 100_000_000;

/** Python's round(): halves go to the even neighbour (torchvision's CenterCrop uses it). */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Size after torchvision `Resize(size)` of a w × h image: shorter side = size, longer truncated. */
export function resizeShorter(w: number, h: number, size: number): { width: number; height: number } {
  if (w <= h) return { width: size, height: Math.trunc((size * h) / w) };
  return { width: Math.trunc((size * w) / h), height: size };
}

/** Top-left corner of torchvision `CenterCrop(crop)` on a w × h image. */
export function centreCropOffset(w: number, h: number, crop: number): { left: number; top: number } {
  return { left: pyRound((w - crop) / 2), top: pyRound((h - crop) / 2) };
}

/** A crop rectangle plus flip, in the oriented image's pixel coordinates. */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
  flip: boolean;
}

/**
 * torchvision's `RandomResizedCrop.get_params` (10 tries, then a centre crop clamped to
 * the ratio range) followed by `RandomHorizontalFlip`, drawn from `rand`.
 */
export function randomResizedCropBox(width: number, height: number, rand: () => number, opts: Omit<TrainTransform, 'seed'> = {}): CropBox {
  const [s0, s1] = opts.scale ?? [0.08, 1];
  const [r0, r1] = opts.ratio ?? [3 / 4, 4 / 3];
  const area = width * height;
  const lr0 = Math.log(r0);
  const lr1 = Math.log(r1);
  const flipP = opts.flip ?? 0.5;
  for (let t = 0; t < 10; t++) {
    const target = area * (s0 + (s1 - s0) * rand());
    const aspect = Math.exp(lr0 + (lr1 - lr0) * rand());
    const w = pyRound(Math.sqrt(target * aspect));
    const h = pyRound(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rand() * (height - h + 1));
      const left = Math.floor(rand() * (width - w + 1));
      return { left, top, width: w, height: h, flip: rand() < flipP };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(r0, r1)) {
    w = width;
    h = pyRound(w / Math.min(r0, r1));
  } else if (inRatio > Math.max(r0, r1)) {
    h = height;
    w = pyRound(h * Math.max(r0, r1));
  } else {
    w = width;
    h = height;
  }
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h, flip: rand() < flipP };
}

function checkTransform(t: ImageTransform): void {
  const bad = (k: string, want: string, got: unknown) =>
    new ConfigError(`image transform ${k}: expected ${want}, received ${JSON.stringify(got)}`);
  if (!Number.isInteger(t.crop) || t.crop < 1) throw bad('crop', 'a positive integer', t.crop);
  if (!Number.isInteger(t.resize) || t.resize < t.crop) throw bad('resize', `an integer ≥ crop (${t.crop})`, t.resize);
  if (t.mean.length !== 3) throw bad('mean', '3 numbers (R, G, B)', t.mean);
  if (t.std.length !== 3 || t.std.some((s) => !(s > 0))) throw bad('std', '3 positive numbers (R, G, B)', t.std);
}

/** lut[c * 256 + v] = (v / 255 - mean[c]) / std[c]. */
function normLut(t: ImageTransform): Float32Array {
  const lut = new Float32Array(768);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - t.mean[c]!) / t.std[c]!;
  return lut;
}

function normaliseInto(pix: Uint8Array, channels: number, lut: Float32Array, out: Float32Array, offset: number): void {
  const n = pix.length / channels;
  if (channels >= 3) {
    // RGB, or RGBA with alpha ignored
    for (let i = 0; i < n; i++) {
      const o = offset + i * 3;
      const p = i * channels;
      out[o] = lut[pix[p]!]!;
      out[o + 1] = lut[256 + pix[p + 1]!]!;
      out[o + 2] = lut[512 + pix[p + 2]!]!;
    }
  } else {
    // grey: the same value in R, G and B (what PIL's convert('RGB') does)
    for (let i = 0; i < n; i++) {
      const v = pix[i * channels]!;
      const o = offset + i * 3;
      out[o] = lut[v]!;
      out[o + 1] = lut[256 + v]!;
      out[o + 2] = lut[512 + v]!;
    }
  }
}

/** Turns a sharp/libvips error into a short reason a person can act on. */
function reasonOf(e: unknown, limit: number): string {
  const m = describeError(e);
  if (/pixel limit/i.test(m)) return `larger than the pixel limit (${limit} pixels): possible decompression bomb`;
  if (/unsupported image format/i.test(m)) return 'not an image: content is not a format sharp can decode (JPEG, PNG, WebP, GIF, TIFF, ...)';
  if (/premature end|truncat|unexpected end|end of (file|stream|data)|read error|not enough data|short read/i.test(m))
    return `truncated image: ${m.split('\n')[0]}`;
  return `corrupt or truncated image (decoder: ${m.split('\n')[0]})`;
}

/** Shorter-side resize + centre crop, or random-resized crop + flip, as sharp operations; returns RGB pixels. */
async function transformPixels(
  input: Buffer | RawImage,
  t: ImageTransform,
  opts: LoadOptions,
  id: string,
): Promise<{ pix: Uint8Array; channels: number }> {
  const limit = opts.limitInputPixels ?? DEFAULT_PIXEL_LIMIT;
  let src: Buffer | RawImage = input;
  let width: number;
  let height: number;
  if (Buffer.isBuffer(src)) {
    const meta = await sharp(src, { limitInputPixels: limit, failOn: 'error' }).metadata();
    if (!meta.width || !meta.height) throw new Error('no image dimensions in the header');
    if (meta.width * meta.height > limit) throw new Error('Input image exceeds pixel limit');
    // EXIF orientations 5-8 swap width and height
    const swap = (meta.orientation ?? 1) >= 5;
    width = swap ? meta.height : meta.width;
    height = swap ? meta.width : meta.height;
    if (meta.hasAlpha) {
      // libvips resamples with premultiplied alpha; torchvision drops alpha first
      // (PIL convert('RGB')), so do that before resampling
      const { data, info } = await sharp(src, { limitInputPixels: limit, failOn: 'error' }).rotate().toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
      src = { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels as 1 | 3 };
    }
  } else {
    width = src.width;
    height = src.height;
  }
  if (!Buffer.isBuffer(src) && src.channels === 4) src = dropAlpha(src);
  const raw = Buffer.isBuffer(src) ? undefined : src;
  let img = raw
    ? sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels }, limitInputPixels: limit })
    : sharp(src as Buffer, { limitInputPixels: limit, failOn: 'error', sequentialRead: true }).rotate();
  let box: CropBox;
  if (opts.train) {
    box = randomResizedCropBox(width, height, mulberry32(hashSeed(opts.train.seed, id)), opts.train);
    if (box.left !== 0 || box.top !== 0 || box.width !== width || box.height !== height) img = img.extract(box);
    if (box.width !== t.crop || box.height !== t.crop) img = img.resize(t.crop, t.crop, { fit: 'fill', kernel: 'linear' });
    if (box.flip) img = img.flop();
  } else {
    // sharp honours one resize per pipeline, so the crop after it is an extract()
    let w = width;
    let h = height;
    if (Math.min(w, h) !== t.resize) {
      ({ width: w, height: h } = resizeShorter(w, h, t.resize));
      img = img.resize(w, h, { fit: 'fill', kernel: 'linear' });
    }
    if (w !== t.crop || h !== t.crop) img = img.extract({ ...centreCropOffset(w, h, t.crop), width: t.crop, height: t.crop });
  }
  const { data, info } = await img.toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.width !== t.crop || info.height !== t.crop)
    throw new Error(`internal: transform produced ${info.width}×${info.height}, expected ${t.crop}×${t.crop}`);
  return { pix: new Uint8Array(data.buffer, data.byteOffset, data.length), channels: info.channels };
}

/**
 * The eval or train transform of an in-memory image, in JS (no sharp round trip: in-memory
 * sets are small images, where libvips' per-image set-up would dominate).
 */
function transformRawJs(raw: RawImage, t: ImageTransform, opts: LoadOptions, id: string): Pixels {
  const src = raw.channels === 4 ? dropAlpha(raw) : raw;
  const { width, height, channels } = src;
  if (opts.train) {
    const box = randomResizedCropBox(width, height, mulberry32(hashSeed(opts.train.seed, id)), opts.train);
    const pix = resizeBilinearU8(src.data, width, channels, box, t.crop, t.crop);
    if (box.flip) {
      for (let y = 0; y < t.crop; y++)
        for (let x = 0; x < t.crop >> 1; x++) {
          const a = (y * t.crop + x) * channels;
          const b = (y * t.crop + t.crop - 1 - x) * channels;
          for (let ch = 0; ch < channels; ch++) {
            const v = pix[a + ch]!;
            pix[a + ch] = pix[b + ch]!;
            pix[b + ch] = v;
          }
        }
    }
    return { pix, channels };
  }
  let w = width;
  let h = height;
  let pix = src.data;
  if (Math.min(w, h) !== t.resize) {
    ({ width: w, height: h } = resizeShorter(width, height, t.resize));
    pix = resizeBilinearU8(src.data, width, channels, { left: 0, top: 0, width, height }, w, h);
  }
  if (w === t.crop && h === t.crop) return { pix, channels };
  const { left, top } = centreCropOffset(w, h, t.crop);
  return { pix: resizeBilinearU8(pix, w, channels, { left, top, width: t.crop, height: t.crop }, t.crop, t.crop), channels };
}

/**
 * Small in-memory images are resampled in JS (≈5,000 img/s at 32 px, against ≈1,000 through
 * sharp, whose per-image set-up dominates); large outputs go to sharp, which runs off the
 * main thread and in parallel.
 */
function useJsResampler(raw: RawImage, t: ImageTransform): boolean {
  return t.crop <= 96 && raw.width * raw.height <= 256 * 256;
}

/** RGBA → RGB by dropping alpha (PIL's convert('RGB')). */
function dropAlpha(r: RawImage): RawImage {
  const n = r.width * r.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = r.data[i * 4]!;
    out[i * 3 + 1] = r.data[i * 4 + 1]!;
    out[i * 3 + 2] = r.data[i * 4 + 2]!;
  }
  return { data: out, width: r.width, height: r.height, channels: 3 };
}

/** Raw pixels already at crop × crop need no sharp round trip (synthetic sets, Fashion-MNIST at native size). */
function rawPassThrough(raw: RawImage, t: ImageTransform, train: boolean): boolean {
  return !train && raw.width === t.crop && raw.height === t.crop && t.resize === t.crop;
}

function checkRaw(raw: RawImage, id: string): void {
  const { width, height, channels, data } = raw;
  if (![1, 3, 4].includes(channels) || !(width > 0) || !(height > 0) || data.length !== width * height * channels)
    throw new DataError(
      `${id}: raw image must hold width×height×channels bytes with channels 1, 3 or 4; got ${data.length} bytes for ${width}×${height}×${channels}`,
    );
}

/** Decoded, transformed 8-bit pixels of one image: crop × crop × channels (1 or 3). */
interface Pixels {
  pix: Uint8Array;
  channels: number;
}

/** Decodes and transforms one item to crop × crop pixels; DataError with the reason when it cannot. */
async function decodePixels(item: ImageItem, t: ImageTransform, opts: LoadOptions): Promise<Pixels> {
  const limit = opts.limitInputPixels ?? DEFAULT_PIXEL_LIMIT;
  if ('raw' in item) {
    checkRaw(item.raw, item.id);
    if (rawPassThrough(item.raw, t, !!opts.train)) return { pix: item.raw.data, channels: item.raw.channels };
    const px = item.raw.width * item.raw.height;
    if (px > limit) throw new DataError(reasonOf(new Error('Input image exceeds pixel limit'), limit));
    if (useJsResampler(item.raw, t)) return transformRawJs(item.raw, t, opts, item.id);
    try {
      return await transformPixels(item.raw, t, opts, item.id);
    } catch (e) {
      throw new DataError(reasonOf(e, limit));
    }
  }
  let buf: Buffer;
  try {
    buf = await readFile(item.path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? 'missing file' : `unreadable file: ${describeError(e)}`);
  }
  if (buf.length === 0) throw new DataError('empty file (0 bytes)');
  try {
    return await transformPixels(buf, t, opts, item.id);
  } catch (e) {
    throw new DataError(reasonOf(e, limit));
  }
}

/**
 * Loads one image file and applies the eval transform (or the train transform with
 * `opts.train`), then normalises it.
 * @returns HWC float32, [crop, crop, 3], `(pixel/255 - mean) / std`
 * @throws DataError naming the file and the reason (missing, empty, not an image,
 *   truncated, corrupt, larger than the pixel limit); ConfigError for a bad transform
 */
export async function loadImage(file: string, t: ImageTransform, opts: LoadOptions = {}): Promise<Float32Array> {
  checkTransform(t);
  const out = new Float32Array(t.crop * t.crop * 3);
  try {
    const { pix, channels } = await decodePixels({ id: file, path: file }, t, opts);
    normaliseInto(pix, channels, normLut(t), out, 0);
  } catch (e) {
    if (e instanceof DataError) throw new DataError(`${file}: ${e.message}`);
    throw e;
  }
  return out;
}

/**
 * Transforms one in-memory image (same transforms as {@link loadImage}).
 * @returns HWC float32, [crop, crop, 3]
 */
export async function transformRaw(id: string, raw: RawImage, t: ImageTransform, opts: LoadOptions = {}): Promise<Float32Array> {
  checkTransform(t);
  const out = new Float32Array(t.crop * t.crop * 3);
  const { pix, channels } = await decodePixels({ id, raw }, t, opts);
  normaliseInto(pix, channels, normLut(t), out, 0);
  return out;
}

/** Options of {@link imageBatches}. */
export interface BatchOptions extends LoadOptions {
  /** Images decoded at the same time (p-limit). Default 2. */
  concurrency?: number;
  /** Batches decoded ahead of the one being consumed. Default 1. */
  prefetch?: number;
  /** Called after each item is decoded (or failed), with the number finished so far: for progress bars. */
  onDecoded?: (finished: number) => void;
}

type Loaded = { ok: true; px: Pixels } | { ok: false; reason: string } | { ok: false; fatal: unknown };

/**
 * Decodes `items` into normalised NHWC float32 batches of `batchSize` images, in input
 * order, decoding up to `concurrency` images at a time and up to `prefetch` batches
 * ahead of the consumer, so decoding overlaps whatever the consumer does with a batch.
 *
 * A bad item (missing, empty, not an image, truncated, corrupt, too many pixels) is
 * skipped and reported in the `skipped` list of the batch it would have joined; the
 * batch is filled from the following items, so every batch but the last holds
 * `batchSize` images. No batch is empty, except a single one when no item at all
 * could be decoded (so that its `skipped` list reaches the caller).
 *
 * @param items file paths or raw pixels, each with a unique id
 * @param t eval transform (resize, crop) and normalisation (mean, std)
 * @param batchSize images per batch (≥ 1)
 * @param opts `train: { seed }` selects the seeded random-resized-crop + flip;
 *   the augmentation of an image depends only on (seed, id), not on timing
 */
export async function* imageBatches(
  items: readonly ImageItem[],
  t: ImageTransform,
  batchSize: number,
  opts: BatchOptions = {},
): AsyncGenerator<ImageBatch> {
  checkTransform(t);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`imageBatches: batchSize must be a positive integer, received ${batchSize}`);
  const concurrency = opts.concurrency ?? 2;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigError(`imageBatches: concurrency must be a positive integer, received ${concurrency}`);
  const prefetch = Math.max(0, opts.prefetch ?? 1);
  const lut = normLut(t);
  const per = t.crop * t.crop * 3;
  const limit = pLimit(concurrency);
  const pending: Promise<Loaded>[] = [];
  let next = 0;
  let finished = 0;
  const window = batchSize * (prefetch + 1);
  const launch = (upTo: number) => {
    while (next < items.length && next < upTo) {
      const item = items[next++]!;
      pending.push(
        limit(async (): Promise<Loaded> => {
          // only decoding runs under the limit; normalising happens on consumption, straight
          // into the batch buffer, so it overlaps the decoding of the next images
          try {
            return { ok: true, px: await decodePixels(item, t, opts) };
          } catch (e) {
            if (e instanceof DataError) return { ok: false, reason: e.message };
            // held, not thrown: a rejection nobody awaits yet would be reported as unhandled
            return { ok: false, fatal: e };
          } finally {
            opts.onDecoded?.(++finished);
          }
        }),
      );
    }
  };
  let consumed = 0;
  let held: ImageBatch | undefined;
  let ids: string[] = [];
  let buf = new Float32Array(batchSize * per);
  let skipped: SkippedImage[] = [];
  let yieldedAny = false;
  launch(window);
  while (consumed < items.length) {
    const item = items[consumed]!;
    const r = await pending[consumed]!;
    // free the slot so a long run does not keep every decoded image alive
    (pending as (Promise<Loaded> | undefined)[])[consumed] = undefined;
    consumed++;
    launch(consumed + window);
    if (r.ok) {
      normaliseInto(r.px.pix, r.px.channels, lut, buf, ids.length * per);
      ids.push(item.id);
      // a batch waits until the next one has an image, so trailing skips can join it
      if (held && ids.length === 1) {
        yield held;
        yieldedAny = true;
        held = undefined;
      }
    } else if ('fatal' in r) {
      throw r.fatal;
    } else {
      skipped.push({ id: item.id, path: 'path' in item && item.path !== undefined ? item.path : `<raw:${item.id}>`, reason: r.reason });
    }
    if (ids.length === batchSize) {
      held = { ids, data: buf, skipped };
      ids = [];
      buf = new Float32Array(batchSize * per);
      skipped = [];
    }
  }
  if (held) {
    if (ids.length === 0) held.skipped.push(...skipped);
    yield held;
    yieldedAny = true;
  }
  if (ids.length > 0 || (!yieldedAny && skipped.length > 0)) yield { ids, data: buf.slice(0, ids.length * per), skipped };
}
