import * as tf from '@tensorflow/tfjs';
import { NATIVE_BACKEND } from './kernel-names.js';
import { registerNativeBackend } from './native.js';
import { WEBGPU_BACKEND } from './webgpu.js';

/**
 * Where retrieval's distances are computed when the active backend reads only asynchronously:
 * tfjs's webgpu backend maps GPU memory with a promise, and its synchronous read needs an
 * OffscreenCanvas, which Node lacks. The asynchronous retrieval paths (the leakage filter,
 * Algorithm 1's search, `knnAsync`) screen on the GPU there (src/retrieval/gpu-screen.ts); the
 * synchronous ones (`knn`, `nearest`) run on the host.
 */

/** Whether the asynchronous retrieval paths screen distances on the GPU: the active backend is webgpu. */
export function gpuRetrieval(): boolean {
  return tf.getBackend() === WEBGPU_BACKEND;
}

/** Whether the active backend computes synchronous retrieval on the host: it reads its tensors only asynchronously. */
export function hostRetrieval(): boolean {
  return tf.getBackend() === WEBGPU_BACKEND;
}

/**
 * Whether synchronous retrieval may use the native addon's certified kernels (bf16/fp32
 * screening with a float64 re-check): on the native backend, and on webgpu when the addon is
 * built — there the answer is the native backend's, by construction.
 */
export function certifiedRetrievalBackend(): boolean {
  const b = tf.getBackend();
  return b === NATIVE_BACKEND || (b === WEBGPU_BACKEND && registerNativeBackend().ok);
}

/**
 * A constant float32 matrix [rows, cols] on the host backend (native when the addon loads, else
 * cpu), multiplied synchronously from the left whatever backend is active. Runs the backend's
 * BatchMatMul kernel directly, so no tensor of the active backend is made.
 */
export class HostMatrix {
  private readonly backend: tf.KernelBackend;
  private readonly kernel: tf.KernelFunc;
  private readonly b: tf.TensorInfo;

  constructor(data: Float32Array, readonly rows: number, readonly cols: number) {
    const name = registerNativeBackend().ok ? NATIVE_BACKEND : 'cpu';
    const backend = tf.findBackend(name);
    const kernel = tf.getKernel('BatchMatMul', name)?.kernelFunc;
    if (backend == null || kernel == null) throw new Error(`HostMatrix: tfjs backend ${name} or its BatchMatMul kernel is not registered`);
    this.backend = backend;
    this.kernel = kernel;
    const shape = [1, rows, cols];
    this.b = { dataId: backend.write(data, shape, 'float32'), shape, dtype: 'float32' };
  }

  /** a·this for `a` row-major [r, rows]; returns row-major [r, cols]. */
  leftMul(a: Float32Array, r: number): Float32Array {
    const shape = [1, r, this.rows];
    const ai: tf.TensorInfo = { dataId: this.backend.write(a, shape, 'float32'), shape, dtype: 'float32' };
    try {
      const out = this.kernel({ inputs: { a: ai, b: this.b }, backend: this.backend, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo;
      try {
        // a copy: the native backend hands a disposed tensor's memory to the next one
        return (this.backend.readSync(out.dataId) as Float32Array).slice();
      } finally {
        this.backend.disposeData(out.dataId);
      }
    } finally {
      this.backend.disposeData(ai.dataId);
    }
  }

  dispose(): void {
    this.backend.disposeData(this.b.dataId);
  }
}
