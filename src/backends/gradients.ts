/**
 * Gradients that run native kernels on the `native` backend (tfjs registers gradients per
 * kernel, not per backend, so each wraps the original and calls it elsewhere).
 */
import * as tf from '@tensorflow/tfjs';
import { BN_GRAD_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, COL2IM_KERNEL, IM2COL_KERNEL, NATIVE_BACKEND, RELU_GRAD_KERNEL } from './kernel-names.js';

type NamedAttrMap = tf.NamedAttrMap;

/**
 * Replaces FusedBatchNorm's registered gradient by one that, on the `native` backend and for
 * per-channel parameters, computes all five gradients in one native kernel; anywhere else it
 * calls the original (tfjs-core's, which makes ~12 full passes over the activations: 1,489
 * Multiply calls were 36% of a ResNet-50 train step). Gradients are registered per kernel,
 * not per backend, hence the wrapper.
 */
export function installBatchNormGrad(): void {
  const orig = tf.getGradient('FusedBatchNorm');
  if (!orig || (orig as { dcdNative?: boolean }).dcdNative) return;
  const cfg = {
    kernelName: 'FusedBatchNorm',
    inputsToSave: orig.inputsToSave,
    outputsToSave: orig.outputsToSave,
    dcdNative: true,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      const [x, mean, variance, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
      const C = mean.size;
      const ok =
        tf.getBackend() === NATIVE_BACKEND && !Array.isArray(dy) && C > 0 && x.rank >= 1 && x.shape[x.rank - 1] === C &&
        mean.rank === 1 && variance.rank === 1 && variance.size === C && (scale == null || (scale.rank === 1 && scale.size === C)) &&
        [x, dy, mean, variance, scale].every((t) => t == null || t.dtype === 'float32');
      if (!ok) return orig.gradFunc(dy, saved, attrs);
      // Computed now, not inside the per-input closures: the engine runs each closure in its own
      // tidy, which would dispose the other four outputs.
      const inputs: Record<string, tf.Tensor> = { x, dy: dy as tf.Tensor, mean, variance };
      if (scale) inputs.scale = scale;
      const r = tf.engine().runKernel(BN_GRAD_KERNEL, inputs, attrs) as tf.Tensor[];
      return { x: () => r[0]!, mean: () => r[1]!, variance: () => r[2]!, scale: () => r[3]!, offset: () => r[4]! };
    },
  };
  tf.registerGradient(cfg as unknown as tf.GradConfig);
}

/**
 * The gradient of {@link BN_TRAIN_KERNEL}: x (through the batch mean and variance), scale and
 * offset in one native kernel. Gradients that reach the mean or variance outputs themselves
 * (unusual: the models only read them for the running statistics) are added with tfjs ops.
 */
export function installBatchNormTrainGrad(): void {
  if (tf.getGradient(BN_TRAIN_KERNEL)) return;
  tf.registerGradient({
    kernelName: BN_TRAIN_KERNEL,
    inputsToSave: ['x', 'scale'],
    outputsToSave: [true, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      // tfjs passes zeros for outputs off the loss path (the statistics, normally): skip those.
      const live = (t: tf.Tensor | null | undefined) => (t && (t.dataSync() as Float32Array).some((v) => v !== 0) ? t : null);
      const [dy, dmean, dvar] = [(dys as tf.Tensor[])[0] ?? null, live((dys as tf.Tensor[])[1]), live((dys as tf.Tensor[])[2])];
      const [x, scale, y, mean, variance] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const C = mean.size;
      const relu = attrs.activation === 'relu', residual = attrs.residual === true;
      // Computed now, not inside the per-input closures (each runs in its own tidy).
      const gradAttrs = { eps: attrs.eps, relu, residual };
      let [dx, dscale, doffset, dres] = dy
        ? (tf.engine().runKernel(BN_TRAIN_GRAD_KERNEL, relu ? { x, dy, mean, variance, scale, y } : { x, dy, mean, variance, scale }, gradAttrs) as tf.Tensor[])
        : [tf.zerosLike(x), tf.zerosLike(scale), tf.zeros([C]), residual ? tf.zerosLike(x) : undefined];
      if (residual && !dres) dres = relu ? tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: dy!, x: y }) as tf.Tensor : dy!.clone();
      // (a gradient reaching the statistics adds to x's: they depend on x alone, not on the residual or ReLU)
      if (dmean || dvar) {
        const N = x.size / C;
        const extra = tf.tidy(() => {
          let e: tf.Tensor = tf.zerosLike(x);
          if (dmean) e = tf.add(e, tf.div(dmean, N));
          if (dvar) e = tf.add(e, tf.mul(tf.sub(x, mean), tf.mul(dvar, 2 / N)));
          return e;
        });
        const sum = tf.add(dx!, extra);
        tf.dispose([dx!, extra]);
        dx = sum;
      }
      return { x: () => dx!, scale: () => dscale!, offset: () => doffset!, residual: () => dres! };
    },
  });
}

/**
 * Replaces Relu's registered gradient (tfjs: dy · step(x), two passes) by one that runs
 * {@link RELU_GRAD_KERNEL} on the `native` backend for float32, and the original elsewhere.
 */
export function installReluGrad(): void {
  const orig = tf.getGradient('Relu');
  if (!orig || (orig as { dcdNative?: boolean }).dcdNative) return;
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: orig.inputsToSave,
    outputsToSave: orig.outputsToSave,
    dcdNative: true,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      const [x] = saved as [tf.Tensor];
      if (tf.getBackend() !== NATIVE_BACKEND || Array.isArray(dy) || dy.dtype !== 'float32' || x.dtype !== 'float32') return orig.gradFunc(dy, saved, attrs);
      return { x: () => tf.engine().runKernel(RELU_GRAD_KERNEL, { dy, x }) as tf.Tensor };
    },
  } as unknown as tf.GradConfig);
}

/**
 * The gradient of {@link IM2COL_KERNEL}: {@link COL2IM_KERNEL}, which adds each pixel's nine window
 * gradients in the order tfjs's autodiff of pad + slices + concat adds them (bit-identical).
 */
export function installIm2colGrad(): void {
  if (tf.getGradient(IM2COL_KERNEL)) return;
  tf.registerGradient({
    kernelName: IM2COL_KERNEL,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], _saved: tf.Tensor[], attrs: NamedAttrMap) => ({
      x: () => tf.engine().runKernel(COL2IM_KERNEL, { dy: dy as tf.Tensor }, attrs) as tf.Tensor,
    }),
  });
}
