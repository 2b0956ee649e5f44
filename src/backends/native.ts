/**
 * The `native` tfjs backend: tfjs's `cpu` backend (tensors in ordinary typed arrays, every
 * `cpu` kernel inherited) with the hot kernels replaced by a Node addon built on oneDNN
 * (`native/src/addon.cc`). Each replaced kernel handles the float32 / NHWC cases it was
 * tested on and hands every other case to the `cpu` kernel it replaces.
 *
 * This file registers the backend; the parts live beside it: ./addon.ts (loading the
 * addon), ./buffer-pool.ts (output buffers), ./native-backend.ts (the backend class),
 * ./kernels/ (the kernels by family), ./gradients.ts, ./weight-cache.ts and
 * ./kernel-names.ts (the names of dcd's own kernels, which the models call).
 */
import * as tf from '@tensorflow/tfjs';
import { loadAddon } from './addon.js';
import { installBatchNormGrad, installBatchNormTrainGrad, installIm2colGrad, installReluGrad } from './gradients.js';
import { NATIVE_BACKEND } from './kernel-names.js';
import { NativeBackend } from './native-backend.js';
import { nativeStats, type Args, type KernelTable } from './kernels/common.js';
import { registerConvKernels } from './kernels/conv.js';
import { registerElementwiseKernels } from './kernels/elementwise.js';
import { registerLayoutKernels } from './kernels/layout.js';
import { registerMatMulKernels } from './kernels/matmul.js';
import { registerNormKernels } from './kernels/norm.js';

export { findAddon, nativeAddon, type NativeAddon } from './addon.js';
export { BufferPool, nativePool, poolCapFromEnv, recycleReadout } from './buffer-pool.js';
export { NativeBackend } from './native-backend.js';
export { nativeStats, simplifyTranspose } from './kernels/common.js';
export { markConstant } from './weight-cache.js';
export * from './kernel-names.js';

/**
 * Loads the addon and registers the `native` backend and its kernels with tfjs. Idempotent.
 * Threads: `DCD_NATIVE_THREADS`, else all cores.
 */
export function registerNativeBackend(): { ok: true; version: string } | { ok: false; why: string } {
  const loaded = loadAddon();
  if (!loaded.ok) return loaded;
  if (tf.findBackendFactory(NATIVE_BACKEND) == null) tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 1);
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (tf.getKernel(k.kernelName, NATIVE_BACKEND) == null) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  for (const [name, fn] of Object.entries(nativeKernels())) {
    if (tf.getKernel(name, NATIVE_BACKEND) != null) tf.unregisterKernel(name, NATIVE_BACKEND);
    const counted = (a: Args) => {
      nativeStats.native[name] = (nativeStats.native[name] ?? 0) + 1;
      return fn(a);
    };
    tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND, kernelFunc: counted as unknown as tf.KernelFunc });
  }
  installBatchNormGrad();
  installBatchNormTrainGrad();
  installReluGrad();
  installIm2colGrad();
  return { ok: true, version: loaded.addon.version() };
}

/** Names of the kernels the addon replaces (everything else is the `cpu` kernel). */
export function nativeKernelNames(): string[] {
  return Object.keys(nativeKernels());
}

/** Every native kernel by name, family by family. */
function nativeKernels(): KernelTable {
  const k: KernelTable = {};
  registerConvKernels(k);
  registerMatMulKernels(k);
  registerNormKernels(k);
  registerElementwiseKernels(k);
  registerLayoutKernels(k);
  return k;
}
