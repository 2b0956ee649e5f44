/**
 * DINO's objective (Caron et al., "Emerging Properties in Self-Supervised Vision
 * Transformers", 2021; reference code facebookresearch/dino `main_dino.py`), as pure
 * functions on tfjs tensors:
 *
 * - the projection head ({@link createDinoHead}): MLP (Linear–GELU–Linear–GELU–Linear to
 *   a bottleneck), L2 normalisation, then a *weight-normalised* linear last layer without
 *   bias whose norm `weight_g` is fixed at 1 (DINO's `norm_last_layer=True`);
 * - the loss ({@link dinoLoss}): cross-entropy between the centred, sharpened teacher
 *   distribution on each global view and the student distribution on every *other* view;
 * - centring ({@link updateCenter}): an EMA of the teacher's batch-mean output;
 * - the EMA teacher ({@link emaUpdate}) and the schedules of momentum and teacher temperature.
 *
 * Parameter names keep the PyTorch spelling of DINO's `DINOHead` (`mlp.0.weight` [out, in],
 * `last_layer.weight_v`, `last_layer.weight_g`), so a PyTorch state dict maps 1:1.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import { mulberry32 as rng, streamSeed } from '../core/rng.js';

/** Sizes of the projection head. */
export interface DinoHeadOptions {
  inDim: number;
  /** Hidden width of the MLP (DINO: 2048). */
  hiddenDim: number;
  /** Bottleneck before the last layer (DINO: 256). */
  bottleneckDim: number;
  /** Prototypes K (DINO: 65536). */
  outDim: number;
  /** Linear layers of the MLP, ≥ 1 (DINO: 3). */
  layers: number;
  /**
   * BatchNorm1d (batch statistics, affine) after each hidden linear layer: DINO's
   * `use_bn_in_head`, off for ViTs. A small un-normalised CNN needs it: its pooled features
   * of different images are nearly parallel at initialisation, so without it every teacher
   * output is the same, the centre cancels it, and training collapses to the uniform output.
   */
  useBn?: boolean;
  seed: number;
}

/** The projection head: parameters by PyTorch name and a forward pass. */
export interface DinoHead {
  params: Map<string, tf.Variable>;
  /** Trainable parameters (all but `last_layer.weight_g`, which stays 1). */
  trainable(): tf.Variable[];
  /**
   * @param x features [B, inDim]
   * @returns logits [B, outDim]
   */
  forward(x: tf.Tensor2D): tf.Tensor2D;
  /** The MLP's L2-normalised bottleneck output [B, bottleneckDim] (SimCLR's projection z). */
  project(x: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

/** GELU, exact (erf) form as PyTorch's nn.GELU(). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2)))));
}

/** Uniform(-b, b) values from the tree's seeded generator (tfjs's own RNG is not seedable per call on every backend). */
function uniform(shape: number[], bound: number, seed: number, stream: string): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = rng(streamSeed(seed, stream));
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (2 * r() - 1) * bound;
  return tf.tensor(v, shape);
}

/** Creates the DINO projection head; initialisation as PyTorch's nn.Linear default (uniform ±1/√fan_in). */
export function createDinoHead(o: DinoHeadOptions): DinoHead {
  for (const k of ['inDim', 'hiddenDim', 'bottleneckDim', 'outDim', 'layers'] as const)
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new ConfigError(`pretrain.head.${k}: expected an integer ≥ 1; received ${JSON.stringify(o[k])}`);
  const params = new Map<string, tf.Variable>();
  const add = (name: string, t: tf.Tensor, trainable = true) => {
    params.set(name, tf.variable(t, trainable));
    t.dispose();
  };
  const dims = o.layers === 1 ? [o.inDim, o.bottleneckDim] : [o.inDim, ...new Array<number>(o.layers - 1).fill(o.hiddenDim), o.bottleneckDim];
  // nn.Sequential indices: Linear at 0, 2, 4, ... with GELU between (0, 3, 6, ... with Linear, BN, GELU)
  const stride = o.useBn ? 3 : 2;
  const nLin = dims.length - 1;
  for (let l = 0; l < nLin; l++) {
    const b = 1 / Math.sqrt(dims[l]!);
    add(`mlp.${stride * l}.weight`, uniform([dims[l + 1]!, dims[l]!], b, o.seed, `dino-head/${l}/w`));
    add(`mlp.${stride * l}.bias`, uniform([dims[l + 1]!], b, o.seed, `dino-head/${l}/b`));
    if (o.useBn && l < nLin - 1) {
      add(`mlp.${stride * l + 1}.weight`, tf.ones([dims[l + 1]!]));
      add(`mlp.${stride * l + 1}.bias`, tf.zeros([dims[l + 1]!]));
    }
  }
  add('last_layer.weight_v', uniform([o.outDim, o.bottleneckDim], 1 / Math.sqrt(o.bottleneckDim), o.seed, 'dino-head/last'));
  add('last_layer.weight_g', tf.ones([o.outDim, 1]), false);
  const head: DinoHead = {
    params,
    trainable: () => [...params.entries()].filter(([k]) => k !== 'last_layer.weight_g').map(([, v]) => v),
    project(x) {
      if (x.rank !== 2 || x.shape[1] !== o.inDim) throw new ConfigError(`DinoHead: expected features [B, ${o.inDim}]; received shape [${x.shape.join(', ')}]`);
      return tf.tidy(() => {
        let h: tf.Tensor = x;
        for (let l = 0; l < nLin; l++) {
          h = tf.add(tf.matMul(h as tf.Tensor2D, params.get(`mlp.${stride * l}.weight`) as tf.Tensor2D, false, true), params.get(`mlp.${stride * l}.bias`)!);
          if (l === nLin - 1) break;
          if (o.useBn) {
            // training-mode BatchNorm1d: batch mean and biased variance, eps 1e-5
            const { mean, variance } = tf.moments(h, 0, true);
            h = tf.add(tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-5))), params.get(`mlp.${stride * l + 1}.weight`)!), params.get(`mlp.${stride * l + 1}.bias`)!);
          }
          h = gelu(h);
        }
        // F.normalize(x, dim=-1, p=2, eps=1e-12)
        return tf.div(h, tf.maximum(tf.norm(h, 2, 1, true), 1e-12)) as tf.Tensor2D;
      });
    },
    forward(x) {
      return tf.tidy(() => {
        const h = head.project(x);
        const v = params.get('last_layer.weight_v')!;
        const w = tf.mul(tf.div(v, tf.norm(v, 2, 1, true)), params.get('last_layer.weight_g')!);
        return tf.matMul(h, w as tf.Tensor2D, false, true);
      });
    },
    dispose() {
      for (const v of params.values()) v.dispose();
      params.clear();
    },
  };
  return head;
}

/** Identity whose gradient is zero (PyTorch's `.detach()`; tfjs has no stopGradient op). */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({ value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) })) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/**
 * DINO's loss (main_dino.py `DINOLoss.forward`).
 *
 * @param student student logits of every view, view-major: [V·B, K] (views 0..G−1 are the global ones)
 * @param teacher teacher logits of the G global views, view-major: [G·B, K]
 * @param center the centre c, [1, K]
 * @returns mean over the (teacher view q, student view v ≠ q) pairs of
 *   mean_b Σ_k −softmax((t_q − c)/τ_t)_k · log_softmax(s_v/τ_s)_k; the teacher term is constant (no gradient)
 */
export function dinoLoss(student: tf.Tensor2D, teacher: tf.Tensor2D, center: tf.Tensor2D, views: number, globals: number, studentTemp: number, teacherTemp: number): tf.Scalar {
  const K = student.shape[1];
  if (teacher.shape[1] !== K || center.shape[1] !== K) throw new ConfigError(`dinoLoss: student, teacher and centre must share K; received ${K}, ${teacher.shape[1]}, ${center.shape[1]}`);
  if (student.shape[0] % views !== 0 || teacher.shape[0] !== (student.shape[0] / views) * globals)
    throw new ConfigError(`dinoLoss: expected student [${views}·B, K] and teacher [${globals}·B, K]; received [${student.shape}] and [${teacher.shape}]`);
  return tf.tidy(() => {
    const B = student.shape[0] / views;
    const logp = tf.logSoftmax(tf.div(student, studentTemp));
    const q = stopGradient(tf.softmax(tf.div(tf.sub(teacher, center), teacherTemp)));
    let total: tf.Tensor = tf.scalar(0);
    let terms = 0;
    for (let iq = 0; iq < globals; iq++) {
      const qi = tf.slice(q, [iq * B, 0], [B, K]);
      for (let v = 0; v < views; v++) {
        if (v === iq) continue;
        const lv = tf.slice(logp, [v * B, 0], [B, K]);
        total = tf.add(total, tf.mean(tf.sum(tf.mul(tf.neg(qi), lv), 1)));
        terms++;
      }
    }
    return tf.div(total, terms) as tf.Scalar;
  });
}

/**
 * The centre's EMA update (DINOLoss.update_center): c ← m·c + (1 − m)·mean_b t_b over every
 * teacher output row of the batch. Returns a new tensor; the caller disposes the old one.
 * @param teacher [G·B, K]; center [1, K]
 */
export function updateCenter(center: tf.Tensor2D, teacher: tf.Tensor2D, momentum: number): tf.Tensor2D {
  return tf.tidy(() => tf.add(tf.mul(center, momentum), tf.mul(tf.mean(teacher, 0, true), 1 - momentum)) as tf.Tensor2D);
}

/** Teacher ← m·teacher + (1 − m)·student, parameter by parameter (same names, same shapes). */
export function emaUpdate(teacher: Map<string, tf.Variable>, student: Map<string, tf.Variable>, momentum: number): void {
  for (const [k, t] of teacher) {
    const s = student.get(k);
    if (!s) throw new ConfigError(`emaUpdate: student has no parameter ${k}`);
    tf.tidy(() => t.assign(tf.add(tf.mul(t, momentum), tf.mul(s, 1 - momentum))));
  }
}

/**
 * DINO's cosine schedule (utils.cosine_scheduler after its warm-up):
 * final + ½(base − final)(1 + cos(π·step/total)), base at step 0, approaching final.
 */
export function cosineValue(base: number, final: number, step: number, total: number): number {
  if (total <= 0) return base;
  return final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * step) / total));
}

/** Teacher temperature: linear warm-up from `warmup` to `final` over `warmupSteps`, then constant (DINO's schedule, per step here). */
export function teacherTemp(warmup: number, final: number, step: number, warmupSteps: number): number {
  if (step >= warmupSteps || warmupSteps <= 1) return final;
  return warmup + ((final - warmup) * step) / (warmupSteps - 1);
}

/** Learning rate: linear warm-up 0 → `peak` over `warmupSteps` (np.linspace, end included), then cosine towards `min` (DINO's lr schedule). */
export function lrAt(peak: number, min: number, step: number, warmupSteps: number, total: number): number {
  if (step < warmupSteps) return warmupSteps <= 1 ? peak : (peak * step) / (warmupSteps - 1);
  return cosineValue(peak, min, step - warmupSteps, total - warmupSteps);
}
