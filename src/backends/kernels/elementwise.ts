/** Element-wise kernels (binary with broadcasting, unary, GELU, ReLU gradient), softmax, reductions and top-k. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { BIN, UN, alloc, broadcastLayout, contiguousBlock, cpuKernel, f32, nativeTranspose, size, type KernelTable, type TensorInfo } from './common.js';
import { GELU_KERNEL, RELU_GRAD_KERNEL } from '../kernel-names.js';

export function registerElementwiseKernels(k: KernelTable): void {
  const bu = tf.backend_util;

  for (const [name, op] of Object.entries(BIN)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { a, b } = args.inputs as Record<string, TensorInfo>;
      if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
      const lay = broadcastLayout(a.shape, b.shape);
      if (!lay) return fallback(args);
      const out = alloc(size(lay.out));
      if (out.length > 0) nativeAddon().binary(op, f32(args.backend, a), f32(args.backend, b), out, lay.p);
      return args.backend.makeTensorInfo(lay.out, 'float32', out);
    };
  }
  for (const [name, op] of Object.entries(UN)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32') return fallback(args);
      const out = alloc(size(x.shape));
      nativeAddon().unary(op, f32(args.backend, x), out, (args.attrs?.alpha as number | undefined) ?? 0);
      return args.backend.makeTensorInfo(x.shape, 'float32', out);
    };
  }

  {
    const fallback = cpuKernel('Softmax');
    k.Softmax = (args) => {
      const { logits } = args.inputs as Record<string, TensorInfo>;
      const r = logits.shape.length;
      const dim = args.attrs?.dim as number;
      if (logits.dtype !== 'float32' || r === 0 || (dim !== -1 && dim !== r - 1)) return fallback(args);
      const cols = logits.shape[r - 1];
      const out = alloc(size(logits.shape));
      if (out.length > 0) nativeAddon().softmax(f32(args.backend, logits), out, out.length / cols, cols);
      return args.backend.makeTensorInfo(logits.shape, 'float32', out);
    };
  }

  const REDUCE: Record<string, number> = { Sum: 0, Mean: 1, Max: 2, Min: 3 };
  for (const [name, op] of Object.entries(REDUCE)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as { axis: number | number[]; keepDims: boolean; reductionIndices?: number[] };
      if (x.dtype !== 'float32' || size(x.shape) === 0) return fallback(args);
      const axes = tf.util.parseAxisParam(at.axis ?? at.reductionIndices, x.shape).sort((p, q) => p - q);
      if (axes.length === 0) return fallback(args);
      const [outShape] = bu.computeOutAndReduceShapes(x.shape, axes);
      const finalShape = at.keepDims ? bu.expandShapeToKeepDim(outShape, axes) : outShape;
      const b = args.backend;
      let src = x;
      let block = contiguousBlock(x.shape, axes);
      let tmp: TensorInfo | undefined;
      if (!block) {
        const perm = bu.getAxesPermutation(axes, x.shape.length) as number[];
        tmp = nativeTranspose(b, x, perm);
        src = tmp;
        block = [size(outShape), size(x.shape) / size(outShape), 1];
      }
      const out = alloc(size(outShape));
      nativeAddon().reduce(op, f32(b, src), out, block[0], block[1], block[2]);
      if (tmp) b.disposeIntermediateTensorInfo(tmp);
      return b.makeTensorInfo(finalShape, 'float32', out);
    };
  }
  k[GELU_KERNEL] = (args) => {
    const { x } = args.inputs as Record<string, TensorInfo>;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().gelu(f32(args.backend, x), out);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  k[RELU_GRAD_KERNEL] = (args) => {
    const { dy, x } = args.inputs as Record<string, TensorInfo>;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().reluGrad(f32(args.backend, dy), f32(args.backend, x), out);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  {
    const fallback = cpuKernel('TopK');
    k.TopK = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const kk = args.attrs?.k as number;
      const r = x.shape.length;
      if (x.dtype !== 'float32' || r === 0 || kk > x.shape[r - 1]) return fallback(args);
      const cols = x.shape[r - 1];
      const rows = cols === 0 ? 0 : size(x.shape) / cols;
      const outShape = [...x.shape.slice(0, -1), kk];
      const vals = alloc(rows * kk), idx = new Int32Array(rows * kk);
      if (rows * kk > 0) nativeAddon().topk(f32(args.backend, x), vals, idx, rows, cols, kk);
      return [args.backend.makeTensorInfo(outShape, 'float32', vals), args.backend.makeTensorInfo(outShape, 'int32', idx)];
    };
  }
}
