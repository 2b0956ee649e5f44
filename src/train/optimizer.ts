/**
 * The optimisers of the training loop (src/train/loop.ts), one interface: SGD (PyTorch's
 * `torch.optim.SGD`), Adam and AdamW (`torch.optim.AdamW`), each with its state by
 * parameter name so that a checkpoint can hold it.
 */
import * as tf from '@tensorflow/tfjs';
import { SGD_KERNEL } from '../backends/kernel-names.js';

/** An optimiser: one update from gradients by parameter name. */
export interface Optimizer {
  /** Updates every parameter of `params` that has a gradient in `grads` (same names), with learning rate `lr`. */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void;
  /** Frees the optimiser's state. */
  dispose(): void;
}

let slotCounter = 0;
/** tfjs variable names are global: make each slot's unique. */
function slotName(param: string): string {
  return `sgd.momentum_buffer.${param}#${slotCounter++}`;
}

/** Options of {@link Sgd}. */
export interface SgdOptions {
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  /** Apply weight decay to BN weights and biases (rank ≤ 1 parameters) too. Default false. */
  decayNormAndBias?: boolean;
}

/**
 * torch.optim.SGD (dampening 0):
 *   d = g + wd·p;  buf = μ·buf + d;  d = nesterov ? d + μ·buf : buf;  p −= lr·d.
 * Momentum buffers start at zero, so the first step sets buf = d as PyTorch does.
 */
export class Sgd implements Optimizer {
  /** Momentum buffers by parameter name (float32, parameter's shape). */
  readonly slots = new Map<string, tf.Variable>();
  constructor(readonly opts: SgdOptions) {}

  /** Whether weight decay applies to parameter `name` of shape `shape`. */
  decays(name: string, shape: readonly number[]): boolean {
    if (this.opts.weightDecay === 0) return false;
    if (this.opts.decayNormAndBias) return true;
    return shape.length > 1 && !name.endsWith('.bias');
  }

  /**
   * Applies one update with learning rate `lr` from gradients by parameter name. On a backend with
   * the one-kernel form (native) each parameter's update is one pass; elsewhere tfjs ops.
   */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    const { momentum, nesterov, weightDecay } = this.opts;
    const fused = momentum !== 0 && tf.getKernel(SGD_KERNEL, tf.getBackend()) != null;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      if (fused && p.dtype === 'float32' && g.dtype === 'float32') {
        const buf = this.slots.get(name);
        const inputs: Record<string, tf.Tensor> = buf ? { param: p, grad: g, buf } : { param: p, grad: g };
        const attrs = { lr, momentum, weightDecay: this.decays(name, p.shape) ? weightDecay : 0, nesterov };
        const [np, nb] = tf.engine().runKernel(SGD_KERNEL, inputs, attrs) as tf.Tensor[];
        if (buf) buf.assign(nb!);
        else this.slots.set(name, tf.variable(nb!, false, slotName(name)));
        p.assign(np!);
        tf.dispose([np!, nb!]);
        continue;
      }
      tf.tidy(() => {
        let d: tf.Tensor = g;
        if (this.decays(name, p.shape)) d = tf.add(d, tf.mul(p, weightDecay));
        if (momentum !== 0) {
          let buf = this.slots.get(name);
          if (!buf) {
            buf = tf.variable(tf.zerosLike(p), false, slotName(name));
            this.slots.set(name, buf);
          }
          const nb = tf.add(tf.mul(buf, momentum), d);
          buf.assign(nb);
          d = nesterov ? tf.add(d, tf.mul(nb, momentum)) : nb;
        }
        p.assign(tf.sub(p, tf.mul(d, lr)));
      });
    }
  }

  /** The state to checkpoint: momentum buffers by parameter name. */
  state(): Map<string, tf.Tensor> {
    return new Map(this.slots);
  }

  /** Restores momentum buffers (copies the data). */
  load(state: Map<string, { shape: number[]; data: Float32Array }>): void {
    this.dispose();
    for (const [name, s] of state) {
      this.slots.set(name, tf.tidy(() => tf.variable(tf.tensor(s.data, s.shape, 'float32'), false, slotName(name))));
    }
  }

  dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
  }
}

/** Options of {@link Adam}. */
export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  /** Added to √v̂ (default 1e-8, PyTorch's). */
  eps?: number;
  /** Decoupled weight decay λ (AdamW: p ← p·(1 − lr·λ) before the Adam update); default 0. */
  weightDecay?: number;
  /** Whether `weightDecay` applies to parameter `name` (default: every parameter). */
  decays?: (name: string, shape: readonly number[]) => boolean;
  /**
   * `exact` (default): the bias corrections 1 − βᵗ computed in double precision, as PyTorch.
   * `float32`: βᵗ as a running float32 product, as `tf.train.adam`; the demo backbones were
   * trained that way, and keeping it keeps their weights bit for bit.
   */
  biasCorrection?: 'exact' | 'float32';
}

/**
 * Adam, and AdamW with `weightDecay` (Loshchilov & Hutter; `torch.optim.AdamW`'s update):
 *   p ← p·(1 − lr·λ);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  p ← p − lr·(m/c₁) / (√(v/c₂) + ε),
 * with c = 1 − βᵗ. Moments start at zero.
 */
export class Adam implements Optimizer {
  /** First and second moments by parameter name. */
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  /** Steps taken. */
  t = 0;
  private readonly o: Required<Omit<AdamOptions, 'decays'>> & Pick<AdamOptions, 'decays'>;
  constructor(opts: AdamOptions = {}) {
    this.o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, biasCorrection: 'exact', ...opts };
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.o;
    this.t++;
    const [c1, c2] = this.o.biasCorrection === 'exact' ? [1 - beta1 ** this.t, 1 - beta2 ** this.t] : [1 - float32Power(beta1, this.t), 1 - float32Power(beta2, this.t)];
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      const m = this.m.get(name) ?? this.m.set(name, zeroVariable(p)).get(name)!;
      const v = this.v.get(name) ?? this.v.set(name, zeroVariable(p)).get(name)!;
      const wd = weightDecay > 0 && (this.o.decays?.(name, p.shape) ?? true) ? weightDecay : 0;
      tf.tidy(() => {
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const decayed = wd > 0 ? tf.mul(p, 1 - lr * wd) : p;
        const upd = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        p.assign(tf.sub(decayed, tf.mul(upd, lr)));
      });
    }
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** βᵗ as tf.train.adam keeps it: a float32 variable multiplied by β once per step (1 − βᵗ is then exact in float32). */
function float32Power(beta: number, t: number): number {
  const b = Math.fround(beta);
  let acc = b;
  for (let i = 1; i < t; i++) acc = Math.fround(acc * b);
  return acc;
}

function zeroVariable(like: tf.Tensor): tf.Variable {
  const z = tf.zerosLike(like);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}
