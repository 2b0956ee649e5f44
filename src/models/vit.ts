/**
 * Vision Transformer as in DINO's `vision_transformer.py` (facebookresearch/dino):
 * pre-norm blocks, qkv with bias, LayerNorm eps 1e-6, exact GELU, the CLS token after
 * the final norm as the feature, and position embeddings interpolated bicubically
 * (with DINO's +0.1) for any input size that is a multiple of the patch size.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { Rng } from './init.js';
import { attention, conv2d, layerNorm, linear, VarStore } from './ops.js';

/** Architecture of a ViT. */
export interface ViTConfig {
  patch: number;
  dim: number;
  depth: number;
  heads: number;
  /** Hidden width of the MLP = dim × mlpRatio. */
  mlpRatio: number;
  /** Input size the position embeddings were trained for (grid = imgSize / patch). */
  imgSize: number;
}

/** Options of {@link ViT}. */
export interface ViTOptions {
  numClasses: number;
  seed: number;
}

const LN_EPS = 1e-6;

/**
 * Weights of PyTorch's 1-D bicubic interpolation (`F.interpolate(mode='bicubic',
 * align_corners=False)` with an explicit scale factor, A = −0.75, border-clamped) as a
 * dense [outSize, inSize] matrix, so that the 2-D interpolation is two matMuls and
 * stays differentiable.
 */
export function bicubicMatrix(inSize: number, outSize: number, scaleFactor: number): Float32Array {
  const A = -0.75;
  const cc1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const cc2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  // PyTorch uses 1/scale_factor (in float) when a scale factor is given.
  const scale = Math.fround(1 / scaleFactor);
  const m = new Float32Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) {
    const real = Math.fround(scale * (o + 0.5) - 0.5);
    const i0 = Math.floor(real);
    const t = Math.fround(real - i0);
    const w = [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)];
    for (let k = 0; k < 4; k++) {
      const idx = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
      m[o * inSize + idx]! += w[k]!;
    }
  }
  return m;
}

/** DINO's ViT (see the module comment). */
export class ViT implements ImageModel {
  readonly numFeatures: number;
  readonly numClasses: number;
  private readonly s = new VarStore();
  private readonly rng: Rng;
  private readonly interpCache = new Map<string, { mr: Float32Array; mc: Float32Array; rows: number; cols: number }>();

  constructor(
    readonly name: string,
    readonly config: ViTConfig,
    opts: ViTOptions,
  ) {
    const { patch, dim, depth, mlpRatio, imgSize } = config;
    this.numFeatures = dim;
    this.numClasses = opts.numClasses;
    this.rng = new Rng(opts.seed);
    const r = this.rng;
    const nPatch = (imgSize / patch) ** 2;
    const hidden = dim * mlpRatio;
    // Conv default init (kaiming_uniform a=√5 → U(±1/√fan_in)).
    const fanIn = 3 * patch * patch;
    const cb = 1 / Math.sqrt(fanIn);
    this.s.param('cls_token', [1, 1, dim], r.truncNormal(dim, 0.02));
    this.s.param('pos_embed', [1, nPatch + 1, dim], r.truncNormal((nPatch + 1) * dim, 0.02));
    this.s.param('patch_embed.proj.weight', [dim, 3, patch, patch], r.uniform(dim * fanIn, -cb, cb));
    this.s.param('patch_embed.proj.bias', [dim], r.uniform(dim, -cb, cb));
    const lin = (name: string, out: number, inp: number) => {
      this.s.param(`${name}.weight`, [out, inp], r.truncNormal(out * inp, 0.02));
      this.s.param(`${name}.bias`, [out], new Float32Array(out));
    };
    const ln = (name: string) => {
      this.s.param(`${name}.weight`, [dim], new Float32Array(dim).fill(1));
      this.s.param(`${name}.bias`, [dim], new Float32Array(dim));
    };
    for (let i = 0; i < depth; i++) {
      const p = `blocks.${i}`;
      ln(`${p}.norm1`);
      lin(`${p}.attn.qkv`, 3 * dim, dim);
      lin(`${p}.attn.proj`, dim, dim);
      ln(`${p}.norm2`);
      lin(`${p}.mlp.fc1`, hidden, dim);
      lin(`${p}.mlp.fc2`, dim, hidden);
    }
    ln('norm');
    if (this.numClasses > 0) lin('head', this.numClasses, dim);
  }

  /**
   * Position embeddings for an h × w input, [1, 1 + (h/p)(w/p), D]: DINO's
   * `interpolate_pos_encoding`, including its +0.1. (DINO names the input's height
   * `w` — `B, nc, w, h = x.shape` — so its first scale factor applies to rows: rows
   * follow the height, as here.)
   */
  posEmbed(h: number, w: number): tf.Tensor3D {
    const pe = this.s.get('pos_embed') as tf.Tensor3D;
    const N = pe.shape[1] - 1;
    const D = this.config.dim;
    const p = this.config.patch;
    const r0 = Math.floor(h / p);
    const c0 = Math.floor(w / p);
    if (r0 * c0 === N && w === h) return pe;
    const gs = Math.floor(Math.sqrt(N));
    const key = `${r0}x${c0}`;
    let c = this.interpCache.get(key);
    if (!c) {
      // DINO adds 0.1 so that floor(gs · scale) cannot fall one short of the target
      // grid through floating-point error (DINO issue #8); the kernel then uses
      // exactly this scale factor, so the +0.1 also shifts the sampling positions.
      const sr = (r0 + 0.1) / Math.sqrt(N);
      const sc = (c0 + 0.1) / Math.sqrt(N);
      const rows = Math.floor(gs * sr);
      const cols = Math.floor(gs * sc);
      if (rows !== r0 || cols !== c0) throw new ConfigError(`${this.name}: cannot interpolate position embeddings from ${gs}×${gs} to ${r0}×${c0}`);
      c = { mr: bicubicMatrix(gs, rows, sr), mc: bicubicMatrix(gs, cols, sc), rows, cols };
      this.interpCache.set(key, c);
    }
    const { mr, mc, rows, cols } = c;
    return tf.tidy(() => {
      const cls = tf.slice(pe, [0, 0, 0], [1, 1, D]);
      const grid = tf.reshape(tf.slice(pe, [0, 1, 0], [1, N, D]), [gs, gs * D]);
      // Rows: [rows, gs] · [gs, gs·D] → [rows, gs, D]
      let g = tf.reshape(tf.matMul(tf.tensor2d(mr, [rows, gs]), grid), [rows, gs, D]);
      // Columns: bring gs to the front, multiply, put it back.
      g = tf.reshape(tf.transpose(g, [1, 0, 2]), [gs, rows * D]);
      g = tf.reshape(tf.matMul(tf.tensor2d(mc, [cols, gs]), g), [cols, rows, D]);
      const patchPe = tf.reshape(tf.transpose(g, [1, 0, 2]), [1, rows * cols, D]);
      return tf.concat([cls, patchPe], 1) as tf.Tensor3D;
    });
  }

  /** One transformer block on tokens x [B·T, D]. */
  private block(x: tf.Tensor2D, i: number, B: number, T: number): tf.Tensor2D {
    const s = this.s;
    const p = `blocks.${i}`;
    const H = this.config.heads;
    const y = layerNorm(x, s.get(`${p}.norm1.weight`), s.get(`${p}.norm1.bias`), LN_EPS);
    const qkv = linear(y, s.get(`${p}.attn.qkv.weight`), s.get(`${p}.attn.qkv.bias`));
    const merged = attention(qkv, B, T, H);
    // x + proj(attention) and out + fc2(gelu(fc1(z))): the adds and GELU fuse into the matmuls on native
    const out = linear(merged, s.get(`${p}.attn.proj.weight`), s.get(`${p}.attn.proj.bias`), { residual: x });
    const z = layerNorm(out, s.get(`${p}.norm2.weight`), s.get(`${p}.norm2.bias`), LN_EPS);
    const h = linear(z, s.get(`${p}.mlp.fc1.weight`), s.get(`${p}.mlp.fc1.bias`), { gelu: true });
    return linear(h, s.get(`${p}.mlp.fc2.weight`), s.get(`${p}.mlp.fc2.bias`), { residual: out });
  }

  /** @param x NHWC [B, H, W, 3], H and W multiples of the patch size; @returns CLS features [B, D] */
  forwardFeatures(x: tf.Tensor4D, training = false): tf.Tensor2D {
    const [B, Hh, Ww] = x.shape;
    const { patch: p, dim: D, depth } = this.config;
    if (Hh % p !== 0 || Ww % p !== 0)
      throw new ConfigError(`${this.name}: input ${Hh}×${Ww} is not a multiple of the patch size ${p}; use a crop that is`);
    const T = (Hh / p) * (Ww / p) + 1;
    const s = this.s;
    return tf.tidy(() => {
      const pe = conv2d(x, s.get('patch_embed.proj.weight'), p, 0, s.get('patch_embed.proj.bias'));
      const tokens = tf.reshape(pe, [B, T - 1, D]);
      const cls = tf.tile(s.get('cls_token'), [B, 1, 1]);
      let h = tf.reshape(tf.add(tf.concat([cls, tokens], 1), this.posEmbed(Hh, Ww)), [B * T, D]) as tf.Tensor2D;
      for (let i = 0; i < depth; i++) {
        const prev = h;
        // A tidy per block keeps only the residual stream alive (ViT-S/8 on the wasm heap).
        h = training ? this.block(prev, i, B, T) : tf.tidy(() => this.block(prev, i, B, T));
        if (!training) prev.dispose();
      }
      const clsOut = tf.reshape(tf.slice(tf.reshape(h, [B, T, D]), [0, 0, 0], [B, 1, D]), [B, D]);
      return layerNorm(clsOut, s.get('norm.weight'), s.get('norm.bias'), LN_EPS) as tf.Tensor2D;
    });
  }

  /** @param features [B, D]; @returns logits [B, numClasses] */
  forwardHead(features: tf.Tensor2D): tf.Tensor2D {
    if (this.numClasses === 0) throw new ConfigError(`${this.name}: model has no classification head (numClasses 0)`);
    return tf.tidy(() => linear(features, this.s.get('head.weight'), this.s.get('head.bias')));
  }

  params(): Map<string, tf.Variable> {
    return this.s.params;
  }
  buffers(): Map<string, tf.Variable> {
    return this.s.buffers;
  }
  dispose(): void {
    this.s.dispose();
  }
}
