/**
 * Functional layers over tf.Variables that hold PyTorch-layout weights
 * (conv: [out, in, kh, kw]; linear: [out, in]). Activations are NHWC. The weights are
 * re-laid-out inside each call, so gradients reach the variables, and checkpoint
 * shapes are exactly PyTorch's.
 */
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../core/errors.js';
import { numel } from './tensor-data.js';
import { ATTENTION_KERNEL, BN_TRAIN_KERNEL, CONV_ADD_KERNEL, GELU_KERNEL, LAYER_NORM_KERNEL, LINEAR_KERNEL } from '../backends/kernel-names.js';
import { markConstant } from '../backends/weight-cache.js';

/** Named trainable parameters and buffers of a model, in PyTorch spelling. */
export class VarStore {
  readonly params = new Map<string, tf.Variable>();
  readonly buffers = new Map<string, tf.Variable>();

  /** Creates a trainable variable `name` with PyTorch shape `shape` and values `init`. */
  param(name: string, shape: number[], init: Float32Array): tf.Variable {
    return this.add(this.params, name, shape, init, true);
  }

  /** Creates a non-trainable buffer (BN running stats, normaliser constants). */
  buffer(name: string, shape: number[], init: Float32Array): tf.Variable {
    return this.add(this.buffers, name, shape, init, false);
  }

  private add(map: Map<string, tf.Variable>, name: string, shape: number[], init: Float32Array, trainable: boolean): tf.Variable {
    if (this.params.has(name) || this.buffers.has(name)) throw new WeightsError(`internal: variable ${name} defined twice`);
    if (init.length !== numel(shape)) throw new WeightsError(`internal: ${name} init has ${init.length} values for shape [${shape}]`);
    // Variable names must be unique per tfjs engine; suffix a counter so two models can coexist.
    const t = tf.tensor(init, shape, 'float32');
    const v = tf.variable(t, trainable, `${name}#${VarStore.counter++}`);
    t.dispose(); // the variable holds its own reference to the data
    map.set(name, v);
    return v;
  }

  /** The variable `name` (param or buffer); throws when absent. */
  get(name: string): tf.Variable {
    const v = this.params.get(name) ?? this.buffers.get(name);
    if (!v) throw new WeightsError(`internal: no variable ${name}`);
    return v;
  }

  /** Disposes every variable. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    for (const v of this.buffers.values()) v.dispose();
    this.params.clear();
    this.buffers.clear();
  }

  private static counter = 0;
}

/**
 * 2-D convolution with PyTorch's symmetric zero padding.
 * @param x NHWC [B, H, W, Cin]
 * @param w PyTorch layout [Cout, Cin, kh, kw]
 * @param b optional bias [Cout]
 */
export function conv2d(x: tf.Tensor4D, w: tf.Tensor, stride: number, pad: number, b?: tf.Tensor): tf.Tensor4D {
  const k = tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D;
  let y = tf.conv2d(x, k, stride, pad === 0 ? 'valid' : pad);
  if (b) y = tf.add(y, b) as tf.Tensor4D;
  return y;
}

/** What follows a BatchNorm in {@link batchNorm}: a residual added, then ReLU. */
export interface BnEpilogue {
  /** Added to the normalised output (its shape). */
  residual?: tf.Tensor4D;
  relu?: boolean;
}

/**
 * BatchNorm2d on NHWC input, then optionally `+ residual` and ReLU. In training mode it
 * normalises with the batch statistics (biased variance) and updates the running ones with
 * momentum 0.1, storing the unbiased variance, exactly as PyTorch does.
 */
export function batchNorm(
  x: tf.Tensor4D,
  s: VarStore,
  prefix: string,
  training: boolean,
  eps = 1e-5,
  momentum = 0.1,
  epi: BnEpilogue = {},
): tf.Tensor4D {
  const gamma = s.get(`${prefix}.weight`);
  const beta = s.get(`${prefix}.bias`);
  const rm = s.get(`${prefix}.running_mean`);
  const rv = s.get(`${prefix}.running_var`);
  if (!training) {
    let y = tf.batchNorm(x, rm as tf.Tensor1D, rv as tf.Tensor1D, beta as tf.Tensor1D, gamma as tf.Tensor1D, eps);
    if (epi.residual) y = tf.add(y, epi.residual);
    return epi.relu ? tf.relu(y) : y;
  }
  const [y, mean, variance] = batchNormTrain(x, gamma, beta, eps, epi);
  const n = x.shape[0] * x.shape[1] * x.shape[2];
  tf.tidy(() => {
    const m = mean;
    const v = tf.mul(variance, n / Math.max(1, n - 1));
    rm.assign(tf.add(tf.mul(rm, 1 - momentum), tf.mul(m, momentum)));
    rv.assign(tf.add(tf.mul(rv, 1 - momentum), tf.mul(v, momentum)));
  });
  return y;
}

/**
 * Training-mode BatchNorm over the last axis with the batch statistics, then optionally
 * `+ residual` and ReLU: [y, mean, biased variance], differentiable in x (through the statistics
 * too), gamma, beta and the residual. On a backend with the one-kernel form (native) all of it is
 * one kernel and so is its gradient; elsewhere tf.moments + tf.batchNorm (+ add, relu),
 * differentiated by tfjs.
 * @param x [..., C] (NHWC activations); gamma, beta [C]; epi.residual x's shape
 */
export function batchNormTrain<T extends tf.Tensor>(x: T, gamma: tf.Tensor, beta: tf.Tensor, eps: number, epi: BnEpilogue = {}): [T, tf.Tensor1D, tf.Tensor1D] {
  const res = epi.residual;
  if (backendHas(BN_TRAIN_KERNEL, x, gamma, beta, ...(res ? [res] : [])) && (!res || res.shape.every((d, i) => d === x.shape[i]))) {
    const inputs: Record<string, tf.Tensor> = { x, scale: gamma, offset: beta };
    if (res) inputs.residual = res;
    const attrs = { eps, activation: epi.relu ? 'relu' : 'linear', residual: res !== undefined };
    return tf.engine().runKernel(BN_TRAIN_KERNEL, inputs, attrs) as tf.Tensor[] as [T, tf.Tensor1D, tf.Tensor1D];
  }
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  let y: tf.Tensor = tf.batchNorm(x, mean as tf.Tensor1D, variance as tf.Tensor1D, beta as tf.Tensor1D, gamma as tf.Tensor1D, eps);
  if (res) y = tf.add(y, res);
  if (epi.relu) y = tf.relu(y);
  return [y as T, mean as tf.Tensor1D, variance as tf.Tensor1D];
}

/** True while a gradient tape records (inside tf.grad / variableGrads). */
export function taping(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Eval-mode convolution followed by BatchNorm (and ReLU) as one fused convolution: the BN
 * is folded into the weights and a bias, w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε), as
 * inference runtimes do. The folded tensors are computed once and kept in `cache` until
 * any of the five variables changes (Variable.assign gives new data); they are only used
 * when no gradient tape is recording, so training never sees them. With `residual`, the result
 * is act(conv + bias + residual): a ResNet block's end (on native, one convolution).
 * @param x NHWC [B, H, W, Cin]
 * @param conv name of the conv weight, PyTorch layout [Cout, Cin, kh, kw]; `bn` the BatchNorm prefix
 * @param residual NHWC [B, H', W', Cout], the conv's output shape
 * @returns NHWC [B, H', W', Cout]
 */
export function convBnEval(
  x: tf.Tensor4D,
  s: VarStore,
  cache: FoldCache,
  conv: string,
  bn: string,
  stride: number,
  pad: number,
  relu: boolean,
  eps = 1e-5,
  residual?: tf.Tensor4D,
): tf.Tensor4D {
  const vars = [s.get(conv), s.get(`${bn}.weight`), s.get(`${bn}.bias`), s.get(`${bn}.running_mean`), s.get(`${bn}.running_var`)];
  const ids = vars.map((v) => (v as unknown as { dataId: object }).dataId);
  let e = cache.get(conv);
  if (!e || e.ids.some((id, i) => id !== ids[i])) {
    if (e) tf.dispose([e.w, e.b]);
    const [w, g, b, m, v] = vars as [tf.Variable, tf.Variable, tf.Variable, tf.Variable, tf.Variable];
    const folded = tf.tidy(() => {
      const scale = tf.mul(g, tf.rsqrt(tf.add(v, eps)));
      return { w: tf.keep(tf.mul(tf.transpose(w, [2, 3, 1, 0]), scale) as tf.Tensor4D), b: tf.keep(tf.sub(b, tf.mul(m, scale)) as tf.Tensor1D) };
    });
    markConstant(folded.w); // native: conv may keep it in oneDNN's packed layout
    e = { ids, ...folded };
    cache.set(conv, e);
  }
  const padding = pad === 0 ? 'valid' : pad;
  if (residual) {
    // act(conv + residual): one kernel where the backend has it (native), else conv, add, act
    if (backendHas(CONV_ADD_KERNEL, x, residual))
      return tf.engine().runKernel(CONV_ADD_KERNEL, { x, filter: e.w, bias: e.b, residual },
        { strides: stride, pad: padding, dataFormat: 'NHWC', dilations: 1, activation: relu ? 'relu' : 'linear' }) as tf.Tensor4D;
    const y = tf.add(tf.fused.conv2d({ x, filter: e.w, strides: stride, pad: padding, bias: e.b }), residual) as tf.Tensor4D;
    return relu ? tf.relu(y) : y;
  }
  return tf.fused.conv2d({ x, filter: e.w, strides: stride, pad: padding, bias: e.b, activation: relu ? 'relu' : 'linear' });
}

/** Folded conv + BN weights of {@link convBnEval}, by conv weight name. */
export class FoldCache extends Map<string, { ids: object[]; w: tf.Tensor4D; b: tf.Tensor1D }> {
  dispose(): void {
    for (const e of this.values()) tf.dispose([e.w, e.b]);
    this.clear();
  }
}

/**
 * Linear layer y = act(x Wᵀ + b + residual), act the identity or exact GELU. On a backend with the one-kernel form (native, no gradient tape) one matmul with the
 * weights pre-packed, GELU and the residual add fused. Elsewhere W is transposed first and
 * multiplied with a plain 2-D matMul (on wasm, `transposeB` takes a path about 20× slower) with
 * the bias fused, then GELU and the add.
 * @param x [M, in]
 * @param w PyTorch layout [out, in]
 * @param opts.gelu apply GELU to x Wᵀ + b; opts.residual [M, out], added before the activation
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor, opts: { gelu?: boolean; residual?: tf.Tensor2D } = {}): tf.Tensor2D {
  const { gelu: withGelu = false, residual } = opts;
  if (w.rank === 2 && oneKernel(LINEAR_KERNEL, x, w, ...(b ? [b] : []), ...(residual ? [residual] : [])))
    return tf.engine().runKernel(LINEAR_KERNEL, { x, weight: w, ...(b ? { bias: b } : {}), ...(residual ? { residual } : {}) },
      { activation: withGelu ? 'gelu' : 'linear' }) as tf.Tensor2D;
  const wt = tf.transpose(w) as tf.Tensor2D;
  let y: tf.Tensor2D = b ? (tf.fused.matMul({ a: x, b: wt, bias: b }) as tf.Tensor2D) : tf.matMul(x, wt);
  if (residual) y = tf.add(y, residual) as tf.Tensor2D;
  return withGelu ? gelu(y) : y;
}

/**
 * True when the active backend registers dcd's one-kernel form `kernel` (the `native`
 * backend's, see src/backends/native.ts) and every tensor is float32.
 */
export function backendHas(kernel: string, ...ts: tf.Tensor[]): boolean {
  return tf.getKernel(kernel, tf.getBackend()) != null && ts.every((t) => t.dtype === 'float32');
}

/** {@link backendHas}, for kernels without a gradient: also no gradient tape may be recording. */
function oneKernel(kernel: string, ...ts: tf.Tensor[]): boolean {
  return backendHas(kernel, ...ts) && !taping();
}

/** LayerNorm over the last axis. @param x [..., D] */
export function layerNorm<T extends tf.Tensor>(x: T, w: tf.Tensor, b: tf.Tensor, eps: number): T {
  const D = x.shape[x.rank - 1];
  if (w.size === D && b.size === D && oneKernel(LAYER_NORM_KERNEL, x, w, b))
    return tf.engine().runKernel(LAYER_NORM_KERNEL, { x, weight: w, bias: b }, { eps }) as T;
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), w), b) as T;
}

/**
 * Multi-head self-attention from a qkv projection, as timm's ViT: softmax(Q·Kᵀ/√hd)·V per batch
 * item and head, heads concatenated. On a backend with the one-kernel form (native, no gradient
 * tape) one kernel reads q, k and v straight out of `qkv`; elsewhere reshapes, transposes and
 * batched matMuls (on wasm, 2-D matMuls per head: its batched matMul is ~20× slower).
 * @param qkv [B·T, 3·D] (q | k | v, each H blocks of D/H)
 * @returns [B·T, D]
 */
export function attention(qkv: tf.Tensor2D, B: number, T: number, H: number): tf.Tensor2D {
  const D = qkv.shape[1] / 3;
  const hd = D / H;
  if (oneKernel(ATTENTION_KERNEL, qkv))
    return tf.engine().runKernel(ATTENTION_KERNEL, { qkv }, { batch: B, tokens: T, heads: H, scale: hd ** -0.5 }) as tf.Tensor2D;
  // [B, T, 3H, hd] → [B, 3H, T, hd]
  const t = tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]);
  const part = (k: number) => tf.reshape(tf.slice(t, [0, k * H, 0, 0], [B, H, T, hd]), [B * H, T, hd]);
  const q = tf.mul(part(0), hd ** -0.5) as tf.Tensor3D;
  const kT = tf.transpose(part(1), [0, 2, 1]) as tf.Tensor3D; // [B·H, hd, T]
  const v = part(2) as tf.Tensor3D;
  let o: tf.Tensor3D;
  if (tf.getBackend() === 'wasm') {
    const qs = tf.unstack(q);
    const ks = tf.unstack(kT);
    const vs = tf.unstack(v);
    o = tf.stack(qs.map((qi, j) => tf.matMul(tf.softmax(tf.matMul(qi as tf.Tensor2D, ks[j] as tf.Tensor2D)), vs[j] as tf.Tensor2D))) as tf.Tensor3D;
  } else {
    o = tf.matMul(tf.softmax(tf.matMul(q, kT)), v);
  }
  // [B, H, T, hd] → [B, T, H, hd] → [B·T, D]
  return tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]) as tf.Tensor2D;
}

/** Exact GELU: 0.5·x·(1 + erf(x/√2)) (PyTorch's nn.GELU default, not the tanh form). */
export function gelu<T extends tf.Tensor>(x: T): T {
  if (oneKernel(GELU_KERNEL, x)) return tf.engine().runKernel(GELU_KERNEL, { x }) as T;
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
}
