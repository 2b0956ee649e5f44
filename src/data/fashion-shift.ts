/**
 * Fashion-MNIST with an induced deployment shift.
 *
 * The objects are real Fashion-MNIST garments (Debian's `dataset-fashion-mnist` IDX
 * files); the shift is the same as the synthetic benchmark's: each garment is composited,
 * as a tinted alpha mask (its grey levels are the coverage), over a *context* background
 * (colour + texture: grass, sky, sand, snow, brick, night). Each class has a home
 * context: in train, `train.homeRate` of a class's images sit on its home background; in
 * the shifted sets (mfreq, complement) `shifted.rareRate` sit on another background, the
 * setting the model rarely met in training. The weak pool covers every background for the
 * classes of Y_sub, with wrong-class and garment-less images.
 *
 * Garment instances never cross sets: the Fashion-MNIST train split is dealt out by index
 * (i mod 3 = 0: our train set, 1: the weak pool, 2: the backbones' broad draw) and our
 * test, mfreq and complement sets take garments from the t10k split.
 */
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, readIdx } from './idx.js';
import { generateSynthetic, type DeepPartial, type ObjectSource, type SyntheticDraw, type SyntheticOptions, type SyntheticSetName } from './synthetic.js';

/** Default classes: six garments that stay distinct at 16–24 px (T-shirt/top, Trouser, Dress, Sneaker, Bag, Ankle boot). */
export const DEFAULT_FASHION_CLASSES = [0, 1, 3, 7, 8, 9] as const;

/** Options of {@link fashionObjects}. */
export interface FashionObjectOptions {
  /** Folder with the four IDX .gz files. */
  dir?: string;
  /** Fashion-MNIST labels used as classes 0..n-1, in this order. */
  classes?: readonly number[];
}

/** Garment masks (28×28 grey) of one class, per source split. */
interface Bank {
  train: Uint8Array[][];
  pool: Uint8Array[][];
  broad: Uint8Array[][];
  test: Uint8Array[][];
}

function loadBank(dir: string, classes: readonly number[]): Bank {
  const where = new Map(classes.map((c, i) => [c, i]));
  const empty = () => classes.map(() => [] as Uint8Array[]);
  const bank: Bank = { train: empty(), pool: empty(), broad: empty(), test: empty() };
  for (const [split, prefix] of [['train', 'train'], ['test', 't10k']] as const) {
    const img = readIdx(path.join(dir, `${prefix}-images-idx3-ubyte.gz`));
    const lab = readIdx(path.join(dir, `${prefix}-labels-idx1-ubyte.gz`));
    const [n, h, w] = img.dims as [number, number, number];
    if (h !== 28 || w !== 28 || lab.dims[0] !== n)
      throw new ConfigError(`${dir}: expected ${prefix} images n×28×28 with n labels; found ${img.dims.join('×')} and ${lab.dims.join('×')}`);
    for (let i = 0; i < n; i++) {
      const k = where.get(lab.data[i]!);
      if (k === undefined) continue;
      const m = img.data.subarray(i * 784, (i + 1) * 784);
      if (split === 'test') bank.test[k]!.push(m);
      else [bank.train, bank.pool, bank.broad][i % 3]![k]!.push(m);
    }
  }
  return bank;
}

/**
 * An {@link ObjectSource} of Fashion-MNIST garments: the garment's grey level is the
 * coverage mask, scaled to `scale · size` pixels and placed with a small random offset.
 */
export function fashionObjects(opts: FashionObjectOptions = {}): ObjectSource {
  const classes = opts.classes ?? DEFAULT_FASHION_CLASSES;
  if (classes.some((c) => !Number.isInteger(c) || c < 0 || c > 9) || new Set(classes).size !== classes.length || classes.length < 2)
    throw new ConfigError(`data.fashion.classes: expected ≥ 2 distinct Fashion-MNIST labels in 0..9; received ${JSON.stringify(classes)}`);
  const bank = loadBank(opts.dir ?? DEBIAN_FASHION_MNIST, classes);
  const pick = (set: SyntheticSetName): Uint8Array[][] =>
    set === 'train' ? bank.train : set === 'pool' ? bank.pool : set === 'broad' ? bank.broad : bank.test;
  return {
    numClasses: classes.length,
    classNames: classes.map((c) => FASHION_MNIST_CLASSES[c]!),
    draw(label, mask, size, rand, scale, set) {
      const list = pick(set)[label]!;
      const g = list[Math.floor(rand() * list.length)]!;
      const side = Math.max(4, scale * size);
      const x0 = (size - side) / 2 + (rand() - 0.5) * (size - side) * 0.8;
      const y0 = (size - side) / 2 + (rand() - 0.5) * (size - side) * 0.8;
      const k = 28 / side;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          // area-average the garment pixels that fall in this output pixel (box filter)
          const gx0 = (x - x0) * k;
          const gy0 = (y - y0) * k;
          let s = 0;
          let c = 0;
          for (let gy = Math.floor(gy0); gy < Math.ceil(gy0 + k); gy++)
            for (let gx = Math.floor(gx0); gx < Math.ceil(gx0 + k); gx++) {
              c++;
              if (gx >= 0 && gx < 28 && gy >= 0 && gy < 28) s += g[gy * 28 + gx]!;
            }
          mask[y * size + x] = c ? Math.min(1, (1.4 * s) / (255 * c)) : 0;
        }
    },
  };
}

/**
 * The Fashion-MNIST shift: a synthetic draw whose objects are garments.
 * @param partial synthetic options (sizes, rates, image size); numClasses follows `fashion.classes`
 */
export function makeFashionShift(partial: DeepPartial<SyntheticOptions>, seed: number, fashion: FashionObjectOptions = {}): SyntheticDraw {
  const objects = fashionObjects(fashion);
  return generateSynthetic({ ...partial, numClasses: objects.numClasses }, seed, objects);
}
