/**
 * A small plain CNN for the embedded demo, fast on the tfjs `wasm` backend.
 *
 * The wasm backend has no Conv2DBackpropFilter kernel, so convolutions are written as
 * im2col: the nine shifted 3×3 windows are sliced from the padded input, concatenated on
 * the channel axis and multiplied by a [9·Cin, Cout] matrix. Every op involved (pad, slice,
 * concat, matMul) has a wasm kernel and a gradient, so the model trains on wasm without
 * extra kernels, and on 16 px inputs this is as fast as the native conv. On the native backend
 * the patches are one kernel (and their gradient one more) that give the same bits.
 *
 * Layout: stage i = conv3×3(width[i]) + ReLU, followed by 2×2 max-pool except after the
 * last stage; then global average pooling (the feature) and a linear head.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel, Preprocess } from '../core/types.js';
import { IM2COL_KERNEL } from '../backends/kernel-names.js';
import { backendHas } from './ops.js';

/** Options of {@link createSmallCnn}. */
export interface SmallCnnOptions {
  /** Output channels of each conv stage; default [16, 32, 64]. */
  widths?: number[];
  /** Classes of the head; 0 for a head-less backbone. */
  numClasses: number;
  /** Seed of the weight initialisation. */
  seed?: number;
  /** Registry-style name reported by the model; default `small_cnn`. */
  name?: string;
}

/** Normalisation of the demo models: [0,1] pixels → (x − 0.5) / 0.25. */
export const SMALL_CNN_PREPROCESS: Preprocess = { resize: 16, crop: 16, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };

/**
 * 3×3 "same" convolution as im2col + matMul.
 * @param x NHWC [B, H, W, Cin]
 * @param w [9·Cin, Cout], rows ordered (dy, dx, cin)
 * @param b [Cout]
 * @returns NHWC [B, H, W, Cout]
 */
export function conv3x3(x: tf.Tensor4D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, wd] = x.shape;
    return tf.add(tf.matMul(patches3x3(x), w), b).reshape([n, h, wd, w.shape[1]]) as tf.Tensor4D;
  });
}

/**
 * The 3×3 "same" patches of x as rows [B·H·W, 9·Cin], ordered (dy, dx, cin): one kernel with a
 * one-pass gradient on the native backend (bit-identical to the composed form), else pad, nine
 * slices and a concat.
 */
export function patches3x3(x: tf.Tensor4D): tf.Tensor2D {
  const [n, h, wd, c] = x.shape;
  if (backendHas(IM2COL_KERNEL, x))
    return tf.engine().runKernel(IM2COL_KERNEL, { x }, { n, h, w: wd, c }) as tf.Tensor2D;
  return tf.tidy(() => {
    const xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
    const cols: tf.Tensor4D[] = [];
    for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) cols.push(tf.slice(xp, [0, dy, dx, 0], [n, h, wd, c]));
    return tf.concat(cols, 3).reshape([n * h * wd, 9 * c]) as tf.Tensor2D;
  });
}

/**
 * Creates a small CNN implementing {@link ImageModel}. Parameter names follow PyTorch's
 * `nn.Sequential` spelling (`features.<i>.weight`, `fc.weight`); conv weights are stored in
 * the im2col layout [9·Cin, Cout] rather than PyTorch's [Cout, Cin, 3, 3].
 */
export function createSmallCnn(opts: SmallCnnOptions): ImageModel {
  const widths = opts.widths ?? [16, 32, 64];
  if (widths.length === 0 || widths.some((w) => !Number.isInteger(w) || w < 1))
    throw new ConfigError(`small_cnn widths: expected a non-empty list of positive integers; received ${JSON.stringify(widths)}`);
  if (!Number.isInteger(opts.numClasses) || opts.numClasses < 0)
    throw new ConfigError(`small_cnn numClasses: expected an integer ≥ 0; received ${opts.numClasses}`);
  const seed = opts.seed ?? 0;
  const params = new Map<string, tf.Variable>();
  let cin = 3;
  widths.forEach((w, i) => {
    const fanIn = 9 * cin;
    params.set(`features.${i}.weight`, variable(() => tf.randomNormal([fanIn, w], 0, Math.sqrt(2 / fanIn), 'float32', seed * 101 + i + 1)));
    params.set(`features.${i}.bias`, variable(() => tf.zeros([w])));
    cin = w;
  });
  const nf = cin;
  if (opts.numClasses > 0) {
    params.set('fc.weight', variable(() => tf.randomNormal([nf, opts.numClasses], 0, Math.sqrt(1 / nf), 'float32', seed * 101 + 99)));
    params.set('fc.bias', variable(() => tf.zeros([opts.numClasses])));
  }
  const name = opts.name ?? 'small_cnn';
  return {
    name,
    numFeatures: nf,
    numClasses: opts.numClasses,
    forwardFeatures(x: tf.Tensor4D): tf.Tensor2D {
      if (x.rank !== 4 || x.shape[3] !== 3) throw new ConfigError(`${name}.forwardFeatures: expected NHWC [B, H, W, 3]; received shape [${x.shape.join(', ')}]`);
      return tf.tidy(() => {
        let h = x;
        widths.forEach((_, i) => {
          h = tf.relu(conv3x3(h, params.get(`features.${i}.weight`) as unknown as tf.Tensor2D, params.get(`features.${i}.bias`) as unknown as tf.Tensor1D));
          if (i < widths.length - 1) h = tf.maxPool(h, 2, 2, 'valid');
        });
        return tf.mean(h, [1, 2]) as tf.Tensor2D;
      });
    },
    forwardHead(features: tf.Tensor2D): tf.Tensor2D {
      if (opts.numClasses === 0) throw new ConfigError(`${name}: the model has no head (numClasses = 0)`);
      return tf.tidy(() => tf.add(tf.matMul(features, params.get('fc.weight') as unknown as tf.Tensor2D), params.get('fc.bias')!) as tf.Tensor2D);
    },
    params: () => params,
    buffers: () => new Map(),
    dispose() {
      for (const v of params.values()) v.dispose();
      params.clear();
    },
  };
}

let counter = 0;
/** A trainable variable from an initial value that is freed at once (no tensor left behind). */
function variable(init: () => tf.Tensor): tf.Variable {
  const t = init();
  const v = tf.variable(t, true, `small_cnn_${++counter}`);
  t.dispose();
  return v;
}
