/** Convolutions (forward, fused with bias/activation/residual, both gradients) and pooling with its gradients. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { ACT, alloc, allF32, convParams, cpuKernel, f32, nativeStats, poolParams, size, type Args, type KernelTable, type TensorInfo } from './common.js';
import { CONV_ADD_KERNEL } from '../kernel-names.js';
import { cachedArrays, packedCache } from '../weight-cache.js';

export function registerConvKernels(k: KernelTable): void {
  const bu = tf.backend_util;
  const conv = (name: string, fused: boolean) => {
    // CONV_ADD_KERNEL has no cpu kernel: its fallback is FusedConv2D, Add and the activation on cpu.
    const fallback = name === CONV_ADD_KERNEL ? convAddFallback : cpuKernel(name);
    k[name] = (args) => {
      const { x, filter, bias, preluActivationWeights, residual } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        strides: [number, number] | number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
        dataFormat: 'NHWC' | 'NCHW'; dilations: [number, number] | number;
        dimRoundingMode?: 'floor' | 'round' | 'ceil'; activation?: string; leakyreluAlpha?: number;
      };
      const act = fused ? ACT[at.activation ?? 'linear'] : 0;
      if (!allF32(x, filter, bias, residual) || act === undefined || preluActivationWeights != null || at.dataFormat === 'NCHW' || (residual && act > 1))
        return fallback(args);
      const c = bu.computeConv2DInfo(
        x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
        at.strides, at.dilations, at.pad, at.dimRoundingMode, false, 'channelsLast',
      );
      if ((bias != null && size(bias.shape) !== c.outChannels)) return fallback(args);
      if (residual && !tf.util.arraysEqual(residual.shape, c.outShape)) return fallback(args);
      const out = alloc(size(c.outShape));
      const w = f32(args.backend, filter);
      // the addon copies the residual into out (or, for Winograd, into its blocked output) and the
      // conv adds its result to it (oneDNN sum post-op)
      const p = convParams(c, residual ? act | 16 : act);
      const alpha = at.leakyreluAlpha ?? 0.2;
      // Constant filters (cached weight transposes): keep them in oneDNN's layout too.
      let packed: Float32Array | null = null;
      let mode: 0 | 1 | 2 = 0;
      if (cachedArrays.has(w)) {
        const key = `${p}|${alpha}|${bias != null}`;
        const hit = packedCache.get(w);
        if (hit?.key === key) [packed, mode] = [hit.packed, 1];
        else {
          const n = nativeAddon().convPackedSize(p, alpha, bias != null);
          if (n > 0) {
            [packed, mode] = [new Float32Array(n), 2];
            packedCache.set(w, { key, packed });
          }
        }
      }
      nativeAddon().conv2d(
        f32(args.backend, x), w, bias ? f32(args.backend, bias) : null, out, p, alpha, packed, mode,
        residual ? f32(args.backend, residual) : null,
      );
      return args.backend.makeTensorInfo(c.outShape, 'float32', out);
    };
  };
  conv('Conv2D', false);
  conv('FusedConv2D', true);
  const convAddFallback = (args: Args): TensorInfo => {
    nativeStats.native[CONV_ADD_KERNEL]--;
    nativeStats.fallback[CONV_ADD_KERNEL] = (nativeStats.fallback[CONV_ADD_KERNEL] ?? 0) + 1;
    const cpu = (name: string, a: Args) => (tf.getKernel(name, 'cpu')!.kernelFunc as unknown as (a: Args) => TensorInfo)(a);
    const { residual, ...rest } = args.inputs;
    const b = args.backend;
    const act = (args.attrs?.activation as string | undefined) ?? 'linear';
    if (act !== 'linear' && act !== 'relu') throw new Error(`${CONV_ADD_KERNEL}: activation ${act} is not supported (linear or relu)`);
    const y = cpu('FusedConv2D', { ...args, inputs: rest, attrs: { ...args.attrs, activation: 'linear' } });
    const sum = cpu('Add', { inputs: { a: y, b: residual }, backend: b });
    b.disposeIntermediateTensorInfo(y);
    if (act === 'linear') return sum;
    const out = cpu('Relu', { inputs: { x: sum }, backend: b });
    b.disposeIntermediateTensorInfo(sum);
    return out;
  };
  conv(CONV_ADD_KERNEL, true);

  type Shape4 = [number, number, number, number];
  type ConvGradAttrs = {
    strides: [number, number] | number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil';
    inputShape?: Shape4; filterShape?: Shape4;
  };
  /**
   * A convolution gradient from the kernel's two inputs `a`, `b`: `shapes` gives the forward
   * convolution's input and filter shapes, `outOf` the gradient's shape, `run` the addon call.
   */
  const convGrad = (
    name: string, [a, b]: [string, string],
    shapes: (inputs: Record<string, TensorInfo>, at: ConvGradAttrs) => [Shape4, Shape4],
    outOf: (c: tf.backend_util.Conv2DInfo) => number[],
    run: (a: Float32Array, b: Float32Array, out: Float32Array, p: Int32Array) => void,
  ) => {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const inputs = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as ConvGradAttrs;
      if (!allF32(inputs[a]!, inputs[b]!) || at.dataFormat === 'NCHW') return fallback(args);
      const [xShape, filterShape] = shapes(inputs, at);
      const c = bu.computeConv2DInfo(xShape, filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
      const shape = outOf(c);
      const out = alloc(size(shape));
      run(f32(args.backend, inputs[a]!), f32(args.backend, inputs[b]!), out, convParams(c));
      return args.backend.makeTensorInfo(shape, 'float32', out);
    };
  };
  convGrad('Conv2DBackpropInput', ['dy', 'filter'], (i, at) => [at.inputShape!, i.filter!.shape as Shape4], (c) => c.inShape, (dy, w, dx, p) => nativeAddon().conv2dBackpropInput(dy, w, dx, p));
  convGrad('Conv2DBackpropFilter', ['x', 'dy'], (i, at) => [i.x!.shape as Shape4, at.filterShape!], (c) => c.filterShape, (x, dy, dw, p) => nativeAddon().conv2dBackpropFilter(x, dy, dw, p));

  type PoolAttrs = {
    filterSize: [number, number] | number; strides: [number, number] | number;
    pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding; dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const pool = (name: string, max: boolean) => {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(x) || x.shape.length !== 4) return fallback(args);
      const c = bu.computePool2DInfo(
        x.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(c.outShape));
      if (out.length > 0) nativeAddon().pool(f32(args.backend, x), out, poolParams(c, max));
      return args.backend.makeTensorInfo(c.outShape, 'float32', out);
    };
  };
  pool('MaxPool', true);
  pool('AvgPool', false);
  {
    const fallback = cpuKernel('MaxPoolGrad');
    k.MaxPoolGrad = (args) => {
      const { dy, input } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(dy, input)) return fallback(args);
      const c = bu.computePool2DInfo(
        input.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(input.shape));
      nativeAddon().poolBackward(f32(args.backend, input), f32(args.backend, dy), out, poolParams(c, true));
      return args.backend.makeTensorInfo(input.shape, 'float32', out);
    };
  }
  {
    // Unlike tfjs's cpu AvgPoolGrad (which always divides by the full window), this is the exact
    // gradient of AvgPool, whose windows exclude padding (as TensorFlow's AvgPoolGrad).
    const fallback = cpuKernel('AvgPoolGrad');
    k.AvgPoolGrad = (args) => {
      const { dy, input } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(dy, input)) return fallback(args);
      const c = bu.computePool2DInfo(
        input.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(input.shape));
      nativeAddon().poolBackward(null, f32(args.backend, dy), out, poolParams(c, false));
      return args.backend.makeTensorInfo(input.shape, 'float32', out);
    };
  }
}
