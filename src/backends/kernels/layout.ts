/** Data movement: transpose, tile, slice, split, concat, pad. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { alloc, cpuKernel, f32, nativeStats, nativeTranspose, packLayout, size, type KernelTable, type TensorInfo } from './common.js';
import { COL2IM_KERNEL, IM2COL_KERNEL } from '../kernel-names.js';

export function registerLayoutKernels(k: KernelTable): void {
  const bu = tf.backend_util;

  {
    const fallback = cpuKernel('Transpose');
    k.Transpose = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const perm = args.attrs?.perm as number[];
      if ((x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length > 8 || x.shape.length === 0)
        return fallback(args);
      return nativeTranspose(args.backend, x, perm);
    };
  }

  {
    // Tile = a broadcast copy: the output, viewed as [r0, d0, r1, d1, ...], reads x with
    // stride 0 along every repetition axis.
    const fallback = cpuKernel('Tile');
    const zero = new Float32Array(1);
    k.Tile = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const reps = args.attrs?.reps as number[];
      if (x.dtype !== 'float32' || reps.length !== x.shape.length || x.shape.length > 8) return fallback(args);
      const outShape = x.shape.map((s, i) => s * reps[i]);
      const dims: { n: number; a: number; b: number }[] = [];
      let stride = size(x.shape);
      x.shape.forEach((s, i) => {
        stride /= s;
        dims.push({ n: reps[i], a: 0, b: 0 }, { n: s, a: stride, b: 0 });
      });
      const p = packLayout(dims);
      const out = alloc(size(outShape));
      if (!p) return fallback(args);
      if (out.length > 0) nativeAddon().binary(7, f32(args.backend, x), zero, out, p);
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  {
    // Slice = a strided copy starting at the begin offset.
    const fallback = cpuKernel('Slice');
    const zero = new Float32Array(1);
    k.Slice = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32' || x.shape.length === 0 || x.shape.length > 16) return fallback(args);
      const [begin, sz] = tf.slice_util.parseSliceParams(
        x as unknown as tf.Tensor, args.attrs?.begin as number[], args.attrs?.size as number[],
      );
      const dims: { n: number; a: number; b: number }[] = [];
      let stride = size(x.shape), offset = 0;
      x.shape.forEach((s, i) => {
        stride /= s;
        offset += begin[i] * stride;
        dims.push({ n: sz[i], a: stride, b: 0 });
      });
      const p = packLayout(dims);
      if (!p) return fallback(args);
      const out = alloc(size(sz));
      if (out.length > 0) nativeAddon().binary(7, f32(args.backend, x).subarray(offset), zero, out, p);
      return args.backend.makeTensorInfo(sz, 'float32', out);
    };
  }
  {
    // SplitV (the gradient of Concat) = one native Slice per output; the cpu kernel's
    // generic strided slice took 390 ms of a 690 ms small-CNN train step here.
    const fallback = cpuKernel('SplitV');
    const slice = k.Slice!;
    k.SplitV = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
      const axis = tf.util.parseAxisParam(args.attrs?.axis as number, x.shape)[0]!;
      const splits = bu.prepareSplitSize(x as unknown as tf.Tensor, args.attrs?.numOrSizeSplits as number | number[], axis);
      const begin = new Array<number>(x.shape.length).fill(0);
      return splits.map((s) => {
        const sz = x.shape.slice();
        sz[axis] = s;
        const out = slice({ inputs: { x }, backend: args.backend, attrs: { begin: begin.slice(), size: sz } }) as TensorInfo;
        nativeStats.native.Slice = (nativeStats.native.Slice ?? 0) + 1;
        begin[axis] += s;
        return out;
      });
    };
  }
  {
    // Concat = each input's rows copied into its column range of the output rows (the cpu
    // kernel took 38 ms to join ViT-S's class token to batch 8's patch tokens).
    const fallback = cpuKernel('Concat');
    k.Concat = (args) => {
      const xs = Object.values(args.inputs).filter((t): t is TensorInfo => t != null);
      if (xs.length === 0 || xs.some((t) => t.dtype !== 'float32') || xs[0]!.shape.length === 0) return fallback(args);
      const axis = tf.util.parseAxisParam(args.attrs?.axis as number, xs[0]!.shape)[0]!;
      const outShape = bu.computeOutShape(xs.map((t) => t.shape), axis);
      const out = alloc(size(outShape));
      const rows = size(outShape.slice(0, axis));
      const width = size(outShape.slice(axis));
      let col = 0;
      for (const t of xs) {
        const cols = size(t.shape.slice(axis));
        if (cols > 0 && rows > 0)
          nativeAddon().copyRows(f32(args.backend, t), out.subarray(col), rows, cols, cols, width);
        col += cols;
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  {
    // PadV2 = fill, then copy x's rows into the padded frame. The innermost dims without
    // padding form one contiguous run per copy.
    const fallback = cpuKernel('PadV2');
    k.PadV2 = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const pads = args.attrs?.paddings as [number, number][];
      const cv = (args.attrs?.constantValue as number | undefined) ?? 0;
      if (x.dtype !== 'float32' || x.shape.length === 0 || pads.some(([a, b]) => a < 0 || b < 0)) return fallback(args);
      const r = x.shape.length;
      const outShape = x.shape.map((s, i) => s + pads[i]![0] + pads[i]![1]);
      const out = alloc(size(outShape));
      out.fill(cv);
      const src = f32(args.backend, x);
      if (src.length === 0) return args.backend.makeTensorInfo(outShape, 'float32', out);
      // innermost run: trailing dims with no padding, plus the first padded dim from the inside
      let d = r - 1;
      let run = 1;
      while (d > 0 && pads[d]![0] === 0 && pads[d]![1] === 0) run *= x.shape[d--]!;
      run *= x.shape[d]!;
      const outStrides = new Array<number>(r).fill(1);
      for (let i = r - 2; i >= 0; i--) outStrides[i] = outStrides[i + 1]! * outShape[i + 1]!;
      let base = 0;
      for (let i = 0; i < r; i++) base += pads[i]![0] * outStrides[i]!;
      const outer = x.shape.slice(0, d);
      const rows = size(outer);
      const idx = new Array<number>(d).fill(0);
      for (let row = 0; row < rows; row++) {
        let o = base;
        for (let i = 0; i < d; i++) o += idx[i]! * outStrides[i]!;
        out.set(src.subarray(row * run, row * run + run), o);
        for (let i = d - 1; i >= 0; i--) {
          if (++idx[i]! < outer[i]!) break;
          idx[i] = 0;
        }
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  {
    // The small CNN's 3×3 patches and their gradient, each one pass (pad + 9 slices + concat, and
    // in the backward pass split + 9 pads + 8 adds + slice, were a third of its training step).
    type Dims = { n: number; h: number; w: number; c: number };
    k[IM2COL_KERNEL] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const { n, h, w, c } = args.attrs as unknown as Dims;
      const out = alloc(n * h * w * 9 * c);
      if (out.length > 0) nativeAddon().im2col3x3(f32(args.backend, x), out, n, h, w, c);
      return args.backend.makeTensorInfo([n * h * w, 9 * c], 'float32', out);
    };
    k[COL2IM_KERNEL] = (args) => {
      const { dy } = args.inputs as Record<string, TensorInfo>;
      const { n, h, w, c } = args.attrs as unknown as Dims;
      const out = alloc(n * h * w * c);
      if (out.length > 0) nativeAddon().col2im3x3(f32(args.backend, dy), out, n, h, w, c);
      return args.backend.makeTensorInfo([n, h, w, c], 'float32', out);
    };
  }
}
