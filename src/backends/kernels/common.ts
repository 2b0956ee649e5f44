/** What every native kernel shares: argument types, the cpu fallback, output buffers, layouts. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { nativePool } from '../buffer-pool.js';
import type { NativeBackend } from '../native-backend.js';
import { CACHE_ON, cachedArrays, transposeCache } from '../weight-cache.js';

export type TensorInfo = tf.TensorInfo;
export type NamedAttrMap = tf.NamedAttrMap;

/** An output buffer for a native kernel (see {@link BufferPool}). */
export const alloc = (n: number): Float32Array => nativePool.alloc(n);

/**
 * Per-kernel call counts since load: `native` (ran in the addon) and `fallback` (handed to the
 * `cpu` kernel). Tests use them to prove that each native kernel really ran.
 */
export const nativeStats: { native: Record<string, number>; fallback: Record<string, number> } = {
  native: {},
  fallback: {},
};

export type Args = { inputs: Record<string, TensorInfo | undefined>; backend: NativeBackend; attrs?: NamedAttrMap };

export function cpuKernel(name: string): (a: Args) => TensorInfo | TensorInfo[] {
  const k = tf.getKernel(name, 'cpu');
  if (!k) throw new Error(`tfjs cpu kernel ${name} is not registered`);
  const f = k.kernelFunc as unknown as (a: Args) => TensorInfo | TensorInfo[];
  return (a: Args) => {
    nativeStats.native[name]--;
    nativeStats.fallback[name] = (nativeStats.fallback[name] ?? 0) + 1;
    return f(a);
  };
}

export function f32(b: NativeBackend, t: TensorInfo): Float32Array {
  const v = b.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

export function allF32(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t == null || t.dtype === 'float32');
}

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export const ACT: Record<string, number> = { linear: 0, relu: 1, relu6: 2, elu: 3, leakyrelu: 4, sigmoid: 5 };

export function convParams(c: tf.backend_util.Conv2DInfo, act = 0): Int32Array {
  const p = c.padInfo;
  return Int32Array.from([
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outHeight, c.outWidth, c.outChannels,
    c.filterHeight, c.filterWidth, c.strideHeight, c.strideWidth, c.dilationHeight, c.dilationWidth,
    p.top, p.left, p.bottom, p.right, act,
  ]);
}

export function poolParams(c: tf.backend_util.Conv2DInfo, max: boolean): Int32Array {
  const p = c.padInfo;
  return Int32Array.from([
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outHeight, c.outWidth, c.filterHeight, c.filterWidth,
    c.strideHeight, c.strideWidth, p.top, p.left, p.bottom, p.right, max ? 0 : 1,
  ]);
}


export const BIN: Record<string, number> = {
  Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6,
};
export const UN: Record<string, number> = {
  Relu: 0, Relu6: 1, Exp: 2, Log: 3, Sqrt: 4, Rsqrt: 5, Tanh: 6, Sigmoid: 7, Erf: 8, Square: 9, Neg: 10,
  Abs: 11, Step: 12,
};

/**
 * Broadcast layout for the addon's binary kernel: output shape and each input's strides (0 on
 * broadcast axes), with adjacent axes merged where both inputs allow it.
 */
export function broadcastLayout(aShape: number[], bShape: number[]): { out: number[]; p: Int32Array } | undefined {
  const out = tf.broadcast_util.assertAndGetBroadcastShape(aShape, bShape);
  const r = out.length;
  const strides = (s: number[]) => {
    const full = [...new Array(r - s.length).fill(1), ...s];
    const st = new Array<number>(r).fill(0);
    let acc = 1;
    for (let d = r - 1; d >= 0; d--) {
      st[d] = full[d] === 1 && out[d] !== 1 ? 0 : acc;
      acc *= full[d];
    }
    return st;
  };
  const sa = strides(aShape), sb = strides(bShape);
  const p = packLayout(out.map((n, d) => ({ n, a: sa[d], b: sb[d] })));
  return p && { out, p };
}

/** Merges adjacent axes that both inputs step through contiguously; the addon's binary layout. */
export function packLayout(dims: { n: number; a: number; b: number }[]): Int32Array | undefined {
  const merged: { n: number; a: number; b: number }[] = [];
  for (const cur of dims) {
    if (cur.n === 1) continue;
    const last = merged[merged.length - 1];
    if (last && last.a === cur.a * cur.n && last.b === cur.b * cur.n) {
      last.n *= cur.n;
      last.a = cur.a;
      last.b = cur.b;
    } else merged.push({ ...cur });
  }
  if (merged.length === 0) merged.push({ n: 1, a: 1, b: 1 });
  if (merged.length > 16) return undefined;
  const k = merged.length;
  const p = new Int32Array(1 + 3 * k);
  p[0] = k;
  merged.forEach((d, i) => {
    p[1 + i] = d.n;
    p[1 + k + i] = d.a;
    p[1 + 2 * k + i] = d.b;
  });
  return p;
}

/** Returns [outer, mid, inner] when `axes` (sorted) form one contiguous block of `shape`. */
export function contiguousBlock(shape: number[], axes: number[]): [number, number, number] | undefined {
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1] + 1) return undefined;
  const lo = axes[0], hi = axes[axes.length - 1];
  return [size(shape.slice(0, lo)), size(shape.slice(lo, hi + 1)), size(shape.slice(hi + 1))];
}

/**
 * The shape and permutation with size-1 axes dropped and runs of input axes that stay adjacent
 * and in order merged: [O, I, kh, kw] -> [kh, kw, I, O] is a [O, I, kh*kw] -> [K, I, O] transpose,
 * and 1x1 filters a plain 2-D one.
 */
export function simplifyTranspose(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const kept = shape.map((s, i) => (s !== 1 ? i : -1)).filter((i) => i >= 0);
  const rank = new Map(kept.map((ax, i) => [ax, i]));
  const p = perm.filter((ax) => shape[ax] !== 1).map((ax) => rank.get(ax)!);
  const groups: number[][] = [];
  for (const ax of p) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1] === ax - 1) g.push(ax);
    else groups.push([ax]);
  }
  const order = groups.map((g, i) => i).sort((i, j) => groups[i]![0]! - groups[j]![0]!);
  const newShape = order.map((gi) => groups[gi]!.reduce((a, ax) => a * shape[kept[ax]!]!, 1));
  const pos = new Array<number>(groups.length);
  order.forEach((gi, i) => (pos[gi] = i));
  return { shape: newShape, perm: groups.map((_, gi) => pos[gi]!) };
}

export function nativeTranspose(b: NativeBackend, x: TensorInfo, perm: number[]): TensorInfo {
  const a = nativeAddon();
  const src = b.data.get(x.dataId).values as Float32Array | Int32Array;
  const outShape = perm.map((p) => x.shape[p]!);
  const key = `${x.shape}|${perm}`;
  const hit = CACHE_ON ? transposeCache.get(x.dataId) : undefined;
  if (hit?.key === key && hit.out) return b.makeTensorInfo(outShape, x.dtype, hit.out);
  const keep = hit?.key === key;
  const out = x.dtype === 'int32' ? new Int32Array(src.length) : keep ? new Float32Array(src.length) : alloc(src.length);
  const s = simplifyTranspose(x.shape, perm);
  if (s.shape.length <= 1) out.set(src);
  else a.transpose(src, out, Int32Array.from([s.shape.length, ...s.shape, ...s.perm]));
  if (CACHE_ON) transposeCache.set(x.dataId, keep ? { key, out } : { key });
  if (keep) cachedArrays.add(out);
  return b.makeTensorInfo(outShape, x.dtype, out);
}

/** Kernels by name, as each family file fills them in. */
export type KernelTable = Record<string, (a: Args) => TensorInfo | TensorInfo[]>;
