/** Normalisation and the optimizer step: BatchNorm (inference, training, gradients), LayerNorm, SGD. */
import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../addon.js';
import { alloc, allF32, cpuKernel, f32, size, type KernelTable, type TensorInfo } from './common.js';
import { BN_GRAD_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, LAYER_NORM_KERNEL, SGD_KERNEL } from '../kernel-names.js';

export function registerNormKernels(k: KernelTable): void {
  {
    const fallback = cpuKernel('FusedBatchNorm');
    k.FusedBatchNorm = (args) => {
      const { x, mean, variance, offset, scale } = args.inputs as Record<string, TensorInfo | undefined>;
      if (!x || !mean || !variance || !allF32(x, mean, variance, offset, scale)) return fallback(args);
      const b = args.backend;
      const out = alloc(size(x.shape));
      nativeAddon().batchNorm(
        f32(b, x), f32(b, mean), f32(b, variance), offset ? f32(b, offset) : null, scale ? f32(b, scale) : null,
        out, (args.attrs?.varianceEpsilon as number | undefined) ?? 0.001,
      );
      return b.makeTensorInfo(x.shape, 'float32', out);
    };
  }
  // LayerNorm over the last axis and exact GELU, each one kernel (the models call them on this
  // backend outside gradient tapes: src/models/ops.ts).
  k[LAYER_NORM_KERNEL] = (args) => {
    const { x, weight, bias } = args.inputs as Record<string, TensorInfo>;
    const cols = x.shape[x.shape.length - 1]!;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().layerNorm(f32(args.backend, x), f32(args.backend, weight), f32(args.backend, bias), out, cols, args.attrs?.eps as number);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  k[SGD_KERNEL] = (args) => {
    const { param, grad, buf } = args.inputs as Record<string, TensorInfo> & { buf?: TensorInfo };
    const b = args.backend;
    const n = size(param.shape);
    if (size(grad.shape) !== n || (buf && size(buf.shape) !== n))
      throw new Error(`${SGD_KERNEL}: param [${param.shape}], grad [${grad.shape}]${buf ? `, buf [${buf.shape}]` : ''} must have the same size`);
    const pOut = alloc(n), bOut = alloc(n);
    const at = args.attrs as { lr: number; momentum: number; weightDecay: number; nesterov: boolean };
    nativeAddon().sgdStep(f32(b, param), f32(b, grad), buf ? f32(b, buf) : null, pOut, bOut, at.lr, at.momentum, at.weightDecay, at.nesterov);
    return [b.makeTensorInfo(param.shape, 'float32', pOut), b.makeTensorInfo(param.shape, 'float32', bOut)];
  };
  k[BN_TRAIN_KERNEL] = (args) => {
    const { x, scale, offset, residual } = args.inputs as Record<string, TensorInfo> & { residual?: TensorInfo };
    const b = args.backend;
    const C = x.shape[x.shape.length - 1]!;
    if (residual && !tf.util.arraysEqual(residual.shape, x.shape))
      throw new Error(`${BN_TRAIN_KERNEL}: residual shape [${residual.shape}] must equal x's [${x.shape}]`);
    const y = alloc(size(x.shape));
    const mean = new Float32Array(C), variance = new Float32Array(C);
    nativeAddon().batchNormTrain(
      f32(b, x), scale ? f32(b, scale) : null, offset ? f32(b, offset) : null, y, mean, variance, args.attrs?.eps as number,
      residual ? f32(b, residual) : null, args.attrs?.activation === 'relu',
    );
    return [b.makeTensorInfo(x.shape, 'float32', y), b.makeTensorInfo([C], 'float32', mean), b.makeTensorInfo([C], 'float32', variance)];
  };
  k[BN_TRAIN_GRAD_KERNEL] = (args) => {
    const { x, dy, mean, variance, scale, y } = args.inputs as Record<string, TensorInfo> & { y?: TensorInfo };
    const b = args.backend;
    const C = size(mean.shape);
    const dx = alloc(size(x.shape));
    const dscale = new Float32Array(C), doffset = new Float32Array(C);
    // the residual's gradient is ReLU's masked dy; without ReLU it is dy itself (left to the caller)
    const dres = args.attrs?.residual === true && y ? alloc(size(x.shape)) : null;
    nativeAddon().batchNormTrainGrad(
      f32(b, x), f32(b, dy), f32(b, mean), f32(b, variance), scale ? f32(b, scale) : null, dx, dscale, doffset, args.attrs?.eps as number,
      y ? f32(b, y) : null, dres,
    );
    const out = [b.makeTensorInfo(x.shape, 'float32', dx), b.makeTensorInfo([C], 'float32', dscale), b.makeTensorInfo([C], 'float32', doffset)];
    if (dres) out.push(b.makeTensorInfo(x.shape, 'float32', dres));
    return out;
  };
  k[BN_GRAD_KERNEL] = (args) => {
    const { x, dy, mean, variance, scale } = args.inputs as Record<string, TensorInfo>;
    const b = args.backend;
    const C = size(mean.shape);
    const dx = alloc(size(x.shape));
    const g = [new Float32Array(C), new Float32Array(C), new Float32Array(C), new Float32Array(C)] as const;
    nativeAddon().batchNormGrad(
      f32(b, x), f32(b, dy), f32(b, mean), f32(b, variance), scale ? f32(b, scale) : null, dx, ...g,
      (args.attrs?.varianceEpsilon as number | undefined) ?? 0.001,
    );
    return [
      b.makeTensorInfo(x.shape, 'float32', dx),
      ...g.map((v) => b.makeTensorInfo([C], 'float32', v)),
    ];
  };
}
