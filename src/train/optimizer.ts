/**
 * SGD with momentum, Nesterov and weight decay, with PyTorch's `torch.optim.SGD`
 * update rule, and state that can be checkpointed by parameter name.
 */
import * as tf from '@tensorflow/tfjs';
import { SGD_KERNEL } from '../backends/kernel-names.js';

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
export class Sgd {
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
