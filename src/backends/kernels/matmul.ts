/** Matrix products: (batched, fused) MatMul, the ViT linear layer with packed weights, and the attention kernel. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { ACT, alloc, allF32, cpuKernel, f32, size, type KernelTable, type TensorInfo } from './common.js';
import { ATTENTION_KERNEL, LINEAR_KERNEL } from '../kernel-names.js';
import { linearPacked } from '../weight-cache.js';

export function registerMatMulKernels(k: KernelTable): void {
  const matmul = (name: string, fused: boolean) => {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number;
      };
      const act = fused ? ACT[at.activation ?? 'linear'] : 0;
      if (!allF32(a, b, bias) || act === undefined || preluActivationWeights != null) return fallback(args);
      const ra = a.shape.length, rb = b.shape.length;
      if (ra < 2 || rb < 2) return fallback(args);
      const m = at.transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
      const kk = at.transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
      const kb = at.transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
      const n = at.transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
      const batchA = size(a.shape.slice(0, -2)), batchB = size(b.shape.slice(0, -2));
      if (kk !== kb || !(batchA === batchB || batchA === 1 || batchB === 1)) return fallback(args);
      const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
      if (size(outer) !== Math.max(batchA, batchB)) return fallback(args);
      if (bias != null && !(size(bias.shape) === n && bias.shape[bias.shape.length - 1] === n)) return fallback(args);
      const outShape = [...outer, m, n];
      const out = alloc(size(outShape));
      if (out.length > 0) {
        if (kk === 0) out.fill(0);
        // x @ W with one shared W (linear layers on [B, N, D]): one 2-D [B*N, K] matmul is
        // much faster in oneDNN than a broadcast batch of small ones.
        const fold = batchB === 1 && batchA > 1 && !at.transposeA;
        nativeAddon().matmul(
          f32(args.backend, a), f32(args.backend, b), bias ? f32(args.backend, bias) : null, out,
          Int32Array.from([
            fold ? 1 : batchA, batchB, fold ? batchA * m : m, kk, n, at.transposeA ? 1 : 0, at.transposeB ? 1 : 0, act,
          ]),
          at.leakyreluAlpha ?? 0.2,
        );
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  };
  matmul('BatchMatMul', false);
  matmul('_FusedMatMul', true);
  k[LINEAR_KERNEL] = (args) => {
    const { x, weight, bias, residual } = args.inputs as Record<string, TensorInfo | undefined>;
    const act = (args.attrs?.activation as string | undefined) ?? 'linear';
    const [M, K] = x!.shape as [number, number];
    const N = weight!.shape[0]!;
    if (x!.shape.length !== 2 || weight!.shape.length !== 2 || weight!.shape[1] !== K || (bias && size(bias.shape) !== N)
        || (residual && !tf.util.arraysEqual(residual.shape, [M, N])))
      throw new Error(`${LINEAR_KERNEL}: x [${x!.shape}], weight [${weight!.shape}]${bias ? `, bias [${bias.shape}]` : ''}${residual ? `, residual [${residual.shape}]` : ''} do not fit x·weightᵀ`);
    if (act !== 'linear' && act !== 'gelu') throw new Error(`${LINEAR_KERNEL}: activation ${act} is not supported (linear or gelu)`);
    if (!allF32(x!, weight!, bias, residual)) throw new Error(`${LINEAR_KERNEL}: inputs must be float32`);
    const out = alloc(M * N);
    if (out.length === 0) return args.backend.makeTensorInfo([M, N], 'float32', out);
    const p = Int32Array.from([M, K, N, (act === 'gelu' ? 6 : 0) | (residual ? 16 : 0)]);
    // The weights in the primitive's layout, packed once per (weight data, shape): the weight
    // tensor's dataId is new whenever its values change (tfjs never writes a tensor in place).
    const key = `${p}|${bias != null}`;
    let hit = linearPacked.get(weight!.dataId);
    const repack = hit?.key !== key;
    if (repack) {
      hit = { key, packed: new Float32Array(nativeAddon().linearPackedSize(p, bias != null)) };
      linearPacked.set(weight!.dataId, hit);
    }
    // with a residual, the addon copies it into out and the matmul adds its result (sum post-op)
    nativeAddon().linear(
      f32(args.backend, x!), f32(args.backend, weight!), bias ? f32(args.backend, bias) : null, out, p, hit!.packed, repack,
      residual ? f32(args.backend, residual) : null,
    );
    return args.backend.makeTensorInfo([M, N], 'float32', out);
  };
  k[ATTENTION_KERNEL] = (args) => {
    const { qkv } = args.inputs as Record<string, TensorInfo>;
    const at = args.attrs as { batch: number; tokens: number; heads: number; scale: number };
    const [rows, cols] = qkv.shape as [number, number];
    if (qkv.shape.length !== 2 || rows !== at.batch * at.tokens || cols % 3 !== 0 || (cols / 3) % at.heads !== 0)
      throw new Error(`${ATTENTION_KERNEL}: qkv [${qkv.shape}] is not [batch·tokens = ${at.batch}·${at.tokens}, 3·D] with D a multiple of ${at.heads} heads`);
    const out = alloc(rows * (cols / 3));
    if (out.length > 0) nativeAddon().attention(f32(args.backend, qkv), out, at.batch, at.tokens, at.heads, at.scale);
    return args.backend.makeTensorInfo([rows, cols / 3], 'float32', out);
  };
}
