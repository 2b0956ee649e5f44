/**
 * An LPIPS-style perceptual distance on an AlexNet feature stack (Zhang et al. 2018), in
 * tfjs, for measuring what such a distance costs against penultimate-feature distance
 * (paper Table 2).
 *
 * The stack is torchvision's `alexnet().features`; LPIPS taps the output of each of the
 * five ReLUs. At 224 px the taps are 64×55², 192×27², 384×13², 256×13², 256×13²:
 * 64·3025 + 192·729 + (384+256+256)·169 = 484,992 values per image.
 *
 * Distance, as in the `lpips` package: per tap, unit-normalise every spatial position's
 * channel vector, take the squared difference, weight channels by the tap's linear
 * layer `w` (unit weights when none are given), sum channels, average over positions;
 * sum over the five taps.
 *
 *     d(x, x') = Σ_t (1 / H_t W_t) Σ_{h,w} Σ_c w_tc (ŷ_t(x)_{hwc} − ŷ_t(x')_{hwc})²
 *
 * Weights are random (seeded; PyTorch's default uniform init) or supplied under
 * torchvision's names (`features.0.weight`, … OIHW, and LPIPS's `lin0.model.1.weight` …
 * [1, C, 1, 1]). The measurement is of cost, which does not depend on the weights.
 */
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../core/errors.js';

/** One convolution of the AlexNet feature stack and the pooling before it. */
export interface AlexConv {
  /** torchvision name prefix of the conv, e.g. `features.0`. */
  key: string;
  cin: number;
  cout: number;
  kernel: number;
  stride: number;
  pad: number;
  /** 3×3 stride-2 max-pool applied to the input of this conv. */
  poolBefore: boolean;
}

/** Channel widths of the five convs; torchvision AlexNet is [64, 192, 384, 256, 256]. */
export const ALEXNET_WIDTHS = [64, 192, 384, 256, 256] as const;

/** The five convolutions of torchvision `alexnet().features` for given widths. */
export function alexnetConvs(widths: readonly number[] = ALEXNET_WIDTHS): AlexConv[] {
  if (widths.length !== 5 || widths.some((w) => !Number.isInteger(w) || w < 1))
    throw new WeightsError(`AlexNet widths: expected 5 positive integers, received [${widths.join(', ')}]`);
  const [w1, w2, w3, w4, w5] = widths as [number, number, number, number, number];
  return [
    { key: 'features.0', cin: 3, cout: w1, kernel: 11, stride: 4, pad: 2, poolBefore: false },
    { key: 'features.3', cin: w1, cout: w2, kernel: 5, stride: 1, pad: 2, poolBefore: true },
    { key: 'features.6', cin: w2, cout: w3, kernel: 3, stride: 1, pad: 1, poolBefore: true },
    { key: 'features.8', cin: w3, cout: w4, kernel: 3, stride: 1, pad: 1, poolBefore: false },
    { key: 'features.10', cin: w4, cout: w5, kernel: 3, stride: 1, pad: 1, poolBefore: false },
  ];
}

/** Shape [H, W, C] of each LPIPS tap for a square input of `size` pixels (pure arithmetic). */
export function lpipsTapShapes(size: number, widths: readonly number[] = ALEXNET_WIDTHS): [number, number, number][] {
  let s = size;
  return alexnetConvs(widths).map((c) => {
    if (c.poolBefore) s = Math.floor((s - 3) / 2) + 1;
    s = Math.floor((s + 2 * c.pad - c.kernel) / c.stride) + 1;
    if (s < 1) throw new WeightsError(`LPIPS stack: a ${size}px input is too small (tap ${c.key} would be empty)`);
    return [s, s, c.cout];
  });
}

/** Values per image of the LPIPS stack: 484,992 at 224 px with AlexNet widths. */
export function lpipsDims(size: number, widths: readonly number[] = ALEXNET_WIDTHS): number {
  return lpipsTapShapes(size, widths).reduce((a, [h, w, c]) => a + h * w * c, 0);
}

/** LPIPS's input scaling layer: (x − shift) / scale, for x in [−1, 1]. */
const SHIFT = [-0.03, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.45];

/** Weights in PyTorch layout as plain arrays (conv OIHW, bias [O], lin [1, C, 1, 1] or [C]). */
export type TorchWeights = ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>;

/** Throws a WeightsError naming the first key that is missing or has the wrong shape. */
function checkWeights(convs: readonly AlexConv[], weights: TorchWeights): void {
  convs.forEach((c, i) => {
    const wKey = `${c.key}.weight`;
    const bKey = `${c.key}.bias`;
    const oihw = [c.cout, c.cin, c.kernel, c.kernel];
    const w = weights.get(wKey);
    const b = weights.get(bKey);
    if (!w || !b)
      throw new WeightsError(`LPIPS weights: missing ${!w ? wKey : bKey}; a supplied file needs features.{0,3,6,8,10}.{weight,bias} (torchvision AlexNet names)`);
    if (w.shape.join() !== oihw.join() || w.data.length !== oihw.reduce((a, v) => a * v, 1))
      throw new WeightsError(`LPIPS weights: ${wKey} has shape [${w.shape}], expected [${oihw}] (OIHW)`);
    if (b.data.length !== c.cout) throw new WeightsError(`LPIPS weights: ${bKey} has ${b.data.length} values, expected ${c.cout}`);
    const lk = `lin${i}.model.1.weight`;
    const l = weights.get(lk);
    if (l && l.data.length !== c.cout) throw new WeightsError(`LPIPS weights: ${lk} has ${l.data.length} values, expected ${c.cout}`);
  });
}

/** The AlexNet feature stack with the five LPIPS taps and per-tap linear weights. */
export class LpipsNet {
  readonly convs: AlexConv[];
  /** Conv kernels HWIO and biases, by torchvision name. */
  private readonly vars = new Map<string, tf.Variable>();
  /** Per-tap channel weights [C]. */
  private readonly lin: tf.Tensor1D[] = [];

  /**
   * @param opts.widths conv widths (tests use narrow stacks); default AlexNet's
   * @param opts.seed seed of the random init when no weights are given
   * @param opts.weights torchvision-named weights; every conv weight and bias is required, `lin*` optional
   */
  constructor(opts: { widths?: readonly number[]; seed?: number; weights?: TorchWeights } = {}) {
    this.convs = alexnetConvs(opts.widths);
    const seed = opts.seed ?? 0;
    if (opts.weights) checkWeights(this.convs, opts.weights);
    tf.tidy(() => {
      this.convs.forEach((c, i) => {
        const wKey = `${c.key}.weight`;
        const bKey = `${c.key}.bias`;
        const oihw = [c.cout, c.cin, c.kernel, c.kernel];
        let kernel: tf.Tensor4D;
        let bias: tf.Tensor1D;
        if (opts.weights) {
          const w = opts.weights.get(wKey)!;
          const b = opts.weights.get(bKey)!;
          kernel = tf.tensor4d(w.data, oihw as [number, number, number, number]).transpose([2, 3, 1, 0]);
          bias = tf.tensor1d(b.data);
        } else {
          // PyTorch's default conv init: kaiming_uniform(a=√5) ⇒ U(±1/√fan_in), bias likewise.
          const bound = 1 / Math.sqrt(c.cin * c.kernel * c.kernel);
          kernel = tf.randomUniform([c.kernel, c.kernel, c.cin, c.cout], -bound, bound, 'float32', seed * 101 + i * 2 + 1);
          bias = tf.randomUniform([c.cout], -bound, bound, 'float32', seed * 101 + i * 2 + 2);
        }
        this.vars.set(wKey, tf.variable(kernel, false));
        this.vars.set(bKey, tf.variable(bias, false));
        const l = opts.weights?.get(`lin${i}.model.1.weight`);
        this.lin.push(tf.keep(l ? tf.tensor1d(l.data) : tf.ones([c.cout])));
      });
    });
  }

  /**
   * The five ReLU outputs.
   * @param x NHWC float32 [B, S, S, 3] in [−1, 1] (LPIPS's input range)
   * @returns five tensors [B, H_t, W_t, C_t]; the caller disposes them
   */
  taps(x: tf.Tensor4D): tf.Tensor4D[] {
    if (x.rank !== 4 || x.shape[3] !== 3) throw new WeightsError(`LpipsNet.taps: input must be NHWC [B, S, S, 3], got [${x.shape}]`);
    const scaled = tf.tidy(() => x.sub(tf.tensor1d(SHIFT)).div(tf.tensor1d(SCALE)) as tf.Tensor4D);
    const out: tf.Tensor4D[] = [];
    let h: tf.Tensor4D = scaled;
    for (const c of this.convs) {
      const next = tf.tidy(() => {
        let y = h;
        if (c.poolBefore) y = tf.maxPool(y, 3, 2, 'valid');
        if (c.pad) y = tf.pad(y, [[0, 0], [c.pad, c.pad], [c.pad, c.pad], [0, 0]]);
        y = tf.conv2d(y, this.vars.get(`${c.key}.weight`) as tf.Tensor4D, c.stride, 'valid');
        return tf.relu(tf.add(y, this.vars.get(`${c.key}.bias`)!)) as tf.Tensor4D;
      });
      out.push(next);
      h = next;
    }
    scaled.dispose();
    return out;
  }

  /**
   * LPIPS features: each tap unit-normalised over channels and scaled by √(w_c / (H W)),
   * so that the LPIPS distance is the squared L2 distance between these stacks.
   * @param x NHWC float32 [B, S, S, 3] in [−1, 1]
   * @returns five tensors [B, H_t, W_t, C_t]; the caller disposes them
   */
  features(x: tf.Tensor4D): tf.Tensor4D[] {
    const taps = this.taps(x);
    const out = taps.map((t, i) =>
      tf.tidy(() => {
        // As lpips.normalize_tensor: x / (‖x‖₂ over channels + 1e-10).
        const n = t.div(t.square().sum(3, true).sqrt().add(1e-10));
        const [, hh, ww] = t.shape;
        return n.mul(this.lin[i]!.div(hh * ww).sqrt()) as tf.Tensor4D;
      }),
    );
    taps.forEach((t) => t.dispose());
    return out;
  }

  /**
   * LPIPS distance between the images of two batches, pairwise by position.
   * @param a NHWC [B, S, S, 3] in [−1, 1]
   * @param b NHWC [B, S, S, 3] in [−1, 1]
   * @returns [B]
   */
  distance(a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor1D {
    const fa = this.features(a);
    const fb = this.features(b);
    const d = tf.tidy(() => tf.addN(fa.map((t, i) => t.sub(fb[i]!).square().sum([1, 2, 3]))) as tf.Tensor1D);
    [...fa, ...fb].forEach((t) => t.dispose());
    return d;
  }

  /** Frees every tensor the stack holds. */
  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.lin.forEach((t) => t.dispose());
    this.vars.clear();
  }
}

/**
 * LPIPS distances of one query to every image of a pool, the pool held as flat per-tap
 * LPIPS features (the stored "LPIPS embedding"), streamed through the backend in chunks.
 * @param query per-tap features of one image, each flat [H_t·W_t·C_t]
 * @param pool per-tap features of N images, each flat row-major [N, H_t·W_t·C_t]
 * @param chunk images per chunk
 * @returns distances [N]
 */
export async function lpipsRankPool(query: readonly Float32Array[], pool: readonly Float32Array[], n: number, chunk = 32): Promise<Float32Array> {
  const out = new Float32Array(n);
  const q = query.map((t) => tf.tensor2d(t, [1, t.length]));
  try {
    for (let s = 0; s < n; s += chunk) {
      const e = Math.min(n, s + chunk);
      const d = tf.tidy(() =>
        tf.addN(
          pool.map((p, i) => {
            const len = query[i]!.length;
            return tf.tensor2d(p.subarray(s * len, e * len), [e - s, len]).sub(q[i]!).square().sum(1);
          }),
        ),
      );
      out.set(await d.data(), s);
      d.dispose();
    }
  } finally {
    q.forEach((t) => t.dispose());
  }
  return out;
}
