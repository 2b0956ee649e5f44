/**
 * ResNet in tfjs with torchvision's topology and parameter names: 7×7/2 stem, 3×3/2
 * max-pool, BasicBlock or Bottleneck stages (stride on the 3×3 conv, "ResNet v1.5"),
 * 1×1 projection shortcuts, BN eps 1e-5, global average pool, linear head.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { Rng } from './init.js';
import { batchNorm, conv2d, convBnEval, FoldCache, linear, taping, VarStore } from './ops.js';

/** Architecture of a ResNet. */
export interface ResNetConfig {
  block: 'basic' | 'bottleneck';
  /** Blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50. */
  layers: readonly number[];
  /** `planes` per stage (torchvision: 64, 128, 256, 512); the stem has `widths[0]` channels. */
  widths: readonly number[];
  /**
   * Normalise the input inside the model (MadryLab's `InputNormalize`): x ↦ (x − mean)/std
   * with buffers `normalizer.new_mean` / `normalizer.new_std` [3, 1, 1], initialised to these values.
   */
  inputNormalize?: { mean: readonly number[]; std: readonly number[] };
}

/** Options of {@link ResNet}. */
export interface ResNetOptions {
  /** Classes of the linear head; 0 = no head. */
  numClasses: number;
  /** Seed of the random initialisation. */
  seed: number;
}

/** A torchvision-compatible ResNet (see {@link ResNetConfig}). */
export class ResNet implements ImageModel {
  readonly numFeatures: number;
  readonly numClasses: number;
  private readonly s = new VarStore();
  /** Eval-mode conv+BN folds (see convBnEval). */
  private readonly folds = new FoldCache();
  private readonly expansion: number;
  private readonly rng: Rng;

  constructor(
    readonly name: string,
    readonly config: ResNetConfig,
    opts: ResNetOptions,
  ) {
    this.expansion = config.block === 'bottleneck' ? 4 : 1;
    this.numFeatures = config.widths[config.widths.length - 1]! * this.expansion;
    this.numClasses = opts.numClasses;
    this.rng = new Rng(opts.seed);
    const w0 = config.widths[0]!;
    if (config.inputNormalize) {
      this.s.buffer('normalizer.new_mean', [3, 1, 1], Float32Array.from(config.inputNormalize.mean));
      this.s.buffer('normalizer.new_std', [3, 1, 1], Float32Array.from(config.inputNormalize.std));
    }
    this.conv('conv1', w0, 3, 7);
    this.bn('bn1', w0);
    let inplanes = w0;
    config.layers.forEach((n, li) => {
      const planes = config.widths[li]!;
      const stride = li === 0 ? 1 : 2;
      for (let bi = 0; bi < n; bi++) {
        const p = `layer${li + 1}.${bi}`;
        const st = bi === 0 ? stride : 1;
        if (config.block === 'bottleneck') {
          this.conv(`${p}.conv1`, planes, inplanes, 1);
          this.bn(`${p}.bn1`, planes);
          this.conv(`${p}.conv2`, planes, planes, 3);
          this.bn(`${p}.bn2`, planes);
          this.conv(`${p}.conv3`, planes * 4, planes, 1);
          this.bn(`${p}.bn3`, planes * 4);
        } else {
          this.conv(`${p}.conv1`, planes, inplanes, 3);
          this.bn(`${p}.bn1`, planes);
          this.conv(`${p}.conv2`, planes, planes, 3);
          this.bn(`${p}.bn2`, planes);
        }
        if (bi === 0 && (st !== 1 || inplanes !== planes * this.expansion)) {
          this.conv(`${p}.downsample.0`, planes * this.expansion, inplanes, 1);
          this.bn(`${p}.downsample.1`, planes * this.expansion);
        }
        inplanes = planes * this.expansion;
      }
    });
    if (this.numClasses > 0) {
      // nn.Linear default init: U(±1/√fan_in) for weight and bias.
      const bound = 1 / Math.sqrt(this.numFeatures);
      this.s.param('fc.weight', [this.numClasses, this.numFeatures], this.rng.uniform(this.numClasses * this.numFeatures, -bound, bound));
      this.s.param('fc.bias', [this.numClasses], this.rng.uniform(this.numClasses, -bound, bound));
    }
  }

  private conv(name: string, out: number, inp: number, k: number): void {
    // torchvision: kaiming_normal_(mode='fan_out', nonlinearity='relu').
    const std = Math.sqrt(2 / (out * k * k));
    this.s.param(`${name}.weight`, [out, inp, k, k], this.rng.normal(out * inp * k * k, std));
  }

  private bn(name: string, c: number): void {
    this.s.param(`${name}.weight`, [c], new Float32Array(c).fill(1));
    this.s.param(`${name}.bias`, [c], new Float32Array(c));
    this.s.buffer(`${name}.running_mean`, [c], new Float32Array(c));
    this.s.buffer(`${name}.running_var`, [c], new Float32Array(c).fill(1));
  }

  /** @param x NHWC [B, H, W, 3] normalised by the Preprocess; @returns [B, numFeatures] */
  forwardFeatures(x: tf.Tensor4D, training = false): tf.Tensor2D {
    const s = this.s;
    // conv → BN (→ ReLU): in eval mode without a gradient tape, one fused conv with the BN folded in.
    const fold = !training && !taping();
    const cbr = (h: tf.Tensor4D, conv: string, bn: string, stride: number, pad: number, relu: boolean): tf.Tensor4D => {
      if (fold) return convBnEval(h, s, this.folds, conv, bn, stride, pad, relu);
      return batchNorm(conv2d(h, s.get(conv), stride, pad), s, bn, training, 1e-5, 0.1, { relu });
    };
    const stage = (h: tf.Tensor4D, li: number, bi: number): tf.Tensor4D => {
      const p = `layer${li + 1}.${bi}`;
      const st = bi === 0 && li > 0 ? 2 : 1;
      const sc = s.params.has(`${p}.downsample.0.weight`) ? cbr(h, `${p}.downsample.0.weight`, `${p}.downsample.1`, st, 0, false) : h;
      // the block's last conv → BN, then relu(· + shortcut): in fold mode one fused call
      const last = (y: tf.Tensor4D, conv: string, bn: string, stride: number, pad: number): tf.Tensor4D =>
        fold
          ? convBnEval(y, s, this.folds, conv, bn, stride, pad, true, 1e-5, sc)
          : batchNorm(conv2d(y, s.get(conv), stride, pad), s, bn, training, 1e-5, 0.1, { residual: sc, relu: true });
      if (this.config.block === 'bottleneck') {
        let y = cbr(h, `${p}.conv1.weight`, `${p}.bn1`, 1, 0, true);
        y = cbr(y, `${p}.conv2.weight`, `${p}.bn2`, st, 1, true);
        return last(y, `${p}.conv3.weight`, `${p}.bn3`, 1, 0);
      }
      const y = cbr(h, `${p}.conv1.weight`, `${p}.bn1`, st, 1, true);
      return last(y, `${p}.conv2.weight`, `${p}.bn2`, 1, 1);
    };
    return tf.tidy(() => {
      let h: tf.Tensor4D = x;
      if (this.config.inputNormalize) {
        // [3,1,1] (CHW) buffers → [3] for NHWC broadcasting.
        const m = tf.reshape(s.get('normalizer.new_mean'), [3]);
        const sd = tf.reshape(s.get('normalizer.new_std'), [3]);
        // MadryLab's InputNormalize clamps to [0, 1] first.
        h = tf.div(tf.sub(tf.clipByValue(h, 0, 1), m), sd) as tf.Tensor4D;
      }
      h = cbr(h, 'conv1.weight', 'bn1', 2, 3, true);
      h = tf.maxPool(h, 3, 2, 1);
      this.config.layers.forEach((n, li) => {
        for (let bi = 0; bi < n; bi++) {
          // One tidy per block bounds the live intermediates (and the wasm heap).
          const prev = h;
          h = training ? stage(prev, li, bi) : tf.tidy(() => stage(prev, li, bi));
          if (!training) prev.dispose();
        }
      });
      return tf.mean(h, [1, 2]) as tf.Tensor2D;
    });
  }

  /** @param features [B, numFeatures]; @returns logits [B, numClasses] */
  forwardHead(features: tf.Tensor2D): tf.Tensor2D {
    if (this.numClasses === 0) throw new ConfigError(`${this.name}: model has no classification head (numClasses 0)`);
    return tf.tidy(() => linear(features, this.s.get('fc.weight'), this.s.get('fc.bias')));
  }

  params(): Map<string, tf.Variable> {
    return this.s.params;
  }
  buffers(): Map<string, tf.Variable> {
    return this.s.buffers;
  }
  dispose(): void {
    this.folds.dispose();
    this.s.dispose();
  }
}
