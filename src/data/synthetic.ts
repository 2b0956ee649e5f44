/**
 * The synthetic "objects in contexts" benchmark: the embedded default of dcd.
 *
 * Every image is a small RGB picture of one object (the class: a shape, or any mask an
 * {@link ObjectSource} provides, e.g. a Fashion-MNIST garment) drawn in a random colour
 * over a background (the context: a colour plus a texture). Each class has a *home*
 * context. The train set shows most objects in their home context, so a model trained on
 * it learns the background as a shortcut; the shifted sets (the ImageNet-V2
 * MatchedFrequency and Complement analogues) show the objects mostly in the other
 * contexts, the rare pairs, where the model genuinely fails. The weak pool covers every
 * context for a subset of classes, biased towards home contexts like web search results,
 * with noisy weak labels: images of another class, and images with no object at all.
 *
 * Everything is deterministic given the options and the seed, and every set draws from
 * its own seed stream, so changing the size of one set does not change another.
 */
import type { SyntheticConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { mulberry32 as rng, shuffleInPlace, streamSeed } from '../core/rng.js';
import { contextStyles, gauss, paintBackground, type ContextStyle } from './synthetic-contexts.js';
import { objectColour, paintTexture, TEXTURES } from './textured.js';

/**
 * Sizes and rates of one synthetic draw: every key of a config's `data.synthetic` (src/core/config.ts
 * documents them), all given; {@link syntheticOptions} fills them from {@link DEFAULT_SYNTHETIC}.
 */
export type SyntheticOptions = DeepRequired<SyntheticConfig>;

/** `T` with every key required, inside nested mappings too (lists and tuples kept as they are). */
type DeepRequired<T> = { [K in keyof T]-?: Filled<NonNullable<T[K]>> };
type Filled<V> = V extends readonly unknown[] ? V : V extends object ? DeepRequired<V> : V;

/** The default draw: generates in about a second at 16 px. */
export const DEFAULT_SYNTHETIC: SyntheticOptions = {
  imageSize: 16,
  numClasses: 6,
  numContexts: 6,
  subsetClasses: 4,
  train: { size: 2400, homeRate: 0.75 },
  test: { size: 1200 },
  shifted: { size: 800, rareRate: 0.8 },
  // the web-search kinds (docs/experiments/web-like-pool.md) are 0, so that a config without them
  // draws exactly what it drew before they existed
  pool: { size: 8000, homeRate: 0.4, wrongLabelRate: 0.15, objectlessRate: 0.15, offTopicRate: 0, nearDuplicateRate: 0, clusterSize: 5 },
  objectScale: [0.45, 0.65],
  pixelNoise: 0.03,
  objectContrast: 0.35,
  variant: 'flat',
};

/** Names of the image sets of a draw (DESIGN.md's names). */
export const SYNTHETIC_SETS = ['train', 'test', 'mfreq', 'complement', 'pool'] as const;
export type SyntheticSetName = (typeof SYNTHETIC_SETS)[number] | 'broad';

/** One image set, in memory. */
export interface SyntheticSet {
  name: SyntheticSetName;
  /** HWC uint8 RGB, [n, size, size, 3], row-major. */
  images: Uint8Array;
  n: number;
  size: number;
  /** Stable ids, `<set>/<index>` zero-padded. */
  ids: string[];
  /** True class of the object; -1 for an object-less image. */
  labels: Int32Array;
  /** Context (background) index. */
  contexts: Int32Array;
  /** Weak label (pool only; equals `labels` elsewhere except object-less images). */
  weakLabels: Int32Array;
}

/** A full draw: the sets plus the names needed to read them. */
export interface SyntheticDraw {
  options: SyntheticOptions;
  seed: number;
  classNames: string[];
  contextNames: string[];
  /** Home context of each class. */
  home: number[];
  /** Y_sub, class indices. */
  subset: number[];
  sets: Record<(typeof SYNTHETIC_SETS)[number], SyntheticSet>;
}

/** Draws the object mask of class `label` into `mask` (size × size, values in [0,1]). */
export interface ObjectSource {
  numClasses: number;
  classNames: string[];
  /**
   * Writes coverage in [0,1] for each pixel; `rand` is the image's own RNG. `set` lets a
   * source keep disjoint object instances per set (train / pool / broad / test sets).
   */
  draw(label: number, mask: Float32Array, size: number, rand: () => number, scale: number, set: SyntheticSetName): void;
}

// ---------------------------------------------------------------------------------------
// Objects: shapes drawn by inside-tests with 2×2 supersampling

/** Shapes available as classes, in class-index order. */
export const SHAPES = ['disc', 'square', 'triangle', 'plus', 'cross', 'ring', 'bars', 'diamond'] as const;

function insideShape(shape: (typeof SHAPES)[number], u: number, v: number): boolean {
  // (u, v) in the object's frame, [-1, 1]²
  const au = Math.abs(u);
  const av = Math.abs(v);
  switch (shape) {
    case 'disc':
      return u * u + v * v <= 1;
    case 'square':
      return au <= 0.85 && av <= 0.85;
    case 'triangle':
      return v >= -0.9 && v <= 0.9 && au <= (0.9 - v) * 0.55;
    case 'plus':
      return (au <= 0.3 && av <= 1) || (av <= 0.3 && au <= 1);
    case 'cross':
      return Math.abs(u - v) <= 0.4 * Math.SQRT2 && au <= 0.95 && av <= 0.95 || (Math.abs(u + v) <= 0.4 * Math.SQRT2 && au <= 0.95 && av <= 0.95);
    case 'ring': {
      const r = u * u + v * v;
      return r <= 1 && r >= 0.3;
    }
    case 'bars':
      return au <= 1 && (Math.abs(v - 0.55) <= 0.25 || Math.abs(v + 0.55) <= 0.25);
    case 'diamond':
      return au + av <= 1;
  }
}

/** The default object source: geometric shapes of {@link SHAPES}. */
export function shapeObjects(numClasses: number): ObjectSource {
  if (numClasses > SHAPES.length || numClasses < 2)
    throw new ConfigError(`synthetic.numClasses: expected 2..${SHAPES.length} (one per shape: ${SHAPES.join(', ')}); received ${numClasses}`);
  return {
    numClasses,
    classNames: SHAPES.slice(0, numClasses),
    draw(label, mask, size, rand, scale) {
      const shape = SHAPES[label]!;
      const half = (scale * size) / 2;
      const cx = size / 2 + (rand() - 0.5) * (size - 2 * half) * 0.8;
      const cy = size / 2 + (rand() - 0.5) * (size - 2 * half) * 0.8;
      const rot = (rand() - 0.5) * 0.5; // small rotation, radians
      const c = Math.cos(rot);
      const s = Math.sin(rot);
      rasterize(mask, size, cx, cy, half, (dx, dy) => insideShape(shape, c * dx + s * dy, -s * dx + c * dy));
    },
  };
}

/**
 * Coverage of a shape centred at (cx, cy) with half-size `half` px into `mask` (size × size, [0,1]),
 * 2×2 supersampled; `inside` tests a point in the shape's frame ([-1, 1]² at the half-size).
 */
function rasterize(mask: Float32Array, size: number, cx: number, cy: number, half: number, inside: (dx: number, dy: number) => boolean): void {
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let hit = 0;
      for (let sy = 0; sy < 2; sy++)
        for (let sx = 0; sx < 2; sx++) if (inside((x + 0.25 + 0.5 * sx - cx) / half, (y + 0.25 + 0.5 * sy - cy) / half)) hit++;
      mask[y * size + x] = hit / 4;
    }
}

// ---------------------------------------------------------------------------------------
// Sets

/** The contexts of a draw: flat colour styles, or (variant textured) the textures of src/data/textured.ts by name. */
function stylesOf(o: SyntheticOptions): ContextStyle[] {
  if (o.variant === 'textured') return TEXTURES.slice(0, o.numContexts).map((name) => ({ name, rgb: [0.5, 0.5, 0.5], texture: 'speckle' }));
  return contextStyles(o.numContexts);
}

function validate(o: SyntheticOptions, src: ObjectSource): void {
  const bad = (key: string, expected: string, got: unknown): never => {
    throw new ConfigError(`synthetic.${key}: expected ${expected}; received ${JSON.stringify(got)}`);
  };
  if (!Number.isInteger(o.imageSize) || o.imageSize < 8 || o.imageSize > 128) bad('imageSize', 'an integer in 8..128', o.imageSize);
  if (!Number.isInteger(o.numContexts) || o.numContexts < 2) bad('numContexts', 'an integer ≥ 2', o.numContexts);
  if (src.numClasses !== o.numClasses) bad('numClasses', `${src.numClasses} (the object source's classes)`, o.numClasses);
  if (!Number.isInteger(o.subsetClasses) || o.subsetClasses < 1 || o.subsetClasses > o.numClasses)
    bad('subsetClasses', `an integer in 1..numClasses (${o.numClasses})`, o.subsetClasses);
  const rate = (key: string, v: number) => (v >= 0 && v <= 1 ? undefined : bad(key, 'a rate in [0, 1]', v));
  rate('train.homeRate', o.train.homeRate);
  rate('shifted.rareRate', o.shifted.rareRate);
  rate('pool.homeRate', o.pool.homeRate);
  rate('pool.wrongLabelRate', o.pool.wrongLabelRate);
  rate('pool.objectlessRate', o.pool.objectlessRate);
  rate('pool.offTopicRate', o.pool.offTopicRate);
  rate('pool.nearDuplicateRate', o.pool.nearDuplicateRate);
  const noise = o.pool.wrongLabelRate + o.pool.objectlessRate + o.pool.offTopicRate;
  if (noise > 1) bad('pool.wrongLabelRate + pool.objectlessRate + pool.offTopicRate', 'at most 1', noise);
  if (noise + o.pool.nearDuplicateRate > 1) bad('pool.nearDuplicateRate', `at most ${+(1 - noise).toFixed(6)} (1 − the other noise rates: copies replace clean images)`, o.pool.nearDuplicateRate);
  if (!(o.pool.clusterSize >= 2)) bad('pool.clusterSize', 'a number ≥ 2 (an original plus at least one copy)', o.pool.clusterSize);
  for (const k of ['train', 'test', 'shifted', 'pool'] as const)
    if (!Number.isInteger(o[k].size) || o[k].size < 0) bad(`${k}.size`, 'an integer ≥ 0', o[k].size);
  if (!(o.objectScale[0] > 0 && o.objectScale[0] <= o.objectScale[1] && o.objectScale[1] <= 1)) bad('objectScale', '[min, max] with 0 < min ≤ max ≤ 1', o.objectScale);
  if (o.variant !== 'flat' && o.variant !== 'textured') bad('variant', '"flat" or "textured"', o.variant);
  if (o.variant === 'textured' && o.numContexts > TEXTURES.length)
    bad('numContexts', `at most ${TEXTURES.length} for variant textured (one per texture: ${TEXTURES.join(', ')})`, o.numContexts);
}

/** Merges a partial config over {@link DEFAULT_SYNTHETIC} (nested objects field by field). */
export function syntheticOptions(partial: DeepPartial<SyntheticOptions> = {}): SyntheticOptions {
  const d = DEFAULT_SYNTHETIC;
  const p = partial as Partial<Record<keyof SyntheticOptions, unknown>>;
  const sub = <T extends object>(k: keyof SyntheticOptions): T => ({ ...(d[k] as T), ...((p[k] as T | undefined) ?? {}) });
  const known: Partial<SyntheticOptions> = {};
  for (const k of Object.keys(d) as (keyof SyntheticOptions)[]) if (k in partial) (known as Record<string, unknown>)[k] = p[k];
  return {
    ...d,
    ...known,
    train: sub('train'),
    test: sub('test'),
    shifted: sub('shifted'),
    pool: sub('pool'),
    objectScale: (partial.objectScale as [number, number] | undefined) ?? d.objectScale,
  };
}

/** Recursive Partial for option objects. */
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

interface Spec {
  /** Object class, or -1 for none. */
  label: number;
  context: number;
  weak: number;
  /** Pool: an off-topic image (label -1, an object of no class). */
  offTopic?: boolean;
  /** Pool: a near-copy of the image at this index (rendered from its stream, then nudged). */
  dupOf?: number;
}

/**
 * An off-topic object: a random star-shaped polygon (5-9 vertices, radii 0.45-1 of `scale · size / 2`),
 * unlike any class shape, into `mask` (size × size coverage in [0,1], 2×2 supersampled).
 */
function drawOffTopic(mask: Float32Array, size: number, rand: () => number, scale: number): void {
  const n = 5 + Math.floor(rand() * 5);
  const radii = Array.from({ length: n }, () => 0.45 + 0.55 * rand());
  const rot = rand() * 2 * Math.PI;
  const half = (scale * size) / 2;
  const cx = size / 2 + (rand() - 0.5) * (size - 2 * half) * 0.8;
  const cy = size / 2 + (rand() - 0.5) * (size - 2 * half) * 0.8;
  rasterize(mask, size, cx, cy, half, (dx, dy) => {
    // radius of the polygon at this angle: linear between the two nearest vertices
    const a = (((Math.atan2(dy, dx) - rot) / (2 * Math.PI) + 2) % 1) * n;
    const k = Math.floor(a) % n;
    const r = radii[k]! + (radii[(k + 1) % n]! - radii[k]!) * (a - Math.floor(a));
    return dx * dx + dy * dy <= r * r;
  });
}

/**
 * Nudges a rendered near-duplicate in place (HWC uint8, [size, size, 3]): contrast within ±5%,
 * brightness within ±3%, fresh pixel noise (σ 3 of 255) — the same picture re-encoded by another site.
 */
function nudgeCopy(px: Uint8Array, rand: () => number): void {
  const gain = 1 + (rand() - 0.5) * 0.1;
  const bias = (rand() - 0.5) * 0.06 * 255;
  for (let k = 0; k < px.length; k++) px[k] = Math.max(0, Math.min(255, Math.round(px[k]! * gain + bias + 3 * gauss(rand))));
}

function luma(c: readonly number[]): number {
  return 0.299 * c[0]! + 0.587 * c[1]! + 0.114 * c[2]!;
}

/** A palette of object colours; each image picks one far enough from its background. */
const OBJECT_COLOURS: [number, number, number][] = [
  [0.95, 0.95, 0.2], [0.95, 0.3, 0.8], [0.1, 0.9, 0.9], [0.98, 0.55, 0.1], [0.55, 0.2, 0.9],
  [0.05, 0.05, 0.05], [0.97, 0.97, 0.97], [0.2, 0.9, 0.3], [0.9, 0.1, 0.1],
];

function render(specs: Spec[], name: SyntheticSetName, o: SyntheticOptions, src: ObjectSource, styles: ContextStyle[], seed: number): SyntheticSet {
  const S = o.imageSize;
  const n = specs.length;
  const images = new Uint8Array(n * S * S * 3);
  const bg = new Float32Array(S * S * 3);
  const mask = new Float32Array(S * S);
  const labels = new Int32Array(n);
  const contexts = new Int32Array(n);
  const weak = new Int32Array(n);
  const ids: string[] = [];
  const width = String(Math.max(n - 1, 0)).length;
  for (let i = 0; i < n; i++) {
    const sp = specs[i]!;
    // a near-duplicate renders from its original's stream (the same picture), then is nudged
    const rand = rng(streamSeed(seed, `${name}/${sp.dupOf ?? i}`));
    const st = styles[sp.context]!;
    const textured = o.variant === 'textured';
    const bgMean = textured ? paintTexture(sp.context, bg, S, rand) : (paintBackground(st, bg, S, rand), st.rgb);
    mask.fill(0);
    let colour: [number, number, number] = [0, 0, 0];
    if (sp.label >= 0 || sp.offTopic) {
      const scale = o.objectScale[0] + rand() * (o.objectScale[1] - o.objectScale[0]);
      if (sp.label >= 0) src.draw(sp.label, mask, S, rand, scale, name);
      else drawOffTopic(mask, S, rand, scale);
      // an object colour whose brightness differs clearly from the background's
      if (textured) colour = objectColour(bgMean, o.objectContrast, rand);
      else
        for (let tries = 0; tries < 20; tries++) {
          colour = OBJECT_COLOURS[Math.floor(rand() * OBJECT_COLOURS.length)]!;
          if (Math.abs(luma(colour) - luma(st.rgb)) > o.objectContrast) break;
        }
    }
    const off = i * S * S * 3;
    for (let p = 0; p < S * S; p++) {
      const a = mask[p]!;
      for (let ch = 0; ch < 3; ch++) {
        const v = (1 - a) * bg[p * 3 + ch]! + a * colour[ch]! + o.pixelNoise * gauss(rand);
        images[off + p * 3 + ch] = Math.max(0, Math.min(255, Math.round(v * 255)));
      }
    }
    if (sp.dupOf !== undefined) nudgeCopy(images.subarray(off, off + S * S * 3), rng(streamSeed(seed, `${name}/${i}/copy`)));
    labels[i] = sp.label;
    contexts[i] = sp.context;
    weak[i] = sp.weak;
    ids.push(`${name}/${String(i).padStart(width, '0')}`);
  }
  return { name, images, n, size: S, ids, labels, contexts, weakLabels: weak };
}

/**
 * Draws `n` (class, context) pairs: classes uniform over `classes`, each in its home
 * context with probability `homeRate`, else in one of the other contexts uniformly.
 */
function drawPairs(n: number, classes: number[], home: number[], numContexts: number, homeRate: number, rand: () => number): Spec[] {
  const out: Spec[] = [];
  for (let i = 0; i < n; i++) {
    const label = classes[i % classes.length]!; // balanced classes, then shuffled
    let context = home[label]!;
    if (rand() >= homeRate) {
      const k = Math.floor(rand() * (numContexts - 1));
      context = k >= home[label]! ? k + 1 : k;
    }
    out.push({ label, context, weak: label });
  }
  shuffleInPlace(out, rand);
  return out;
}

/** Home context of class y: y mod numContexts. */
export function homeContexts(numClasses: number, numContexts: number): number[] {
  return Array.from({ length: numClasses }, (_, y) => y % numContexts);
}

/**
 * Generates a synthetic draw: train, test, mfreq, complement and the weak pool.
 *
 * @param partial options over {@link DEFAULT_SYNTHETIC}
 * @param seed the draw's seed (`--seeds` repeats it)
 * @param objects the object source; drawn shapes by default
 */
export function generateSynthetic(partial: DeepPartial<SyntheticOptions> = {}, seed = 0, objects?: ObjectSource): SyntheticDraw {
  const o = syntheticOptions(objects ? { ...partial, numClasses: objects.numClasses } : partial);
  const src = objects ?? shapeObjects(o.numClasses);
  validate(o, src);
  const styles = stylesOf(o);
  const home = homeContexts(o.numClasses, o.numContexts);
  const all = Array.from({ length: o.numClasses }, (_, y) => y);
  const subset = all.slice(0, o.subsetClasses);
  const pairs = (set: string) => rng(streamSeed(seed, `pairs/${set}`));
  const trainSpecs = drawPairs(o.train.size, all, home, o.numContexts, o.train.homeRate, pairs('train'));
  const testSpecs = drawPairs(o.test.size, all, home, o.numContexts, o.train.homeRate, pairs('test'));
  const mfSpecs = drawPairs(o.shifted.size, all, home, o.numContexts, 1 - o.shifted.rareRate, pairs('mfreq'));
  const coSpecs = drawPairs(o.shifted.size, all, home, o.numContexts, 1 - o.shifted.rareRate, pairs('complement'));
  // weak pool: weak label in Y_sub, context biased to the weak class's home; then noise
  const pr = pairs('pool');
  const poolSpecs = drawPairs(o.pool.size, subset, home, o.numContexts, o.pool.homeRate, pr);
  const nWrong = Math.round(o.pool.size * o.pool.wrongLabelRate);
  const nEmpty = Math.round(o.pool.size * o.pool.objectlessRate);
  const order = Array.from({ length: o.pool.size }, (_, i) => i);
  shuffleInPlace(order, pr);
  for (let k = 0; k < nWrong + nEmpty; k++) {
    const sp = poolSpecs[order[k]!]!;
    if (k < nWrong) {
      const r = Math.floor(pr() * (o.numClasses - 1));
      sp.label = r >= sp.weak ? r + 1 : r;
    } else sp.label = -1;
  }
  addWebNoise(poolSpecs, order, nWrong + nEmpty, o.pool, streamSeed(seed, 'pairs/pool-web'));
  return {
    options: o,
    seed,
    classNames: src.classNames.slice(),
    contextNames: styles.map((s) => s.name),
    home,
    subset,
    sets: {
      train: render(trainSpecs, 'train', o, src, styles, streamSeed(seed, 'img/train')),
      test: render(testSpecs, 'test', o, src, styles, streamSeed(seed, 'img/test')),
      mfreq: render(mfSpecs, 'mfreq', o, src, styles, streamSeed(seed, 'img/mfreq')),
      complement: render(coSpecs, 'complement', o, src, styles, streamSeed(seed, 'img/complement')),
      pool: render(poolSpecs, 'pool', o, src, styles, streamSeed(seed, 'img/pool')),
    },
  };
}

/**
 * The web-search noise kinds of the pool (off-topic images, near-duplicate clusters), on the images
 * `order[from..]` that the older kinds left clean. Draws only from its own stream (`seed`), and
 * nothing at all when both rates are 0, so older configs draw bit for bit what they drew before.
 */
function addWebNoise(specs: Spec[], order: number[], from: number, p: SyntheticOptions['pool'], seed: number): void {
  const nOff = Math.round(specs.length * p.offTopicRate);
  const nDup = Math.round(specs.length * p.nearDuplicateRate);
  if (nOff + nDup === 0) return;
  for (let k = from; k < from + nOff; k++) Object.assign(specs[order[k]!]!, { label: -1, offTopic: true });
  // copies are the last nDup images of `order`; their originals are drawn among the other images
  // (clean or noisy alike: a repost copies whatever the first post showed, under the same query)
  const copies = order.slice(order.length - nDup);
  const originals = order.slice(0, order.length - nDup);
  const rand = rng(seed);
  shuffleInPlace(originals, rand);
  const heads = originals.slice(0, Math.max(1, Math.round(nDup / (p.clusterSize - 1))));
  copies.forEach((i, c) => {
    const h = specs[heads[c % heads.length]!]!;
    Object.assign(specs[i]!, { label: h.label, context: h.context, weak: h.weak, offTopic: h.offTopic, dupOf: heads[c % heads.length]! });
  });
}

/**
 * A broad draw for pre-training demo backbones: every (class, context) pair equally
 * often, no label noise, all classes. It uses its own seed stream (`broad/<seed>`), so it
 * shares no image with any debug draw; backbones are never trained on the debug sets.
 */
export function generateBroad(partial: DeepPartial<SyntheticOptions>, size: number, seed: number, objects?: ObjectSource): SyntheticSet {
  const o = syntheticOptions(objects ? { ...partial, numClasses: objects.numClasses } : partial);
  const src = objects ?? shapeObjects(o.numClasses);
  validate(o, src);
  const styles = stylesOf(o);
  const rand = rng(streamSeed(seed, 'pairs/broad'));
  const specs: Spec[] = [];
  for (let i = 0; i < size; i++) {
    const label = i % o.numClasses;
    const context = Math.floor(i / o.numClasses) % o.numContexts;
    specs.push({ label, context, weak: label });
  }
  shuffleInPlace(specs, rand);
  return render(specs, 'broad', o, src, styles, streamSeed(seed, 'img/broad'));
}
