/**
 * Multi-crop augmentation for self-supervised pretraining (DINO, Caron et al. 2021, §3.1
 * and Appendix: "multi-crop"), written for small uint8 images in plain TypeScript.
 *
 * Per image: `globalCrops` views at `globalSize` px covering a large part of the image
 * (scale `globalScale` of its area, aspect ratio `ratio`) and `localCrops` views at `localSize` px covering a
 * small part (`localScale`), each a random-resized crop (bilinear)
 * with a horizontal flip (p 0.5), colour jitter (p 0.8: brightness, contrast, saturation,
 * hue, in that fixed order), grayscale (p 0.2), Gaussian blur and, on the second global
 * view, solarisation — DINO's recipe with the blur kernel shrunk to 3×3 for 16–64 px images.
 *
 * Determinism: every random choice of image `k` of batch `step` comes from one seeded
 * generator, `rng(streamSeed(seed, "ssl-aug/<step>/<k>"))`, so a resumed run draws exactly
 * the crops of an uninterrupted one, and the same (seed, step) gives the same batch.
 */
import type { CropsConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { mulberry32 as rng, streamSeed } from '../core/rng.js';

/** Options of {@link multiCrop}: every key of a config's `pretrain.crops` (src/core/config.ts documents them). */
export type MultiCropOptions = Required<CropsConfig>;

/** DINO's recipe at 32 px: two 32 px global views (scale 0.4–1), four 16 px local views (0.1–0.4). */
export const DEFAULT_MULTICROP: MultiCropOptions = {
  globalCrops: 2,
  globalSize: 32,
  globalScale: [0.4, 1],
  localCrops: 4,
  localSize: 16,
  localScale: [0.1, 0.4],
  ratio: [3 / 4, 4 / 3], // torchvision's RandomResizedCrop
  jitter: [0.4, 0.4, 0.2, 0.1], // torchvision ColorJitter's brightness, contrast, saturation, hue
  pJitter: 0.8,
  pGray: 0.2,
  pFlip: 0.5,
  pBlur: [1, 0.1, 0.5], // DINO's: global view 1, global views ≥ 2, local views
  pSolarize: 0.2, // DINO's, on global views ≥ 2
  mean: [0.5, 0.5, 0.5], // applied last: (x − mean) / std on [0, 1] pixels
  std: [0.25, 0.25, 0.25],
};

/** The views of one batch: NHWC float32, view-major (all images of view 0, then view 1, ...). */
export interface MultiCropBatch {
  /** [globalCrops · B, globalSize, globalSize, 3] */
  globals: Float32Array;
  /** [localCrops · B, localSize, localSize, 3] */
  locals: Float32Array;
  batch: number;
}

/** Checks multi-crop options; throws a ConfigError naming `where` and the key. */
export function checkMultiCrop(o: MultiCropOptions, where = 'pretrain.crops'): void {
  const bad = (k: string, exp: string, got: unknown): never => {
    throw new ConfigError(`${where}.${k}: expected ${exp}; received ${JSON.stringify(got)}`);
  };
  if (!Number.isInteger(o.globalCrops) || o.globalCrops < 2) bad('globalCrops', 'an integer ≥ 2 (the teacher sees the global views)', o.globalCrops);
  if (!Number.isInteger(o.localCrops) || o.localCrops < 0) bad('localCrops', 'an integer ≥ 0', o.localCrops);
  for (const k of ['globalSize', 'localSize'] as const) if (!Number.isInteger(o[k]) || o[k] < 4) bad(k, 'an integer ≥ 4 (pixels)', o[k]);
  for (const k of ['globalScale', 'localScale'] as const) {
    const [a, b] = o[k];
    if (!(a > 0 && a <= b && b <= 1)) bad(k, '[min, max] with 0 < min ≤ max ≤ 1', o[k]);
  }
  if (!(o.ratio[0] > 0 && o.ratio[0] <= o.ratio[1])) bad('ratio', '[min, max] with 0 < min ≤ max', o.ratio);
  for (const k of ['pJitter', 'pGray', 'pFlip', 'pSolarize'] as const) if (!(o[k] >= 0 && o[k] <= 1)) bad(k, 'a probability in [0, 1]', o[k]);
  if (o.pBlur.some((p) => !(p >= 0 && p <= 1))) bad('pBlur', 'three probabilities in [0, 1]', o.pBlur);
}

/** Bilinear random-resized crop of one HWC uint8 image into `out` ([o, o, 3] floats in [0,1]) at `outOff`. */
function resizedCrop(src: Uint8Array, srcOff: number, S: number, out: Float32Array, outOff: number, o: number, scale: [number, number], ratio: [number, number], flip: boolean, rand: () => number): void {
  const area = S * S * (scale[0] + rand() * (scale[1] - scale[0]));
  const logR = Math.log(ratio[0]) + rand() * (Math.log(ratio[1]) - Math.log(ratio[0]));
  const r = Math.exp(logR);
  const w = Math.min(S, Math.sqrt(area * r));
  const h = Math.min(S, Math.sqrt(area / r));
  const x0 = rand() * (S - w);
  const y0 = rand() * (S - h);
  for (let oy = 0; oy < o; oy++) {
    const sy = Math.min(S - 1, Math.max(0, y0 + ((oy + 0.5) * h) / o - 0.5));
    const iy = Math.min(S - 2, Math.floor(sy));
    const fy = sy - iy;
    for (let ox = 0; ox < o; ox++) {
      const tx = flip ? o - 1 - ox : ox;
      const sx = Math.min(S - 1, Math.max(0, x0 + ((tx + 0.5) * w) / o - 0.5));
      const ix = Math.min(S - 2, Math.floor(sx));
      const fx = sx - ix;
      const p00 = srcOff + (iy * S + ix) * 3;
      const p01 = p00 + 3;
      const p10 = p00 + S * 3;
      const p11 = p10 + 3;
      const q = outOff + (oy * o + ox) * 3;
      for (let c = 0; c < 3; c++)
        out[q + c] = ((1 - fy) * ((1 - fx) * src[p00 + c]! + fx * src[p01 + c]!) + fy * ((1 - fx) * src[p10 + c]! + fx * src[p11 + c]!)) / 255;
    }
  }
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** Colour jitter, grayscale, blur, solarisation in place on one [o, o, 3] view in [0,1]. */
function photometric(v: Float32Array, off: number, o: number, opts: MultiCropOptions, pBlur: number, pSolarize: number, rand: () => number): void {
  const n = o * o;
  if (rand() < opts.pJitter) {
    const [jb, jc, js, jh] = opts.jitter;
    const b = 1 - jb + rand() * 2 * jb;
    const c = 1 - jc + rand() * 2 * jc;
    const s = 1 - js + rand() * 2 * js;
    const hue = (rand() * 2 - 1) * jh;
    let meanL = 0;
    for (let i = 0; i < n; i++) {
      const p = off + i * 3;
      for (let ch = 0; ch < 3; ch++) v[p + ch] = clamp01(v[p + ch]! * b);
      meanL += 0.299 * v[p]! + 0.587 * v[p + 1]! + 0.114 * v[p + 2]!;
    }
    meanL /= n;
    // hue as a rotation of the chroma plane (YIQ): cheap, and a full turn is the identity
    const ca = Math.cos(2 * Math.PI * hue);
    const sa = Math.sin(2 * Math.PI * hue);
    for (let i = 0; i < n; i++) {
      const p = off + i * 3;
      let r = clamp01((v[p]! - meanL) * c + meanL);
      let g = clamp01((v[p + 1]! - meanL) * c + meanL);
      let bl = clamp01((v[p + 2]! - meanL) * c + meanL);
      const l = 0.299 * r + 0.587 * g + 0.114 * bl;
      r = clamp01((r - l) * s + l);
      g = clamp01((g - l) * s + l);
      bl = clamp01((bl - l) * s + l);
      const y = 0.299 * r + 0.587 * g + 0.114 * bl;
      const iq = 0.596 * r - 0.274 * g - 0.322 * bl;
      const qq = 0.211 * r - 0.523 * g + 0.312 * bl;
      const i2 = ca * iq - sa * qq;
      const q2 = sa * iq + ca * qq;
      v[p] = clamp01(y + 0.956 * i2 + 0.621 * q2);
      v[p + 1] = clamp01(y - 0.272 * i2 - 0.647 * q2);
      v[p + 2] = clamp01(y - 1.106 * i2 + 1.703 * q2);
    }
  }
  if (rand() < opts.pGray)
    for (let i = 0; i < n; i++) {
      const p = off + i * 3;
      const l = 0.299 * v[p]! + 0.587 * v[p + 1]! + 0.114 * v[p + 2]!;
      v[p] = v[p + 1] = v[p + 2] = l;
    }
  if (rand() < pBlur) {
    // separable 3-tap Gaussian, sigma in [0.1, 1.0], replicate borders
    const sigma = 0.1 + 0.9 * rand();
    const e = Math.exp(-1 / (2 * sigma * sigma));
    const k0 = 1 / (1 + 2 * e);
    const k1 = e / (1 + 2 * e);
    const tmp = new Float32Array(n * 3);
    for (let y = 0; y < o; y++)
      for (let x = 0; x < o; x++)
        for (let ch = 0; ch < 3; ch++) {
          const at = (xx: number) => v[off + (y * o + Math.min(o - 1, Math.max(0, xx))) * 3 + ch]!;
          tmp[(y * o + x) * 3 + ch] = k0 * at(x) + k1 * (at(x - 1) + at(x + 1));
        }
    for (let y = 0; y < o; y++)
      for (let x = 0; x < o; x++)
        for (let ch = 0; ch < 3; ch++) {
          const at = (yy: number) => tmp[(Math.min(o - 1, Math.max(0, yy)) * o + x) * 3 + ch]!;
          v[off + (y * o + x) * 3 + ch] = k0 * at(y) + k1 * (at(y - 1) + at(y + 1));
        }
  }
  if (rand() < pSolarize) for (let i = 0; i < n * 3; i++) if (v[off + i]! >= 0.5) v[off + i] = 1 - v[off + i]!;
}

/**
 * Multi-crop views of a batch of uint8 images.
 *
 * @param images HWC uint8 RGB, [n, size, size, 3] row-major
 * @param size the images' side in pixels
 * @param rows which images form the batch
 * @param seed the run's seed; `step` the batch number (the two fix every random choice)
 */
export function multiCrop(images: Uint8Array, size: number, rows: ArrayLike<number>, opts: MultiCropOptions, seed: number, step: number): MultiCropBatch {
  const B = rows.length;
  const G = opts.globalSize;
  const L = opts.localSize;
  const px = size * size * 3;
  const globals = new Float32Array(opts.globalCrops * B * G * G * 3);
  const locals = new Float32Array(opts.localCrops * B * L * L * 3);
  for (let k = 0; k < B; k++) {
    const rand = rng(streamSeed(seed, `ssl-aug/${step}/${k}`));
    const srcOff = rows[k]! * px;
    if (srcOff + px > images.length) throw new ConfigError(`multiCrop: row ${rows[k]} is outside the ${images.length / px} images`);
    for (let g = 0; g < opts.globalCrops; g++) {
      const off = (g * B + k) * G * G * 3;
      resizedCrop(images, srcOff, size, globals, off, G, opts.globalScale, opts.ratio, rand() < opts.pFlip, rand);
      photometric(globals, off, G, opts, g === 0 ? opts.pBlur[0] : opts.pBlur[1], g === 0 ? 0 : opts.pSolarize, rand);
    }
    for (let l = 0; l < opts.localCrops; l++) {
      const off = (l * B + k) * L * L * 3;
      resizedCrop(images, srcOff, size, locals, off, L, opts.localScale, opts.ratio, rand() < opts.pFlip, rand);
      photometric(locals, off, L, opts, opts.pBlur[2], 0, rand);
    }
  }
  normalise(globals, opts);
  normalise(locals, opts);
  return { globals, locals, batch: B };
}

function normalise(v: Float32Array, o: MultiCropOptions): void {
  for (let i = 0; i < v.length; i += 3) for (let c = 0; c < 3; c++) v[i + c] = (v[i + c]! - o.mean[c]!) / o.std[c]!;
}
