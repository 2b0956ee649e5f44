/** Caches of constant weights on the `native` backend: kept transposes and oneDNN-packed layouts. */
import * as tf from '@tensorflow/tfjs';
import { nativePool } from './buffer-pool.js';
import { NATIVE_BACKEND } from './kernel-names.js';
import type { NativeBackend } from './native-backend.js';

/**
 * Transposes of tensors that persist (weights: the models re-lay PyTorch weights out in every
 * call) are computed once: the second time the same tensor data (dataId: a Variable keeps its
 * dataId until it is assigned) is transposed the same way, the result is kept, in an array of
 * its own that is never pooled, for as long as that data lives. Off with
 * DCD_NATIVE_WEIGHT_CACHE=0.
 */
export const CACHE_ON = process.env.DCD_NATIVE_WEIGHT_CACHE !== '0';
export const transposeCache = new WeakMap<object, { key: string; out?: Float32Array | Int32Array }>();
/** Arrays held by transposeCache: immutable, so conv may cache their packed (oneDNN) layout. */
export const cachedArrays = new WeakSet<object>();
export const packedCache = new WeakMap<object, { key: string; packed: Float32Array }>();
/** LINEAR_KERNEL's packed weights, by the weight tensor's dataId. */
export const linearPacked = new WeakMap<object, { key: string; packed: Float32Array }>();

/**
 * Declares that `t` is a long-lived constant (e.g. a model's folded conv weights): on the native
 * backend its buffer is never recycled, so conv may keep that filter in oneDNN's packed layout
 * as it does for cached weight transposes. A no-op on other backends.
 */
export function markConstant(t: tf.Tensor): void {
  if (tf.getBackend() !== NATIVE_BACKEND) return;
  const v = (tf.backend() as NativeBackend).data.get(t.dataId)?.values;
  if (!(v instanceof Float32Array)) return;
  nativePool.escaped(v);
  cachedArrays.add(v);
}
